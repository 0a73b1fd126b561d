r"""LUKE pretraining entry point.

  python run_pretrain.py --config configs/pretrain_tiny.py \
      --config.data.dataset_dir=$DATASET --workdir /tmp/luke_tiny
  python run_pretrain.py --config configs/pretrain.py:size=base,stage=1 ... --workdir $W

Resumes from `--workdir` when it holds checkpoints; SIGTERM saves and exits 0.
"""

import sys

from absl import app, flags, logging
import jax
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and metrics go.")
_JAX_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False,
                                     "Call jax.distributed.initialize() (multi-host).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _JAX_DISTRIBUTED.value:
    jax.distributed.initialize()
  jax.config.update("jax_threefry_partitionable", True)  # dropout masks independent of sharding
  logging.info("process %d of %d", jax.process_index(), jax.process_count())
  logging.info("config:\n%s", _CONFIG.value)
  from luke_jax.training import loop  # pylint: disable=g-import-not-at-top
  result = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if result.preempted:
    print(f"run_pretrain.py: stopped at step {result.step}; rerun the same command to resume",
          file=sys.stderr)


if __name__ == "__main__":
  app.run(main)

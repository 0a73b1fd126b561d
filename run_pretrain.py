r"""LUKE pretraining entry point (placeholder until the pretraining issue lands).

  python run_pretrain.py --config configs/tiny.py --workdir /tmp/luke_tiny
"""

import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and metrics go.")
_JAX_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False,
                                     "Call jax.distributed.initialize() (multi-host).")


def main(argv):
  del argv
  print("run_pretrain.py: pretraining is not implemented yet; nothing was trained.",
        file=sys.stderr)
  sys.exit(2)


if __name__ == "__main__":
  app.run(main)

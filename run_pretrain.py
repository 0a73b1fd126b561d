r"""LUKE pretraining entry point.

  python run_pretrain.py --config configs/pretrain_tiny.py \
      --config.data.dataset_dir=$DATASET --workdir /tmp/luke_tiny
  python run_pretrain.py --config configs/pretrain.py:size=base,stage=1 ... --workdir $W

Resumes from `--workdir` when it holds checkpoints; SIGTERM saves and exits 0. At the end
`--workdir` holds `model/` (a luke-jax checkpoint) and, with `config.train.export`,
`hf_export/` (the same model for `transformers.LukeForMaskedLM`). `--config.train.init_checkpoint`
may be a Hugging Face Hub id, read from the Hugging Face cache and downloaded when missing
(--revision, --cache_dir, --local_files_only, --token; see `luke_jax.hub`).

Multi-host: run the same command on every host with `--jax_distributed`, which calls
`jax.distributed.initialize()`. On Cloud TPU VMs, SLURM, Open MPI and Kubernetes JAX finds the
coordinator, the process count and this process's id by itself; elsewhere give them:

  # host i of N (i = 0 runs the coordinator; the port must be free there)
  python run_pretrain.py --jax_distributed --coordinator_address=$HOST0:1234 \
      --num_processes=N --process_id=i --config ... --workdir $SHARED_DIR

(`JAX_COORDINATOR_ADDRESS` in the environment works as `--coordinator_address` does). The
workdir must be one directory every host sees (a bucket or a shared file system): Orbax writes
each checkpoint once, every host its own shards. Each host reads its own rows of every global
batch. On CPU the hosts talk through gloo, JAX's default CPU collectives.
"""

import sys
from pathlib import Path

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from luke_jax import cli, hub_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and metrics go.")
_JAX_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False,
                                     "Call jax.distributed.initialize() (multi-host).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "--jax_distributed: host:port of process 0's coordinator "
                                   "(default: detected, or $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "--jax_distributed: number of processes (default: "
                                      "detected).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "--jax_distributed: this process's index (default: "
                                   "detected).")
_HUB = hub_flags.HubFlags("--config.train.init_checkpoint")
flags.adopt_module_key_flags(hub_flags)  # listed by --help, not only --helpfull
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  explicit = {k: v for k, v in dict(coordinator_address=_COORDINATOR.value,
                                    num_processes=_NUM_PROCESSES.value,
                                    process_id=_PROCESS_ID.value).items() if v is not None}
  if explicit and not _JAX_DISTRIBUTED.value:
    raise app.UsageError(f"--{', --'.join(explicit)} need --jax_distributed")
  from luke_jax.training import config as run_config  # pylint: disable=g-import-not-at-top
  # A wrong setting is one line on stderr, not the line after a page-long config dump.
  config, workdir = run_config.checked(_CONFIG.value), Path(_WORKDIR.value)
  if _JAX_DISTRIBUTED.value:
    jax.distributed.initialize(**explicit)
  jax.config.update("jax_threefry_partitionable", True)  # dropout masks independent of sharding
  logging.info("process %d of %d", jax.process_index(), jax.process_count())
  logging.debug("config:\n%s", config)  # the run writes it to WORKDIR/config.json
  from luke_jax.pretraining import train  # pylint: disable=g-import-not-at-top
  result = train.train_and_evaluate(config, workdir, hub_options=_HUB.options())
  if result.preempted:
    print(f"run_pretrain.py: stopped at step {result.step}; rerun the same command to resume",
          file=sys.stderr)
  elif result.model_dir is not None:
    # The export is this script's step: the training library does not import the converter.
    from luke_jax.convert import hf  # pylint: disable=g-import-not-at-top
    hf_dir = hf.write_hf(workdir / "hf_export", result.params, result.model_config,
                         train.ARCHITECTURE, tokenizer_dir=config.data.dataset_dir,
                         overwrite=True)
    print(f"exported {result.model_dir} (luke-jax) and {hf_dir} (transformers)", flush=True)


if __name__ == "__main__":
  from luke_jax.training import config as run_config  # pylint: disable=g-import-not-at-top
  # ml_collections reads the overrides from sys.argv itself, so the old names are renamed there.
  sys.argv = run_config.rewrite_flags(sys.argv)
  cli.run(main)

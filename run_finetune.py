r"""LUKE fine-tuning entry point: the paper's five tasks and entity disambiguation, with their
official metrics.

  python run_finetune.py --config configs/finetune/conll2003.py \
      --config.train.init_checkpoint=$LUKE --config.data.train_file=eng.train \
      --config.data.dev_file=eng.testa --config.data.test_file=eng.testb --workdir $W

`--config.train.init_checkpoint` (and `--checkpoint` below) may be a Hugging Face Hub id such as
studio-ousia/luke-base, read from the Hugging Face cache and downloaded when missing
(--revision, --cache_dir, --local_files_only, --token; see `luke_jax.hub`).

Tasks: conll2003, tacred, open_entity, squad, record, entity_disambiguation
(`configs/finetune/<task>.py`; each docstring gives its command). `--workdir` ends with
`results.json` (dev and test metrics of the best dev model), `{dev,test}_predictions.*` in
the task's official format, `best/` (a luke-jax checkpoint, readable by
`luke_jax.from_pretrained`) and resumable `checkpoints/`; rerunning the same command resumes.
Predictions on new text with a fine-tuned model:

  python run_finetune.py --config configs/finetune/conll2003.py --predict_only \
      --predict_file sentences.txt --workdir $W     # uses $W/best; writes $W/predictions.*

`--output_format=jsonl` writes one JSON object per input text instead (entities with character
offsets and scores, as `luke_jax.pipeline` returns them); `--output=-` prints to stdout.
"""

import sys
import tempfile
from pathlib import Path

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from luke_jax import cli, hub_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Fine-tuning configuration file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, predictions and results go.")
_PREDICT_ONLY = flags.DEFINE_bool("predict_only", False,
                                  "Only predict on --predict_file with --checkpoint.")
_PREDICT_FILE = flags.DEFINE_string("predict_file", None, "Input of --predict_only.")
_RAW = flags.DEFINE_bool("raw", True, "--predict_file is plain text in the task's raw format "
                         "(NER: one sentence per line; typing: <e>mention</e>; relation "
                         "classification: <e1>subject</e1> ... <e2>object</e2>); --noraw reads "
                         "the task's official format.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "Fine-tuned checkpoint for --predict_only, a directory or a "
                                  "Hub id (default WORKDIR/best).")
_OUTPUT = flags.DEFINE_string("output", None, "Prediction file of --predict_only (default "
                              "WORKDIR/predictions.<task format>, or .jsonl); - for stdout.")
_OUTPUT_FORMAT = flags.DEFINE_enum(
    "output_format", "task", ["task", "jsonl"],
    "--predict_only output: 'task', the task's own format (CoNLL tags, ...); 'jsonl', one JSON "
    "object per input text with character offsets and scores, from luke_jax.pipeline "
    "(conll2003, open_entity, tacred). --output=- prints to stdout.")
_JAX_DISTRIBUTED = flags.DEFINE_bool("jax_distributed", False,
                                     "Call jax.distributed.initialize() (multi-host).")
_HUB = hub_flags.HubFlags("--config.train.init_checkpoint (or --checkpoint)")
flags.adopt_module_key_flags(hub_flags)  # listed by --help, not only --helpfull
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from luke_jax.training import config as run_config  # pylint: disable=g-import-not-at-top
  # A wrong setting is one line on stderr, not the line after a page-long config dump.
  config, workdir = run_config.checked(_CONFIG.value), Path(_WORKDIR.value)
  if _JAX_DISTRIBUTED.value:
    jax.distributed.initialize()
  jax.config.update("jax_threefry_partitionable", True)  # dropout masks independent of sharding
  from luke_jax.finetune import tasks, trainer  # pylint: disable=g-import-not-at-top
  if _PREDICT_ONLY.value:
    if not _PREDICT_FILE.value:
      raise app.UsageError("--predict_only needs --predict_file")
    checkpoint = _HUB.resolve(_CHECKPOINT.value) if _CHECKPOINT.value else workdir / "best"
    _predict(config, checkpoint, workdir, tasks.get(config.task).prediction_suffix, trainer)
    return
  logging.debug("config:\n%s", config)  # the run writes it to WORKDIR/config.json
  result = trainer.finetune(config, workdir, hub_options=_HUB.options())
  if result.preempted:
    print(f"run_finetune.py: stopped at step {result.step}; rerun the same command to resume",
          file=sys.stderr)
  else:
    print(f"results: {workdir / trainer.RESULTS_FILE}", flush=True)


def _predict(config, checkpoint, workdir: Path, suffix: str, trainer) -> None:
  """--predict_only: the task's format or JSON lines, to a file or (--output=-) stdout."""
  jsonl = _OUTPUT_FORMAT.value == "jsonl"
  to_stdout = _OUTPUT.value == "-"
  output = None if to_stdout else Path(
      _OUTPUT.value or workdir / ("predictions.jsonl" if jsonl else f"predictions{suffix}"))
  if jsonl:
    from luke_jax.inference import files  # pylint: disable=g-import-not-at-top
    records = files.predict(files.pipeline_for(config, checkpoint), config.task,
                            _PREDICT_FILE.value, raw=_RAW.value)
    count = files.write(records, sys.stdout if to_stdout else output)
  elif to_stdout:
    with tempfile.TemporaryDirectory() as tmp:
      path = Path(tmp) / f"predictions{suffix}"
      count = len(trainer.predict(config, checkpoint, _PREDICT_FILE.value, path, raw=_RAW.value))
      sys.stdout.write(path.read_text(encoding="utf-8"))
      sys.stdout.flush()
  else:
    output.parent.mkdir(parents=True, exist_ok=True)
    count = len(trainer.predict(config, checkpoint, _PREDICT_FILE.value, output, raw=_RAW.value))
  # With the predictions on stdout, the note goes to stderr.
  print(f"wrote {count} predictions to {'stdout' if to_stdout else output}", flush=True,
        file=sys.stderr if to_stdout else sys.stdout)


if __name__ == "__main__":
  from luke_jax.training import config as run_config  # pylint: disable=g-import-not-at-top
  # ml_collections reads the overrides from sys.argv itself, so the old names are renamed there.
  sys.argv = run_config.rewrite_flags(sys.argv)
  cli.run(main)

r"""LUKE fine-tuning entry point (placeholder until the fine-tuning issue lands).

  python run_finetune.py --config configs/finetune/conll2003.py --workdir /tmp/ner
"""

import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Fine-tuning configuration file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, predictions and results go.")


def main(argv):
  del argv
  print("run_finetune.py: fine-tuning is not implemented yet; no results were written.",
        file=sys.stderr)
  sys.exit(2)


if __name__ == "__main__":
  app.run(main)

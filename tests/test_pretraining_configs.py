"""Every pretraining config in configs/ runs a step.

`configs/pretrain_tiny.py` runs in `test_train.py`, each `configs/finetune/*.py` in its task's
test (`run_tiny_finetune`).

The model dimensions shrink to a tiny encoder; everything else is the config's own: optimizer
and schedule, stage and trainable rules, dtype, scan and remat policy, mesh and sharding rules.
"""

import jax
import numpy as np
import pytest

from conftest import load_config
from luke_jax.pretraining import train
from test_train import _fast_compiles  # noqa: F401

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not

TINY_MODEL = dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                  intermediate_size=37, entity_emb_size=16, max_position_embeddings=130)


@pytest.mark.parametrize("arg", [f"model={m},size={s},stage={t}" for m in ("luke", "mluke")
                                 for s in ("base", "large") for t in (1, 2)])
def test_pretrain_config_runs_a_step(arg, dataset_dir, tmp_path):
  config = load_config("pretrain.py", arg)
  config.model.update(TINY_MODEL)
  config.data.update(dataset_dir=str(dataset_dir), max_seq_length=128, num_workers=0)
  config.train.update(steps=1, batch_size=8, export=False)  # one row per device
  result = train.train_and_evaluate(config, tmp_path)
  assert result.step == 1 and np.isfinite(result.losses[0][1])
  layer = jax.tree.leaves(result.params["luke"]["encoder"])[0]
  assert layer.dtype == np.float32  # parameters stay float32 under bfloat16 compute


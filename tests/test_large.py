"""One forward at the released luke-large shape (24 x 1024, 500K entities) converts and matches."""

import jax
import numpy as np
import pytest

import luke_jax
from luke_jax.convert import hf
from luke_jax.models.config import PRESETS
from conftest import flatten_outputs, make_inputs, save_torch_model, torch_model, torch_outputs

pytestmark = [pytest.mark.slow, pytest.mark.torch]


def test_luke_large_shape_parity(tmp_path):
  import torch
  torch.set_num_threads(2)
  shape = dict(PRESETS["luke-large"])
  reference = torch_model("LukeModel", **shape)
  src = save_torch_model(reference, tmp_path / "hf")
  hf.convert(src, tmp_path / "jax", log=lambda _: None)
  # Scanned layers: one layer body to compile instead of 24.
  model, params = luke_jax.from_pretrained(tmp_path / "jax", scan_layers=True)
  inputs = make_inputs("LukeModel", shape, words=24, entities=6, mention=4)
  inputs["entity_ids"][0, 0] = shape["entity_vocab_size"] - 1  # the last row of the real table
  ref = torch_outputs(reference, inputs)
  del reference
  apply = jax.jit(lambda p, kw: model.apply({"params": p}, **kw, output_hidden_states=True,
                                            output_attentions=True))
  got = flatten_outputs(apply(params, inputs), np.asarray)
  assert set(ref) == set(got)
  worst = {name: float(np.max(np.abs(ref[name] - got[name]))) for name in ref}
  assert max(worst.values()) <= 1e-5, sorted(worst.items(), key=lambda kv: -kv[1])[:5]

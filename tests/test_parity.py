"""Every head, three configurations: transformers 5.x PyTorch vs luke-jax after conversion."""

import jax
import numpy as np
import pytest

import luke_jax
from luke_jax.convert import hf
from conftest import (ALL_HEADS, CONFIGS, flatten_outputs, make_inputs, make_labels,
                      save_torch_model, torch_model, torch_outputs)

pytestmark = pytest.mark.torch
TOL = 1e-5


def _jax_outputs(model, params, inputs, labels):
  apply = jax.jit(lambda p, kw: model.apply({"params": p}, **kw, output_attentions=True,
                                            output_hidden_states=True))
  return flatten_outputs(apply(params, {**inputs, **labels}), np.asarray)


def _assert_match(ref, got):
  assert set(ref) == set(got), f"output fields differ: {sorted(set(ref) ^ set(got))}"
  for name in ref:
    assert ref[name].shape == got[name].shape, name
    diff = float(np.max(np.abs(ref[name] - got[name]))) if ref[name].size else 0.0
    assert diff <= TOL, f"{name}: max |diff| {diff:.3g} > {TOL}"


# The quick tier (`make test-fast`) checks every head on one configuration; `make test` on all.
@pytest.mark.parametrize("config_name", [
    name if name == "projected_eaa" else pytest.param(name, marks=pytest.mark.slow)
    for name in sorted(CONFIGS)])
@pytest.mark.parametrize("arch", ALL_HEADS)
def test_head_parity(tmp_path, config_name, arch):
  config = CONFIGS[config_name]
  if arch == "LukeForQuestionAnswering":
    config = dict(config, num_labels=2)  # start and end
  reference = torch_model(arch, **config)
  src = save_torch_model(reference, tmp_path / "hf")
  hf.convert(src, tmp_path / "jax", log=lambda _: None)
  model, params = luke_jax.from_pretrained(tmp_path / "jax")
  assert type(model).__name__ == arch
  inputs = make_inputs(arch, config)
  labels = make_labels(arch, config, inputs)
  ref = torch_outputs(reference, inputs, labels)
  got = _jax_outputs(model, params, inputs, labels)
  _assert_match(ref, got)
  # The attention output covers words and entities: (T+E)^2 per head.
  words, entities = inputs["input_ids"].shape[-1], inputs["entity_ids"].shape[-1]
  assert got["attentions.0"].shape[-2:] == (words + entities, words + entities)


@pytest.mark.parametrize("arch", ["LukeForMaskedLM", "LukeForEntitySpanClassification"])
def test_scan_layers_parity(tmp_path, arch):
  """The `nn.scan` layout gives the same numbers as the layer loop and the reference."""
  config = CONFIGS["projected_eaa"]
  reference = torch_model(arch, **config)
  src = save_torch_model(reference, tmp_path / "hf")
  model, params = luke_jax.from_pretrained(src, scan_layers=True)
  assert "scan" in params["luke"]["encoder"]
  inputs = make_inputs(arch, config)
  labels = make_labels(arch, config, inputs)
  _assert_match(torch_outputs(reference, inputs, labels),
                _jax_outputs(model, params, inputs, labels))


def test_words_only_matches_reference(tmp_path):
  """Without entity inputs both run a plain RoBERTa pass and return no entity outputs."""
  config = CONFIGS["projected_eaa"]
  reference = torch_model("LukeModel", **config)
  model, params = luke_jax.from_pretrained(save_torch_model(reference, tmp_path / "hf"))
  inputs = {k: v for k, v in make_inputs("LukeModel", config).items()
            if not k.startswith("entity")}
  ref = torch_outputs(reference, inputs)
  got = _jax_outputs(model, params, inputs, {})
  assert "entity_last_hidden_state" not in got
  _assert_match(ref, got)


def test_inputs_embeds_matches_reference(tmp_path):
  import torch
  config = CONFIGS["projected_eaa"]
  reference = torch_model("LukeModel", **config)
  model, params = luke_jax.from_pretrained(save_torch_model(reference, tmp_path / "hf"))
  inputs = make_inputs("LukeModel", config)
  embeds = reference.embeddings.word_embeddings(torch.tensor(inputs["input_ids"])).detach()
  inputs.pop("input_ids")
  ref = torch_outputs(reference, dict(inputs, inputs_embeds=embeds.numpy()))
  got = _jax_outputs(model, params, dict(inputs, inputs_embeds=embeds.numpy()), {})
  _assert_match(ref, got)


@pytest.mark.slow
def test_untied_and_tied_lm_decoder(tmp_path):
  """transformers 5 leaves `lm_head.decoder` untied; a tied (released) checkpoint also loads."""
  import torch
  config = CONFIGS["projected_eaa"]
  reference = torch_model("LukeForMaskedLM", **config)
  with torch.no_grad():
    reference.lm_head.decoder.weight.copy_(reference.luke.embeddings.word_embeddings.weight)
  model, params = luke_jax.from_pretrained(save_torch_model(reference, tmp_path / "tied"))
  assert model.config.tie_word_decoder and "decoder" not in params["lm_head"]
  inputs = make_inputs("LukeForMaskedLM", config)
  _assert_match(torch_outputs(reference, inputs), _jax_outputs(model, params, inputs, {}))

  untied = torch_model("LukeForMaskedLM", seed=3, **config)
  model, params = luke_jax.from_pretrained(save_torch_model(untied, tmp_path / "untied"))
  assert not model.config.tie_word_decoder and "decoder" in params["lm_head"]
  _assert_match(torch_outputs(untied, inputs), _jax_outputs(model, params, inputs, {}))


def test_pytorch_bin_checkpoint(tmp_path):
  config = CONFIGS["same_size"]
  reference = torch_model("LukeForEntityPairClassification", **config)
  src = save_torch_model(reference, tmp_path / "hf", safe=False)
  model, params = luke_jax.from_pretrained(src)
  inputs = make_inputs("LukeForEntityPairClassification", config)
  _assert_match(torch_outputs(reference, inputs), _jax_outputs(model, params, inputs, {}))

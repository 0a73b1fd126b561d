"""`LukeForEntityDisambiguation` against a PyTorch reference, its conversion and its config.

The reference is the class of studio-ousia/luke `examples/entity_disambiguation/model.py`,
composed here (our code) from transformers 5.x pieces the way that file composes them: a
`LukeModel` whose word embeddings are BERT's, whose entity embeddings swap the rows of [MASK]
(id 2) for a learned vector, under the tied `EntityPredictionHead`; candidates keep their
full-vocabulary logits, the rest are filled with -1e32.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import luke_jax
from luke_jax import checkpoint
from luke_jax.convert import hf, weights_io
from luke_jax.convert.torch_to_flax import ConversionError
from luke_jax.models import registry
from luke_jax.models.config import LukeConfig
from luke_jax.models.entity_disambiguation import NOT_A_CANDIDATE
from luke_jax.models.luke import LukeEmbeddings

pytestmark = pytest.mark.torch
ARCH = "LukeForEntityDisambiguation"
TOL = 1e-5
MASK_ID = 2
TINY = dict(vocab_size=97, entity_vocab_size=53, hidden_size=32, entity_emb_size=16,
            num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-5, pad_token_id=0)
CONFIGS = {
    "projected_plain": dict(TINY, use_entity_aware_attention=False),  # as the official model
    "same_size_eaa": dict(TINY, entity_emb_size=32, use_entity_aware_attention=True),
}


def _quiet(_):
  pass


def reference_model(config: dict, seed: int = 0):
  """A random reference `LukeForEntityDisambiguation` (every parameter moved off its init)."""
  import torch
  import transformers
  from transformers.models.bert.modeling_bert import BertEmbeddings
  from transformers.models.luke import modeling_luke

  class MaskedEntityEmbeddings(modeling_luke.LukeEntityEmbeddings):
    """Entity embeddings where [MASK] reads `mask_embedding`, before the projection."""

    def __init__(self, cfg):
      super().__init__(cfg)
      self.mask_embedding = torch.nn.Parameter(torch.zeros(cfg.entity_emb_size))

    def forward(self, entity_ids, position_ids, token_type_ids=None):
      e = self.entity_embeddings(entity_ids)
      e = torch.where((entity_ids == MASK_ID)[..., None], self.mask_embedding, e)
      if self.config.entity_emb_size != self.config.hidden_size:
        e = self.entity_embedding_dense(e)
      used = (position_ids != -1).to(e.dtype)[..., None]
      positions = self.position_embeddings(position_ids.clamp(min=0)) * used
      positions = positions.sum(-2) / used.sum(-2).clamp(min=1e-7)
      if token_type_ids is None:
        token_type_ids = torch.zeros_like(entity_ids)
      return self.dropout(self.LayerNorm(e + positions + self.token_type_embeddings(
          token_type_ids)))

  class LukeForEntityDisambiguation(modeling_luke.LukePreTrainedModel):
    _tied_weights_keys = {
        "entity_predictions.decoder.weight": "luke.entity_embeddings.entity_embeddings.weight"}

    def __init__(self, cfg):
      super().__init__(cfg)
      self.luke = modeling_luke.LukeModel(cfg)
      self.luke.embeddings = BertEmbeddings(cfg)
      self.luke.entity_embeddings = MaskedEntityEmbeddings(cfg)
      self.entity_predictions = modeling_luke.EntityPredictionHead(cfg)
      self.post_init()

    def forward(self, entity_candidate_ids=None, labels=None, **inputs):
      states = self.luke(**inputs).entity_last_hidden_state
      logits = self.entity_predictions(states)  # [B, E, Ve]
      if entity_candidate_ids is not None:
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(
            -1, entity_candidate_ids, entity_candidate_ids != 0)
        logits = logits.masked_fill(~keep, -1e32)
      loss = None
      if labels is not None:
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                 ignore_index=-1)
      return logits, loss

  torch.manual_seed(seed)
  model = LukeForEntityDisambiguation(transformers.LukeConfig(**config)).eval()
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():  # the tied decoder is the table itself: moved once
      p.add_(torch.randn(p.shape, generator=gen) * 0.05)
  table = model.luke.entity_embeddings.entity_embeddings.weight
  assert model.entity_predictions.decoder.weight is table
  return model


def ed_inputs(config: dict, seed: int = 0, batch: int = 2, words: int = 10, entities: int = 4,
              candidates: int = 5):
  """Inputs with word and entity padding, [MASK] mentions, one known entity, padded candidates."""
  rng = np.random.RandomState(seed)
  input_ids = rng.randint(3, config["vocab_size"], (batch, words))
  input_ids[1, -3:] = 0  # BERT pads with 0
  entity_ids = np.full((batch, entities), MASK_ID)
  entity_ids[0, 2] = 7  # a mention already resolved (global decoding feeds these back)
  entity_ids[1, -1] = 0
  positions = np.full((batch, entities, 3), -1)
  for b in range(batch):
    for e in range(entities):
      start, length = rng.randint(1, words - 4), rng.randint(1, 4)
      positions[b, e, :length] = np.arange(start, start + length)
  positions[1, -1] = -1
  entity_attention_mask = (entity_ids != 0).astype(np.int64)
  cands = np.zeros((batch, entities, candidates), np.int64)
  for b in range(batch):
    for e in range(entities):
      n = rng.randint(1, candidates + 1)
      cands[b, e, :n] = rng.choice(np.arange(3, config["entity_vocab_size"]), n, replace=False)
  cands[1, -1] = 0  # the padded entity: no candidate at all
  labels = np.where(rng.rand(batch, entities) < 0.8, cands[..., 0], -1)
  labels[0, 1] = cands[0, 1, 0] if cands[0, 1, 1] == 0 else cands[0, 1, 1]
  labels[1, -1] = -1
  inputs = dict(input_ids=input_ids, attention_mask=(input_ids != 0).astype(np.int64),
                token_type_ids=(np.arange(words)[None] >= 6).astype(np.int64).repeat(batch, 0),
                entity_ids=entity_ids, entity_attention_mask=entity_attention_mask,
                entity_position_ids=positions)
  return inputs, cands, labels


def torch_forward(model, inputs, cands=None, labels=None):
  import torch
  t = lambda x: None if x is None else torch.tensor(x)
  with torch.no_grad():
    logits, loss = model(entity_candidate_ids=t(cands), labels=t(labels),
                         **{k: t(v) for k, v in inputs.items()})
  return logits.numpy(), None if loss is None else float(loss)


def jax_forward(model, params, inputs, cands=None, labels=None):
  run = jax.jit(lambda p, kw: model.apply({"params": p}, **kw))
  out = run(params, dict(inputs, entity_candidate_ids=cands, labels=labels))
  return np.asarray(out.logits), None if out.loss is None else float(out.loss)


def assert_close(want, got, what):
  diff = float(np.max(np.abs(np.asarray(want) - np.asarray(got))))
  assert diff <= TOL, f"{what}: max |diff| {diff:.3g} > {TOL}"


def save_reference(model, directory, legacy_keys: bool = False):
  """`save_pretrained`; `legacy_keys` adds what older transformers saved too (the position-id
  buffer and the tied decoder), which conversion must accept."""
  model.save_pretrained(directory)
  if legacy_keys:
    path = directory / "model.safetensors"
    state = weights_io.read_safetensors(path)
    state["luke.embeddings.position_ids"] = np.arange(
        model.config.max_position_embeddings)[None].astype(np.int64)
    state["entity_predictions.decoder.weight"] = state[
        "luke.entity_embeddings.entity_embeddings.weight"].copy()
    weights_io.write_safetensors(path, state)
  return directory


# --------------------------------------------------------------------------------------------
# (a) numbers, (b) HF -> luke-jax -> HF


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_reference_and_round_trips(tmp_path, name):
  import torch
  config = CONFIGS[name]
  reference = reference_model(config)
  assert float(reference.luke.entity_embeddings.mask_embedding.detach().abs().sum()) > 0
  src = save_reference(reference, tmp_path / "hf", legacy_keys=name == "projected_plain")
  model, params = luke_jax.from_pretrained(src)
  assert type(model).__name__ == ARCH
  assert (model.config.word_positions, model.config.mask_entity_id) == ("absolute", MASK_ID)
  assert params["luke"]["entity_embeddings"]["mask_embedding"].shape == (
      config["entity_emb_size"],)

  inputs, cands, labels = ed_inputs(config)
  want_full, want_full_loss = torch_forward(reference, inputs, labels=labels)
  got_full, got_full_loss = jax_forward(model, params, inputs, labels=labels)
  assert got_full.shape == want_full.shape == (2, 4, config["entity_vocab_size"])
  assert_close(want_full, got_full, "full logits")
  assert_close(want_full_loss, got_full_loss, "full loss")

  want, want_loss = torch_forward(reference, inputs, cands, labels)
  run = jax.jit(lambda lab: model.apply({"params": params}, **inputs,
                                        entity_candidate_ids=cands, labels=lab))
  out = run(labels)
  got, got_loss = np.asarray(out.logits), float(out.loss)
  assert got.shape == cands.shape and got.dtype == np.float32
  assert_close(np.take_along_axis(want, cands, axis=-1), got, "candidate logits")
  assert np.all((got == NOT_A_CANDIDATE) == (cands == 0))
  assert_close(want_loss, got_loss, "candidate loss")
  # Softmax over the candidates is the reference's softmax over its masked vocabulary.
  real = cands[..., 0] > 0
  probs = torch.softmax(torch.tensor(want), -1).numpy()
  assert_close(np.take_along_axis(probs, cands, -1)[real],
               np.asarray(jax.nn.softmax(got, -1))[real], "probabilities")

  # A gold id that is not among its candidates is left out of the loss (the reference's would
  # be about 1e32).
  outside, ignored = labels.copy(), labels.copy()
  outside[0, 0] = next(i for i in range(3, 53) if i not in cands[0, 0])
  ignored[0, 0] = -1
  assert float(run(outside).loss) == float(run(ignored).loss) != got_loss

  hf.convert(src, tmp_path / "flax", log=_quiet)
  hf.flax_to_hf(tmp_path / "flax", tmp_path / "back", log=_quiet)
  loaded, info = type(reference).from_pretrained(tmp_path / "back", output_loading_info=True)
  for field in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
    assert not info[field], f"{field}: {info[field]}"
  want_state, got_state = reference.state_dict(), loaded.state_dict()
  assert set(want_state) == set(got_state)
  for key in want_state:
    assert torch.equal(want_state[key], got_state[key]), key
  assert loaded.entity_predictions.decoder.weight is (
      loaded.luke.entity_embeddings.entity_embeddings.weight)
  assert loaded.config.use_entity_aware_attention == config["use_entity_aware_attention"]


def test_candidates_are_scored_without_the_vocabulary_product():
  config = LukeConfig(**CONFIGS["projected_plain"], mask_entity_id=MASK_ID,
                      word_positions="absolute")
  model = registry.build(ARCH, config)
  params = registry.abstract_params(ARCH, config)
  inputs, cands, labels = ed_inputs(CONFIGS["projected_plain"])
  jaxpr = str(jax.make_jaxpr(lambda p, kw: model.apply({"params": p}, **kw))(
      params, dict(inputs, entity_candidate_ids=cands, labels=labels)))
  assert "f32[2,4,5]" in jaxpr and "f32[2,4,53]" not in jaxpr


# --------------------------------------------------------------------------------------------
# (c) a LukeForMaskedLM checkpoint loads as LukeForEntityDisambiguation


def test_masked_lm_checkpoints_load_without_lm_head(tmp_path):
  import transformers
  from conftest import torch_model
  config = dict(TINY, pad_token_id=1)
  inputs, cands, _ = ed_inputs(config)
  inputs["input_ids"] = np.where(inputs["input_ids"] == 0, 1, inputs["input_ids"])

  # luke-jax params/ directory (as run_pretrain.py's model/ export)
  cfg = LukeConfig(**config)
  mlm_params = registry.init_params("LukeForMaskedLM", cfg, jax.random.PRNGKey(1))
  checkpoint.save_checkpoint(tmp_path / "mlm", mlm_params, cfg, "LukeForMaskedLM")
  model, params = luke_jax.from_pretrained(tmp_path / "mlm", architecture=ARCH)
  assert type(model).__name__ == ARCH and "lm_head" not in params
  assert (model.config.word_positions, model.config.mask_entity_id) == ("roberta", None)
  mlm = registry.build("LukeForMaskedLM", cfg)
  want = jax.jit(lambda p: mlm.apply({"params": p}, **inputs, output_hidden_states=True))(
      mlm_params)
  got = jax.jit(lambda p: model.apply({"params": p}, **inputs, entity_candidate_ids=cands,
                                      output_hidden_states=True))(params)
  full = jax.jit(lambda p: model.apply({"params": p}, **inputs).logits)(params)
  for i, (w, g) in enumerate(zip(want.entity_hidden_states + want.hidden_states,
                                 got.entity_hidden_states + got.hidden_states)):
    assert_close(w, g, f"hidden state {i}")
  assert_close(want.entity_logits, full, "MEP logits")
  gathered = np.take_along_axis(np.asarray(want.entity_logits), cands, -1)
  assert_close(np.where(cands > 0, gathered, NOT_A_CANDIDATE), got.logits, "candidates")

  # An HF LukeForMaskedLM directory
  reference = torch_model("LukeForMaskedLM", **config)
  reference.save_pretrained(tmp_path / "hf_mlm")
  model, params = luke_jax.from_pretrained(tmp_path / "hf_mlm", architecture=ARCH)
  assert "lm_head" not in params
  import torch
  with torch.no_grad():
    ref = reference(**{k: torch.tensor(v) for k, v in inputs.items()}).entity_logits.numpy()
  assert_close(ref, jax_forward(model, params, inputs)[0], "MEP logits (HF)")
  assert isinstance(reference, transformers.LukeForMaskedLM)

  # Any other architecture is still refused.
  (tmp_path / "cls" / "params").mkdir(parents=True)  # refused before any weight is read
  checkpoint.write_config(tmp_path / "cls", cfg, "LukeForEntityClassification")
  with pytest.raises(ValueError, match="holds a LukeForEntityClassification"):
    luke_jax.from_pretrained(tmp_path / "cls", architecture=ARCH)


# --------------------------------------------------------------------------------------------
# (d) config, (e) refusals


def test_config_fields_round_trip():
  cfg = LukeConfig(**TINY, word_positions="absolute", mask_entity_id=MASK_ID)
  d = json.loads(json.dumps(cfg.to_hf_dict(ARCH)))
  assert d["luke_jax"]["word_positions"] == "absolute" and d["luke_jax"]["mask_entity_id"] == 2
  assert "word_positions" not in d and "mask_entity_id" not in d  # luke-jax only
  assert LukeConfig.from_hf_dict(d) == cfg
  plain = LukeConfig(**TINY)
  assert LukeConfig.from_hf_dict(json.loads(json.dumps(plain.to_hf_dict(ARCH)))) == plain
  # An HF config.json of the official model (no luke_jax section) implies BERT positions and
  # [MASK] = 2; any other architecture implies neither.
  official = {k: v for k, v in d.items() if k != "luke_jax"}
  assert LukeConfig.from_hf_dict(official) == cfg
  mlm = dict(official, architectures=["LukeForMaskedLM"])
  assert (LukeConfig.from_hf_dict(mlm).word_positions,
          LukeConfig.from_hf_dict(mlm).mask_entity_id) == ("roberta", None)
  assert cfg.max_seq_length == TINY["max_position_embeddings"]
  assert plain.max_seq_length == TINY["max_position_embeddings"] - TINY["pad_token_id"] - 1


def test_absolute_positions_do_not_depend_on_padding():
  embeddings = LukeEmbeddings(LukeConfig(**TINY, word_positions="absolute"))
  ids = jnp.array([[5, 0, 7, 9]])  # a 0 (BERT's pad) inside: positions stay 0..3
  params = embeddings.init(jax.random.PRNGKey(0), ids, None, None, None)
  explicit = embeddings.apply(params, ids, None, jnp.arange(4)[None], None)
  np.testing.assert_array_equal(explicit, embeddings.apply(params, ids, None, None, None))
  roberta = LukeEmbeddings(LukeConfig(**TINY))  # the default counts non-pad tokens from 2
  np.testing.assert_array_equal(
      roberta.apply(params, ids, None, jnp.array([[1, 0, 2, 3]]), None),
      roberta.apply(params, ids, None, None, None))


@pytest.mark.parametrize("field, value, message", [
    ("word_positions", "bert", "word_positions 'bert' not in ['absolute', 'roberta']"),
    ("mask_entity_id", -1, "mask_entity_id -1 is not None or an entity id in"),
    ("mask_entity_id", 53, "mask_entity_id 53 is not None or an entity id in"),
    ("mask_entity_id", "2", "mask_entity_id '2' is not None"),
])
def test_bad_fields_are_refused(tmp_path, field, value, message):
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
    LukeConfig(**TINY, **{field: value})
  d = dict(LukeConfig(**TINY).to_hf_dict(ARCH))
  d["luke_jax"][field] = value
  (tmp_path / "config.json").write_text(json.dumps(d))
  with pytest.raises(ValueError) as e:
    checkpoint.read_config(tmp_path)
  assert str(e.value).startswith(str(tmp_path / "config.json")) and "\n" not in str(e.value)


def test_export_refuses_what_the_pytorch_class_would_compute_differently(tmp_path):
  cfg = LukeConfig(**TINY)  # RoBERTa positions, no [MASK] vector: e.g. from a LUKE MLM
  with pytest.raises(ConversionError, match="cannot export LukeForEntityDisambiguation with "
                     "word_positions='roberta', mask_entity_id=None"):
    hf.write_hf(tmp_path / "out", {}, cfg, ARCH)  # refused before the weights are looked at
  with pytest.raises(ConversionError, match="cannot export LukeModel with "
                     "word_positions='absolute'"):
    hf.write_hf(tmp_path / "out", {}, cfg.replace(word_positions="absolute"), "LukeModel")
  assert not (tmp_path / "out").exists()

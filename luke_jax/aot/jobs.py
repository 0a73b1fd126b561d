"""A run's exact train (and eval) step, as abstract values on another machine's devices.

`build(config, devices)` goes through the same builders as `run_pretrain.py` and
`run_finetune.py` (`pretraining.train.make_step`, `finetune.trainer.make_step`): the same
mesh constructor over the given devices, sharding rules, optimizer, objective, gradient
accumulation and global batch. The state and the batch are `jax.ShapeDtypeStruct`s carrying
their `NamedSharding`s, so compiling allocates nothing.

Without data, shapes come from the config alone: a pretraining config's vocabulary sizes of 0
(= the dataset's) become those of the released model `config.preset` names unless the dataset
is there to ask; a fine-tuning task featurizes zero examples, which gives its arrays' trailing shapes.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from luke_jax import checkpoint as luke_checkpoint
from luke_jax import sharding
from luke_jax.data.masking import MaskingConfig
from luke_jax.models import registry
from luke_jax.models.config import LukeConfig, preset
from luke_jax.training import batches, config as run_config, metrics, state as state_lib

@dataclasses.dataclass
class Step:
  """One jitted step and the abstract arguments it is compiled for."""

  name: str                       # "train" or "eval"
  fn: Any                         # the jitted function
  args: tuple                     # ShapeDtypeStructs with shardings
  state_bytes: int                # per-device bytes of the parameters (+ optimizer state)
  batch_bytes: int                # per-device bytes of the batch
  model_flops: float              # analytic FLOPs of one call (all chips)
  tokens: int                     # word + entity tokens per call


@dataclasses.dataclass
class Job:
  kind: str                       # "pretraining" or "finetuning"
  model_config: LukeConfig
  mesh: jax.sharding.Mesh
  rules: tuple
  steps: list[Step]
  notes: list[str]                # assumptions made for want of data


def per_device_bytes(tree) -> int:
  """Bytes one device holds of a tree of sharded ShapeDtypeStructs (the largest shard)."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    size = 1
    for n in shape:
      size *= n
    total += size * jnp.dtype(leaf.dtype).itemsize
  return total


def _abstract(shapes: dict[str, jax.ShapeDtypeStruct], sharding_) -> dict:
  return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding_) for k, v in shapes.items()}


def pretraining_model_config(config: ml_collections.ConfigDict, notes: list[str],
                             preset_name: str | None) -> LukeConfig:
  """`config.model`, vocabulary sizes of 0 filled from the dataset or the released models."""
  from luke_jax.pretraining import train as pretrain
  dataset_dir = Path(config.data.dataset_dir) if config.data.dataset_dir else None
  if dataset_dir is not None and (dataset_dir / "metadata.json").exists():
    from luke_jax.tokenization.entity_vocab import EntityVocab
    from luke_jax.tokenization.tokenizer import LukeTokenizer
    sizes = {"vocab_size": len(LukeTokenizer.from_pretrained(dataset_dir)),
             "entity_vocab_size": len(EntityVocab.load(dataset_dir / "entity_vocab.jsonl"))}
    source = f"the dataset {dataset_dir} has {{size}}"
  else:
    # The released checkpoints' vocabularies: LUKE 50,267 words (RoBERTa's + the two entity
    # markers) and 500K entities, mLUKE 250,004 and 1,200,001.
    name = preset_name or config.get("preset") or "luke-large"
    shapes = preset(name)
    sizes = {"vocab_size": shapes.vocab_size, "entity_vocab_size": shapes.entity_vocab_size}
    source = ""
    if not config.model.vocab_size or not config.model.entity_vocab_size:
      notes.append(f"no dataset: vocabulary sizes of 0 are {name}'s ({shapes.vocab_size:,} "
                   f"words, {shapes.entity_vocab_size:,} entities; --preset or "
                   "--config.model.vocab_size / entity_vocab_size to change)")
  return pretrain.model_config_with_sizes(config, sizes, source)


def _pretraining(config, devices, preset_name, notes) -> Job:
  from luke_jax.pretraining import train as pretrain
  model_config = pretraining_model_config(config, notes, preset_name)
  d = config.data
  # Only the shapes matter: the special ids are placeholders.
  masking = MaskingConfig(
      cls_id=0, sep_id=2, pad_id=1, mask_id=model_config.vocab_size - 1,
      vocab_size=model_config.vocab_size, entity_mask_id=2, entity_pad_id=0,
      entity_vocab_size=model_config.entity_vocab_size, max_seq_length=d.max_seq_length,
      max_entity_length=d.max_entity_length, max_mention_length=d.max_mention_length,
      masked_lm_prob=d.masked_lm_prob, masked_entity_prob=d.masked_entity_prob,
      whole_word_masking=d.whole_word_masking)
  mesh = sharding.create_mesh(config.mesh, devices)
  rules = tuple(tuple(r) for r in config.sharding.rules)
  batch_sharding = sharding.batch_sharding(mesh, rules)
  parts = pretrain.make_step(config, model_config, mesh, rules, batch_sharding)
  batches.check_batch_size(config.train.batch_size, config.train.grad_accum_steps,
                           batch_sharding)
  state = state_lib.abstract_with_shardings(parts.abstract, parts.shardings)
  batch = _abstract(pretrain.batch_shapes(masking, config.train.batch_size), batch_sharding)
  flops = pretrain.step_flops(config, model_config, masking, parts.abstract.params)
  tokens = config.train.batch_size * (d.max_seq_length + d.max_entity_length)
  step = Step("train", parts.train_step, (state, batch), per_device_bytes(state),
              per_device_bytes(batch), flops, tokens)
  return Job("pretraining", model_config, mesh, rules, [step], notes)


def _shapes_tokenizer(directory: Path, task: str | None):
  """A real `LukeTokenizer` with a byte-level alphabet and no merges: featurizing zero
  examples (all the shapes need) runs the task's own code, special ids as LUKE's."""
  import json
  from tokenizers import pre_tokenizers
  from luke_jax.tokenization.tokenizer import LukeTokenizer
  vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
  for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
    vocab.setdefault(char, len(vocab))
  vocab["<mask>"] = len(vocab)
  files = {
      "vocab.json": vocab, "added_tokens.json": {"<ent>": len(vocab), "<ent2>": len(vocab) + 1},
      "entity_vocab.json": {"[PAD]": 0, "[UNK]": 1, "[MASK]": 2, "[MASK2]": 3},
      "special_tokens_map.json": {
          "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
          "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>",
          "additional_special_tokens": ["<ent>", "<ent2>"]},
      "tokenizer_config.json": {"tokenizer_class": "LukeTokenizer", "task": None,
                                "additional_special_tokens": ["<ent>", "<ent2>"]}}
  for name, payload in files.items():
    (directory / name).write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
  (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
  return LukeTokenizer.from_pretrained(directory, task=task)


def _finetuning(config, devices, preset_name, notes) -> Job:
  from luke_jax.finetune import tasks, trainer
  from luke_jax.tokenization.tokenizer import LukeTokenizer
  task_cls = tasks.get(config.task)
  init = config.train.init_checkpoint
  if init and preset_name is None:
    base, stored_arch, _ = luke_checkpoint.read_config(init)
    tokenizer = LukeTokenizer.from_pretrained(init, task=task_cls.tokenizer_task)
    labels = (list(base.id2label.values())
              if stored_arch == task_cls.architecture else ["LABEL_0", "LABEL_1"])
  else:
    name = preset_name or "luke-large"
    base = preset(name)
    with tempfile.TemporaryDirectory(prefix="luke_jax_aot_") as tmp:
      tokenizer = _shapes_tokenizer(Path(tmp), task_cls.tokenizer_task)
    labels = ["LABEL_0", "LABEL_1"]
    notes.append(f"model shapes from the {name} preset (no init_checkpoint read; --preset)")
  task = task_cls(config.data, tokenizer)
  labels = labels if task.has_labels else []
  arrays = task.featurize([], labels, "train").arrays
  model_config = base.replace(**trainer.model_overrides(config), **task.head_config(labels))
  module = registry.build(task.architecture, model_config)
  example = {k: jnp.zeros((1,) + v.shape[1:], v.dtype) for k, v in arrays.items()}
  runner = trainer.Runner(config, task, module, example, devices=devices)
  parts = trainer.make_step(config, runner, max(int(config.train.steps), 1000))
  state = state_lib.abstract_with_shardings(parts.abstract, parts.shardings)
  keys = tuple(task.input_keys) + tuple(task.target_keys)
  from luke_jax.finetune import batching

  def batch_of(rows: int, names) -> dict:
    shapes = {k: jax.ShapeDtypeStruct((rows,) + arrays[k].shape[1:], arrays[k].dtype)
              for k in names}
    shapes[batching.VALID] = jax.ShapeDtypeStruct((rows,), jnp.float32)
    return _abstract(shapes, runner.batch_sharding)

  d = config.data
  words = d.max_seq_length
  entities = arrays["entity_ids"].shape[1] if "entity_ids" in arrays else 0
  per_example = metrics.flops_per_example(model_config, parts.abstract.params, words,
                                          entities, 0, 0)
  tc = config.train
  train_batch = batch_of(tc.batch_size, keys)
  eval_rows = -(-tc.eval_batch_size // runner.shards) * runner.shards
  eval_batch = batch_of(eval_rows, task.input_keys)
  eval_batch.pop(batching.VALID)
  train = Step("train", parts.train_step, (state, train_batch), per_device_bytes(state),
               per_device_bytes(train_batch), tc.batch_size * per_example,
               tc.batch_size * (words + entities))
  params = state.params
  # Forward only: a third of the training FLOPs.
  evaluation = Step("eval", runner.eval_step(), (params, eval_batch), per_device_bytes(params),
                    per_device_bytes(eval_batch), eval_rows * per_example / 3,
                    eval_rows * (words + entities))
  return Job("finetuning", model_config, runner.mesh, runner.rules, [train, evaluation], notes)


def build(config: ml_collections.ConfigDict, devices, preset_name: str | None = None) -> Job:
  """The run `config` describes, on `devices` (a TPU topology's, say).

  Args:
    config: a pretraining or fine-tuning config (one with `task` is fine-tuning).
    devices: the devices of the mesh (all of them are used).
    preset_name: model shapes to assume where the config leaves them to data: a pretraining
      config's vocabulary sizes (`luke-*` or `mluke-*`), a fine-tuning config's model when
      `train.init_checkpoint` is not given (default luke-large).
  """
  config = run_config.checked(config)
  notes: list[str] = []
  if "task" in config:
    return _finetuning(config, devices, preset_name, notes)
  return _pretraining(config, devices, preset_name, notes)

"""`train_and_evaluate(config, workdir)`: LUKE pretraining, driven through the training core.

This module owns what only pretraining has: the dataset and its vocabularies, masking, the
masked-only model and its objective, the two-stage recipe and the final `model/` checkpoint.
Everything else (mesh, state, step, loop, checkpoints, preemption, metrics) is
`luke_jax.training`'s. The Hugging Face export is the entry script's step (`run_pretrain.py`).

Resume precedence: a checkpoint in `workdir/checkpoints` > `config.train.init_checkpoint`
(params only, fresh optimizer: stage 2 from stage 1, or a RoBERTa conversion) > random init.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from luke_jax import checkpoint as luke_checkpoint
from luke_jax import hub
from luke_jax import sharding
from luke_jax.data import dataset as luke_dataset
from luke_jax.data.masking import MaskingConfig, word_start_table
from luke_jax.data.pipeline import PretrainingPipeline
from luke_jax.models import layout, registry
from luke_jax.models.config import LukeConfig
from luke_jax.pretraining.model import LukePretrainingModel, PretrainingObjective
from luke_jax.tokenization.entity_vocab import EntityVocab
from luke_jax.tokenization.tokenizer import LukeTokenizer
from luke_jax.training import batches, checkpointing, config as run_config, loop, optim
from luke_jax.training import state as state_lib, steps
from luke_jax.training.metrics import MetricWriter, flops_per_example
from luke_jax.training.preemption import Preemption, PreemptionFlag

# The pretraining model shares LukeForMaskedLM's parameter tree, so exports need no renaming.
ARCHITECTURE = "LukeForMaskedLM"
# Host-side fields the model never reads; they stay off the device.
HOST_ONLY_KEYS = ("page_id",)
# Interval metrics of the console line and TensorBoard: name -> (sum, weight).
RATIOS = {"mlm_loss": ("mlm_loss_sum", "mlm_weight"), "mep_loss": ("mep_loss_sum", "mep_weight"),
          "mlm_accuracy": ("mlm_correct", "mlm_weight"),
          "entity_accuracy": ("mep_correct", "mep_weight")}
# Config fields that decide the parameter tree's structure and shapes.
_PARAM_FIELDS = ("vocab_size", "entity_vocab_size", "hidden_size", "entity_emb_size",
                 "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size", "use_entity_aware_attention",
                 "tie_word_decoder", "param_dtype")


@dataclasses.dataclass
class TrainResult:
  """What a run did; `preempted` runs saved a checkpoint and wrote no `model/`."""

  step: int
  preempted: bool
  losses: list[tuple[int, float]]
  model_dir: Path | None = None  # the final luke-jax checkpoint (process 0)
  params: Any = None  # host copy of the final parameters
  model_config: LukeConfig | None = None


# ---- setup helpers -------------------------------------------------------------------------


def model_config_from(config: ml_collections.ConfigDict, tokenizer: LukeTokenizer,
                      entity_vocab: EntityVocab) -> LukeConfig:
  """`LukeConfig` from `config.model`; a vocab size of 0 means "the dataset's".

  Raises:
    ValueError: if an explicit vocab size differs from the dataset's tokenizer or entity
      vocabulary (a model trained on wrongly numbered ids would be silently useless).
  """
  return model_config_with_sizes(
      config, {"vocab_size": len(tokenizer), "entity_vocab_size": len(entity_vocab)},
      f"the dataset {config.data.dataset_dir} has {{size}} (tokenizer / entity vocabulary)")


def model_config_with_sizes(config: ml_collections.ConfigDict, sizes: dict[str, int],
                            source: str = "") -> LukeConfig:
  """`LukeConfig` from `config.model`, vocabulary sizes of 0 taken from `sizes`.

  Raises:
    ValueError: if `source` is given (what `sizes` come from, with `{size}`) and an explicit
      size in `config.model` differs from it.
  """
  fields = {k: v for k, v in config.model.to_dict().items()
            if not (k in ("id2label", "problem_type") and v is None)}
  if isinstance(fields.get("id2label"), (list, tuple)):
    fields["id2label"] = tuple(tuple(x) for x in fields["id2label"])
  for name, size in sizes.items():
    if not fields.get(name):
      fields[name] = size
    elif source and fields[name] != size:
      raise ValueError(f"config.model.{name}={fields[name]} but " + source.format(size=size)
                       + f"; set --config.model.{name}={size} or 0 to take the dataset's")
  return LukeConfig(**fields)


def masking_config_from(config: ml_collections.ConfigDict, meta: dict,
                        tokenizer: LukeTokenizer, entity_vocab: EntityVocab,
                        model_config: LukeConfig) -> MaskingConfig:
  d = config.data
  for name in ("max_seq_length", "max_entity_length", "max_mention_length"):
    if getattr(d, name) < meta[name]:
      raise ValueError(f"config.data.{name}={getattr(d, name)} is below the dataset's "
                       f"{meta[name]}; examples would not fit")
  built_with_unk = bool(meta.get("arguments", {}).get("config", {}).get("include_unk_entities"))
  if d.get("include_unk_entities", False) and not built_with_unk:
    # The ED recipe learns [UNK] for links outside its candidate-based vocabulary; a dataset
    # without them would train a different model silently.
    raise ValueError(f"config.data.include_unk_entities=True but {d.dataset_dir} was built "
                     "without --include_unk_entities; rebuild it with "
                     "`python -m luke_jax.data.build_pretraining_dataset --include_unk_entities`"
                     " or set config.data.include_unk_entities=False")
  if d.max_seq_length > model_config.max_seq_length:
    needed = d.max_seq_length + model_config.pad_token_id + 1
    raise ValueError(f"max_position_embeddings={model_config.max_position_embeddings} is too "
                     f"small for max_seq_length={d.max_seq_length} (needs {needed})")
  return MaskingConfig(
      cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id,
      pad_id=tokenizer.pad_token_id, mask_id=tokenizer.mask_token_id,
      vocab_size=tokenizer.mask_token_id + 1, entity_mask_id=entity_vocab.mask_id,
      entity_pad_id=entity_vocab.pad_id, entity_vocab_size=len(entity_vocab),
      max_seq_length=d.max_seq_length, max_entity_length=d.max_entity_length,
      max_mention_length=d.max_mention_length, masked_lm_prob=d.masked_lm_prob,
      masked_entity_prob=d.masked_entity_prob, whole_word_masking=d.whole_word_masking)


def trainable_by_stage(stage: int):
  """The default `optim.trainable` rules of a stage (stage 1: the entity parameters only)."""
  if stage not in (1, 2):
    raise ValueError(f"config.train.stage must be 1 or 2, got {stage}")
  return optim.STAGE1_TRAINABLE if stage == 1 else optim.ALL_TRAINABLE


def check_init_checkpoint(directory: str, model_config: LukeConfig) -> None:
  """Refuses an `init_checkpoint` whose parameters cannot fit `config.model`, before training.

  Raises:
    FileNotFoundError: if `directory` has no `config.json` (not a luke-jax checkpoint).
    ValueError: naming `directory` and what differs: the architecture (the heads must be
      there) or fields such as `use_entity_aware_attention` (a RoBERTa conversion made with it
      for a model without it).
  """
  stored, architecture, _ = luke_checkpoint.read_config(directory)
  if architecture != ARCHITECTURE:
    raise ValueError(f"config.train.init_checkpoint={directory} holds a {architecture}; "
                     f"pretraining starts from a {ARCHITECTURE} (a pretraining run's "
                     "model/, or `python -m luke_jax.convert --src_format=roberta`)")
  diffs = [f"{name}={getattr(stored, name)!r} there, {getattr(model_config, name)!r} in "
           "config.model" for name in _PARAM_FIELDS
           if getattr(stored, name) != getattr(model_config, name)]
  if diffs:
    raise ValueError(f"config.train.init_checkpoint={directory} does not fit the model: "
                     + "; ".join(diffs))


def checkpoint_layout(model_config: LukeConfig, mesh, rules):
  """Shapes and shardings of the parameters as checkpoints store them (the layer-loop layout).

  Worked out outside the mesh context: unboxing abstract parameters inside it would try to
  constrain them.
  """
  loop_boxed = registry.abstract_params(ARCHITECTURE, model_config.replace(scan_layers=False),
                                        boxed=True)
  return nn.unbox(loop_boxed), state_lib.param_shardings(loop_boxed, mesh, rules)


def load_init_params(directory: str, model_config: LukeConfig, loop_layout, shardings):
  """`init_checkpoint`'s parameters, read straight into the state's parameter shardings.

  Each host reads only the shards its devices hold, so no host needs the whole tree in memory.
  Checkpoints store the layer-loop layout (`loop_layout`: shapes and shardings from
  `checkpoint_layout`); a `scan_layers` model gets its layers stacked on the devices into
  `shardings`, in one jit.
  """
  loop_abstract, loop_shardings = loop_layout
  params = luke_checkpoint.load_params(directory, model_config.replace(scan_layers=False),
                                       ARCHITECTURE, loop_shardings)
  want = {jax.tree_util.keystr(k): (v.shape, str(v.dtype))
          for k, v in jax.tree_util.tree_leaves_with_path(loop_abstract)}
  got = {jax.tree_util.keystr(k): (v.shape, str(v.dtype))
         for k, v in jax.tree_util.tree_leaves_with_path(params)}
  if want != got:
    diffs = [f"{k}: {got.get(k, 'missing')} there, {want.get(k, 'absent')} in the model"
             for k in sorted(want.keys() | got.keys()) if want.get(k) != got.get(k)]
    raise ValueError(f"config.train.init_checkpoint={directory}: parameters do not match "
                     f"config.model ({len(diffs)} differ): " + "; ".join(diffs[:5]))
  if model_config.scan_layers:
    params = jax.jit(layout.loop_to_scan, out_shardings=shardings)(params)
  return params


@dataclasses.dataclass
class StepParts:
  """What the run's train step is made of (also what `luke_jax.aot` compiles)."""

  model: LukePretrainingModel
  tx: Any
  abstract: state_lib.TrainState    # shapes of the state
  shardings: state_lib.TrainState   # NamedShardings of the state
  train_step: Any                   # jitted (state, batch) -> (state, metrics), state donated


def make_step(config: ml_collections.ConfigDict, model_config: LukeConfig, mesh, rules,
              batch_sharding) -> StepParts:
  """The model, optimizer, state layout and jitted train step of a pretraining run."""
  tc = config.train
  model = LukePretrainingModel(model_config)
  boxed = registry.abstract_params(ARCHITECTURE, model_config, boxed=True)
  tx = optim.make_optimizer(config.optim, nn.unbox(boxed), tc.steps,
                            default_trainable=trainable_by_stage(tc.stage))
  abstract = state_lib.abstract_state(boxed, tx)
  shardings = state_lib.state_shardings(boxed, abstract.opt_state, mesh, rules)
  train_step = steps.make_train_step(PretrainingObjective(model), tx, tc.grad_accum_steps,
                                     shardings, batch_sharding)
  return StepParts(model, tx, abstract, shardings, train_step)


def step_flops(config: ml_collections.ConfigDict, model_config: LukeConfig,
               masking_config: MaskingConfig, params) -> float:
  """Model FLOPs of one optimizer step on the global batch (`metrics.flops_per_example`)."""
  return config.train.batch_size * flops_per_example(
      model_config, params, masking_config.max_seq_length, masking_config.max_entity_length,
      masking_config.max_masked_words, masking_config.max_masked_entities)


def batch_shapes(masking_config: MaskingConfig, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of the global batches the step receives (int32, host-only fields left out)."""
  return {k: jax.ShapeDtypeStruct((batch_size,) + shape, jnp.int32)
          for k, shape in masking_config.output_shapes().items() if k not in HOST_ONLY_KEYS}


# ---- the run -------------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, *,
                       preemption: PreemptionFlag | None = None,
                       stop_after: int | None = None,
                       hub_options: dict[str, Any] | None = None) -> TrainResult:
  """Pretrains LUKE as `config` says; resumes from `workdir` when it holds checkpoints.

  Args:
    config: see `configs/pretrain.py` and `luke_jax.training.config`.
    workdir: checkpoints, TensorBoard events, config.json, and at the end `model/` (a
      luke-jax `LukeForMaskedLM` checkpoint with the dataset's tokenizer files).
    preemption: a flag to watch instead of installing a SIGTERM handler (tests).
    stop_after: act as if preempted once this step is reached (tests of resumption).
    hub_options: `luke_jax.hub.resolve` keywords (revision, cache_dir, local_files_only,
      token) for a Hub id in `config.train.init_checkpoint`; default the environment's. Kept
      out of `config`, so the run's config (and its hash) holds the id as given.

  Returns:
    A `TrainResult`.
  """
  config = run_config.checked(config)
  workdir = Path(workdir)
  tc = config.train
  if tc.steps < 1:
    raise ValueError(f"config.train.steps={tc.steps}: pretraining needs its length in steps")

  # ==== Devices, data and vocabularies: every check before anything expensive ==============
  mesh = sharding.create_mesh(config.mesh)
  rules = tuple(tuple(r) for r in config.sharding.rules)
  batch_sharding = sharding.batch_sharding(mesh, rules)
  batches.check_batch_size(tc.batch_size, tc.grad_accum_steps, batch_sharding)
  dataset_dir = Path(config.data.dataset_dir)
  meta_file = dataset_dir / "metadata.json"
  if not meta_file.exists():
    raise FileNotFoundError(f"{dataset_dir}: no metadata.json; set config.data.dataset_dir to "
                            "a directory made by luke_jax.data.build_pretraining_dataset")
  meta = json.loads(meta_file.read_text())
  tokenizer = LukeTokenizer.from_pretrained(dataset_dir)
  entity_vocab = EntityVocab.load(dataset_dir / "entity_vocab.jsonl")
  model_config = model_config_from(config, tokenizer, entity_vocab)
  masking_config = masking_config_from(config, meta, tokenizer, entity_vocab, model_config)
  init_dir = None
  if tc.init_checkpoint and not checkpointing.has_checkpoints(workdir):
    # (A resumed run no longer needs it; it may be gone by then.) A Hub id is read from the
    # Hugging Face cache, downloaded if missing; a directory is used as it is.
    init_dir = hub.resolve(tc.init_checkpoint, **(hub_options or {}))
    check_init_checkpoint(init_dir, model_config)
  checkpointing.check_workdir(workdir, config)

  pieces = [tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))]
  is_word_start = word_start_table(pieces, meta["tokenizer_class"])
  row_block, row_blocks = batches.host_rows(batch_sharding, tc.batch_size)
  pipeline = PretrainingPipeline(luke_dataset.data_source(dataset_dir), masking_config,
                                 is_word_start, global_batch_size=tc.batch_size,
                                 seed=tc.seed, process_index=row_block,
                                 process_count=row_blocks, num_workers=config.data.num_workers)

  # ==== Model, optimizer and shardings =====================================================
  parts = make_step(config, model_config, mesh, rules, batch_sharding)
  tx, abstract, shardings = parts.tx, parts.abstract, parts.shardings
  loop_layout = checkpoint_layout(model_config, mesh, rules) if tc.init_checkpoint else None
  mngr = checkpointing.make_manager(
      workdir, tc.ckpt_every, tc.keep_ckpts,
      schedule_steps=optim.schedule_steps(config.optim, tc.steps)[1])
  writer = None

  try:
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      # ==== Restore or initialise ========================================================
      restored = checkpointing.restore_latest(
          mngr, state_lib.abstract_with_shardings(abstract, shardings))
      if restored is not None:
        state, data_state = restored
        if int(data_state["step"]) != int(state.step):
          raise ValueError(f"checkpoint {int(state.step)} holds data position "
                           f"{data_state['step']}")
        pipeline.set_state(data_state)
        logging.info("resumed from %s at step %d", mngr.directory, int(state.step))
      else:
        param_key, rng = jax.random.split(jax.random.PRNGKey(tc.seed))
        if tc.init_checkpoint:
          params = load_init_params(
              init_dir or hub.resolve(tc.init_checkpoint, **(hub_options or {})),
              model_config, loop_layout, shardings.params)
          logging.info("initialised params from %s (fresh optimizer)", tc.init_checkpoint)
        else:
          params = lambda: registry.init_params(ARCHITECTURE, model_config, param_key)
        state = state_lib.create_state(params, tx, shardings, rng)

      train_step = parts.train_step
      flops = step_flops(config, model_config, masking_config, abstract.params)
      writer = MetricWriter(
          workdir, total_steps=tc.steps, log_every=tc.log_every, ratios=RATIOS,
          tokens_per_step=tc.batch_size * masking_config.max_seq_length,
          flops_per_step=flops, devices=list(mesh.devices.flat))

      def next_batch(step: int):
        del step  # the pipeline's own position, restored with the state, says which batch
        host = {k: v for k, v in next(pipeline).items() if k not in HOST_ONLY_KEYS}
        return batches.to_global(host, batch_sharding, tc.batch_size)

      # ==== Train ========================================================================
      with Preemption(mngr, preemption, stop_after) as stop:
        end = loop.run(state, train_step, next_batch, total_steps=tc.steps, manager=mngr,
                       writer=writer, preemption=stop,
                       data_state=lambda step: pipeline.get_state())
      mngr.wait_until_finished()
      params = state_lib.host_copy(end.state.params)
      result = TrainResult(step=end.step, preempted=end.preempted, losses=list(writer.history),
                           params=params, model_config=model_config)
      if end.preempted:
        logging.warning("stopped at step %d on request; checkpoint saved, rerun to resume",
                        end.step)
      elif tc.get("export", True) and jax.process_index() == 0:
        result.model_dir = luke_checkpoint.save_checkpoint(
            workdir / "model", params, model_config, ARCHITECTURE, tokenizer_dir=dataset_dir,
            overwrite=True)
      return result
  finally:
    mngr.wait_until_finished()  # async saves started before an error still complete
    mngr.close()
    pipeline.close()
    if writer is not None:
      writer.close()

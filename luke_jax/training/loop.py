"""`train_and_evaluate(config, workdir)`: the LUKE pretraining loop.

Resume precedence: a checkpoint in `workdir/checkpoints` > `config.train.init_checkpoint`
(params only, fresh optimizer: stage 2 from stage 1, or a RoBERTa conversion) > random init.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from absl import logging
import flax.linen as nn
import jax
import ml_collections

from luke_jax import checkpoint as luke_checkpoint
from luke_jax import sharding
from luke_jax.data import dataset as luke_dataset
from luke_jax.data.masking import MaskingConfig, word_start_table
from luke_jax.data.pipeline import PretrainingPipeline
from luke_jax.models import layout
from luke_jax.models.config import LukeConfig
from luke_jax.tokenization.entity_vocab import EntityVocab
from luke_jax.tokenization.tokenizer import LukeTokenizer
from luke_jax.training import checkpointing, metrics as metrics_lib, state as state_lib, steps
from luke_jax.training import model as model_lib, optim

_WORD_START_SCHEME = {"sentencepiece": "sentencepiece", "bpe": "bpe", "wordpiece": "wordpiece"}


@dataclasses.dataclass
class TrainResult:
  """What a run did; `preempted` runs saved a checkpoint and skipped the export."""

  step: int
  preempted: bool
  losses: list[tuple[int, float]]
  model_dir: Path | None = None
  hf_dir: Path | None = None
  params: Any = None  # host copy of the final parameters


# ---- setup helpers -------------------------------------------------------------------------


def make_mesh(mesh_config) -> jax.sharding.Mesh:
  """The device mesh; a mesh needing more devices than exist fails with both numbers."""
  shape = [(str(name), int(size)) for name, size in mesh_config]
  fixed = math.prod(size for _, size in shape if size != -1)
  available = jax.device_count()
  if fixed > available:
    raise ValueError(f"config.mesh {dict(shape)} needs at least {fixed} devices, but only "
                     f"{available} are available ({jax.devices()[0].platform})")
  devices = jax.devices()
  if all(size != -1 for _, size in shape):
    devices = devices[:fixed]  # a fully specified mesh may use fewer devices than exist
  return sharding.create_mesh(shape, devices)


def model_config_from(config: ml_collections.ConfigDict, tokenizer: LukeTokenizer,
                      entity_vocab: EntityVocab) -> LukeConfig:
  """`LukeConfig` from `config.model`; a vocab size of 0 means "the dataset's".

  Raises:
    ValueError: if an explicit vocab size differs from the dataset's tokenizer or entity
      vocabulary (a model trained on wrongly numbered ids would be silently useless).
  """
  fields = {k: v for k, v in config.model.to_dict().items()
            if not (k in ("id2label", "problem_type") and v is None)}
  if isinstance(fields.get("id2label"), (list, tuple)):
    fields["id2label"] = tuple(tuple(x) for x in fields["id2label"])
  data_sizes = {"vocab_size": len(tokenizer), "entity_vocab_size": len(entity_vocab)}
  for name, size in data_sizes.items():
    if not fields.get(name):
      fields[name] = size
    elif fields[name] != size:
      raise ValueError(f"config.model.{name}={fields[name]} but the dataset "
                       f"{config.data.dataset_dir} has {size} (tokenizer / entity vocabulary); "
                       f"set --config.model.{name}={size} or 0 to take the dataset's")
  return LukeConfig(**fields)


def masking_config_from(config: ml_collections.ConfigDict, meta: dict,
                        tokenizer: LukeTokenizer, entity_vocab: EntityVocab,
                        model_config: LukeConfig) -> MaskingConfig:
  d = config.data
  for name in ("max_seq_length", "max_entity_length", "max_mention_length"):
    if getattr(d, name) < meta[name]:
      raise ValueError(f"config.data.{name}={getattr(d, name)} is below the dataset's "
                       f"{meta[name]}; examples would not fit")
  # RoBERTa-style positions start at pad_id + 1.
  needed = d.max_seq_length + model_config.pad_token_id + 1
  if model_config.max_position_embeddings < needed:
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


def optim_config_from(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config.optim` with `trainable` resolved from the stage when it is not set."""
  optim_config = ml_collections.ConfigDict(config.optim.to_dict())
  if not optim_config.get("trainable"):
    stage = config.train.stage
    if stage not in (1, 2):
      raise ValueError(f"config.train.stage must be 1 or 2, got {stage}")
    optim_config.trainable = list(optim.STAGE1_TRAINABLE if stage == 1 else optim.ALL_TRAINABLE)
  if not optim_config.get("total_steps"):
    optim_config.total_steps = config.train.steps
  return optim_config


def check_batch(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> None:
  g, accum = config.train.global_batch_size, config.train.grad_accum_steps
  data_parallel = mesh.shape["data"] * mesh.shape["fsdp"]
  if accum < 1 or g % accum or (g // accum) % data_parallel:
    raise ValueError(f"global_batch_size={g} must split into grad_accum_steps={accum} "
                     f"microbatches divisible by the data-parallel size {data_parallel}")


def host_rows(data_sharding: jax.sharding.Sharding, global_batch_size: int) -> tuple[int, int]:
  """This process's rows of every global batch, as `(index, count)`: block `index` of `count`.

  `jax.make_array_from_process_local_data` wants from each process exactly the rows its devices
  hold. With the batch split over `("data", "fsdp")` those form one contiguous block per host
  (the mesh is laid out from `jax.devices()`, which groups devices by process); hosts whose
  devices hold the same rows (a batch replicated over a `tensor` axis that spans hosts) read
  the same block.

  Raises:
    ValueError: if the mesh gives this process rows that are not one block of equal-sized
      blocks (a hand-made device order); nothing could feed such a layout from a slice.
  """
  index_map = data_sharding.addressable_devices_indices_map((global_batch_size,))
  ranges = sorted({s[0].indices(global_batch_size)[:2] for s in index_map.values()})
  lo, hi = ranges[0][0], ranges[-1][1]
  covered = sum(stop - start for start, stop in ranges)
  size = hi - lo
  if covered != size or global_batch_size % size or lo % size:
    raise ValueError(f"process {jax.process_index()} holds batch rows {ranges} of "
                     f"{global_batch_size}, not one block of equal blocks; lay out the mesh "
                     "so that each host's devices are adjacent along the data axes")
  return lo // size, global_batch_size // size


# Config fields that decide the parameter tree's structure and shapes.
_PARAM_FIELDS = ("vocab_size", "entity_vocab_size", "hidden_size", "entity_emb_size",
                 "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size", "use_entity_aware_attention",
                 "tie_word_decoder", "param_dtype")


def check_init_checkpoint(directory: str, model_config: LukeConfig) -> None:
  """Refuses an `init_checkpoint` whose parameters cannot fit `config.model`, before training.

  Raises:
    FileNotFoundError: if `directory` has no `config.json` (not a luke-jax checkpoint).
    ValueError: naming `directory` and what differs: the architecture (the heads must be
      there) or fields such as `use_entity_aware_attention` (a RoBERTa conversion made with it
      for a model without it).
  """
  stored, architecture, _ = luke_checkpoint.read_config(directory)
  if architecture != state_lib.ARCHITECTURE:
    raise ValueError(f"config.train.init_checkpoint={directory} holds a {architecture}; "
                     f"pretraining starts from a {state_lib.ARCHITECTURE} (a pretraining run's "
                     "model/, or `python -m luke_jax.convert --src_format=roberta`)")
  diffs = [f"{name}={getattr(stored, name)!r} there, {getattr(model_config, name)!r} in "
           "config.model" for name in _PARAM_FIELDS
           if getattr(stored, name) != getattr(model_config, name)]
  if diffs:
    raise ValueError(f"config.train.init_checkpoint={directory} does not fit the model: "
                     + "; ".join(diffs))


def load_init_params(directory: str, model_config: LukeConfig, loop_abstract, loop_shardings,
                     shardings):
  """`init_checkpoint`'s parameters, read straight into the state's parameter shardings.

  Each host reads only the shards its devices hold, so no host needs the whole tree in memory.
  Checkpoints store the layer-loop layout (`loop_abstract`, placed by `loop_shardings`); a
  `scan_layers` model gets its layers stacked on the devices into `shardings`, in one jit.
  """
  loop_config = model_config.replace(scan_layers=False)
  params = luke_checkpoint.load_params(directory, loop_config, state_lib.ARCHITECTURE,
                                       loop_shardings)
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


def host_params(params):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return multihost_utils.process_allgather(params, tiled=True)
  return jax.device_get(params)


# ---- the loop ------------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, *,
                       preemption: checkpointing.PreemptionFlag | None = None,
                       stop_after: int | None = None) -> TrainResult:
  """Pretrains LUKE as `config` says; resumes from `workdir` when it holds checkpoints.

  Args:
    config: see `configs/pretrain.py`.
    workdir: checkpoints, TensorBoard events, config.json, and at the end `model/` (luke-jax
      checkpoint) and `hf_export/` (transformers `LukeForMaskedLM`).
    preemption: a flag to watch instead of installing a SIGTERM handler (tests).
    stop_after: act as if preempted once this step is reached (tests of resumption).

  Returns:
    A `TrainResult`.
  """
  workdir = Path(workdir)
  tc = config.train

  # ==== Devices, data and vocabularies: every check before anything expensive ==============
  mesh = make_mesh(config.mesh)
  rules = tuple(tuple(r) for r in config.sharding.rules)
  check_batch(config, mesh)
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
  if tc.init_checkpoint and not checkpointing.has_checkpoints(workdir):
    # (A resumed run no longer needs it; it may be gone by then.)
    check_init_checkpoint(tc.init_checkpoint, model_config)
  checkpointing.check_workdir(workdir, config)

  pieces = [tokenizer.convert_ids_to_tokens(i) for i in range(len(tokenizer))]
  is_word_start = word_start_table(pieces, _WORD_START_SCHEME.get(meta["tokenizer_class"], "bpe"))
  data_sh = steps.data_sharding(mesh)
  row_block, row_blocks = host_rows(data_sh, tc.global_batch_size)
  pipeline = PretrainingPipeline(luke_dataset.data_source(dataset_dir), masking_config,
                                 is_word_start, global_batch_size=tc.global_batch_size,
                                 seed=tc.seed, process_index=row_block,
                                 process_count=row_blocks, num_workers=config.data.num_workers)

  # ==== Model, optimizer and shardings =====================================================
  model = model_lib.LukePretrainingModel(model_config)
  optim_config = optim_config_from(config)
  boxed_params = state_lib.abstract_state(model_config, _NoOpTx())[0]
  tx = optim.make_optimizer(optim_config, nn.unbox(boxed_params))
  _, abstract_opt = state_lib.abstract_state(model_config, tx)
  shardings = state_lib.state_shardings(boxed_params, abstract_opt, mesh, rules)
  abstract = jax.eval_shape(state_lib.make_init_fn(model_config, tx, shardings),
                            jax.random.PRNGKey(0))
  init_layout = ()
  if tc.init_checkpoint:
    # Checkpoints hold the layer-loop layout. Worked out here: unboxing abstract parameters
    # inside the mesh context below would try to constrain them.
    loop_boxed = state_lib.abstract_state(model_config.replace(scan_layers=False), _NoOpTx())[0]
    init_layout = (nn.unbox(loop_boxed), state_lib.param_shardings(loop_boxed, mesh, rules))
  mngr = checkpointing.make_manager(workdir, tc.ckpt_every, tc.keep_ckpts)
  own_flag = preemption is None
  if own_flag:
    preemption = checkpointing.PreemptionFlag()
    if jax.process_count() == 1:
      preemption.install()
    # Several hosts: JAX's preemption service catches SIGTERM and `mngr.reached_preemption`
    # picks one step for every host; a flag per host could stop hosts at different steps, and
    # the one still training would wait forever in a collective.
  logger = None

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
        init_params = None
        if tc.init_checkpoint:
          init_params = load_init_params(tc.init_checkpoint, model_config, *init_layout,
                                         shardings.params)
          logging.info("initialised params from %s (fresh optimizer)", tc.init_checkpoint)
        init_fn = state_lib.make_init_fn(model_config, tx, shardings, init_params)
        state = init_fn(jax.random.PRNGKey(tc.seed))
      step = int(state.step)

      train_step = steps.make_train_step(model, tx, tc.grad_accum_steps, shardings, mesh)
      flops = tc.global_batch_size * metrics_lib.flops_per_example(
          model_config, abstract.params, masking_config.max_seq_length,
          masking_config.max_entity_length, masking_config.max_masked_words,
          masking_config.max_masked_entities)
      logger = metrics_lib.MetricLogger(
          workdir, total_steps=tc.steps,
          tokens_per_step=tc.global_batch_size * masking_config.max_seq_length,
          flops_per_step=flops, num_devices=mesh.size, device=mesh.devices.flat[0])
      global_shapes = {k: (tc.global_batch_size,) + shape
                       for k, shape in masking_config.output_shapes().items()}

      # ==== Train ========================================================================
      preempted = False
      first_step = step + 1
      while step < tc.steps:
        if preemption.is_set() or (stop_after is not None and step >= stop_after):
          checkpointing.save(mngr, state, pipeline.get_state(), force=True)
          preempted = True
          break
        host_batch = next(pipeline)
        batch = {k: jax.make_array_from_process_local_data(data_sh, v, global_shapes[k])
                 for k, v in host_batch.items() if k not in steps.HOST_ONLY_KEYS}
        state, step_metrics = train_step(state, batch)
        step += 1
        # Fetching the metrics before saving keeps a NaN state out of the checkpoints.
        logger.update(step, jax.device_get(step_metrics))
        if step == first_step:
          logger.restart_clock()  # the first step's compile time is no throughput
        checkpointing.save(mngr, state, pipeline.get_state())
        if mngr.reached_preemption(step):
          checkpointing.save(mngr, state, pipeline.get_state(), force=True)
          preempted = True
          break
        if step % tc.log_every == 0 or step == tc.steps:
          logger.write(step)

      # ==== Finish: last checkpoint and exports ==========================================
      if not preempted:
        checkpointing.save(mngr, state, pipeline.get_state(), force=True)
      mngr.wait_until_finished()
      params = host_params(state.params)
      result = TrainResult(step=step, preempted=preempted, losses=list(logger.history),
                           params=params)
      if preempted:
        logging.warning("stopped at step %d on request; checkpoint saved, rerun to resume", step)
        return result
      if tc.get("export", True) and jax.process_index() == 0:
        from luke_jax.convert import hf  # pylint: disable=g-import-not-at-top
        result.model_dir = luke_checkpoint.save_checkpoint(
            workdir / "model", params, model_config, state_lib.ARCHITECTURE,
            tokenizer_dir=dataset_dir, overwrite=True)
        result.hf_dir = hf.write_hf(workdir / "hf_export", params, model_config,
                                    state_lib.ARCHITECTURE, tokenizer_dir=dataset_dir,
                                    overwrite=True)
        print(f"exported {result.model_dir} (luke-jax) and {result.hf_dir} (transformers)",
              flush=True)
      return result
  finally:
    mngr.wait_until_finished()  # async saves started before an error still complete
    mngr.close()
    pipeline.close()
    if logger is not None:
      logger.close()
    if own_flag:
      preemption.uninstall()


class _NoOpTx:
  """Lets `abstract_state` give parameter shapes before the real optimizer exists."""

  def init(self, params):
    del params
    return ()


train = train_and_evaluate

"""The configuration every run shares, and the keys the previous release named differently.

Pretraining configs (`configs/pretrain*.py`) and fine-tuning configs (`configs/finetune/*.py`)
both start from `shared_config()` and add their `data` section (fine-tuning also `task`). A
flag therefore means the same thing in `run_pretrain.py` and `run_finetune.py`:

  model     `LukeConfig` fields. Pretraining: the model itself (vocabulary sizes 0 = the
            dataset's); fine-tuning: changes to the checkpoint's config (None = keep).
  mesh      `((axis, size), ...)` over `data`, `fsdp`, `tensor`; one size may be -1 (the
            devices left over).
  sharding  `rules`: `(logical axis, mesh axes)` pairs (`luke_jax.sharding.DEFAULT_RULES`).
  optim     `learning_rate` (peak), `warmup_steps` or else `warmup_ratio` of the schedule,
            `total_steps` (where the linear decay reaches 0; 0 = the run's steps), `b1`, `b2`,
            `eps`, `weight_decay`, `bias_correction`, `max_grad_norm` (0 = no clipping),
            `trainable` (`[regex, bool]` rules over parameter paths; None = the run's default:
            everything, or the entity parameters only in pretraining stage 1).
  train     `init_checkpoint` (parameters to start from), `batch_size` (global, all hosts),
            `grad_accum_steps`, `steps` (a cap on optimizer steps; 0 = `num_epochs` decide),
            `num_epochs` (fine-tuning), `seed`, `log_every`, `ckpt_every`, `keep_ckpts`;
            pretraining adds `stage` and `export`, fine-tuning `eval_batch_size` and
            `eval_every_epoch`.

`RENAMED` lists the keys of the previous release; they still work for one release, with a
deprecation message: in a config object (`migrate`) and on the command line
(`rewrite_flags`).
"""

from __future__ import annotations

import warnings
from typing import Sequence

from absl import logging
import ml_collections

from luke_jax import sharding

# Old key -> new key, both as dotted paths from the config's root.
RENAMED = {
    "init_checkpoint": "train.init_checkpoint",
    "train.global_batch_size": "train.batch_size",
    "train.max_steps": "train.steps",
    **{f"train.{k}": f"optim.{k}" for k in (
        "learning_rate", "warmup_ratio", "weight_decay", "b1", "b2", "eps", "bias_correction",
        "max_grad_norm", "trainable")},
}


def shared_config() -> ml_collections.ConfigDict:
  """The sections and keys every run has, at neutral defaults the run's config overrides."""
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict()
  # Tuples, so the command line can override them, e.g.
  # --config.mesh='(("data", -1), ("fsdp", 4), ("tensor", 2))'.
  config.mesh = (("data", -1), ("fsdp", 1), ("tensor", 1))
  config.sharding = ml_collections.ConfigDict(
      {"rules": tuple(tuple(r) for r in sharding.DEFAULT_RULES)})
  config.optim = ml_collections.ConfigDict(dict(
      learning_rate=1e-4, warmup_steps=0, warmup_ratio=0.0, total_steps=0, b1=0.9, b2=0.999,
      eps=1e-6, weight_decay=0.01, bias_correction=False, max_grad_norm=0.0,
      trainable=ml_collections.FieldReference(None, field_type=list)))
  config.train = ml_collections.ConfigDict(dict(
      init_checkpoint="", batch_size=32, grad_accum_steps=1, steps=0, num_epochs=0, seed=0,
      log_every=100, ckpt_every=1000, keep_ckpts=3))
  return config


def migrate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Moves keys of the previous release to their new place (the old key's value wins: a config
  of this release only holds one when someone set it), with a deprecation warning."""
  with config.unlocked():
    for old, new in RENAMED.items():
      value = _pop(config, old)
      if value is _MISSING:
        continue
      _deprecated(f"config.{old}", f"config.{new}")
      section, _, key = new.rpartition(".")
      node = config
      for name in filter(None, section.split(".")):
        if name not in node:
          node[name] = ml_collections.ConfigDict()
        node = node[name]
      node[key] = list(value) if isinstance(value, tuple) and key == "trainable" else value
  return config


def rewrite_flags(argv: Sequence[str]) -> list[str]:
  """`--config.<old key>` flags renamed to the new keys, before absl parses them."""
  out = []
  for arg in argv:
    for old, new in RENAMED.items():
      flag = f"--config.{old}"
      if arg == flag or arg.startswith(flag + "="):
        _deprecated(flag, f"--config.{new}")
        arg = f"--config.{new}" + arg[len(flag):]
        break
    out.append(arg)
  return out


def checked(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` migrated to this release's names and checked: what a run starts from."""
  config = migrate(config)
  check(config)
  return config


def check(config: ml_collections.ConfigDict) -> None:
  """The shared settings' own rules, checked before any work; errors name the setting."""
  t = config.train
  for name in ("batch_size", "grad_accum_steps", "log_every", "ckpt_every", "keep_ckpts"):
    if int(t[name]) < 1:
      raise ValueError(f"config.train.{name}={t[name]} must be at least 1")
  for name in ("steps", "num_epochs"):
    if int(t.get(name, 0)) < 0:
      raise ValueError(f"config.train.{name}={t[name]} must be 0 or more")
  if "eval_batch_size" in t and int(t.eval_batch_size) < 1:
    raise ValueError(f"config.train.eval_batch_size={t.eval_batch_size} must be at least 1")
  o = config.optim
  if not float(o.learning_rate) > 0.0:
    raise ValueError(f"config.optim.learning_rate={o.learning_rate} must be above 0 (the peak "
                     "of the schedule)")
  for name in ("b1", "b2"):
    if not 0.0 <= float(o[name]) < 1.0:
      raise ValueError(f"config.optim.{name}={o[name]} must be in [0, 1)")
  if not float(o.eps) > 0.0:
    raise ValueError(f"config.optim.eps={o.eps} must be above 0")
  for name in ("weight_decay", "max_grad_norm", "total_steps"):
    if float(o[name]) < 0:
      raise ValueError(f"config.optim.{name}={o[name]} must be 0 or more")
  if int(o.warmup_steps) < 0 or not 0.0 <= float(o.warmup_ratio) <= 1.0:
    raise ValueError(f"config.optim: warmup_steps={o.warmup_steps} must be >= 0 and "
                     f"warmup_ratio={o.warmup_ratio} in [0, 1]")
  if int(o.warmup_steps) and float(o.warmup_ratio):
    raise ValueError("config.optim sets both warmup_steps and warmup_ratio; set one to 0")


_MISSING = object()


def _pop(config: ml_collections.ConfigDict, dotted: str):
  *path, key = dotted.split(".")
  node = config
  for name in path:
    if name not in node or not isinstance(node[name], ml_collections.ConfigDict):
      return _MISSING
    node = node[name]
  if key not in node:
    return _MISSING
  value = node[key]
  del node[key]
  return value


def _deprecated(old: str, new: str) -> None:
  message = f"{old} is deprecated and will be removed in the next release; use {new}"
  warnings.warn(message, DeprecationWarning, stacklevel=3)
  logging.warning("%s", message)

"""One config schema for every run, and the previous release's key names."""

import warnings

import pytest

from conftest import finetune_config, load_config
from luke_jax.finetune import tasks
from luke_jax.training import config as run_config

PRETRAINING = ["pretrain_tiny.py"] + [
    f"pretrain.py:{arg}" for arg in ("size=base,stage=1", "size=large,stage=2",
                                     "model=mluke,size=base,stage=2")]


def _config(name):
  path, _, arg = name.partition(":")
  return load_config(path, arg or None)


def _keys(section):
  return set(section.keys())


@pytest.mark.parametrize("name", PRETRAINING + [f"finetune/{t}.py" for t in tasks.NAMES])
def test_every_config_has_the_shared_sections_and_keys(name):
  shared = run_config.shared_config()
  config = _config(name)
  for section in ("optim", "train", "sharding"):
    missing = _keys(shared[section]) - _keys(config[section])
    assert not missing, f"{name}: config.{section} lacks {sorted(missing)}"
  assert tuple(tuple(a) for a in config.mesh) and config.sharding.rules
  run_config.check(config)


def test_pretraining_and_finetuning_keys_differ_only_by_their_own_extras():
  pretrain, finetune = _config("pretrain_tiny.py"), finetune_config("tacred")
  assert _keys(pretrain.optim) == _keys(finetune.optim) == _keys(run_config.shared_config().optim)
  assert _keys(pretrain.train) - _keys(finetune.train) == {"stage", "export"}
  assert _keys(finetune.train) - _keys(pretrain.train) == {"eval_batch_size", "eval_every_epoch"}


def test_migrate_moves_old_keys_with_a_deprecation_warning():
  config = finetune_config("conll2003")
  config.init_checkpoint = "/ckpt"
  config.train.learning_rate = 3e-3
  config.train.max_steps = 7
  config.train.trainable = [(".*", True)]
  with pytest.warns(DeprecationWarning) as caught:
    run_config.migrate(config)
  messages = sorted(str(w.message) for w in caught)
  assert len(messages) == 4
  assert any(m.startswith("config.train.max_steps is deprecated") and m.endswith(
      "use config.train.steps") for m in messages), messages
  assert config.train.init_checkpoint == "/ckpt" and "init_checkpoint" not in config
  assert config.optim.learning_rate == 3e-3 and "learning_rate" not in config.train
  assert config.train.steps == 7 and "max_steps" not in config.train
  assert config.optim.trainable == [(".*", True)]


def test_migrate_leaves_a_current_config_alone():
  config = _config("pretrain.py:size=base,stage=1")
  before = config.to_json_best_effort(sort_keys=True)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    run_config.migrate(config)
  assert config.to_json_best_effort(sort_keys=True) == before


def test_an_old_style_pretraining_config_migrates():
  config = _config("pretrain_tiny.py")
  with config.unlocked():
    del config.train["batch_size"]
    config.train.global_batch_size = 8
  with pytest.warns(DeprecationWarning):
    run_config.migrate(config)
  assert config.train.batch_size == 8


def test_rewrite_flags_renames_old_flags_only():
  argv = ["prog", "--config", "c.py", "--config.init_checkpoint=/x", "--config.train.max_steps",
          "5", "--config.train.learning_rate=0.1", "--config.train.steps=3", "--workdir=w"]
  with pytest.warns(DeprecationWarning):
    out = run_config.rewrite_flags(argv)
  assert out == ["prog", "--config", "c.py", "--config.train.init_checkpoint=/x",
                 "--config.train.steps", "5", "--config.optim.learning_rate=0.1",
                 "--config.train.steps=3", "--workdir=w"]


@pytest.mark.parametrize("change, setting", [
    (dict(train=dict(batch_size=0)), "config.train.batch_size=0"),
    (dict(train=dict(grad_accum_steps=0)), "config.train.grad_accum_steps=0"),
    (dict(train=dict(steps=-1)), "config.train.steps=-1"),
    (dict(optim=dict(warmup_steps=5, warmup_ratio=0.1)), "both warmup_steps and warmup_ratio"),
])
def test_check_names_the_setting(change, setting):
  config = _config("pretrain_tiny.py")
  for section, values in change.items():
    config[section].update(values)
  with pytest.raises(ValueError, match=setting):
    run_config.check(config)


r"""LUKE / mLUKE pretraining with the reference hyper-parameters (two stages).

  python -m luke_jax.convert --src_format=roberta --src=$ROBERTA_BASE --dst=$R \
      --entity_vocab_size=$(wc -l < $DATASET/entity_vocab.jsonl)
  python run_pretrain.py --config configs/pretrain.py:size=base,stage=1 \
      --config.data.dataset_dir=$DATASET --config.train.init_checkpoint=$R --workdir $W1
  python run_pretrain.py --config configs/pretrain.py:size=base,stage=2 \
      --config.data.dataset_dir=$DATASET --config.train.init_checkpoint=$W1/model --workdir $W2

`size` is base | large, `model` is luke | mluke (default luke), `attention` fused (default:
the reference recipe, attention dropout 0.1) | splash (TPU: a Pallas flash kernel, without
attention dropout; see the README's TPU section). Stage 1 trains only the entity
embeddings and the entity head (the official `--fix-bert-weights`); stage 2 trains everything
from the stage-1 result with a fresh optimizer (`--reset-optimization-states`). The official
recipe (github.com/studio-ousia/luke `pretraining.md` and `pretraining_config/*.json`): AdamW
betas (0.9, 0.999), eps 1e-6, weight decay 0.01, no bias correction, 2,500 warmup steps then
linear decay to 0, batch 2048, gradient clipping 10000 (about off); peak lr 5e-4 in stage 1,
1e-5 (LUKE) / 1e-4 (mLUKE base) / 5e-5 (mLUKE large) in stage 2; 98,168 steps per stage for
LUKE, 540,326 for mLUKE. Set `train.grad_accum_steps` so that 2048 / accum fits memory.
"""

from luke_jax.models.config import preset
from luke_jax.pretraining.config import base_config, parse_arg

_STEPS = {"luke": 98_168, "mluke": 540_326}
_STAGE2_LR = {("luke", "base"): 1e-5, ("luke", "large"): 1e-5,
              ("mluke", "base"): 1e-4, ("mluke", "large"): 5e-5}


def get_config(arg: str | None = None):
  args = parse_arg(arg, dict(size="base", stage="1", model="luke", attention="fused"))
  name, size, stage = args["model"], args["size"], int(args["stage"])
  attention = args["attention"]
  if (name not in _STEPS or size not in ("base", "large") or stage not in (1, 2)
      or attention not in ("fused", "splash")):
    raise ValueError(f"bad config argument {arg!r}: model luke|mluke, size base|large, "
                     "stage 1|2, attention fused|splash")
  # Plain attention: LUKE was pretrained without the entity-aware queries, which are added as
  # copies of `query` for fine-tuning (studio-ousia/luke issue #76); a RoBERTa conversion has
  # none. Vocabulary sizes 0: the dataset's (its tokenizer is RoBERTa's / XLM-R's, without the
  # two entity markers the released checkpoints add later).
  config = base_config(preset(f"{name}-{size}", dtype="bfloat16", scan_layers=True,
                              remat_policy="minimal", use_entity_aware_attention=False,
                              vocab_size=0, entity_vocab_size=0), preset=f"{name}-{size}")
  if attention == "splash":
    # The Pallas flash kernel for TPU; it has no attention dropout, so this drops the
    # reference's 0.1 on the attention probabilities (hidden dropout stays).
    config.model.update(attention_impl="splash", attention_probs_dropout_prob=0.0)
  config.optim.update(learning_rate=5e-4 if stage == 1 else _STAGE2_LR[(name, size)],
                      warmup_steps=2500, total_steps=_STEPS[name], max_grad_norm=10000.0)
  config.train.update(steps=_STEPS[name], batch_size=2048, log_every=100, ckpt_every=1000,
                      keep_ckpts=3, stage=stage)
  return config

r"""Pretraining for entity disambiguation: the recipe of the global ED model (two stages).

Yamada et al., "Global Entity Disambiguation with BERT" (NAACL 2022), code and recipe in
github.com/studio-ousia/luke `examples/entity_disambiguation` (README "Training from Scratch",
`deepspeed_config/stage{1,2}.json`): masked entity prediction only (`masked_lm_prob` 0, 30% of
the entities masked) over an entity vocabulary made of the candidates of the ED data sets, with
links outside that vocabulary kept as [UNK] inputs (`include_unk_entities`).

  # candidate titles (one a line) -> the candidate-based vocabulary
  python -m luke_jax.data.build_entity_vocab --dump=$DUMP --output=$V/entity_vocab.jsonl \
      --white_list=candidates.txt --white_list_only
  python -m luke_jax.data.build_pretraining_dataset --dump=$DUMP --tokenizer=$TOK \
      --entity_vocab=$V/entity_vocab.jsonl --output_dir=$DATASET --include_unk_entities
  python run_pretrain.py --config configs/pretrain_ed.py:stage=1 \
      --config.data.dataset_dir=$DATASET --config.train.init_checkpoint=$R --workdir $W1
  python run_pretrain.py --config configs/pretrain_ed.py:stage=2 \
      --config.data.dataset_dir=$DATASET --config.train.init_checkpoint=$W1/model --workdir $W2

`candidates.txt` holds the titles of the ED data sets' candidates (`python -m
luke_jax.disambiguation.evaluate --write_candidates=FILE`, or any title list). The run refuses a
dataset built without `--include_unk_entities`. Stage 1 trains the entity parameters only (the
reference's `--fix-bert-weights`), one epoch; stage 2 trains everything for six epochs with a
fresh optimizer. Optimizer as the reference's DeepSpeed files: AdamW (0.9, 0.999), eps 1e-6,
weight decay 0.01, no bias correction, 1,000 warmup steps then linear decay, clipping 1.0,
batch 2048, peak lr 5e-4 (stage 1) and 5e-5 (stage 2), 4,866 and 29,196 steps on the
reference's 2018 Wikipedia (set `train.steps`/`optim.total_steps` for another corpus: one epoch
is the dataset's `number_of_items` / 2048). The reference starts from bert-base-uncased; this
config starts from `train.init_checkpoint` (a LukeForMaskedLM: a RoBERTa conversion, or a LUKE
pretraining run's `model/`).
"""

from luke_jax.models.config import preset
from luke_jax.pretraining.config import base_config, parse_arg

_STEPS = {1: 4_866, 2: 29_196}
_LR = {1: 5e-4, 2: 5e-5}


def get_config(arg: str | None = None):
  args = parse_arg(arg, dict(size="base", stage="1"))
  size, stage = args["size"], args["stage"]
  if size not in ("base", "large") or stage not in ("1", "2"):
    raise ValueError(f"bad config argument {arg!r}: size base|large, stage 1|2")
  stage = int(stage)
  # The reference ED model has no entity-aware queries (its converter sets
  # use_entity_aware_attention=False); vocabulary sizes 0 take the dataset's.
  config = base_config(
      preset(f"luke-{size}", dtype="bfloat16", scan_layers=True, remat_policy="minimal",
             use_entity_aware_attention=False, vocab_size=0, entity_vocab_size=0),
      preset=f"luke-{size}", masked_lm_prob=0.0, masked_entity_prob=0.3,
      include_unk_entities=True)
  config.optim.update(learning_rate=_LR[stage], warmup_steps=1000, total_steps=_STEPS[stage],
                      max_grad_norm=1.0)
  config.train.update(steps=_STEPS[stage], batch_size=2048, log_every=100, ckpt_every=1000,
                      keep_ckpts=3, stage=stage)
  return config

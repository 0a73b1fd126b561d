"""`luke_jax.data.masking`: the reference's masking rules, vectorised over a batch.

The oracle is `reference_mask`, a line-by-line port of `_create_entity_features` and
`_create_word_features` from `luke/pretraining/batch_generator.py`, in which each `random` /
`np.random` call reads the value the example pre-drew instead (so both see the same
randomness). The vectorised code must agree with it exactly; the statistics tests check the
rates themselves on 10,000 examples.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from luke_jax.data import masking
from luke_jax.data.masking import MaskingConfig, mask_batch, mask_example, word_start_table

VOCAB = 1000
ENTITY_VOCAB = 300
CLS, PAD, SEP, MASK = 0, 1, 2, VOCAB - 1
ENTITY_PAD, ENTITY_MASK = 0, 2


def make_config(**overrides) -> MaskingConfig:
  kwargs = dict(cls_id=CLS, sep_id=SEP, pad_id=PAD, mask_id=MASK, vocab_size=VOCAB,
                entity_mask_id=ENTITY_MASK, entity_vocab_size=ENTITY_VOCAB,
                max_seq_length=64, max_entity_length=12, max_mention_length=5)
  kwargs.update(overrides)
  return MaskingConfig(**kwargs)


def word_starts(fraction: float, seed: int = 0) -> np.ndarray:
  table = np.random.default_rng(seed).random(VOCAB) < fraction
  table[[CLS, PAD, SEP, MASK]] = True
  return table


def make_example(rng: np.random.Generator, n_words: int, n_entities: int, mention: int,
                 overlapping: bool = False, page_id: int = 7) -> dict[str, np.ndarray]:
  """Random words and mentions of 1..`mention` tokens, disjoint unless `overlapping`."""
  word_ids = rng.integers(3, VOCAB - 1, n_words).astype(np.int32)
  if overlapping:
    starts = np.sort(rng.integers(0, n_words, n_entities))
  else:
    n_entities = min(n_entities, n_words)
    starts = np.sort(rng.choice(n_words, n_entities, replace=False))
  ends = np.append(starts[1:], n_words) if not overlapping else np.full(n_entities, n_words)
  positions = np.full((n_entities, mention), -1, np.int32)
  for i, start in enumerate(starts):
    length = min(int(rng.integers(1, mention + 1)), int(ends[i] - start))
    positions[i, :length] = np.arange(start, start + length)
  entity_ids = rng.integers(1, ENTITY_VOCAB, n_entities).astype(np.int32)
  return dict(word_ids=word_ids, entity_ids=entity_ids, entity_position_ids=positions,
              page_id=np.int64(page_id))


def reference_mask(example, config: MaskingConfig, is_word_start: np.ndarray, draws: dict):
  """The reference batch generator with its random calls replaced by `draws` (one example).

  `np.random.permutation` -> sorting by the drawn keys; `random.random()` -> the drawn
  uniform of that entity / word start / mention; `random.randint` -> the drawn id or index.
  One documented difference: a position shared by two masked mentions is masked once.
  """
  s, e, m = config.max_seq_length, config.max_entity_length, config.max_mention_length
  word_ids = np.asarray(example["word_ids"])
  entity_ids = np.asarray(example["entity_ids"])
  k = entity_ids.size
  entity_position_ids = np.array(example["entity_position_ids"]).reshape(k, -1 if k else m)

  # _create_entity_features
  output_entity_ids = np.full(e, config.entity_pad_id)
  output_entity_ids[:k] = entity_ids
  entity_position_ids += entity_position_ids != -1
  output_entity_position_ids = np.full((e, m), -1)
  output_entity_position_ids[:k, :entity_position_ids.shape[1]] = entity_position_ids
  masked_positions = []
  masked_entity_labels = np.full(e, -1)
  if config.masked_entity_prob != 0.0 and k:
    num_to_predict = max(1, int(round(k * config.masked_entity_prob)))
    permutation = sorted(range(k), key=lambda i: draws["entity_key"][i])
    for index in permutation[:num_to_predict]:
      p = draws["entity_kind"][index]
      masked_entity_labels[index] = entity_ids[index]
      if p < 1.0 - config.random_entity_prob - config.unmasked_entity_prob:
        output_entity_ids[index] = config.entity_mask_id
      elif p < 1.0 - config.unmasked_entity_prob:
        output_entity_ids[index] = draws["entity_ids"][index]
      masked_positions.append((index, [int(q) for q in entity_position_ids[index] if q != -1]))

  # _create_word_features
  n = word_ids.size
  output_word_ids = np.full(s, config.pad_id)
  output_word_ids[:n + 2] = np.concatenate([[config.cls_id], word_ids, [config.sep_id]])
  masked_lm_labels = np.full(s, -1)
  if config.masked_lm_prob != 0.0 and n:
    num_masked_words = 0

    def perform_masking(indices, p):
      done = 0
      for index in indices:
        if masked_lm_labels[index] != -1:
          continue  # the documented de-duplication
        masked_lm_labels[index] = output_word_ids[index]
        done += 1
        if p < 1.0 - config.random_word_prob - config.unmasked_word_prob:
          output_word_ids[index] = config.mask_id
        elif p < 1.0 - config.unmasked_word_prob:
          output_word_ids[index] = draws["word_ids"][index - 1]
      return done

    masked_entity_positions_set = frozenset()
    if config.mask_words_in_entity_span:
      for index, indices in masked_positions:
        num_masked_words += perform_masking(indices, draws["mention_kind"][index])
      masked_entity_positions_set = frozenset(p for _, li in masked_positions for p in li)

    num_to_predict = max(1, int(round(n * config.masked_lm_prob)))
    candidate_word_indices = []
    for i, word in enumerate(word_ids, 1):
      if (config.whole_word_masking and not is_word_start[word] and candidate_word_indices):
        candidate_word_indices[-1].append(i)
      else:
        candidate_word_indices.append([i])
    candidate_word_indices = [
        indices for indices in candidate_word_indices
        if all(ind not in masked_entity_positions_set for ind in indices)]
    for indices_to_mask in sorted(candidate_word_indices,
                                  key=lambda li: draws["word_key"][li[0] - 1]):
      if len(indices_to_mask) > num_to_predict - num_masked_words:
        continue
      p = draws["word_kind"][indices_to_mask[0] - 1]
      num_masked_words += perform_masking(indices_to_mask, p)
      if num_masked_words == num_to_predict:
        break
    if num_masked_words == 0:
      high = n - 2 if n >= 3 else n  # random.randint(1, word_ids.size - 2)
      random_index = 1 + int(draws["fallback"][0] * high)
      masked_lm_labels[random_index] = output_word_ids[random_index]
      output_word_ids[random_index] = config.mask_id

  return dict(input_ids=output_word_ids, entity_ids=output_entity_ids,
              entity_position_ids=output_entity_position_ids,
              masked_lm_labels=masked_lm_labels, masked_entity_labels=masked_entity_labels)


def example_draws(seed: int, config: MaskingConfig) -> dict:
  draws = masking._draw([np.random.default_rng(seed)], config)
  return {k: None if v is None else v[0] for k, v in draws.items()}


def scatter_labels(positions, labels, weights, size) -> np.ndarray:
  full = np.full(size, -1)
  full[positions[weights > 0]] = labels[weights > 0]
  return full


CASES = {
    "default": dict(),
    "subword_random_entities": dict(whole_word_masking=False, random_entity_prob=0.2,
                                    unmasked_entity_prob=0.2),
    "entity_spans": dict(mask_words_in_entity_span=True),
    "long_words_heavy_masking": dict(masked_lm_prob=0.5, random_word_prob=0.3,
                                     unmasked_word_prob=0.3),
    "words_only": dict(masked_entity_prob=0.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_reference_loop(case):
  config = make_config(**CASES[case])
  # Sparse word starts in one case: long words, many budget skips and some fallbacks.
  table = word_starts(0.25 if case == "long_words_heavy_masking" else 0.7)
  rng = np.random.default_rng(1)
  examples = []
  for i in range(300):
    n_words = int(rng.integers(1, 8)) if i % 10 == 0 else int(rng.integers(1, 63))
    examples.append(make_example(rng, n_words, int(rng.integers(0, 13)), 5,
                                 overlapping=case == "entity_spans" and i % 2 == 0))
  seeds = list(range(1000, 1000 + len(examples)))
  batch = mask_batch(examples, config, table, [np.random.default_rng(s) for s in seeds])
  for i, (example, seed) in enumerate(zip(examples, seeds)):
    want = reference_mask(example, config, table, example_draws(seed, config))
    got = {k: v[i] for k, v in batch.items()}
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"], err_msg=f"example {i}")
    np.testing.assert_array_equal(got["entity_ids"], want["entity_ids"])
    np.testing.assert_array_equal(got["entity_position_ids"], want["entity_position_ids"])
    np.testing.assert_array_equal(
        scatter_labels(got["mlm_positions"], got["mlm_labels"], got["mlm_weights"],
                       config.max_seq_length), want["masked_lm_labels"], err_msg=f"example {i}")
    np.testing.assert_array_equal(
        scatter_labels(got["mep_positions"], got["mep_labels"], got["mep_weights"],
                       config.max_entity_length), want["masked_entity_labels"])


def test_mask_example_is_a_batch_row():
  config = make_config()
  table = word_starts(0.7)
  rng = np.random.default_rng(0)
  examples = [make_example(rng, 40, 6, 3) for _ in range(4)]
  batch = mask_batch(examples, config, table, [np.random.default_rng(s) for s in range(4)])
  for i, example in enumerate(examples):
    single = mask_example(example, config, table, np.random.default_rng(i))
    assert single.keys() == batch.keys()
    for k in single:
      np.testing.assert_array_equal(single[k], batch[k][i])
  again = mask_example(examples[0], config, table, np.random.default_rng(0))
  other = mask_example(examples[0], config, table, np.random.default_rng(99))
  assert all(np.array_equal(again[k], batch[k][0]) for k in again)
  assert not np.array_equal(other["input_ids"], again["input_ids"])


def test_shapes_and_dtypes_are_fixed():
  config = make_config()
  table = word_starts(0.7)
  rng = np.random.default_rng(0)
  examples = [make_example(rng, n, k, 5) for n, k in ((1, 0), (62, 12), (10, 3))]
  batch = mask_batch(examples, config, table, [np.random.default_rng(s) for s in range(3)])
  shapes = config.output_shapes()
  assert tuple(batch) == masking.OUTPUT_KEYS
  for k, v in batch.items():
    assert v.shape == (3,) + shapes[k], k
    assert v.dtype == np.int32, k
  assert shapes["mlm_positions"] == (config.max_masked_words,)
  np.testing.assert_array_equal(batch["page_id"], [7, 7, 7])
  # <s> w1 </s> pad...
  assert batch["input_ids"][0, 0] == CLS and batch["input_ids"][0, 2] == SEP
  assert (batch["input_ids"][0, 3:] == PAD).all()
  np.testing.assert_array_equal(batch["attention_mask"].sum(1), [3, 64, 12])
  np.testing.assert_array_equal(batch["entity_attention_mask"].sum(1), [0, 12, 3])
  assert (batch["entity_ids"][0] == ENTITY_PAD).all() and batch["mep_weights"][0].sum() == 0


def test_entity_positions_shift_for_cls_and_stay_on_words():
  config = make_config()
  table = word_starts(0.7)
  rng = np.random.default_rng(3)
  examples = [make_example(rng, int(rng.integers(1, 63)), int(rng.integers(0, 13)), 4)
              for _ in range(200)]
  batch = mask_batch(examples, config, table, [np.random.default_rng(s) for s in range(200)])
  for i, example in enumerate(examples):
    original = example["entity_position_ids"]
    k, m = original.shape
    got = batch["entity_position_ids"][i]
    np.testing.assert_array_equal(got[:k, :m], np.where(original != -1, original + 1, -1))
    assert (got[k:] == -1).all() and (got[:, m:] == -1).all()
    n = example["word_ids"].size
    assert got.max() <= n  # output position n is the last word; n + 1 is </s>


def test_labels_are_the_original_ids_and_nothing_else_changes():
  config = make_config()
  table = word_starts(0.7)
  rng = np.random.default_rng(4)
  examples = [make_example(rng, int(rng.integers(1, 63)), int(rng.integers(0, 13)), 5)
              for _ in range(300)]
  batch = mask_batch(examples, config, table, [np.random.default_rng(s) for s in range(300)])
  for i, example in enumerate(examples):
    words = np.concatenate([[CLS], example["word_ids"], [SEP]])
    weights = batch["mlm_weights"][i] > 0
    positions = batch["mlm_positions"][i][weights]
    assert weights.sum() >= 1 and (np.diff(positions) > 0).all()
    assert positions.min() >= 1 and positions.max() <= words.size - 2
    np.testing.assert_array_equal(batch["mlm_labels"][i][weights], words[positions])
    untouched = np.ones(words.size, bool)
    untouched[positions] = False
    np.testing.assert_array_equal(batch["input_ids"][i][:words.size][untouched], words[untouched])
    assert (batch["mlm_positions"][i][~weights] == 0).all()

    chosen = batch["mep_weights"][i] > 0
    k = example["entity_ids"].size
    assert chosen.sum() == (max(1, round(k * 0.15)) if k else 0)
    entity_positions = batch["mep_positions"][i][chosen]
    np.testing.assert_array_equal(batch["mep_labels"][i][chosen],
                                  example["entity_ids"][entity_positions])
    # Default entity rates: every chosen entity becomes [MASK], the others are unchanged.
    assert (batch["entity_ids"][i][entity_positions] == ENTITY_MASK).all()
    others = np.setdiff1d(np.arange(k), entity_positions)
    np.testing.assert_array_equal(batch["entity_ids"][i][others], example["entity_ids"][others])


@pytest.fixture(scope="module")
def statistics_run():
  """10,000 examples of 100-254 words and 20-64 entities, the reference's default rates."""
  config = make_config(max_seq_length=256, max_entity_length=64, max_mention_length=4)
  table = word_starts(0.7)
  rng = np.random.default_rng(5)
  examples = [make_example(rng, int(rng.integers(100, 255)), int(rng.integers(20, 65)), 4)
              for _ in range(10_000)]
  rngs = [np.random.default_rng([5, i]) for i in range(len(examples))]
  outputs = [mask_batch(examples[i:i + 1000], config, table, rngs[i:i + 1000])
             for i in range(0, len(examples), 1000)]
  batch = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
  return config, table, examples, batch


def test_masking_rates(statistics_run):
  config, _, examples, batch = statistics_run
  n_words = sum(e["word_ids"].size for e in examples)
  n_entities = sum(e["entity_ids"].size for e in examples)
  weights = batch["mlm_weights"] > 0
  assert abs(weights.sum() / n_words - 0.15) < 0.01
  assert abs(batch["mep_weights"].sum() / n_entities - 0.15) < 0.01

  rows = np.nonzero(weights)[0]
  replaced = batch["input_ids"][rows, batch["mlm_positions"][weights]]
  labels = batch["mlm_labels"][weights]
  as_mask = np.mean(replaced == MASK)
  unchanged = np.mean(replaced == labels)
  randomised = np.mean((replaced != MASK) & (replaced != labels))
  assert abs(as_mask - 0.8) < 0.01, as_mask
  assert abs(unchanged - 0.1) < 0.01, unchanged
  assert abs(randomised - 0.1) < 0.01, randomised
  assert replaced[replaced != MASK].min() > PAD  # random ids come from [pad_id + 1, vocab)


def test_whole_word_masking_never_splits_a_word(statistics_run):
  _, table, examples, batch = statistics_run
  for i, example in enumerate(examples[:3000]):
    words = example["word_ids"]
    masked = np.zeros(words.size + 2, bool)
    weights = batch["mlm_weights"][i] > 0
    masked[batch["mlm_positions"][i][weights]] = True
    starts = table[words]
    starts[0] = True
    word_index = np.cumsum(starts) - 1
    per_word = np.bincount(word_index, weights=masked[1:-1], minlength=word_index[-1] + 1)
    sizes = np.bincount(word_index)
    assert ((per_word == 0) | (per_word == sizes)).all(), f"example {i} splits a word"


def test_subword_masking_hits_the_budget_exactly():
  config = make_config(whole_word_masking=False)
  rng = np.random.default_rng(6)
  examples = [make_example(rng, int(rng.integers(1, 63)), 2, 3) for _ in range(200)]
  batch = mask_batch(examples, config, word_starts(0.1),
                     [np.random.default_rng(s) for s in range(200)])
  for i, example in enumerate(examples):
    assert batch["mlm_weights"][i].sum() == max(1, round(example["word_ids"].size * 0.15))


def test_unfillable_budget_falls_back_to_one_mask():
  # One word of six sub-words against a budget of round(6 * 0.15) = 1: nothing fits, so one
  # position in [1, n_words - 2] becomes <mask>, as the reference.
  config = make_config()
  table = np.zeros(VOCAB, bool)
  example = dict(word_ids=np.arange(10, 16, dtype=np.int32), entity_ids=np.zeros(0, np.int32),
                 entity_position_ids=np.zeros((0, 5), np.int32), page_id=np.int64(1))
  seen = set()
  for seed in range(100):
    out = mask_example(example, config, table, np.random.default_rng(seed))
    (position,) = out["mlm_positions"][out["mlm_weights"] > 0]
    assert out["input_ids"][position] == MASK
    assert out["mlm_labels"][0] == example["word_ids"][position - 1]
    seen.add(int(position))
  assert seen == {1, 2, 3, 4}


def test_words_in_masked_mentions_are_masked_and_counted():
  config = make_config(mask_words_in_entity_span=True, masked_lm_prob=0.15)
  table = word_starts(0.7)
  rng = np.random.default_rng(7)
  for seed in range(100):
    example = make_example(rng, 60, 12, 5)
    out = mask_example(example, config, table, np.random.default_rng(seed))
    masked = set(out["mlm_positions"][out["mlm_weights"] > 0].tolist())
    spans = out["entity_position_ids"][out["mep_positions"][out["mep_weights"] > 0]]
    in_spans = set(spans[spans != -1].tolist())
    assert in_spans <= masked
    if len(in_spans) < round(60 * 0.15):
      assert len(masked) <= round(60 * 0.15)
    else:  # the spans alone exhaust the budget: no other word is masked
      assert masked == in_spans


def test_small_caps_truncate_without_corrupting_inputs():
  config = make_config(max_masked_words=3, max_masked_entities=1)
  table = word_starts(0.7)
  rng = np.random.default_rng(8)
  for seed in range(50):
    example = make_example(rng, 62, 12, 3)
    out = mask_example(example, config, table, np.random.default_rng(seed))
    assert out["mlm_weights"].sum() == 3 and out["mep_weights"].sum() == 1
    words = np.concatenate([[CLS], example["word_ids"], [SEP]])
    changed = np.flatnonzero(out["input_ids"][:words.size] != words)
    assert set(changed) <= set(out["mlm_positions"].tolist())
    assert (out["entity_ids"][:12] != example["entity_ids"]).sum() <= 1


def test_config_defaults_and_validation():
  config = MaskingConfig(cls_id=0, sep_id=2, pad_id=1, mask_id=50264, vocab_size=50265,
                         entity_mask_id=2, entity_vocab_size=500_000)
  assert (config.max_seq_length, config.max_entity_length, config.max_mention_length) == (
      512, 128, 30)
  assert config.max_masked_words == 80  # ceil(510 * 0.15) = 77 -> multiple of 8
  assert config.max_masked_entities == 24  # ceil(128 * 0.15) = 20 -> multiple of 8
  assert dataclasses.replace(config, mask_words_in_entity_span=True,
                             max_masked_words=None).max_masked_words == 512
  assert dataclasses.replace(config, max_masked_words=100).max_masked_words == 100
  with pytest.raises(ValueError, match="masked_lm_prob"):
    dataclasses.replace(config, masked_lm_prob=1.5)
  with pytest.raises(ValueError, match="exceeds 1"):
    dataclasses.replace(config, random_word_prob=0.6, unmasked_word_prob=0.6)
  with pytest.raises(ValueError, match="random entity ids"):
    dataclasses.replace(config, random_entity_prob=0.1, entity_vocab_size=3)
  with pytest.raises(TypeError):
    MaskingConfig(0, 2, 1, 50264, 50265, 2, 500_000)  # keyword-only


def test_rejects_examples_that_do_not_fit():
  config = make_config()
  table = word_starts(0.7)
  rng = np.random.default_rng(9)
  fine = make_example(rng, 62, 12, 5)
  cases = {
      "exceed max_seq_length": dict(fine, word_ids=np.ones(63, np.int32)),
      "exceed max_entity_length": dict(fine, entity_ids=np.ones(13, np.int32)),
      "max_mention_length": dict(fine, entity_position_ids=np.zeros((12, 6), np.int32)),
      "beyond its": dict(fine, word_ids=fine["word_ids"][:3]),
  }
  for message, example in cases.items():
    with pytest.raises(ValueError, match=message):
      mask_example(example, config, table, np.random.default_rng(0))
  flat = dict(fine, entity_position_ids=fine["entity_position_ids"].ravel())
  np.testing.assert_array_equal(
      mask_example(flat, config, table, np.random.default_rng(0))["input_ids"],
      mask_example(fine, config, table, np.random.default_rng(0))["input_ids"])


def test_word_start_table():
  bpe = word_start_table(["<s>", "\u0120the", "the", ",", "\u0120", "ing", "'s", None], "bpe")
  np.testing.assert_array_equal(bpe, [True, True, False, True, True, False, True, True])
  sp = word_start_table(["<unk>", "\u2581Tokyo", "kyo", "\u2581"], "sentencepiece")
  np.testing.assert_array_equal(sp, [False, True, False, True])
  wp = word_start_table(["[CLS]", "play", "##ing"], "wordpiece")
  np.testing.assert_array_equal(wp, [True, True, False])
  with pytest.raises(ValueError, match="scheme"):
    word_start_table(["a"], "unigram")


def test_fallback_is_always_mask_even_without_mask_replacements():
  config = make_config(random_word_prob=0.5, unmasked_word_prob=0.5)
  example = dict(word_ids=np.arange(10, 16, dtype=np.int32), entity_ids=np.zeros(0, np.int32),
                 entity_position_ids=np.zeros((0, 5), np.int32), page_id=np.int64(1))
  for seed in range(20):
    out = mask_example(example, config, np.zeros(VOCAB, bool), np.random.default_rng(seed))
    assert (out["input_ids"] == MASK).sum() == 1 and out["mlm_weights"].sum() == 1

"""The entity disambiguation model run over featurised documents: the jitted decoder and one
dataset's predictions and scores (shared by the evaluation CLI, the fine-tuning task's callers
and the entity-linking pipeline)."""

from __future__ import annotations

import functools
import time
from typing import Sequence

import numpy as np

from luke_jax.bucketing.compiled import CompiledForward
from luke_jax.bucketing.runner import BucketedRunner
from luke_jax.disambiguation import decode, features as features_lib, metric
from luke_jax.disambiguation.documents import Document
from luke_jax.models import sizes
from luke_jax.tokenization.tokenizer import LukeTokenizer

ARCHITECTURE = "LukeForEntityDisambiguation"
INPUT_KEYS = ("input_ids", "attention_mask", "entity_ids", "entity_attention_mask",
              "entity_position_ids", "entity_candidate_ids")


def evaluate_documents(module, params, tokenizer: LukeTokenizer, documents: Sequence[Document],
                       config: features_lib.FeatureConfig, *, inference_mode: str,
                       split_mode: str, batch_size: int, forward: CompiledForward | None = None
                       ) -> tuple[list[list[features_lib.Prediction]], dict[str, float]]:
  """Predictions and scores (`metric.scores` plus `seconds` and `mentions_per_second` of the
  model) of one dataset.

  Args:
    forward: a `CompiledForward` to reuse across datasets (its compiled programs are kept);
      None builds one.
  """
  rows = features_lib.featurize(documents, tokenizer, config, split_mode=split_mode)
  sizes.check_features(rows.arrays, module.config, "the featurized documents")
  if forward is None:
    forward = compiled_forward(module, params, tokenizer, inference_mode)
  start = time.perf_counter()
  outputs = BucketedRunner(forward, batch_size).outputs(
      {k: v for k, v in rows.arrays.items() if k in INPUT_KEYS})
  seconds = time.perf_counter() - start
  # No rows (no documents): nothing was run, every mention is unanswered.
  nothing = np.full(rows.arrays["entity_attention_mask"].shape, -1)
  predictions = rows.predictions(documents, outputs.get("choice", nothing),
                                 outputs.get("score", nothing))
  scores = metric.scores(documents, [[p.title for p in doc] for doc in predictions])
  scores.update(seconds=seconds, mentions_per_second=scores["mentions"] / max(seconds, 1e-9))
  return predictions, scores


def compiled_forward(module, params, tokenizer: LukeTokenizer, inference_mode: str
                     ) -> CompiledForward:
  """The jitted decoder (`decode.run`) of `module`, one program per padded shape."""
  apply = functools.partial(decode.run, inference_mode=inference_mode,
                            mask_id=tokenizer.entity_mask_token_id,
                            pad_id=tokenizer.entity_pad_token_id)
  return CompiledForward(module, params, INPUT_KEYS, lambda out: {"logits": out.logits},
                         apply=apply)

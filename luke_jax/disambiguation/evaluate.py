r"""Evaluates an entity disambiguation model on the official datasets (in-KB F1 per dataset).

  python -m luke_jax.disambiguation.evaluate --model=DIR_OR_HUB_ID --dataset_dir=$ED \
      --titles_file=$ED/enwiki_20181220_titles.txt \
      --redirects_file=$ED/enwiki_20181220_redirects.tsv \
      --inference_mode=global --document_split_mode=per_mention --output=results.json

As the reference's `evaluate.py` (github.com/studio-ousia/luke `examples/entity_disambiguation`;
its flags, with underscores, and defaults): the model is a `LukeForEntityDisambiguation`
checkpoint (the converted ED model, a fine-tuning run's `best/`) or any LukeForMaskedLM
checkpoint (zero-shot from pretraining), read with its tokenizer; `--test_set` takes a comma
list of test_a, test_b, ace2004, aquaint, msnbc, wikipedia, clueweb (and train). It prints F1,
precision and recall per dataset with the mentions per second of the model (compilation
included), and writes them as JSON with `--output`. "local" with "simple" splits is the fast
setting; "global" with "per_mention" the paper's. Rows go through a few padded shapes
(`luke_jax.bucketing`), `--batch_size` at a time.

`--documents=A.jsonl,B.jsonl` evaluates documents in the JSON lines format of
`luke_jax.disambiguation.documents` instead of the official sets (e.g. Wikipedia pages' own
links, `luke_jax.disambiguation.wiki_anchors`), each file a dataset.

`--write_candidates=FILE` instead writes the titles of every dataset's candidates (the first
`--max_candidate_length` per mention, after `--redirects_file`; only those in `--titles_file`
when given), one per line: the white list of the ED entity vocabulary (the reference's
`scripts/create_candidate_data.py`), no model needed.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags

from luke_jax import cli, hub_flags, pretrained
from luke_jax.disambiguation import dataset, decode, features as features_lib
from luke_jax.disambiguation import documents as documents_lib
from luke_jax.disambiguation.runner import ARCHITECTURE, compiled_forward, evaluate_documents
from luke_jax.tokenization.tokenizer import LukeTokenizer

DEFAULT_TEST_SETS = ("test_b", "ace2004", "aquaint", "msnbc", "wikipedia", "clueweb")

_MODEL = flags.DEFINE_string("model", None, "Checkpoint directory or Hub id (with its tokenizer).")
_DATASET_DIR = flags.DEFINE_string("dataset_dir", None, "The official ED dataset directory.")
_DOCUMENTS = flags.DEFINE_list("documents", [], "Instead of --dataset_dir: JSON lines document "
                               "files (luke_jax.disambiguation.documents), each a dataset named "
                               "by its file name.")
_TITLES = flags.DEFINE_string("titles_file", None, "Titles of the knowledge base; mentions whose "
                              "gold title is not there are dropped (optional).")
_REDIRECTS = flags.DEFINE_string("redirects_file", None, "`source<TAB>target` redirects applied "
                                 "to gold and candidate titles (optional).")
_TEST_SET = flags.DEFINE_list("test_set", list(DEFAULT_TEST_SETS), "Datasets to evaluate.")
_INFERENCE = flags.DEFINE_enum("inference_mode", "global", list(decode.INFERENCE_MODES),
                               "global: one mention resolved per pass, fed back; local: one pass.")
_SPLIT = flags.DEFINE_enum("document_split_mode", "simple", list(features_lib.SPLIT_MODES),
                           "How documents longer than max_seq_length are split.")
_MAX_SEQ = flags.DEFINE_integer("max_seq_length", 512, "Word pieces per row (at most the "
                                "model's own limit, which is used when smaller).")
_MAX_ENTITY = flags.DEFINE_integer("max_entity_length", 128, "Mentions per row.")
_MAX_MENTION = flags.DEFINE_integer("max_mention_length", 30, "Word pieces per mention.")
_MAX_CANDIDATE = flags.DEFINE_integer("max_candidate_length", 30, "Candidates per mention.")
_UNKNOWN = flags.DEFINE_enum("unknown_candidates", "unk", list(features_lib.UNKNOWN_CANDIDATES),
                             "A candidate outside the entity vocabulary: its [UNK] id (unk, as "
                             "the reference) or left out (drop).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Rows per forward pass.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the scores as JSON here.")
_WRITE_CANDIDATES = flags.DEFINE_string("write_candidates", None, "Only write the candidate "
                                        "titles of all datasets to this file (see above).")
_HUB = hub_flags.HubFlags("--model")
flags.adopt_module_key_flags(hub_flags)


def write_candidates(dataset_dir, path, *, max_candidate_length: int, titles_file=None,
                     redirects_file=None) -> int:
  """Writes the sorted candidate titles of every dataset; returns how many."""
  data = dataset.load_dataset(dataset_dir, dataset.NAMES, redirects_file=redirects_file)
  known = dataset.read_titles(titles_file) if titles_file else None
  titles = {c.title for documents in data.values() for doc in documents
            for m in doc.mentions for c in m.candidates[:max_candidate_length]}
  if known is not None:
    titles &= known
  Path(path).parent.mkdir(parents=True, exist_ok=True)
  Path(path).write_text("".join(t + "\n" for t in sorted(titles)), encoding="utf-8")
  return len(titles)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if bool(_DATASET_DIR.value) == bool(_DOCUMENTS.value):
    raise app.UsageError("give --dataset_dir (the official sets) or --documents (JSON lines "
                         "files), one of the two")
  for name in ("max_seq_length", "max_entity_length", "max_mention_length",
               "max_candidate_length", "batch_size"):
    if flags.FLAGS[name].value < 1:
      raise ValueError(f"--{name}={flags.FLAGS[name].value} must be at least 1")
  if _WRITE_CANDIDATES.value and not _DATASET_DIR.value:
    raise app.UsageError("--write_candidates reads the official sets: give --dataset_dir")
  if _WRITE_CANDIDATES.value:
    count = write_candidates(_DATASET_DIR.value, _WRITE_CANDIDATES.value,
                             max_candidate_length=_MAX_CANDIDATE.value,
                             titles_file=_TITLES.value, redirects_file=_REDIRECTS.value)
    print(f"wrote {count} candidate titles to {_WRITE_CANDIDATES.value}")
    return
  if not _MODEL.value:
    raise app.UsageError("--model is required (or --write_candidates)")
  if _DOCUMENTS.value:
    data = {Path(path).name: documents_lib.read_jsonl(path) for path in _DOCUMENTS.value}
  else:
    data = dataset.load_dataset(_DATASET_DIR.value, _TEST_SET.value,
                                titles_file=_TITLES.value, redirects_file=_REDIRECTS.value)
  model_dir = _HUB.resolve(_MODEL.value)
  module, params = pretrained.from_pretrained(model_dir, architecture=ARCHITECTURE)
  tokenizer = LukeTokenizer.from_pretrained(model_dir)
  config = features_lib.FeatureConfig(
      max_seq_length=min(_MAX_SEQ.value, module.config.max_seq_length),
      max_entity_length=_MAX_ENTITY.value, max_mention_length=_MAX_MENTION.value,
      max_candidate_length=_MAX_CANDIDATE.value, unknown_candidates=_UNKNOWN.value)
  forward = compiled_forward(module, params, tokenizer, _INFERENCE.value)
  results = {}
  for name in data:
    _, scores = evaluate_documents(module, params, tokenizer, data[name], config,
                                   inference_mode=_INFERENCE.value, split_mode=_SPLIT.value,
                                   batch_size=_BATCH_SIZE.value, forward=forward)
    results[name] = scores
    print(f"========== Dataset: {name} ==========")
    print(f"F1: {scores['f1']:.3f}  Precision: {scores['precision']:.3f}  "
          f"Recall: {scores['recall']:.3f}  ({int(scores['mentions'])} mentions, "
          f"{scores['mentions_per_second']:.1f} mentions/s)", flush=True)
  if _OUTPUT.value:
    payload = {"model": str(_MODEL.value), "inference_mode": _INFERENCE.value,
               "document_split_mode": _SPLIT.value, "max_seq_length": config.max_seq_length,
               "max_entity_length": config.max_entity_length,
               "max_mention_length": config.max_mention_length,
               "max_candidate_length": config.max_candidate_length, "datasets": results}
    Path(_OUTPUT.value).parent.mkdir(parents=True, exist_ok=True)
    Path(_OUTPUT.value).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"scores: {_OUTPUT.value}")


if __name__ == "__main__":
  cli.run(main)

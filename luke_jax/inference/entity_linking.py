"""`luke_jax.pipeline("entity-linking")`: raw text -> Wikipedia titles with character offsets.

Three steps, each the project's own code for it:

1. mentions: names of a mention dictionary found in the text (`MentionDB.detect`: longest
   first, never overlapping, optionally only names linked often enough, `min_link_prob`), or
   the spans of a NER model (`ner=`) looked up in the dictionary for their candidates. A
   mention is kept when it starts and ends on word boundaries (`luke_jax.tokenization.words`,
   so "covid" inside "COVID-19" is not one) and has a candidate in the model's entity
   vocabulary;
2. disambiguation: the text's words and mentions become a document featurised as in entity
   disambiguation (`luke_jax.disambiguation.features`, candidates in prior order, at most
   `max_candidates`), and the masked-entity head picks one candidate per mention, "global"ly
   (most confident mention first, its entity fed back as input: Yamada et al., NAACL 2022) or
   "local"ly (one pass);
3. output: per text a list of `{"start", "end", "text", "title", "score"}` sorted by `start`,
   `text == input[start:end]`, `score` the chosen candidate's probability among the mention's
   candidates.

Any checkpoint with an entity vocabulary and a masked-entity head works: the official ED model
(converted), a `LukeForEntityDisambiguation` fine-tuned here, or a `LukeForMaskedLM` (a
pretraining run's `model/`, a LUKE release); only an ED-trained model gives the paper's quality.
`entity_embeddings(titles)` and `nearest_entities(query)` read the same model's entity table.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from luke_jax import checkpoint, hub, pretrained
from luke_jax.bucketing import buckets as buckets_lib
from luke_jax.bucketing import compilation_cache
from luke_jax.bucketing.runner import BucketedRunner
from luke_jax.data.mention_db import MentionDB
from luke_jax.disambiguation import decode
from luke_jax.disambiguation import features as features_lib
from luke_jax.disambiguation import runner as ed_runner
from luke_jax.disambiguation.documents import Candidate, Document, Mention
from luke_jax.models import sizes
from luke_jax.inference import base
from luke_jax.inference.entity_similarity import EntityIndex, entity_table
from luke_jax.tokenization.tokenizer import LukeTokenizer
from luke_jax.tokenization.words import split_words

ARCHITECTURE = "LukeForEntityDisambiguation"
# Checkpoints whose parameters hold the masked-entity head the linker scores with.
WITH_ENTITY_HEAD = (ARCHITECTURE, "LukeForMaskedLM")
Link = dict[str, Any]  # {"start", "end", "text", "title", "score"}


class EntityLinkingPipeline:
  """Entity linking with a masked-entity head and a mention dictionary.

  Args:
    module, params: a `LukeForEntityDisambiguation` (`luke_jax.from_pretrained(...,
      architecture="LukeForEntityDisambiguation")`).
    tokenizer: the model's tokenizer (its entity vocabulary indexes the entity table).
    mention_db: a `MentionDB` or the directory of one (`python -m
      luke_jax.data.build_mention_db`).
    ner: None (mentions from the dictionary), or a NER pipeline (`luke_jax.pipeline("ner",
      ...)`) or the id/directory of a NER model, whose spans are the mentions.
    inference_mode: "global" (default, the paper's best) or "local" (one pass, faster).
    document_split_mode: how a text longer than `max_seq_length` pieces is cut: "simple"
      (default) or "per_mention" (one window per mention, centred on it; slower).
    min_link_prob: dictionary names linked less often than this where they occur are not
      mentions (default: every name of the dictionary; needs a dictionary built with
      `--min_link_prob` > 0 to have link probabilities).
    max_candidates, max_seq_length, max_entity_length, max_mention_length: row sizes (the
      reference's 30, 512 (or the model's limit), 128, 30).
    batch_size, buckets, entity_buckets: as `luke_jax.inference.base.Pipeline`.
    source: the model's name, for messages.
  """

  name = "entity-linking"

  def __init__(self, module, params, tokenizer: LukeTokenizer, *,
               mention_db: MentionDB | str | os.PathLike, ner=None,
               inference_mode: str = "global", document_split_mode: str = "simple",
               min_link_prob: float | None = None, max_candidates: int = 30,
               max_seq_length: int | None = None, max_entity_length: int = 128,
               max_mention_length: int = 30, batch_size: int = base.DEFAULT_BATCH_SIZE,
               buckets: Sequence[int] = buckets_lib.WORD_BUCKETS,
               entity_buckets: Sequence[int] = buckets_lib.ENTITY_BUCKETS, source: str = ""):
    if type(module).__name__ != ARCHITECTURE:
      raise ValueError(f"{source or 'the model'} is a {type(module).__name__}; entity linking "
                       f"needs a {ARCHITECTURE} (from_pretrained(..., architecture="
                       f"{ARCHITECTURE!r}) loads one from any checkpoint with a masked-entity "
                       "head)")
    if inference_mode not in decode.INFERENCE_MODES:
      raise ValueError(f"inference_mode={inference_mode!r}; use one of "
                       f"{decode.INFERENCE_MODES}")
    if document_split_mode not in features_lib.SPLIT_MODES:
      raise ValueError(f"document_split_mode={document_split_mode!r}; use one of "
                       f"{features_lib.SPLIT_MODES}")
    self.module, self.params, self.tokenizer = module, params, tokenizer
    self.source = source or "the model"
    self.mention_db = (mention_db if isinstance(mention_db, MentionDB)
                       else MentionDB.load(mention_db))
    self.ner = ner
    self.inference_mode, self.split_mode = inference_mode, document_split_mode
    self.min_link_prob = min_link_prob
    limit = module.config.max_seq_length
    max_seq_length = min(max(buckets, default=limit), limit) if max_seq_length is None else (
        max_seq_length)
    if not 3 <= max_seq_length <= limit:
      raise ValueError(f"max_seq_length={max_seq_length}: the model of {self.source} holds 3 "
                       f"to {limit} word pieces per row")
    self.feature_config = features_lib.FeatureConfig(
        max_seq_length=int(max_seq_length), max_entity_length=max_entity_length,
        max_mention_length=max_mention_length, max_candidate_length=max_candidates,
        unknown_candidates="drop")  # a title outside the entity table cannot be scored
    self.forward = ed_runner.compiled_forward(module, params, tokenizer, inference_mode)
    self.runner = BucketedRunner(self.forward, batch_size, buckets, entity_buckets)
    self._index: EntityIndex | None = None

  @classmethod
  def from_pretrained(cls, model: str | os.PathLike, *, mention_db, ner=None,
                      dtype: str | None = None,
                      compilation_cache_dir: str | os.PathLike | None = None,
                      **options) -> "EntityLinkingPipeline":
    """Loads `model` (a directory or a Hub id) as a `LukeForEntityDisambiguation`;
    `revision`, `cache_dir`, `local_files_only`, `token` go to the loaders (and to `ner` when
    it is a name), the other options to the constructor."""
    compilation_cache.enable(compilation_cache_dir)
    hub_options = {k: options.pop(k) for k in base.HUB_OPTIONS if options.get(k) is not None}
    for k in base.HUB_OPTIONS:
      options.pop(k, None)
    directory = hub.resolve(model, **hub_options)
    _, stored, _ = checkpoint.read_config(directory)
    if stored not in WITH_ENTITY_HEAD:
      raise ValueError(f"{model}: holds a {stored}, without the masked-entity head entity "
                       f"linking scores with; use a checkpoint of {' or '.join(WITH_ENTITY_HEAD)}"
                       " (the official ED model, a pretraining run's model/, a LUKE release)")
    module, params = pretrained.from_pretrained(directory, dtype=dtype,
                                                architecture=ARCHITECTURE)
    tokenizer = LukeTokenizer.from_pretrained(directory)
    if isinstance(ner, (str, os.PathLike)):
      from luke_jax.inference.factory import pipeline  # pylint: disable=g-import-not-at-top
      ner = pipeline("ner", ner, dtype=dtype, **hub_options)
    return cls(module, params, tokenizer, mention_db=mention_db, ner=ner, source=str(model),
               **options)

  # ---- linking ---------------------------------------------------------------------------
  def __call__(self, texts: str | Sequence[str]) -> list[Link] | list[list[Link]]:
    """Links in one text (a list of dicts) or in each of a list of texts (a list of lists)."""
    batch, single = base.as_batch(texts)
    found = [self._found(text) for text in batch]
    documents = [Document(str(i), [w.text for w in words], [m for _, m in spans])
                 for i, (words, spans) in enumerate(found)]
    results = self._link(documents, batch, [[c for c, _ in spans] for _, spans in found])
    return results[0] if single else results

  def mentions(self, text: str) -> list[tuple[int, int, list[Candidate]]]:
    """The mentions of `text` the linker would disambiguate: `(start, end, candidates)`."""
    return [(start, end, m.candidates) for (start, end), m in self._found(text)[1]]

  def _found(self, text: str):
    """The text's words, and per kept mention its character span and `Mention` (word span,
    candidates in the entity vocabulary, most probable first)."""
    words = split_words(text)
    starts = {w.start: i for i, w in enumerate(words)}
    ends = {w.end: i for i, w in enumerate(words)}
    if self.ner is None:
      spans = [(m.start, m.end) for m in self.mention_db.detect(text, self.min_link_prob)]
    else:
      spans = [(e["start"], e["end"]) for e in self.ner(text)]
    found = []
    for start, end in spans:
      if start in starts and end in ends:
        candidates = [Candidate(c.title, c.prior_prob)
                      for c in self.mention_db.query(text[start:end])
                      if self.tokenizer.entity_vocab.contains(c.title)]
        if candidates:
          found.append(((start, end), Mention(
              text[start:end], None, starts[start], ends[end] + 1,
              candidates[:self.feature_config.max_candidate_length])))
    return words, found

  def _link(self, documents: list[Document], texts: list[str],
            spans: list[list[tuple[int, int]]]) -> list[list[Link]]:
    if not any(d.mentions for d in documents):
      return [[] for _ in documents]
    rows = features_lib.featurize(documents, self.tokenizer, self.feature_config,
                                  split_mode=self.split_mode)
    sizes.check_features(rows.arrays, self.module.config, f"{self.name} pipeline input")
    outputs = self.runner.outputs({k: v for k, v in rows.arrays.items()
                                   if k in ed_runner.INPUT_KEYS})
    predictions = rows.predictions(documents, outputs["choice"], outputs["score"])
    return [[{"start": start, "end": end, "text": text[start:end], "title": answer.title,
              "score": float(answer.score)}
             for (start, end), answer in zip(text_spans, answers) if answer.title is not None]
            for text, text_spans, answers in zip(texts, spans, predictions)]

  @property
  def compilations(self) -> int:
    """Programs compiled so far: at most one per (word bucket, entity bucket) used."""
    return self.forward.compilations

  # ---- entity similarity -----------------------------------------------------------------
  @property
  def entity_index(self) -> EntityIndex:
    if self._index is None:
      self._index = EntityIndex(entity_table(self.params), self.tokenizer.entity_vocab,
                                self.source)
    return self._index

  def entity_embeddings(self, titles: Sequence[str]):
    """`[len(titles), entity_emb_size]` float32 rows of the model's entity table."""
    return self.entity_index.embeddings(titles)

  def nearest_entities(self, query, k: int = 10) -> list[tuple[str, float]]:
    """The `k` entities nearest (cosine) to a title or vector, best first."""
    return self.entity_index.nearest(query, k)

  def __repr__(self) -> str:
    return (f"{type(self).__name__}(model={self.source!r}, mention_db="
            f"{str(self.mention_db.path)!r}, inference_mode={self.inference_mode!r}, "
            f"entities={len(self.tokenizer.entity_vocab)})")

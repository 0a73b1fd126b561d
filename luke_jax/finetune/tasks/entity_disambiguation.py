"""Entity disambiguation fine-tuned on AIDA-CoNLL (the global ED model's recipe).

"Global Entity Disambiguation with BERT" (Yamada et al., NAACL 2022, arXiv:1909.00426; code:
github.com/studio-ousia/luke `examples/entity_disambiguation/train.py`). Every mention of a
document window is an entity slot scored against its candidates by the entity-prediction head
(`LukeForEntityDisambiguation`), which starts from the checkpoint's (pretrained masked entity
prediction). Each training step masks a random 90% of each row's mentions (at least one) and
the loss is the cross entropy over the candidates of the masked ones; the other mentions keep
their gold entity as input. Evaluation starts from every mention masked and decodes locally or
globally (`luke_jax.disambiguation.decode`); the metric is in-KB F1
(`luke_jax.disambiguation.metric`).

Files: `config.data.{train,dev,test}_file` are mention files of the official dataset directory
(`aida_train.csv`, `aida_testA.csv`, `aida_testB.csv`, `wned-*.csv`); the word file and
`persons.txt` are read from the same directory (`luke_jax.disambiguation.dataset`); a `.jsonl`
file holds documents in `luke_jax.disambiguation.documents`' JSON lines format instead (e.g.
Wikipedia's own links, `luke_jax.disambiguation.wiki_anchors`).
`config.data.titles_file` / `redirects_file` are the dataset's title and redirect lists.
Predictions are JSON lines, one per mention.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from luke_jax.disambiguation import dataset, decode, features as features_lib, metric
from luke_jax.disambiguation import documents as documents_lib
from luke_jax.disambiguation.documents import Document
from luke_jax.finetune.task import Features, Task
from luke_jax.models import losses

class EntityDisambiguationTask(Task):
  """Candidate scoring per mention (softmax over the candidates).

  Config (`config.data`): `titles_file`, `redirects_file` (may be empty), `max_seq_length`,
  `max_entity_length`, `max_mention_length`, `max_candidate_length`, `masked_entity_prob`,
  `inference_mode` ("global" | "local"), `document_split_mode` ("simple" | "per_mention", for
  dev and test; training always splits "simple", as the reference), `unknown_candidates`
  ("unk" | "drop", see `luke_jax.disambiguation.features.FeatureConfig`).
  """

  name = "entity_disambiguation"
  architecture = "LukeForEntityDisambiguation"
  input_keys = ("input_ids", "attention_mask", "entity_ids", "entity_attention_mask",
                "entity_position_ids", "entity_candidate_ids")
  target_keys = ("labels",)
  metric = "f1"
  prediction_suffix = ".jsonl"
  has_labels = False
  pretrained_head = True

  def __init__(self, data_config, tokenizer):
    super().__init__(data_config, tokenizer)
    mode = data_config.get("inference_mode", "global")
    if mode not in decode.INFERENCE_MODES:
      raise ValueError(f"config.data.inference_mode={mode!r} not in {decode.INFERENCE_MODES}")
    split = data_config.get("document_split_mode", "simple")
    if split not in features_lib.SPLIT_MODES:
      raise ValueError(f"config.data.document_split_mode={split!r} not in "
                       f"{features_lib.SPLIT_MODES}")
    prob = float(data_config.get("masked_entity_prob", 0.9))
    if not 0.0 <= prob <= 1.0:
      raise ValueError(f"config.data.masked_entity_prob={prob} must be in [0, 1]")
    self.inference_mode, self.split_mode, self.masked_entity_prob = mode, split, prob
    self.feature_config = features_lib.FeatureConfig(
        max_seq_length=int(data_config.max_seq_length),
        max_entity_length=int(data_config.max_entity_length),
        max_mention_length=int(data_config.max_mention_length),
        max_candidate_length=int(data_config.get("max_candidate_length", 30)),
        unknown_candidates=data_config.get("unknown_candidates", "unk"))
    self._side_files = None

  # ---- data -------------------------------------------------------------------------------
  def _titles_and_redirects(self):
    if self._side_files is None:
      titles_file = self.config.get("titles_file") or None
      redirects_file = self.config.get("redirects_file") or None
      for name, path in (("titles_file", titles_file), ("redirects_file", redirects_file)):
        if path is not None and not Path(path).is_file():
          raise FileNotFoundError(f"config.data.{name}={path}: no such file")
      self._side_files = (dataset.read_titles(titles_file) if titles_file else None,
                          dataset.read_redirects(redirects_file) if redirects_file else {})
    return self._side_files

  def read(self, path: str | os.PathLike, split: str) -> list[Document]:
    path = Path(path)
    if path.suffix == ".jsonl":  # our own document format (e.g. Wikipedia's links)
      return documents_lib.read_jsonl(path)
    conll = dataset.conll_file_for(path)
    persons = path.with_name(dataset.PERSONS_FILE)
    for needed in (conll, persons):
      if not needed.is_file():
        raise FileNotFoundError(f"{needed}: no such file (read with {path})")
    titles, redirects = self._titles_and_redirects()
    return dataset.load_documents(path, conll, persons=dataset.read_persons(persons),
                                  titles=titles, redirects=redirects)

  def featurize(self, examples: Sequence[Document], labels: Sequence[str],
                split: str) -> Features:
    del labels
    training = split == "train"
    rows = features_lib.featurize(examples, self.tokenizer, self.feature_config,
                                  split_mode="simple" if training else self.split_mode,
                                  training=training)
    return Features(rows.arrays, rows.document_index, list(zip(rows.slots, rows.titles)))

  # ---- model ------------------------------------------------------------------------------
  def train_inputs(self, batch: Mapping[str, jax.Array], rng: jax.Array
                   ) -> Mapping[str, jax.Array]:
    """Masks `max(1, round(n * masked_entity_prob))` of each row's n mentions at random
    (the reference's count, Python's rounding); only those are scored."""
    mention = batch["entity_attention_mask"] > 0  # [B, E]
    entities = mention.shape[1]
    # The count per number of mentions, exact as the reference computes it (in float64).
    table = jnp.asarray([max(1, round(n * self.masked_entity_prob))
                         for n in range(entities + 1)], jnp.int32)
    count = table[jnp.sum(mention, axis=1)]
    noise = jnp.where(mention, jax.random.uniform(rng, mention.shape), 2.0)
    rank = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)  # a random order of the mentions
    masked = mention & (rank < count[:, None])
    return {**batch,
            "entity_ids": jnp.where(masked, self.tokenizer.entity_mask_token_id,
                                    batch["entity_ids"]),
            "labels": jnp.where(masked, batch["labels"], -1)}

  def loss(self, outputs, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Summed cross entropy over the candidates of the scored mentions, and their count (the
    reference's mean over the batch's masked mentions)."""
    labels = batch["labels"]  # [B, E] candidate index, -1 = not scored
    return losses.softmax_cross_entropy_sums(outputs.logits, labels, labels >= 0)

  def outputs(self, outputs) -> dict[str, jax.Array]:
    return {"logits": jnp.asarray(outputs.logits, jnp.float32)}

  def eval_outputs(self, model, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """`choice` / `score` per entity slot, every mention starting as `[MASK]`."""
    return decode.run(model, batch, inference_mode=self.inference_mode,
                      mask_id=self.tokenizer.entity_mask_token_id,
                      pad_id=self.tokenizer.entity_pad_token_id)

  # ---- predictions and metrics ------------------------------------------------------------
  def decode(self, examples: Sequence[Document], features: Features,
             outputs: Mapping[str, np.ndarray], labels: Sequence[str]
             ) -> list[list[features_lib.Prediction]]:
    del labels
    slots = [slot for slot, _ in features.meta]
    titles = [title for _, title in features.meta]
    return features_lib.predictions(examples, slots, titles,
                                    features.arrays["eval_entity_mask"], outputs["choice"],
                                    outputs["score"])

  def evaluate(self, examples: Sequence[Document],
               predictions: Sequence[Sequence[features_lib.Prediction]]) -> dict[str, float]:
    return metric.scores(examples, [[p.title for p in doc] for doc in predictions])

  def write_predictions(self, path: Path, examples: Sequence[Document],
                        predictions: Sequence[Sequence[features_lib.Prediction]]) -> Path:
    """JSON lines `{"document", "mention", "start", "end", "gold", "prediction", "score"}`
    (word indices, `end` exclusive), one per mention in input order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      for doc, predicted in zip(examples, predictions):
        for mention, p in zip(doc.mentions, predicted):
          f.write(json.dumps({"document": doc.id, "mention": mention.text,
                              "start": mention.start, "end": mention.end, "gold": mention.title,
                              "prediction": p.title, "score": p.score},
                             ensure_ascii=False) + "\n")
    return path

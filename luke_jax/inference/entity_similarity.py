"""Entity similarity from a model's entity table: embeddings by title and nearest entities.

LUKE learns one vector per Wikipedia entity (the `entity_embeddings` table the masked-entity
head is tied to), so titles close in that space are entities the model treats alike: the
"which entities are similar to X" use users ask for. Similarity is the cosine of the rows as
stored (entity_emb_size wide, before the projection to the hidden size); the special rows
([PAD], [UNK], [MASK], [MASK2]) are never returned.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from luke_jax.tokenization.entity_vocab import EntityVocab

_SPECIALS = ("[PAD]", "[UNK]", "[MASK]", "[MASK2]")


def entity_table(params) -> np.ndarray:
  """The `[entity_vocab_size, entity_emb_size]` table of a LUKE parameter tree (any head)."""
  tree = params.get("luke", params)
  try:
    return np.asarray(tree["entity_embeddings"]["entity_embeddings"]["embedding"], np.float32)
  except KeyError:
    raise ValueError("the parameters hold no entity embedding table "
                     "(luke/entity_embeddings/entity_embeddings)") from None


class EntityIndex:
  """Titles -> vectors and vector -> nearest titles over one entity table.

  Args:
    table: `[V, D]` entity embeddings (`entity_table(params)`).
    vocab: the model's entity vocabulary (ids index `table`).
    source: the model's name, for messages.
  """

  def __init__(self, table: np.ndarray, vocab: EntityVocab, source: str = "the model"):
    if table.ndim != 2 or table.shape[0] < len(vocab):
      raise ValueError(f"{source}: entity table of shape {table.shape} does not hold the "
                       f"{len(vocab)} entries of its entity vocabulary")
    self.table, self.vocab, self.source = table, vocab, source
    norms = np.linalg.norm(table, axis=1, keepdims=True)
    self._unit = table / np.maximum(norms, 1e-12)
    self._special = np.zeros(table.shape[0], bool)
    for name in _SPECIALS:
      if name in vocab:
        self._special[vocab.lookup(name)] = True

  def ids(self, titles: Sequence[str]) -> np.ndarray:
    """Entity ids of `titles`; an unknown title is a `KeyError` naming it."""
    if isinstance(titles, str):
      raise TypeError("titles is a list of str; wrap one title in a list")
    out = []
    for title in titles:
      if not isinstance(title, str) or not self.vocab.contains(title) or title in _SPECIALS:
        raise KeyError(f"{title!r} is not in the entity vocabulary of {self.source} "
                       f"({len(self.vocab)} entries; titles are case-sensitive Wikipedia "
                       "titles, e.g. 'Tokyo', or 'en:Tokyo' in a multilingual vocabulary)")
      out.append(self.vocab.get_id(title))
    return np.asarray(out, np.int64)

  def embeddings(self, titles: Sequence[str]) -> np.ndarray:
    """`[len(titles), entity_emb_size]` float32: the table's row of each title."""
    return self.table[self.ids(titles)]

  def nearest(self, query: str | np.ndarray, k: int = 10) -> list[tuple[str, float]]:
    """The `k` entities most similar (cosine) to `query`, a title or a vector of the table's
    width, best first, as `(title, similarity)`; a title never returns itself."""
    if k < 1:
      raise ValueError(f"k={k}: ask for at least one entity")
    exclude = self._special.copy()
    if isinstance(query, str):
      idx = int(self.ids([query])[0])
      vector = self._unit[idx]
      exclude[idx] = True
    else:
      vector = np.asarray(query, np.float32)
      if vector.shape != (self.table.shape[1],):
        raise ValueError(f"query vector of shape {vector.shape}; the entity table of "
                         f"{self.source} is {self.table.shape[1]} wide")
      vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    scores = self._unit @ vector
    scores[exclude] = -np.inf
    scores[len(self.vocab):] = -np.inf  # rows past the vocabulary (padded tables) name nothing
    k = min(k, int(np.isfinite(scores).sum()))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    # The first entity of a row (a multilingual row holds one per language: "en:Tokyo").
    return [(self.vocab.get_entities(int(i))[0].key, float(scores[i])) for i in top]

"""Wikipedia dump -> entity vocabulary -> pretraining examples -> masked batches.

Modules: `wikipedia` (dump reader), `entity_vocab_builder` and `multilingual` (vocabularies),
`examples` (pages -> examples), `dataset` (ArrayRecord storage), `masking` and `pipeline`
(deterministic masked batches), `mention_db` and `mention_db_builder` (the mention dictionary
of entity disambiguation and linking). Command-line tools: `build_entity_vocab`,
`train_sentencepiece`, `build_pretraining_dataset`, `build_mention_db`.
"""


def read_pretraining_examples(dataset_dir):
  """Yields the examples of a dataset directory as dicts of numpy arrays: `word_ids`,
  `entity_ids`, `entity_position_ids` (-1 padded) and `page_id`."""
  # Imported here so `import luke_jax.data` stays light (tensorflow-datasets takes a second).
  from luke_jax.data.dataset import read_pretraining_examples as read  # pylint: disable=g-import-not-at-top
  return read(dataset_dir)

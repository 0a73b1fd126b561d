"""Model outputs for many rows of features through a few padded shapes, each compiled once.

`buckets` (the padded shapes), `compiled` (the jitted forward and its compilation count),
`runner` (feature rows through it in bucketed batches), `compilation_cache` (JAX's persistent
cache). Used by the raw-text pipelines (`luke_jax.inference`) and by fine-tuning's prediction
(`luke_jax.finetune.trainer.predict`); it needs nothing of luke-jax above the models.
"""

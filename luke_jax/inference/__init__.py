"""Inference on raw text: `luke_jax.pipeline(task, model=...)` (see `factory`).

Modules, one concern each: `words` (splitting text into words with character offsets),
`buckets` (the padded shapes), `compiled` (the jitted forward and its compilation count),
`runner` (feature rows through it in bucketed batches), `compilation_cache` (JAX's persistent
cache), `base` (what every task pipeline shares), `ner`, `entity_typing`, `relation` (one per
task), `factory` (the registry and `pipeline`).
"""

"""Inference on raw text: `luke_jax.pipeline(task, model=...)` (see `factory`).

Modules, one concern each: `words` (splitting text into words with character offsets), `base`
(what every task pipeline shares), `ner`, `entity_typing`, `relation` (one per task), `files`
(the CLI's JSON lines), `factory` (the registry and `pipeline`). Batching in padded buckets,
the jitted forward and the persistent compilation cache are `luke_jax.bucketing`'s.
"""

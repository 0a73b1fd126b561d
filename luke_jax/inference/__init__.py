"""Inference on raw text: `luke_jax.pipeline(task, model=...)` (see `factory`).

Modules, one concern each: `base` (what every task pipeline shares), `ner`, `entity_typing`,
`relation`, `entity_linking` (one per task), `entity_similarity` (titles -> vectors -> nearest
titles over a model's entity table), `files` (the CLI's JSON lines), `factory` (the registry
and `pipeline`). Words with character offsets come from `luke_jax.tokenization.words`; batching
in padded buckets, the jitted forward and the persistent compilation cache are
`luke_jax.bucketing`'s.
"""

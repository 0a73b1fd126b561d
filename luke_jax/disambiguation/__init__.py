"""Entity disambiguation: documents with candidate entities -> the entity each mention names.

The method of "Global Entity Disambiguation with BERT" (Yamada et al., NAACL 2022,
arXiv:1909.00426; code: github.com/studio-ousia/luke `examples/entity_disambiguation/`): every
mention is an entity slot whose input is `[MASK]`; the entity head scores the mention's
candidates. Local inference resolves every mention in one pass; global inference resolves the
most confident mention, feeds its entity back as input, and repeats.

`documents` (the data model), `dataset` (the official ED datasets), `features` (documents ->
fixed-shape rows), `decode` (local and global inference, jit-able), `metric` (in-KB
precision / recall / F1), `evaluate` (the command line). Fine-tuning is the task
`luke_jax.finetune.tasks.entity_disambiguation`.
"""

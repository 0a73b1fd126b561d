"""LUKE pretraining: the masked-only pretraining model, chunked losses, optimiser and trainer.

* `model.LukePretrainingModel`: `LukeForMaskedLM`'s parameter tree, but heads applied only at
  the gathered masked positions and the entity softmax computed in vocabulary chunks.
* `losses.chunked_softmax_cross_entropy`: tied-decoder cross entropy that never materialises
  `[positions, vocabulary]` logits.
* `optim`: the reference AdamW (no bias correction, decoupled weight decay), warmup/decay
  schedule, weight-decay and trainable masks (two-stage pretraining).
"""

"""LUKE pretraining: what only pretraining has, on top of the shared core `luke_jax.training`.

* `model.LukePretrainingModel`: `LukeForMaskedLM`'s parameter tree, heads applied only at the
  gathered masked positions, the entity softmax computed in vocabulary chunks;
  `model.PretrainingObjective`: the masked LM + masked entity prediction loss.
* `train.train_and_evaluate`: the run (dataset, vocabularies, two-stage recipe, `model/`).
"""

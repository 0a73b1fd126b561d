"""The training core every run drives, pretraining and fine-tuning alike.

* `config`: the shared configuration schema (model, mesh, sharding, optim, train).
* `state`: `TrainState`, its shardings, sharded initialisation.
* `optim`: the LUKE AdamW, warmup/decay schedule, weight-decay and trainable masks.
* `steps`: the jitted train step (an `Objective`, gradient accumulation, the update).
* `batches`: which rows each host reads, and global batches from them.
* `loop`: the step loop; `checkpointing` (Orbax), `preemption` (SIGTERM, multi-host),
  `metrics` (console, TensorBoard, throughput, MFU).
"""

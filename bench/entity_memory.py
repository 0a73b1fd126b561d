"""Memory of the pretraining step against the entity vocabulary size (compiled, never run).

Masked entity prediction scores every masked entity against the whole entity table. Done
naively, the `[masked entities, entity vocabulary]` float32 logits (and their gradient) are the
largest activation of the step and grow with the vocabulary; LUKE-JAX computes that softmax in
vocabulary chunks (`luke_jax.models.losses`), so the step's activation memory should not
depend on the vocabulary, and a 10M-entity table should cost only table-sized buffers: the
parameter and Adam's two moments (arguments) and one gradient (temporaries), whatever the number
of masked entities N. With `--grad_accum` > 1 the step also holds the gradient accumulator: two
tables of temporaries.

For each vocabulary size this compiles the real pretraining train step
(`luke_jax.training.steps.train_step`: forward, backward, AdamW update, state donated) for
`jax.ShapeDtypeStruct` inputs, so nothing is allocated, and reads XLA's
`compiled.memory_analysis()`:

  arguments   the train state (params, Adam moments) and the batch
  temp        XLA's temporaries: activations, gradients, workspace
  peak        arguments + outputs - aliased (donated) + temp

`table` is one entity-table-sized float32 buffer (V x entity_emb_size x 4 bytes); `logits` is
what the naive `[N, V]` float32 logits would take. With `--full`, each size is compiled again
with a single chunk spanning the whole vocabulary (the naive loss) for contrast.

  python bench/entity_memory.py [--vocabs 500000,10000000] [--full] [--hidden 128 ...]
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from luke_jax.models.config import preset  # noqa: E402
from luke_jax.models import registry  # noqa: E402
from luke_jax.pretraining import model as model_lib  # noqa: E402
from luke_jax.training import optim, state as state_lib, steps  # noqa: E402


class _EntityChunks:
  """The pretraining model with another entity softmax chunk size (the naive loss: V)."""

  def __init__(self, model, chunk: int):
    self.model, self.chunk = model, chunk

  def apply(self, variables, batch, **kwargs):
    return self.model.apply(variables, batch, entity_chunk_size=self.chunk, **kwargs)


def abstract_batch(batch_size: int, seq: int, entities: int, mention: int, masked_words: int,
                   masked_entities: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of a `luke_jax.data.masking` batch (every field int32)."""
  shapes = dict(input_ids=(seq,), attention_mask=(seq,), entity_ids=(entities,),
                entity_attention_mask=(entities,), entity_position_ids=(entities, mention),
                mlm_positions=(masked_words,), mlm_labels=(masked_words,),
                mlm_weights=(masked_words,), mep_positions=(masked_entities,),
                mep_labels=(masked_entities,), mep_weights=(masked_entities,))
  return {k: jax.ShapeDtypeStruct((batch_size,) + s, jnp.int32) for k, s in shapes.items()}


def step_memory(config, batch: dict, *, entity_chunk_size: int | None = None,
                stage: int = 2, grad_accum_steps: int = 1) -> dict[str, int]:
  """XLA's memory analysis of the compiled train step; bytes by kind.

  Args:
    config: the model (`LukeConfig`).
    batch: `jax.ShapeDtypeStruct`s from `abstract_batch`.
    entity_chunk_size: entity softmax chunk (None: the model's default).
    stage: 1 trains only the entity parameters (no moments for the rest), 2 everything.
    grad_accum_steps: microbatches per step (divides the batch size).

  Returns:
    `arguments`, `outputs`, `aliased`, `temp` and `peak` bytes.
  """
  model = model_lib.LukePretrainingModel(config)
  params = registry.abstract_params("LukeForMaskedLM", config)
  tx = optim.make_optimizer(dict(
      learning_rate=1e-4, warmup_steps=10, total_steps=100, max_grad_norm=1.0,
      trainable=optim.STAGE1_TRAINABLE if stage == 1 else optim.ALL_TRAINABLE), params)
  state = state_lib.TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                               opt_state=jax.eval_shape(tx.init, params),
                               rng=jax.eval_shape(jax.random.PRNGKey, 0))
  applied = model if entity_chunk_size is None else _EntityChunks(model, entity_chunk_size)
  step = functools.partial(steps.train_step, objective=model_lib.PretrainingObjective(applied),
                           tx=tx, grad_accum_steps=grad_accum_steps)
  compiled = jax.jit(step, donate_argnums=(0,)).lower(state, batch).compile()
  m = compiled.memory_analysis()
  if m is None:
    raise RuntimeError(f"{jax.default_backend()}: compiled.memory_analysis() is unavailable")
  out = dict(arguments=m.argument_size_in_bytes, outputs=m.output_size_in_bytes,
             aliased=m.alias_size_in_bytes, temp=m.temp_size_in_bytes)
  out["peak"] = out["arguments"] + out["outputs"] - out["aliased"] + out["temp"]
  return out


def _mib(n: float) -> str:
  return f"{n / 2**20:,.1f}"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--vocabs", default="500000,10000000",
                      help="entity vocabulary sizes, comma-separated")
  parser.add_argument("--full", action="store_true",
                      help="also compile the naive loss (one chunk spanning the vocabulary)")
  parser.add_argument("--stage", type=int, default=2, choices=(1, 2))
  parser.add_argument("--grad_accum", type=int, default=1, help="microbatches per step")
  parser.add_argument("--hidden", type=int, default=128)
  parser.add_argument("--layers", type=int, default=2)
  parser.add_argument("--heads", type=int, default=2)
  parser.add_argument("--entity_emb_size", type=int, default=64)
  parser.add_argument("--word_vocab", type=int, default=1000)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--seq", type=int, default=128)
  parser.add_argument("--entities", type=int, default=32)
  parser.add_argument("--mention", type=int, default=8)
  parser.add_argument("--masked_words", type=int, default=24)
  parser.add_argument("--masked_entities", type=int, default=16)
  parser.add_argument("--chunk", type=int, default=8192, help="entity softmax chunk size")
  args = parser.parse_args(argv)

  vocabs = [int(v) for v in args.vocabs.split(",")]
  batch = abstract_batch(args.batch_size, args.seq, args.entities, args.mention,
                         args.masked_words, args.masked_entities)
  masked = args.batch_size * args.masked_entities
  print(f"{jax.default_backend()} ({jax.devices()[0].device_kind}); hidden {args.hidden}, "
        f"{args.layers} layers, entity_emb_size {args.entity_emb_size}, batch "
        f"{args.batch_size} x {args.seq} words / {args.entities} entities, N = {masked} masked "
        f"entities, stage {args.stage}, {args.grad_accum} microbatch(es); MiB\n")
  header = (f"{'entities':>11} {'loss':>14} {'arguments':>11} {'temp':>10} {'peak':>11} "
            f"{'table':>9} {'logits':>10}")
  print(header)
  print("-" * len(header))
  rows = {}
  for loss in ("chunked", "full") if args.full else ("chunked",):
    for vocab in vocabs:
      config = preset("tiny", vocab_size=args.word_vocab, entity_vocab_size=vocab,
                      hidden_size=args.hidden, num_hidden_layers=args.layers,
                      num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                      entity_emb_size=args.entity_emb_size,
                      max_position_embeddings=args.seq + 2, use_entity_aware_attention=False)
      chunk = args.chunk if loss == "chunked" else vocab
      m = step_memory(config, batch, entity_chunk_size=chunk, stage=args.stage,
                      grad_accum_steps=args.grad_accum)
      rows[loss, vocab] = m
      table = vocab * args.entity_emb_size * 4
      print(f"{vocab:>11,} {loss + ' ' + str(min(chunk, vocab)):>14} "
            f"{_mib(m['arguments']):>11} {_mib(m['temp']):>10} {_mib(m['peak']):>11} "
            f"{_mib(table):>9} {_mib(masked * vocab * 4):>10}", flush=True)

  small, large = vocabs[0], vocabs[-1]
  if small == large:
    return
  a, b = rows["chunked", small], rows["chunked", large]
  tables = (large - small) * args.entity_emb_size * 4
  print(f"\nchunked, {large:,} vs {small:,} entities:")
  print(f"  temp ratio {b['temp'] / a['temp']:.2f}; temp grew {_mib(b['temp'] - a['temp'])} MiB "
        f"= {(b['temp'] - a['temp']) / tables:.2f} table-sized buffers of the difference "
        f"({_mib(tables)} MiB each: the table's gradient, and its accumulator with --grad_accum)")
  print(f"  arguments grew {_mib(b['arguments'] - a['arguments'])} MiB = "
        f"{(b['arguments'] - a['arguments']) / tables:.2f} tables (parameter + Adam moments)")
  print(f"  the naive logits would have grown {_mib(masked * (large - small) * 4)} MiB")
  if args.full:
    f = rows["full", large]
    print(f"  naive loss at {large:,}: temp {_mib(f['temp'])} MiB, "
          f"{f['temp'] / b['temp']:.1f}x the chunked loss's")


if __name__ == "__main__":
  main()

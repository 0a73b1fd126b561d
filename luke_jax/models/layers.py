"""Parameter-owning building blocks; every parameter carries logical axis names.

Logical parameter axes used across luke-jax (mapped to mesh axes in `luke_jax.sharding`):
`vocab`, `entity_vocab`, `embed`, `entity_embed`, `heads`, `kv`, `mlp`, `layers`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from luke_jax.models import matmul

Array = jax.Array


def normal_init(std: float):
  return nn.initializers.normal(stddev=std)


class DenseGeneral(nn.Module):
  """`nn.DenseGeneral` whose kernel and bias are logically partitioned.

  Attributes:
    features: output feature shape, e.g. `(heads, head_dim)` for a query projection.
    axis: input axes contracted, e.g. `-1` or `(-2, -1)` for the attention output.
    kernel_axes: logical names of the kernel axes (inputs then outputs).
  """

  features: int | Sequence[int]
  kernel_axes: tuple[str | None, ...]
  axis: int | Sequence[int] = -1
  use_bias: bool = True
  std: float = 0.02
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
    axes = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
    axes = tuple(a % x.ndim for a in axes)
    in_shape = tuple(x.shape[a] for a in axes)
    kernel = self.param("kernel",
                        nn.with_logical_partitioning(normal_init(self.std), self.kernel_axes),
                        in_shape + features, self.param_dtype)
    # [..., in...] x [in..., out...] -> [..., out...]
    y = jax.lax.dot_general(jnp.asarray(x, self.dtype), jnp.asarray(kernel, self.dtype),
                            ((axes, tuple(range(len(axes)))), ((), ())),
                            precision=matmul.precision(self.dtype))
    if self.use_bias:
      bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros,
                                                             self.kernel_axes[-len(features):]),
                        features, self.param_dtype)
      y = y + jnp.asarray(bias, self.dtype)
    return y


class Kernel(nn.Module):
  """Owns one matrix (`<name>/kernel`) and returns it unapplied, e.g. a decoder read as a table."""

  shape: tuple[int, ...]
  axes: tuple[str | None, ...]
  std: float = 0.02
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self) -> Array:
    return self.param("kernel", nn.with_logical_partitioning(normal_init(self.std), self.axes),
                      self.shape, self.param_dtype)


class Embed(nn.Module):
  """Embedding table `[num, dim]` with logical axes; `attend` gives tied-decoder logits."""

  num_embeddings: int
  features: int
  axes: tuple[str | None, str | None]
  std: float = 0.02
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    self.embedding = self.param(
        "embedding", nn.with_logical_partitioning(normal_init(self.std), self.axes),
        (self.num_embeddings, self.features), self.param_dtype)

  def __call__(self, ids: Array) -> Array:
    # An id outside the table reads a row of NaN, never a valid-looking row: `jnp.take` would
    # wrap a negative id to the end of the table (NumPy semantics), and clamping would hide a
    # tokenizer/model mismatch. The NaN reaches the loss, which stops the run.
    ids = jnp.where(ids < 0, self.num_embeddings, ids)
    # Gather, then cast: casting first would convert the whole table (500K entity rows) every
    # step, and its gradient back, for the few rows a batch reads.
    rows = jnp.take(self.embedding, ids, axis=0, mode="fill", fill_value=jnp.nan)
    return jnp.asarray(rows, self.dtype)

  def attend(self, x: Array) -> Array:
    """`x @ table.T`: scores against every row, as a tied output decoder does."""
    table = jnp.asarray(self.embedding, self.dtype)
    return jnp.einsum("...d,vd->...v", jnp.asarray(x, self.dtype), table,
                      precision=matmul.precision(self.dtype))


class LayerNorm(nn.Module):
  """LayerNorm with float32 statistics and torch's two-pass variance."""

  epsilon: float
  axis_name: str = "embed"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = x.shape[-1]
    scale = self.param("scale",
                       nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,)),
                       (features,), self.param_dtype)
    bias = self.param("bias",
                      nn.with_logical_partitioning(nn.initializers.zeros, (self.axis_name,)),
                      (features,), self.param_dtype)
    x32 = jnp.asarray(x, jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
    y = y * jnp.asarray(scale, jnp.float32) + jnp.asarray(bias, jnp.float32)
    return jnp.asarray(y, self.dtype)


def gelu(x: Array) -> Array:
  """Exact (erf) GELU, as `transformers`' "gelu"."""
  return nn.gelu(x, approximate=False)

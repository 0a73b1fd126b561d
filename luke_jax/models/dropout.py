"""Dropout whose random bits cost one fused elementwise pass, on every backend.

`jax.random.bernoulli` draws its bits with the Threefry-2x32 hash, which jax lowers on CPU as a
rolled loop of 5 iterations over whole-array buffers: every iteration reads and writes two
uint32 arrays the size of the mask. For the `[batch, heads, T+E, T+E]` attention-dropout mask
that is memory-bound and dominated a CPU training step (140 ms for one 12 x 640 x 640 mask
against 18 ms here; `torch`'s dropout takes 38 ms). Here the same 20-round Threefry-2x32 is
written out with `jnp` ops, so XLA fuses it into the consumer of the mask (no buffers, no loop)
on CPU as on accelerators. It is the same hash on the same key (`keep_mask` equals
`threefry_2x32(key, counters)`'s first word; a test checks it), so the masks are as random as
jax's, just drawn from different counters than `jax.random.bernoulli` uses.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x: Array, r: int) -> Array:
  return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(k0: Array, k1: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
  """Threefry-2x32 with 20 rounds (Salmon et al. 2011), unrolled; the hash `jax.random` uses."""
  ks = (k0, k1, k0 ^ k1 ^ _PARITY)
  x0, x1 = x0 + ks[0], x1 + ks[1]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = _rotl(x1, r) ^ x0
    x0 = x0 + ks[(i + 1) % 3]
    x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x0, x1


def keep_mask(key: Array, shape: tuple[int, ...], rate: float) -> Array:
  """Boolean mask, True with probability `1 - rate` (to 2**-32), independent per element.

  Element i hashes the counter (i, 0) under `key`. Keys of another PRNG implementation, and
  masks of 2**32 elements or more, go through `jax.random.bernoulli` instead.
  """
  size = int(np.prod(shape))
  data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
  if data.shape != (2,) or size >= 2**32:
    return jax.random.bernoulli(key, 1.0 - rate, shape)
  data = data.astype(jnp.uint32)
  counters = jax.lax.iota(jnp.uint32, size).reshape(shape)
  bits, _ = threefry2x32(data[0], data[1], counters, jnp.zeros_like(counters))
  return bits >= np.uint32(min(round(rate * 2.0**32), 2**32 - 1))


def dropout(x: Array, rate: float, key: Array) -> Array:
  """Inverted dropout: zero with probability `rate`, scale the rest by `1 / (1 - rate)`."""
  if rate <= 0.0:
    return x
  if rate >= 1.0:
    return jnp.zeros_like(x)
  keep = keep_mask(key, x.shape, rate)
  return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))


class Dropout(nn.Module):
  """`nn.Dropout(rate)(x, deterministic)` with `keep_mask`'s fused random bits."""

  rate: float

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    if deterministic or self.rate <= 0.0:
      return x
    return dropout(x, self.rate, self.make_rng("dropout"))

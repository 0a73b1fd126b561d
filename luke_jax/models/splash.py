"""Softmax attention as one Pallas splash-attention call per device (TPU).

`jax.experimental.pallas.ops.tpu.splash_attention` is a flash kernel: it never writes the
`[heads, L, L]` score matrix to HBM, forward or backward. `attention.fused_attention` hands it
entity-aware attention as plain attention on doubled heads (`attention.doubled_heads`), so one
kernel call covers all four query types. Padded keys are a second segment (segment ids), the
sequence is padded to the kernel's 128-row blocks, and the call runs under `shard_map` over the
mesh's batch and head axes (a custom call cannot be partitioned by XLA). The kernel has no
attention dropout: a training step with `attention_probs_dropout_prob > 0` must use another
`attention_impl`.

`interpret=True` runs the same kernel through the Pallas interpreter (any backend; tests).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

_BLOCK = 128


def _kernel(length: int, heads: int, interpret: bool):
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm
  mask = sm.MultiHeadMask([sm.FullMask((length, length)) for _ in range(heads)])
  b = _BLOCK
  blocks = sk.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b,
                         block_kv_dkv=b, block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b)
  return sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1, block_sizes=blocks,
                            interpret=interpret), sk.SegmentIds


def _local(q, k, v, kv_segments, interpret):
  """Per-device attention: q, k, v `[b, L, h, d]`, kv_segments `[b, L]` (0 = attend)."""
  length, heads = q.shape[1], q.shape[2]
  kernel, segment_ids = _kernel(length, heads, interpret)
  to_heads_major = lambda x: jnp.swapaxes(x, 1, 2)  # [b, h, L, d], what the kernel takes
  q_segments = jnp.zeros_like(kv_segments)
  out = jax.vmap(lambda q_, k_, v_, qs, ks: kernel(q_, k_, v_, segment_ids=segment_ids(qs, ks)))(
      to_heads_major(q), to_heads_major(k), to_heads_major(v), q_segments, kv_segments)
  return jnp.swapaxes(out, 1, 2)


def _platform() -> str:
  """Where the step is being compiled for: the mesh's devices (a TPU topology's, when
  compiling ahead of time on a CPU), else the default backend."""
  mesh = jax.sharding.get_abstract_mesh()
  device = getattr(mesh, "abstract_device", None) if mesh is not None and not mesh.empty else None
  return device.platform if device is not None else jax.default_backend()


def splash_attention(query, key, value, mask, *, scale: float,
                     interpret: bool | None = None) -> jax.Array:
  """Softmax attention of `query` against `key` / `value` through the splash kernel.

  Args:
    query, key, value: `[B, L, h, d]` (entity-aware attention arrives as doubled heads).
    mask: `[B, L]` key mask (nonzero = attend) or None.
    scale: multiplies the scores (the kernel does not scale).
    interpret: run the kernel in the Pallas interpreter (default: unless compiling for TPU).

  Returns:
    context `[B, L, h, d]`.
  """
  batch, length = query.shape[:2]
  query = query * jnp.asarray(scale, query.dtype)
  valid = jnp.ones((batch, length), bool) if mask is None else mask != 0
  # A row whose keys are all padding (a padded batch row) attends to its first key rather
  # than to nothing: its output is never used, but must stay finite.
  valid = valid.at[:, 0].set(True)
  padded = -(-length // _BLOCK) * _BLOCK
  if padded != length:
    pad = lambda x: jnp.pad(x, ((0, 0), (0, padded - length)) + ((0, 0),) * (x.ndim - 2))
    query, key, value, valid = pad(query), pad(key), pad(value), pad(valid)
  kv_segments = jnp.where(valid, 0, 1).astype(jnp.int32)

  if interpret is None:
    interpret = _platform() != "tpu"
  local = functools.partial(_local, interpret=interpret)
  mesh = jax.sharding.get_abstract_mesh()
  if mesh is not None and not mesh.empty and mesh.size > 1:
    batch_axes = nn.logical_to_mesh_axes(("activation_batch",))[0]
    head_axes = nn.logical_to_mesh_axes(("heads",))[0]
    qkv = PartitionSpec(batch_axes, None, head_axes, None)
    local = jax.shard_map(local, in_specs=(qkv, qkv, qkv, PartitionSpec(batch_axes, None)),
                          out_specs=qkv, check_vma=False)
  return local(query, key, value, kv_segments)[:, :length]

"""Mesh axes and the logical-axis rules that place LUKE parameters on a device mesh.

This is the only module that knows mesh axis names; models only name logical axes:

  parameters:  vocab, entity_vocab, embed, entity_embed, heads, kv, mlp, layers
  activations: activation_batch, activation_length, activation_embed
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

MESH_AXES = ("data", "fsdp", "tensor")

# The entity table (500K x 256 and its Adam state) is the largest group, hence two mesh axes.
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("embed", "fsdp"),
    ("entity_embed", None),
    ("vocab", "tensor"),
    ("entity_vocab", ("fsdp", "tensor")),
    ("heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
    ("layers", None),
)


def create_mesh(shape: Sequence[tuple[str, int]], devices=None) -> Mesh:
  """The device mesh of a run, from `config.mesh`: `(("data", -1), ("fsdp", 2), ("tensor", 1))`.

  One axis may be -1: it takes the devices left. Without `devices`, a mesh whose sizes are all
  given may use fewer devices than exist (the first ones); with `devices`, it must use them all.

  Raises:
    ValueError: naming `config.mesh` and the device count, if the axes are not exactly
      `MESH_AXES` or the sizes do not fit the devices.
  """
  shape = [(str(name), int(size)) for name, size in shape]
  names = [name for name, _ in shape]
  sizes = [size for _, size in shape]
  if sorted(names) != sorted(MESH_AXES):
    raise ValueError(f"config.mesh: axes must be {MESH_AXES}, got {names}")
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"config.mesh {dict(shape)}: sizes must be positive, at most one -1")
  known = math.prod(s for s in sizes if s != -1)
  if devices is None:
    devices = jax.devices()
    if -1 not in sizes and known < len(devices):
      devices = devices[:known]
  devices = np.asarray(devices)
  if known > devices.size or devices.size % known:
    need = "a multiple of" if -1 in sizes else "at least"
    raise ValueError(f"config.mesh {dict(shape)} needs {need} {known} devices, but "
                     f"{devices.size} are available "
                     f"({devices.flat[0].platform}); change --config.mesh")
  sizes = [devices.size // known if s == -1 else s for s in sizes]
  if math.prod(sizes) != devices.size:
    raise ValueError(f"config.mesh {dict(zip(names, sizes))} needs {math.prod(sizes)} devices, "
                     f"have {devices.size}")
  return Mesh(devices.reshape(sizes), names)


def param_shardings(boxed_abstract_params, mesh: Mesh, rules=DEFAULT_RULES):
  """NamedShardings for a tree of `nn.LogicallyPartitioned` leaves (e.g. from `eval_shape`)."""
  specs = nn.get_partition_spec(boxed_abstract_params)
  return nn.logical_to_mesh_sharding(specs, mesh, list(rules))


def batch_sharding(mesh: Mesh, rules=DEFAULT_RULES) -> NamedSharding:
  """How the rows of every batch are split: the `activation_batch` rule, other axes whole."""
  return NamedSharding(mesh, nn.logical_to_mesh_axes(("activation_batch",), list(rules)))


def batch_shards(batch: NamedSharding) -> int:
  """Into how many row blocks `batch_sharding` splits a batch (its data-parallel size)."""
  axes = batch.spec[0] if len(batch.spec) else None
  if axes is None:
    return 1
  return math.prod(batch.mesh.shape[a] for a in (axes if isinstance(axes, tuple) else (axes,)))

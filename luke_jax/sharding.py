"""Mesh axes and the logical-axis rules that place LUKE parameters on a device mesh.

This is the only module that knows mesh axis names; models only name logical axes:

  parameters:  vocab, entity_vocab, embed, entity_embed, heads, kv, mlp, layers
  activations: activation_batch, activation_length, activation_embed
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

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
  """A mesh from `[("data", -1), ("fsdp", 2), ("tensor", 1)]`; one -1 takes what is left."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  names = [name for name, _ in shape]
  sizes = [size for _, size in shape]
  if sorted(names) != sorted(MESH_AXES):
    raise ValueError(f"mesh axes must be {MESH_AXES}, got {names}")
  if sizes.count(-1) > 1:
    raise ValueError(f"at most one mesh axis may be -1: {shape}")
  known = int(np.prod([s for s in sizes if s != -1]))
  if devices.size % known:
    raise ValueError(f"{devices.size} devices do not divide into mesh {shape}")
  sizes = [devices.size // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != devices.size:
    raise ValueError(f"mesh {dict(zip(names, sizes))} needs {int(np.prod(sizes))} devices, "
                     f"have {devices.size}")
  return Mesh(devices.reshape(sizes), names)


def param_shardings(boxed_abstract_params, mesh: Mesh, rules=DEFAULT_RULES):
  """NamedShardings for a tree of `nn.LogicallyPartitioned` leaves (e.g. from `eval_shape`)."""
  specs = nn.get_partition_spec(boxed_abstract_params)
  return nn.logical_to_mesh_sharding(specs, mesh, list(rules))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())

"""Convert parameter trees between the layer-loop layout and the `nn.scan` layout.

Loop: `encoder/layer_0/...`, `encoder/layer_1/...`; scan: `encoder/scan/layer/...` with a leading
`layers` axis. Checkpoints and converters use the loop layout; training may prefer scan.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np

_LAYER = re.compile(r"layer_(\d+)$")


def _map_encoders(tree: Any, fn) -> Any:
  if not isinstance(tree, dict):
    return tree
  return {k: (fn(v) if k == "encoder" else _map_encoders(v, fn)) for k, v in tree.items()}


def _stack(*xs):
  if isinstance(xs[0], jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct((len(xs),) + xs[0].shape, xs[0].dtype)
  return np.stack([np.asarray(x) for x in xs]) if isinstance(xs[0], np.ndarray) else (
      jax.numpy.stack(xs))


def loop_to_scan(params: dict) -> dict:
  def convert(encoder):
    if "scan" in encoder:
      return encoder
    layers = sorted((int(_LAYER.match(k).group(1)), v) for k, v in encoder.items()
                    if _LAYER.match(k))
    return {"scan": {"layer": jax.tree.map(_stack, *[v for _, v in layers])}}
  return _map_encoders(params, convert)


def scan_to_loop(params: dict) -> dict:
  def convert(encoder):
    if "scan" not in encoder:
      return encoder
    stacked = encoder["scan"]["layer"]
    num = jax.tree.leaves(stacked)[0].shape[0]
    pick = lambda i: jax.tree.map(
        lambda x: (jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
                   if isinstance(x, jax.ShapeDtypeStruct) else x[i]), stacked)
    return {f"layer_{i}": pick(i) for i in range(num)}
  return _map_encoders(params, convert)


def to_layout(params: dict, scan_layers: bool) -> dict:
  return loop_to_scan(params) if scan_layers else scan_to_loop(params)

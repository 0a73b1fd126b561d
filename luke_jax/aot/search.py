"""`--search`: the meshes and remat / layer-loop policies worth trying on a topology."""

from __future__ import annotations

import copy
from typing import Iterator

import ml_collections


def _powers_of_two_up_to(n: int) -> list[int]:
  out, p = [], 1
  while p <= n:
    if n % p == 0:
      out.append(p)
    p *= 2
  return out


def meshes(chips: int, batch_size: int, grad_accum: int, heads: int) -> list[tuple]:
  """(data, fsdp, tensor) splits of `chips`: tensor 1, 2 or 4 (dividing the heads), fsdp over
  the rest from all of it down, the batch rows per micro-batch divisible by data x fsdp."""
  out = []
  rows = batch_size // max(grad_accum, 1)
  for tensor in (1, 2, 4):
    if chips % tensor or heads % tensor:
      continue
    rest = chips // tensor
    fsdps = sorted(_powers_of_two_up_to(rest), reverse=True)
    # All of the rest, a quarter, a sixteenth: the range that matters, few compiles.
    for fsdp in dict.fromkeys(f for f in fsdps if f in (rest, max(rest // 4, 1),
                                                            max(rest // 16, 1))):
      data = rest // fsdp
      if rows % (data * fsdp):
        continue
      out.append((data, fsdp, tensor))
  return out


def variant(config: ml_collections.ConfigDict, mesh: tuple[int, int, int], remat: str,
            scan: bool) -> ml_collections.ConfigDict:
  """`config` with another mesh `(data, fsdp, tensor)`, remat policy and layer loop."""
  data, fsdp, tensor = mesh
  new = copy.deepcopy(config)
  with new.unlocked():
    new.mesh = (("data", data), ("fsdp", fsdp), ("tensor", tensor))
    new.model.remat_policy = remat
    new.model.scan_layers = scan
  return new


def label(mesh: tuple[int, int, int], remat: str, scan: bool) -> str:
  data, fsdp, tensor = mesh
  return (f"data{data}xfsdp{fsdp}xtensor{tensor}, remat {remat}, "
          f"{'scan' if scan else 'loop'}")


def candidates(config: ml_collections.ConfigDict, chips: int, heads: int
               ) -> Iterator[tuple[str, ml_collections.ConfigDict]]:
  """(label, config) pairs: every mesh of `meshes` x remat minimal / full, layers scanned
  (the layer loop is tried on the winner only: it compiles about twice as long)."""
  tc = config.train
  for mesh in meshes(chips, tc.batch_size, tc.grad_accum_steps, heads):
    for remat in ("minimal", "full"):
      yield label(mesh, remat, True), variant(config, mesh, remat, True)

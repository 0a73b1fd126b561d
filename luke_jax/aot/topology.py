"""TPU slices by their Cloud TPU names, with the chip figures an estimate needs.

Cloud TPU names a slice two ways (cloud.google.com/tpu/docs/system-architecture-tpu-vm):
`v4-128` / `v5p-64` count TensorCores (two per chip, so 64 and 32 chips), `v5e-256` /
`v6e-64` (also `v5litepod-256`) count chips; the colon form `v5p:2x4x4` gives the chip grid.
v4 and v5p run as one JAX device per chip (megacore), as on a real slice.
"""

from __future__ import annotations

import dataclasses
import math
import re

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Chip:
  """One chip generation's public figures (cloud.google.com/tpu/docs/v4, v5e, v5p, v6e)."""

  generation: str
  cores_per_chip: int       # TensorCores a "vN-<cores>" name counts
  hbm_bytes: int            # HBM capacity per chip
  peak_flops: float         # dense bf16 FLOP/s per chip
  hbm_bandwidth: float      # bytes/s per chip
  ici_bandwidth: float      # bidirectional inter-chip bytes/s per chip
  dims: int                 # 2D (v5e, v6e) or 3D (v4, v5p) torus

  @property
  def megacore(self) -> bool:
    return self.cores_per_chip == 2


CHIPS = {
    "v4": Chip("v4", 2, 32 * GIB, 275e12, 1200e9, 300e9, 3),
    "v5e": Chip("v5e", 1, 16 * GIB, 197e12, 819e9, 200e9, 2),
    "v5p": Chip("v5p", 2, 95 * GIB, 459e12, 2765e9, 1200e9, 3),
    "v6e": Chip("v6e", 1, 32 * GIB, 918e12, 1640e9, 448e9, 2),
}
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6litepod": "v6e"}
# The slice shapes Cloud TPU offers, by chip count (v4 / v5p docs; v5e / v6e docs).
_GRIDS_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
             256: "4x8x8", 512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16"}
_GRIDS_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
             256: "16x16"}


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str        # as the user gave it
  chip: Chip
  grid: str        # "2x4x4"

  @property
  def chips(self) -> int:
    return math.prod(int(x) for x in self.grid.split("x"))

  @property
  def libtpu_name(self) -> str:
    return f"{self.chip.generation}:{self.grid}"

  def devices(self):
    """The slice's JAX devices, described by libtpu (nothing is opened)."""
    from jax.experimental import topologies
    kwargs = {"chip_config_name": "megacore"} if self.chip.megacore else {}
    return topologies.get_topology_desc(platform="tpu", topology_name=self.libtpu_name,
                                        **kwargs).devices


def parse(name: str) -> Topology:
  """`v5p-64`, `v5e-256`, `v5litepod-16` or `v5p:2x4x4` -> `Topology`.

  Raises:
    ValueError: naming the topology and the accepted forms.
  """
  text = name.strip().lower()
  match = re.fullmatch(r"(v\d+[a-z]*)(?:-(\d+)|:(\d+(?:x\d+)+))", text)
  if not match:
    raise ValueError(f"--topology={name!r}: use a Cloud TPU name such as v5p-64, v4-128, "
                     "v5e-256, v6e-64, or a chip grid such as v5p:2x4x4")
  generation = _ALIASES.get(match.group(1), match.group(1))
  if generation not in CHIPS:
    raise ValueError(f"--topology={name!r}: unknown TPU generation {match.group(1)!r}; "
                     f"known: {sorted(CHIPS)}")
  chip = CHIPS[generation]
  if match.group(3):
    grid = match.group(3)
    if len(grid.split("x")) != chip.dims:
      raise ValueError(f"--topology={name!r}: {generation} slices are {chip.dims}D grids")
    return Topology(name, chip, grid)
  count = int(match.group(2))
  if count % chip.cores_per_chip:
    raise ValueError(f"--topology={name!r}: {generation}-N counts TensorCores, "
                     f"{chip.cores_per_chip} per chip; N must be even")
  chips = count // chip.cores_per_chip
  grids = _GRIDS_3D if chip.dims == 3 else _GRIDS_2D
  if chips not in grids:
    raise ValueError(f"--topology={name!r}: no {generation} slice of {chips} chips; "
                     f"known sizes: {', '.join(f'{generation}-{c * chip.cores_per_chip}' for c in grids)}"
                     f" (or give the grid, e.g. {generation}:{next(iter(grids.values()))})")
  return Topology(name, chip, grids[chips])

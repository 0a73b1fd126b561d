"""A step-time estimate read off a compiled program's HLO text, loops counted by trip count.

The compiler's own `cost_analysis()` counts a while loop's body once (a scanned 24-layer
encoder, a chunked 500K-entity softmax) and its `optimal_seconds` goes negative when a program
holds ops it cannot cost, so neither is usable as a step time. This module walks the optimized
HLO instead:

* every instruction of an executed computation (the entry, while bodies, conditional branches,
  calls) is one kernel; a fusion's FLOPs are those of the dots and convolutions inside it;
* its HBM traffic is its operands plus its result, except that a fused operand read only
  through `dynamic-slice` / `gather` costs the slices (a scanned layer reads one layer of the
  stacked weights, not all of them) and an in-place `dynamic-update-slice` costs the update;
* a while body counts as many times as its trip count (the bound its condition compares the
  counter with);
* a kernel takes max(FLOPs / peak, bytes / HBM bandwidth) (a per-kernel roofline); collectives
  take their bytes over the chip's ICI bandwidth, asynchronous copies between memory spaces
  (prefetches into on-chip memory) their bytes over HBM bandwidth, and both are assumed
  overlapped with compute (XLA schedules them asynchronously), so the step estimate is
  max(compute, collectives, asynchronous copies).

This is a model of the hardware, not a measurement: it ignores kernel launch gaps, imperfect
overlap, MXU shape efficiency and the VPU work of elementwise-heavy kernels beyond their bytes.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re

import numpy as np

_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "s32": 4, "u32": 4, "s64": 8,
                "u64": 8, "bf16": 2, "f16": 2, "f32": 4, "f64": 8, "c64": 8, "c128": 16,
                "f8e4m3fn": 1, "f8e5m2": 1, "s4": 1, "u4": 1, "token": 0}
_ARRAY = re.compile(r"\b([a-z]+[0-9]*[a-z0-9]*)\[([0-9,]*)\]")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%([^\s=]+)\s*=\s*(.*)$")
_HEADER = re.compile(r"^\s*(ENTRY\s+)?%([^\s(]+)\s*\(.*\{\s*$")
_CALLS = re.compile(r"\b(calls|to_apply|body|condition)=%([^\s,)}]+)")
_BRANCHES = re.compile(r"\b(?:branch_computations|called_computations)=\{([^}]*)\}")
_FREE = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "after-all",
         "partition-id", "replica-id", "iota", "opt-barrier", "copy-done", "all-gather-done",
         "all-reduce-done", "collective-permute-done", "send-done", "recv-done", "async-done",
         "async-update", "slice-done"}
# Asynchronous moves between memory spaces (HBM <-> on-chip memory): DMAs that XLA schedules to
# overlap with compute, timed in a bucket of their own.
_ASYNC_MOVES = {"copy-start", "slice-start"}
# Custom calls that only reinterpret buffers.
_FREE_CUSTOM_CALLS = ("ConcatBitcast", "AssumeGatherIndicesInBound", "AllocateBuffer")
_COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute",
                "ragged-all-to-all")
_HOST = ("send", "recv", "infeed", "outfeed")


@dataclasses.dataclass
class Instruction:
  name: str
  shape: str
  opcode: str
  operands: list[str]
  attrs: str
  args: str = ""         # the parenthesised operand text: a constant's value, a parameter's index

  @property
  def out_bytes(self) -> int:
    return shape_bytes(self.shape)


@dataclasses.dataclass
class Computation:
  name: str
  entry: bool
  instructions: list[Instruction]


@dataclasses.dataclass
class Kernel:
  """One executed instruction, with its per-execution cost and how often it runs."""

  name: str
  opcode: str
  op_name: str           # the JAX op it came from (metadata), for reports
  flops: float
  bytes: float
  count: int
  collective: bool
  seconds: float = 0.0   # per execution
  shape: str = ""        # the result's shape


@dataclasses.dataclass
class Cost:
  """Per-device totals of one program (trip counts applied)."""

  flops: float = 0.0
  bytes: float = 0.0
  compute_seconds: float = 0.0
  collective_bytes: float = 0.0
  collective_seconds: float = 0.0
  async_move_bytes: float = 0.0
  async_move_seconds: float = 0.0
  kernels: list[Kernel] = dataclasses.field(default_factory=list)
  f32_highest_dots: list[str] = dataclasses.field(default_factory=list)
  host_transfers: list[str] = dataclasses.field(default_factory=list)
  unknown_trip_counts: int = 0
  custom_calls: list[str] = dataclasses.field(default_factory=list)

  @property
  def seconds(self) -> float:
    """The step: compute, with collectives and asynchronous moves overlapped."""
    return max(self.compute_seconds, self.collective_seconds, self.async_move_seconds)

  def all_gathers_with_dim(self, size: int) -> int:
    """How many all-gathers per step produce an array with a dimension of `size` (e.g. the
    whole entity table)."""
    return sum(k.count for k in self.kernels if k.opcode.startswith("all-gather")
               and any(size in _dims(f"{d}[{s}]") for d, s in _ARRAY.findall(
                   _strip_layouts(k.shape))))

  def top(self, n: int = 15, by: str = "op_name") -> list[tuple[str, float, float, float]]:
    """The `n` largest contributors to the compute time: (key, seconds, flops, bytes)."""
    agg: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    for k in self.kernels:
      if k.collective:
        continue
      key = _short_op(k.op_name) if by == "op_name" else k.opcode
      agg[key][0] += k.count * k.seconds
      agg[key][1] += k.count * k.flops
      agg[key][2] += k.count * k.bytes
    rows = sorted(((key, *v) for key, v in agg.items()), key=lambda r: -r[1])
    return rows[:n]


def shape_bytes(shape: str) -> int:
  total = 0
  for dtype, dims in _ARRAY.findall(_strip_layouts(shape)):
    if dtype not in _DTYPE_BYTES:
      continue
    total += _DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d)
  return total


def _strip_layouts(shape: str) -> str:
  return re.sub(r"\{[^{}]*\}", "", shape)


def _dims(shape: str) -> list[int]:
  match = _ARRAY.search(_strip_layouts(shape))
  if not match or not match.group(2):
    return []
  return [int(d) for d in match.group(2).split(",")]


def _dtype(shape: str) -> str:
  match = _ARRAY.search(shape)
  return match.group(1) if match else ""


def _split_top(text: str) -> tuple[str, str]:
  """`text` starting with a balanced '(' group -> (group, rest)."""
  depth = 0
  for i, ch in enumerate(text):
    depth += ch in "({["
    depth -= ch in ")}]"
    if depth == 0:
      return text[:i + 1], text[i + 1:]
  return text, ""


def _parse_instruction(line: str) -> Instruction | None:
  match = _INSTRUCTION.match(line)
  if not match:
    return None
  name, rest = match.groups()
  rest = rest.strip()
  if rest.startswith("("):
    shape, rest = _split_top(rest)
  else:
    shape, _, rest = rest.partition(" ")
    # A layout with spaces never occurs; a shape is one token.
  rest = rest.strip()
  paren = rest.find("(")
  if paren < 0:
    return None
  opcode = rest[:paren].strip()
  group, attrs = _split_top(rest[paren:])
  operands = re.findall(r"%([^\s,()]+)", group)
  return Instruction(name, shape, opcode, operands, attrs, group)


def parse_module(text: str) -> dict[str, Computation]:
  """Computations by name. An instruction may span several lines (long attributes)."""
  computations: dict[str, Computation] = {}
  current: Computation | None = None
  pending: list[str] = []

  def flush():
    if pending and current is not None:
      inst = _parse_instruction(" ".join(pending))
      if inst is not None:
        current.instructions.append(inst)
    pending.clear()

  for line in text.splitlines():
    if current is None:
      header = _HEADER.match(line)
      if header:
        current = Computation(header.group(2), bool(header.group(1)), [])
      continue
    if line.strip() == "}":
      flush()
      computations[current.name] = current
      current = None
      continue
    if _INSTRUCTION.match(line):
      flush()
      pending.append(line)
    elif pending:
      pending.append(line.strip())
  return computations


def _dot_flops(inst: Instruction, shapes: dict[str, str]) -> float:
  out = math.prod(_dims(inst.shape)) if _dims(inst.shape) else 1
  if inst.opcode == "dot":
    match = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", inst.attrs)
    lhs = _dims(shapes.get(inst.operands[0], ""))
    contracted = math.prod(lhs[int(i)] for i in match.group(1).split(",") if i) if (
        match and lhs) else 1
    return 2.0 * out * contracted
  return _conv_flops(inst, shapes)


def _conv_flops(inst: Instruction, shapes: dict[str, str]) -> float:
  """2 x (output batch x output features) x input features per group x, per spatial dim, the
  (output position, window tap) pairs that land on a real input element.

  Counting valid pairs (rather than window size) matters: XLA writes dots with batch
  dimensions as convolutions whose window runs over a padded or dilated batch axis, where most
  taps fall on padding.
  """
  labels = re.search(r"dim_labels=([^_]+)_([^-]+)->([^,\s]+)", inst.attrs)
  out = _dims(inst.shape)
  lhs = _dims(shapes.get(inst.operands[0], ""))
  rhs = _dims(shapes.get(inst.operands[1], "")) if len(inst.operands) > 1 else []
  if not labels or not out or not lhs or not rhs:
    return 2.0 * math.prod(out or [1])
  lhs_l, rhs_l, out_l = labels.groups()
  flops = 2.0 * out[out_l.index("b")] * out[out_l.index("f")] * rhs[rhs_l.index("i")]
  window = re.search(r"window=\{([^}]*)\}", inst.attrs)
  fields = dict(re.findall(r"(\w+)=([^\s]+)", window.group(1))) if window else {}
  spatial = sorted(c for c in out_l if c.isdigit())
  n = len(spatial)

  def values(key, default):
    raw = fields.get(key)
    return [default] * n if raw is None else raw.split("x")

  strides = values("stride", "1")
  pads, lhs_dil, rhs_dil = values("pad", "0_0"), values("lhs_dilate", "1"), values("rhs_dilate", "1")
  for i, d in enumerate(spatial):
    length, taps, positions = lhs[lhs_l.index(d)], rhs[rhs_l.index(d)], out[out_l.index(d)]
    stride, low = int(strides[i]), int(pads[i].split("_")[0])
    dl, dr = int(lhs_dil[i]), int(rhs_dil[i])
    o = np.arange(positions)[:, None]
    k = np.arange(taps)[None, :]
    p = o * stride + k * dr - low
    valid = (p >= 0) & (p <= (length - 1) * dl) & (p % dl == 0)
    flops *= float(valid.sum())
  return flops


def _integer_args(comp: Computation, opcode: str) -> dict[str, int]:
  """Name -> the integer in parentheses, for `opcode` instructions: a scalar constant's
  value, a parameter's index."""
  out = {}
  for inst in comp.instructions:
    match = re.fullmatch(r"\((-?\d+)\)", inst.args) if inst.opcode == opcode else None
    if match:
      out[inst.name] = int(match.group(1))
  return out


def _trip_count(condition: Computation | None) -> int | None:
  """The bound `counter < N` of a scan-style loop condition, or None."""
  if condition is None:
    return None
  constants = _integer_args(condition, "constant")
  for inst in condition.instructions:
    if inst.opcode == "compare" and "direction=LT" in inst.attrs:
      for operand in inst.operands:
        if operand in constants:
          return constants[operand]
  # The bound may be fused into the compare's fusion.
  values = list(constants.values())
  return values[0] if len(values) == 1 else None


def _sliced_operand_bytes(fused: Computation, shapes: dict[str, str], computations,
                          cache: dict) -> dict[int, int]:
  """Parameter index -> bytes actually read, for parameters used only through slicing ops
  (directly, or through a nested fusion that only slices them)."""
  if fused.name in cache:
    return cache[fused.name]
  params = _integer_args(fused, "parameter")
  users: dict[str, list[Instruction]] = collections.defaultdict(list)
  for inst in fused.instructions:
    for operand in set(inst.operands):
      if operand in params:
        users[operand].append(inst)
  out = {}
  for name, index in params.items():
    uses = users.get(name, [])
    if not uses:
      continue
    read = 0
    for use in uses:
      callee = dict(_CALLS.findall(use.attrs)).get("calls")
      if use.opcode in ("dynamic-slice", "gather", "slice") and use.operands[0] == name:
        read += use.out_bytes
      elif use.opcode == "dynamic-update-slice" and use.operands[0] == name:
        read += shape_bytes(shapes.get(use.operands[1], ""))
      elif use.opcode == "fusion" and callee in computations:
        nested = _sliced_operand_bytes(computations[callee], shapes, computations, cache)
        positions = [i for i, o in enumerate(use.operands) if o == name]
        if not all(i in nested for i in positions):
          read = None
          break
        read += sum(nested[i] for i in positions)
      else:
        read = None
        break
    if read is not None:
      out[index] = read
  cache[fused.name] = out
  return out


def _fused_flops(comp: Computation, computations, shapes, cache) -> float:
  if comp.name in cache:
    return cache[comp.name]
  total = 0.0
  for inst in comp.instructions:
    if inst.opcode in ("dot", "convolution"):
      total += _dot_flops(inst, shapes)
    for _, callee in _CALLS.findall(inst.attrs):
      if callee in computations:
        total += _fused_flops(computations[callee], computations, shapes, cache)
  cache[comp.name] = total
  return total


def _op_name(inst: Instruction) -> str:
  match = re.search(r'op_name="([^"]*)"', inst.attrs)
  return match.group(1) if match else ""


def _short_op(op_name: str) -> str:
  name = re.sub(r"jit\([^)]*\)/", "", op_name)
  name = re.sub(r"(jvp|transpose|checkpoint|remat|closed_call|body|while|scan|vmap)"
                r"(\([^)]*\))?/", "", name)
  name = re.sub(r"layer_\d+", "layer_N", name)
  return name[:110]


def analyse(text: str, peak_flops: float, hbm_bandwidth: float, ici_bandwidth: float) -> Cost:
  """The per-device `Cost` of a compiled program (`compiled.as_text()`) on one chip."""
  computations = parse_module(text)
  shapes = {inst.name: inst.shape for comp in computations.values()
            for inst in comp.instructions}
  entry = next((c for c in computations.values() if c.entry), None)
  cost = Cost()
  if entry is None:
    return cost
  flops_cache: dict[str, float] = {}
  sliced_cache: dict[str, dict[int, int]] = {}

  def walk(comp: Computation, count: int) -> None:
    for inst in comp.instructions:
      op = inst.opcode
      if op == "while":
        calls = dict(_CALLS.findall(inst.attrs))
        trips = _trip_count(computations.get(calls.get("condition", "")))
        if trips is None:
          cost.unknown_trip_counts += 1
          trips = 1
        if calls.get("body") in computations:
          walk(computations[calls["body"]], count * trips)
        continue
      if op in ("call", "conditional", "async-start"):
        for _, callee in _CALLS.findall(inst.attrs):
          if callee in computations:
            walk(computations[callee], count)
        for group in _BRANCHES.findall(inst.attrs):
          for callee in re.findall(r"%([^\s,]+)", group):
            if callee in computations:
              walk(computations[callee], count)
        continue
      if op in _FREE or (op == "custom-call" and any(
          f'custom_call_target="{t}"' in inst.attrs for t in _FREE_CUSTOM_CALLS)):
        continue
      if op in _ASYNC_MOVES:
        cost.async_move_bytes += count * _largest_array(inst.shape)
        continue
      if op in _HOST or (op == "custom-call" and "host" in inst.attrs.lower()):
        cost.host_transfers.append(f"{op} {_op_name(inst)}")
      base = op.removesuffix("-start")
      if base in _COLLECTIVES:
        moved = max(inst.out_bytes, sum(shape_bytes(shapes.get(o, "")) for o in inst.operands))
        if op.endswith("-start"):
          moved = max(shape_bytes(shapes.get(o, "")) for o in inst.operands) if inst.operands \
              else moved
          moved = max(moved, _largest_array(inst.shape))
        cost.kernels.append(Kernel(inst.name, op, _op_name(inst), 0.0, moved, count, True,
                                   shape=inst.shape))
        cost.collective_bytes += count * moved
        continue
      flops = 0.0
      if op in ("dot", "convolution"):
        flops = _dot_flops(inst, shapes)
        _check_precision(inst, shapes, cost)
      callee = dict(_CALLS.findall(inst.attrs)).get("calls")
      read = [shape_bytes(shapes.get(o, "")) for o in inst.operands]
      if op == "fusion" and callee in computations:
        fused = computations[callee]
        flops += _fused_flops(fused, computations, shapes, flops_cache)
        for sub in fused.instructions:
          if sub.opcode in ("dot", "convolution"):
            _check_precision(sub, shapes, cost)
        for index, value in _sliced_operand_bytes(fused, shapes, computations,
                                                  sliced_cache).items():
          if index < len(read):
            read[index] = value
      elif op in ("dynamic-slice", "slice", "gather"):
        read = [inst.out_bytes] + read[1:2] if op == "gather" else [inst.out_bytes]
      elif op == "dynamic-update-slice" and len(read) > 1:
        read = [read[1]]
      if op == "custom-call":
        cost.custom_calls.append(_op_name(inst) or inst.name)
        flops += _custom_call_flops(inst)
      written = inst.out_bytes
      if op == "dynamic-update-slice" and len(inst.operands) > 1:
        written = shape_bytes(shapes.get(inst.operands[1], ""))
      elif op == "fusion" and callee in computations:
        written = _written_bytes(computations[callee], shapes)
      moved = sum(read) + written
      cost.kernels.append(Kernel(inst.name, op, _op_name(inst), flops, moved, count, False))

  walk(entry, 1)
  cost.async_move_seconds = cost.async_move_bytes / hbm_bandwidth
  for k in cost.kernels:
    if k.collective:
      k.seconds = k.bytes / ici_bandwidth
      cost.collective_seconds += k.count * k.seconds
    else:
      k.seconds = max(k.flops / peak_flops, k.bytes / hbm_bandwidth)
      cost.compute_seconds += k.count * k.seconds
      cost.flops += k.count * k.flops
      cost.bytes += k.count * k.bytes
  return cost


def _largest_array(shape: str) -> int:
  sizes = [shape_bytes(f"{d}[{s}]") for d, s in _ARRAY.findall(_strip_layouts(shape))]
  return max(sizes, default=0)


def _written_bytes(fused: Computation, shapes: dict[str, str]) -> int:
  """Bytes a fusion writes: its results, except that a result made by an in-place
  `dynamic-update-slice` (a scan writing one layer's slice of a stacked buffer) costs the
  update only."""
  by_name = {inst.name: inst for inst in fused.instructions}
  if not fused.instructions:
    return 0
  root = fused.instructions[-1]
  parts = [by_name.get(o) for o in root.operands] if root.opcode == "tuple" else [root]
  total = 0
  for inst in parts:
    while inst is not None and inst.opcode == "bitcast" and inst.operands:
      inst = by_name.get(inst.operands[0], inst) if by_name.get(inst.operands[0]) else None
    if inst is None:
      continue
    if inst.opcode == "dynamic-update-slice" and len(inst.operands) > 1:
      total += shape_bytes(shapes.get(inst.operands[1], ""))
    else:
      total += inst.out_bytes
  return total


# Splash attention's kernels, by the name Pallas gives them, and their FLOPs in units of
# batch x heads x L^2 x head_dim: forward QK^T and PV (2 + 2); dq recomputes QK^T, then dP and
# dQ (2 + 2 + 2); dkv recomputes QK^T, then dV, dP and dK (2 + 2 + 2 + 2).
_ATTENTION_KERNELS = (("splash_mha_fwd", 4), ("splash_mha_dq", 6), ("splash_mha_dkv", 8),
                      ("splash_mha_bwd", 10))


def _custom_call_flops(inst: Instruction) -> float:
  """A Pallas kernel's FLOPs: its author's cost estimate when the HLO carries one, else the
  attention count for splash kernels (from the query's `[batch, heads, L, head_dim]`)."""
  match = re.search(r'\\?"flops\\?"\s*:\s*\\?"?(\d+)', inst.attrs)
  if match:
    return float(match.group(1))
  for name, factor in _ATTENTION_KERNELS:
    if inst.name.startswith(name) or f"/{name}" in inst.attrs:
      constraints = re.search(r"operand_layout_constraints=\{(.*?)\}\s*,\s*\w+=", inst.attrs)
      text = constraints.group(1) if constraints else inst.attrs
      for dtype, dims in _ARRAY.findall(_strip_layouts(text)):
        sizes = [int(d) for d in dims.split(",") if d]
        if dtype in ("bf16", "f32", "f16") and len(sizes) == 4:
          batch, heads, length, head_dim = sizes
          return float(factor) * batch * heads * length * length * head_dim
  return 0.0


def _check_precision(inst: Instruction, shapes: dict[str, str], cost: Cost) -> None:
  """Records a dot/convolution with a float32 operand at HIGHEST precision (6 bf16 passes on
  TPU's MXU)."""
  if "operand_precision={highest" not in inst.attrs:
    return
  if any(_dtype(shapes.get(o, "")) == "f32" for o in inst.operands[:2]):
    cost.f32_highest_dots.append(_short_op(_op_name(inst)) or inst.name)

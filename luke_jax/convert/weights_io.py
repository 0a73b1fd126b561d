"""Reading and writing PyTorch-side weight files as numpy, with errors that name the file.

safetensors is parsed here directly (8-byte header length, JSON header, raw little-endian data)
so that reading it needs neither torch nor a framework that lacks bfloat16; `.bin` needs torch.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class WeightsError(ValueError):
  """A weights file is missing, unreadable or inconsistent; the message names the file."""


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  path = Path(path)
  size = path.stat().st_size
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) < 8:
      raise WeightsError(f"{path}: truncated safetensors file (no header)")
    (header_len,) = struct.unpack("<Q", head)
    if header_len > size - 8:
      raise WeightsError(f"{path}: truncated or corrupt safetensors file (header of {header_len} "
                         f"bytes in a file of {size})")
    try:
      header = json.loads(f.read(header_len))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise WeightsError(f"{path}: corrupt safetensors header ({e})") from None
    data = f.read()
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    begin, end = info["data_offsets"]
    if end > len(data):
      raise WeightsError(f"{path}: truncated file: tensor {name!r} needs bytes {begin}..{end} of "
                         f"the data section, which has only {len(data)}")
    if info["dtype"] not in _DTYPES:
      raise WeightsError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
    arr = np.frombuffer(data[begin:end], dtype=_DTYPES[info["dtype"]])
    out[name] = arr.reshape(info["shape"]).copy()
  return out


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray]) -> None:
  header: dict = {"__metadata__": {"format": "pt"}}
  offset = 0
  blobs = []
  for name in sorted(tensors):
    arr = np.ascontiguousarray(tensors[name])
    raw = arr.tobytes()
    header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape),
                    "data_offsets": [offset, offset + len(raw)]}
    offset += len(raw)
    blobs.append(raw)
  encoded = json.dumps(header, separators=(",", ":")).encode()
  encoded += b" " * (-len(encoded) % 8)  # the format aligns the data section to 8 bytes
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(encoded)))
    f.write(encoded)
    for raw in blobs:
      f.write(raw)


def read_torch_bin(path: str | os.PathLike, key: str | None = None) -> dict[str, np.ndarray]:
  """A `torch.save`d state dict (optionally nested under `key`, e.g. DeepSpeed's `module`)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise WeightsError(f"{path}: reading .bin files needs torch (pip install "
                       "'luke-jax[convert]'); safetensors files do not") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises several types for damaged archives
    raise WeightsError(f"{path}: cannot read PyTorch weights ({type(e).__name__}: {e})") from None
  if key is not None and key in state:
    state = state[key]
  out = {}
  for name, t in state.items():
    if not hasattr(t, "detach"):
      continue
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
      out[name] = t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    else:
      out[name] = t.numpy()
  return out


def read_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
  path = Path(path)
  if path.suffix == ".safetensors":
    return read_safetensors(path)
  return read_torch_bin(path)


def find_weights(directory: str | os.PathLike) -> list[Path]:
  """The weight files of an HF directory: one file, or the shards its index lists."""
  directory = Path(directory)
  for name in WEIGHT_FILES:
    index = directory / f"{name}.index.json"
    if index.exists():
      try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
      except (json.JSONDecodeError, KeyError) as e:
        raise WeightsError(f"{index}: not a valid weight index ({e})") from None
      return [directory / s for s in shards]
    if (directory / name).exists():
      return [directory / name]
  raise WeightsError(f"{directory}: no weights found (looked for {', '.join(WEIGHT_FILES)} and "
                     "their .index.json shards)")


def load_state_dict(directory: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
  """All tensors of an HF directory and, for error messages, the file each came from."""
  tensors, origin = {}, {}
  for f in find_weights(directory):
    if not f.exists():
      raise WeightsError(f"{f}: weight shard listed in the index is missing")
    for name, arr in read_weights(f).items():
      tensors[name] = arr
      origin[name] = f
  return tensors, origin

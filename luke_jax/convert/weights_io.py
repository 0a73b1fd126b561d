"""Reading and writing PyTorch-side weight files as numpy, with errors that name the file.

safetensors is parsed here directly (8-byte header length, JSON header, raw little-endian data)
so that reading it needs neither torch nor a framework that lacks bfloat16; `.bin` needs torch.

A `.bin` file is a pickle, and unpickling runs whatever code the file names. It is therefore
read with `torch.load(weights_only=True)`, which admits tensors and plain containers only; a
file with anything else is refused unless the caller passes `allow_pickle=True` (the
converter's `--allow_pickle`), which is for files from a trusted source only.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import pickletools
import re
import struct
import zipfile
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
# How a refused file's message names the opt-in: the converter's flag, or the argument.
ALLOW_PICKLE_HINT = "python -m luke_jax.convert --allow_pickle (allow_pickle=True in Python)"


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
  if not isinstance(header, dict):
    raise WeightsError(f"{path}: corrupt safetensors header (not a JSON object)")
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    try:
      dtype = info["dtype"]
      shape = [int(d) for d in info["shape"]]
      begin, end = (int(x) for x in info["data_offsets"])
    except (KeyError, TypeError, ValueError):
      raise WeightsError(f"{path}: corrupt safetensors header entry for tensor {name!r}: "
                         f"{info!r}") from None
    if dtype not in _DTYPES:
      raise WeightsError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
    if end > len(data):
      raise WeightsError(f"{path}: truncated file: tensor {name!r} needs bytes {begin}..{end} of "
                         f"the data section, which has only {len(data)}")
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(_DTYPES[dtype]).itemsize
    if min(shape, default=0) < 0 or not 0 <= begin <= end or end - begin != nbytes:
      raise WeightsError(f"{path}: corrupt safetensors header: tensor {name!r} of shape {shape} "
                         f"and dtype {dtype} needs {nbytes} bytes but is given bytes "
                         f"{begin}..{end}")
    arr = np.frombuffer(data[begin:end], dtype=_DTYPES[dtype])
    out[name] = arr.reshape(shape).copy()
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


def read_torch_bin(path: str | os.PathLike, key: str | None = None, *,
                   allow_pickle: bool = False) -> dict[str, np.ndarray]:
  """A `torch.save`d state dict (optionally nested under `key`, e.g. DeepSpeed's `module`).

  Args:
    path: the file.
    key: where the state dict is nested, if it is there.
    allow_pickle: unpickle the file in full, running any code it holds (`weights_only=False`):
      only for a file from a trusted source that the safe load refuses. Entries that are not
      tensors are skipped either way.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise WeightsError(f"{path}: reading .bin files needs torch (pip install "
                       "'luke-jax[convert]'); safetensors files do not") from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
  except Exception as e:  # torch raises several types for damaged archives
    # torch's own message runs to several sentences of advice; the first one is the fact.
    reason = f"{type(e).__name__}: {str(e).split('. ')[0].strip()}"
    lost = _cut_off_tensors(Path(path))
    if lost:
      more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
      raise WeightsError(f"{path}: truncated file: no data for tensor(s) "
                         f"{', '.join(repr(n) for n in lost[:3])}{more} ({reason})") from None
    if not allow_pickle and _refused_by_safe_load(e, Path(path)):
      # The file is whole, and it holds more than tensors: a safe load does not run its code.
      names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(e))))
      what = f" (it calls or builds {', '.join(names)})" if names else ""
      raise WeightsError(
          f"{path}: refused to load: the file contains code, or objects that are not plain "
          f"tensors{what}, which a safe load does not unpickle; only if you trust its source, "
          f"load it with {ALLOW_PICKLE_HINT}, which runs that code") from None
    raise WeightsError(f"{path}: cannot read PyTorch weights; truncated or damaged? ({reason})"
                       ) from None
  if not isinstance(state, dict):
    raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
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


class _Storage:
  """Where a tensor's bytes live in a torch zip archive: entry `data/<key>`, `nbytes` long."""

  def __init__(self, key: str, nbytes: int):
    self.key, self.nbytes = key, nbytes


_ITEMSIZE = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
             "Char": 1, "Byte": 1, "Bool": 1, "Untyped": 1}


class _IndexUnpickler(pickle.Unpickler):
  """Reads a torch `data.pkl` into `{name: _Storage}` without torch and without the tensors."""

  def find_class(self, module, name):
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module.startswith("torch") and name.endswith("Storage"):
      return _ITEMSIZE.get(name[:-len("Storage")], 1)
    if module.startswith("torch") and name.startswith(("_rebuild_tensor", "_rebuild_parameter")):
      return lambda storage, *args: storage
    if module == "torch" and name in ("float64", "float32", "float16", "bfloat16", "int64",
                                      "int32", "int16", "int8", "uint8", "bool"):
      return np.dtype(ml_dtypes.bfloat16 if name == "bfloat16" else name).itemsize
    return lambda *args, **kwargs: None

  def persistent_load(self, pid):
    _, itemsize, key, _, numel = pid
    return _Storage(str(key), int(numel) * (itemsize if isinstance(itemsize, int) else 1))


def _refused_by_safe_load(error: Exception, path: Path) -> bool:
  """Whether `torch.load(weights_only=True)` refused a whole file for what it holds.

  torch reports both a refused object and some cut-off files (a garbled opcode read as an
  unknown GLOBAL) as "Weights only load failed", so the file's pickles are also walked, without
  running them (`pickletools.genops` only decodes opcodes): they must end where they should.
  """
  if not (isinstance(error, pickle.UnpicklingError) and "Weights only load failed" in str(error)):
    return False
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as archive:  # a cut-off zip has no central directory
        names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(names) != 1:
          return False
        for _ in pickletools.genops(archive.read(names[0])):
          pass
      return True
    # The legacy format: five pickles (magic number, protocol, system info, the object, the
    # storage keys), then the raw storages, which a refusal never reaches.
    with open(path, "rb") as f:
      for _ in range(5):
        ops = [op.name for op, _, _ in pickletools.genops(f)]
        if ops[-1:] != ["STOP"]:
          return False
    return True
  except Exception:  # pylint: disable=broad-except
    return False  # not decodable as pickles: damaged, and the plain message stands


def _cut_off_tensors(path: Path) -> list[str]:
  """Names of the tensors whose data a truncated `torch.save` zip file lacks (best effort).

  A truncated zip has no central directory, so this walks the local entries instead: torch
  writes `<archive>/data.pkl` first (the names and storage sizes), then `<archive>/data/<key>`
  per storage, each stored uncompressed.
  """
  try:
    blob = path.read_bytes()
    if not blob.startswith(b"PK\x03\x04"):
      return []
    entries = {}  # entry name -> offset of its data
    pos = 0
    while True:
      pos = blob.find(b"PK\x03\x04", pos)
      if pos < 0 or pos + 30 > len(blob):
        break
      name_len, extra_len = struct.unpack("<HH", blob[pos + 26:pos + 30])
      name = blob[pos + 30:pos + 30 + name_len]
      # Only entry names of the archive layout count; four bytes inside tensor data may match.
      if re.fullmatch(rb"[^/\x00]+/(data\.pkl|data/\d+)", name):
        entries[name.decode()] = pos + 30 + name_len + extra_len
      pos += 4
    pkl = next((n for n in entries if n.endswith("/data.pkl")), None)
    if pkl is None:
      return []
    tree = _IndexUnpickler(io.BytesIO(blob[entries[pkl]:])).load()
    prefix = pkl[:-len("data.pkl")]
    lost = []

    def walk(node, name):
      if isinstance(node, _Storage):
        start = entries.get(f"{prefix}data/{node.key}")
        if start is None or start + node.nbytes > len(blob):
          lost.append(name)
      elif isinstance(node, dict):
        for k, v in node.items():
          walk(v, f"{name}.{k}" if name else str(k))

    walk(tree, "")
    return [n[len("module."):] if n.startswith("module.") else n for n in lost]
  except Exception:  # pylint: disable=broad-except
    # A diagnosis only: if the file is damaged beyond this walk, the plain error stands.
    return []


def read_weights(path: str | os.PathLike, *, allow_pickle: bool = False
                 ) -> dict[str, np.ndarray]:
  path = Path(path)
  if path.suffix == ".safetensors":
    return read_safetensors(path)
  return read_torch_bin(path, allow_pickle=allow_pickle)


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


def load_state_dict(directory: str | os.PathLike, *, allow_pickle: bool = False
                    ) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
  """All tensors of an HF directory and, for error messages, the file each came from.

  `allow_pickle`: see `read_torch_bin` (trusted files only).
  """
  tensors, origin = {}, {}
  for f in find_weights(directory):
    if not f.exists():
      raise WeightsError(f"{f}: weight shard listed in the index is missing")
    for name, arr in read_weights(f, allow_pickle=allow_pickle).items():
      tensors[name] = arr
      origin[name] = f
  return tensors, origin

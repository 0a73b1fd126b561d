"""How the command lines report errors: one line for an expected error, a traceback for a bug.

Every entry point (`run_pretrain.py`, `run_finetune.py`, `python -m luke_jax.convert`,
`python -m luke_jax.aot`, the `luke_jax.data` tools) runs its `main` through `run(main)`
instead of `absl.app.run(main)`. An expected error is printed as one line on stderr,

  <prog>: error: <message>

and the process exits with

  2  bad input or configuration: `ValueError` (and the project's errors derived from it:
     `ConversionError`, `WeightsError`, `DataError`, `DumpError`, `MalformedWikitext`),
     `KeyError` with a message (a sentence, not a bare key), `FileNotFoundError`,
     `FileExistsError`, `NotADirectoryError`, `IsADirectoryError` and `PermissionError`;
  1  a failure while running: any other `OSError` (a full disk, a lost mount) and
     `FloatingPointError` (`NonFiniteLossError`: the loss became NaN or Inf).

Any other exception is a bug and keeps Python's traceback (exit status 1). The traceback of an
expected error is printed too, above its line, with `--verbosity=1` (or higher) or with
`LUKE_JAX_TRACEBACK=1` in the environment; `--pdb_post_mortem` debugs it as absl does.
`absl.app.UsageError` (a bad combination of flags) and flag parsing errors keep absl's usage
message. On a machine without TPU chips, `run` also keeps JAX from starting libtpu (installed
by the `tpu` extra), whose start-up warnings would otherwise precede every message
(`skip_absent_tpu`), and keeps libraries' INFO records (the checkpoint library's ~40 lines per
save) out of the output unless `--verbosity=1` (`quiet_libraries`).
"""

from __future__ import annotations

import glob
import importlib.util
import logging as pylogging
import os
from pathlib import Path
import sys
import traceback
from typing import Any, Callable, Sequence

from absl import app, flags, logging

TRACEBACK_ENV = "LUKE_JAX_TRACEBACK"

# Bad input or configuration: the user changes a flag, a setting or a file.
_BAD_INPUT = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
              IsADirectoryError, PermissionError)
# Failures of the run itself that the exception's message explains.
_RUNTIME = (OSError, FloatingPointError)


def exit_code(error: BaseException, runtime_errors: bool = True) -> int | None:
  """The exit status for an expected `error`; None for a bug (its traceback is what helps).

  With `runtime_errors=False` only bad input is expected (for a program whose exit status 1
  means something else).
  """
  if isinstance(error, app.UsageError):
    return None
  if isinstance(error, KeyError):
    # `d[key]` on a missing key raises KeyError(key): a bug. The project raises KeyError with a
    # sentence (e.g. "unknown preset 'x'; known: [...]"), which is an answer for the user.
    text = error.args[0] if len(error.args) == 1 else None
    return 2 if isinstance(text, str) and " " in text.strip() else None
  if isinstance(error, _BAD_INPUT):
    return 2
  if runtime_errors and isinstance(error, _RUNTIME):
    return 1
  return None


def message(error: BaseException) -> str:
  """The error's text on one line (`str(KeyError)` would quote it)."""
  text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
  text = " ".join(str(text).split()) or type(error).__name__
  return text


def _prog() -> str:
  # `python -m luke_jax.convert` runs `luke_jax/convert/__main__.py`: name the module typed,
  # not the file; a script (`run_pretrain.py`) by its file name.
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if spec is not None and spec.name:
    return spec.name.removesuffix(".__main__")
  return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "luke_jax"


def _wants_traceback() -> bool:
  if os.environ.get(TRACEBACK_ENV, "").strip().lower() in ("1", "true", "yes"):
    return True
  return logging.get_verbosity() >= 1


# Google's PCI vendor id: TPU chips show up under it (jax's `hardware_utils` reads the same).
_GOOGLE_PCI_VENDOR = "0x1ae0"


def _has_tpu_chips() -> bool:
  for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
    try:
      if Path(vendor).read_text().strip() == _GOOGLE_PCI_VENDOR:
        return True
    except OSError:
      continue
  return False


def skip_absent_tpu() -> None:
  """Keeps JAX from starting libtpu on a machine without TPU chips.

  With libtpu installed (the `tpu` extra, for ahead-of-time compiles), JAX tries the TPU
  backend first when `JAX_PLATFORMS` is unset; on a machine without chips libtpu then prints
  about five lines of warnings and errors before JAX falls back, above every message of ours.
  Where that would happen, the platforms JAX would end up with are named instead: `cuda,cpu`
  when a CUDA plugin and an NVIDIA device are present, else `cpu`. A set `JAX_PLATFORMS` (or
  `jax_platforms`) is left alone.
  """
  if os.environ.get("JAX_PLATFORMS") or importlib.util.find_spec("libtpu") is None:
    return
  if _has_tpu_chips():
    return
  cuda = (any(importlib.util.find_spec(f"jax_cuda{v}_plugin") for v in (12, 13))
          and bool(glob.glob("/dev/nvidia[0-9]*")))
  platforms = "cuda,cpu" if cuda else "cpu"
  jax = sys.modules.get("jax")
  if jax is None:
    os.environ["JAX_PLATFORMS"] = platforms  # read when jax is imported
  elif jax.config.jax_platforms is None:
    jax.config.update("jax_platforms", platforms)  # backends start on first use, not import


class _OwnInfoOnly(pylogging.Filter):
  """Passes warnings and errors of everyone, and info only of luke-jax and the script run.

  The checkpoint library logs ~40 INFO lines per save (thread names, throughputs, renames)
  through absl, the same logger as ours; a converter or a training run would bury its own
  progress under them.
  """

  def __init__(self, roots: Sequence[str]):
    super().__init__()
    self.roots = tuple(roots)

  def filter(self, record: pylogging.LogRecord) -> bool:
    return record.levelno >= pylogging.WARNING or record.pathname.startswith(self.roots)


def quiet_libraries() -> None:
  """Libraries' INFO and DEBUG records are dropped unless `--verbosity` is 1 (debug) or more."""
  if logging.get_verbosity() >= 1:
    return
  package = str(Path(__file__).resolve().parent)
  main_file = getattr(sys.modules.get("__main__"), "__file__", None)
  roots = [package + os.sep] + ([str(Path(main_file).resolve())] if main_file else [])
  logging.get_absl_handler().addFilter(_OwnInfoOnly(roots))


def run(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None, *,
        prog: str | None = None, runtime_errors: bool = True) -> None:
  """`absl.app.run(main)`, with expected errors reported as one line (see the module docstring).

  Args:
    main: the program; takes the arguments left after absl parsed the flags. Its return value
      is the exit status, as with `app.run`.
    argv: the command line; default `sys.argv`.
    prog: the program's name in messages; default the module or script that was run.
    runtime_errors: also report runtime failures (exit status 1) as one line; False leaves
      them their traceback.
  """
  name = prog or _prog()
  skip_absent_tpu()

  def guarded(args):
    quiet_libraries()  # after absl parsed --verbosity
    try:
      return main(args)
    except Exception as e:  # pylint: disable=broad-except
      code = exit_code(e, runtime_errors)
      if code is None or flags.FLAGS["pdb_post_mortem"].value:
        raise  # a bug (or a usage error, or a debugging session): absl's own handling
      if _wants_traceback():
        traceback.print_exc()
      print(f"{name}: error: {message(e)}", file=sys.stderr, flush=True)
      sys.exit(code)

  app.run(guarded, argv=argv)

"""Executes notebooks/quickstart.ipynb end to end; any cell that raises fails the test."""

import shutil
import sys
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

pytestmark = [pytest.mark.slow, pytest.mark.torch]
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
KERNEL = "python3"
# Names jupyter_client replaces with sys.executable when it launches a kernel.
_CURRENT_PYTHON = {"python", f"python{sys.version_info[0]}",
                   "python{}.{}".format(*sys.version_info[:2]), sys.executable}


def _use_this_interpreter(tmp_path: Path, monkeypatch) -> None:
  """Makes the "python3" kernel run this interpreter (the venv with luke_jax installed).

  ipykernel's own "python3" spec launches `python`, which jupyter_client maps to sys.executable;
  a user-level or system spec of the same name may point elsewhere and win the lookup. Then a
  spec written for this interpreter goes first on JUPYTER_PATH.
  """
  from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
  try:
    argv0 = KernelSpecManager().get_kernel_spec(KERNEL).argv[0]
  except NoSuchKernel:
    argv0 = None
  if argv0 in _CURRENT_PYTHON:
    return
  from ipykernel import kernelspec
  prefix = tmp_path / "jupyter_prefix"
  kernelspec.install(kernel_name=KERNEL, prefix=str(prefix))
  monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
  assert KernelSpecManager().get_kernel_spec(KERNEL).argv[0] == sys.executable


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
  _use_this_interpreter(tmp_path, monkeypatch)
  # The notebook's own temporary files land in tmp_path too, even if a cell fails early.
  monkeypatch.setenv("TMPDIR", str(tmp_path))
  work = tmp_path / "quickstart.ipynb"
  shutil.copy(NOTEBOOK, work)
  nb = nbformat.read(work, as_version=4)
  assert all(not cell.get("outputs") and cell.get("execution_count") is None
             for cell in nb.cells), "commit the notebook without outputs"
  # Checked inside the kernel, so a wrong interpreter fails loudly rather than by ImportError.
  nb.cells.insert(0, nbformat.v4.new_code_cell(
      f"import sys\nassert sys.prefix == {sys.prefix!r}, sys.executable"))
  client = nbclient.NotebookClient(nb, timeout=300, kernel_name=KERNEL,
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails
  # A notebook edit that drops the parity check would otherwise pass silently.
  parity = [cell for cell in nb.cells if "max |diff|" in cell.source and "assert" in cell.source]
  assert len(parity) == 1, "the notebook must assert parity with PyTorch in one cell"
  text = "".join(o.get("text", "") for o in parity[0].outputs)
  assert "max |diff|" in text, text

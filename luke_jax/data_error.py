"""`DataError`: bad input data, the message naming the file, the line and the reason.

Below every reader of task data (fine-tuning tasks, entity disambiguation, raw-text files), so
each raises the same error and the command-line tools report it as one line (exit status 2).
"""

from __future__ import annotations

import os


class DataError(ValueError):
  """Bad input data; the message names the file, the line (or example) and the reason."""

  def __init__(self, path: str | os.PathLike, line: int | str | None, reason: str):
    where = f"{path}" if line is None else f"{path}:{line}"
    super().__init__(f"{where}: {reason}")
    self.path, self.line, self.reason = str(path), line, reason

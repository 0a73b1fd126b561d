"""JAX's persistent compilation cache, opted into with a setting.

With the cache on, every program jax compiles is also written to a directory, and a later
process that needs the same program (same model shapes, bucket, jax version and backend) loads
it instead of compiling: a pipeline's first call on each bucket then costs a file read rather
than seconds of XLA (see jax's guide, "Persistent compilation cache").

Turn it on with `luke_jax.pipeline(..., compilation_cache_dir=PATH)` or the environment
variable `LUKE_JAX_COMPILATION_CACHE=PATH` (the argument wins). It is off by default because
the setting is not the pipeline's to take silently:
- it is process-wide: every `jax.jit` in the process, not only the pipeline's, is cached;
- entries accumulate without bound (jax evicts nothing unless `jax_compilation_cache_max_size`
  is set), in a directory the user should choose;
- the directory is trusted code: jax's documentation warns that anyone who can write to it can
  make the process run arbitrary code, so it must not default to a shared location.
Every program is cached, including those that compile in under jax's default 1 s threshold
(small buckets of small models: exactly the ones a pipeline has many of).

JAX opens the directory once per process: the first time it compiles after a directory is set.
Setting one before any compilation always works; setting one later works too, as long as no
other directory was set before it (a directory that jax already opened cannot be replaced: it
keeps being used, and `enable` warns and reports it).
"""

from __future__ import annotations

import os
from pathlib import Path

from absl import logging
import jax

ENV_VAR = "LUKE_JAX_COMPILATION_CACHE"


def enable(directory: str | os.PathLike | None = None) -> str | None:
  """Turns the persistent compilation cache on (see the module docstring).

  Args:
    directory: where compiled programs go; None reads `LUKE_JAX_COMPILATION_CACHE` (unset or
      empty: leave jax's setting as it is).

  Returns:
    The directory jax uses now, or None when the cache is off.
  """
  if directory is None:
    directory = os.environ.get(ENV_VAR) or None
  current = jax.config.jax_compilation_cache_dir or None
  if directory is None:
    return current
  wanted = Path(directory).expanduser().absolute()
  if current is not None and Path(current).expanduser().absolute() != wanted:
    # jax opens one directory per process and never switches; saying so beats a silent miss.
    logging.warning("the persistent compilation cache is already %s in this process (set "
                    "earlier, e.g. by JAX_COMPILATION_CACHE_DIR); %s is not used", current,
                    wanted)
    return current
  wanted.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(wanted))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return str(wanted)

r"""Export a LUKE model for serving: a `jax.export` program, its weights and its tokenizer.

  python -m luke_jax.export --model=ckpt/luke-base --out=serving/luke-base
  python -m luke_jax.export --model=ckpt/ner --out=serving/ner --dtype=bfloat16 \
      --platforms=cuda

--model is anything `luke_jax.from_pretrained` reads. The directory is written under a
temporary name and renamed when complete; an existing --out is refused unless --overwrite.
Load it with `luke_jax.export.load(DIR)`. Errors are one line on stderr, exit status 2 (see
`luke_jax.cli`).
"""

from __future__ import annotations

from absl import flags

from luke_jax import cli
from luke_jax import export as export_lib

_MODEL = flags.DEFINE_string("model", None, "Checkpoint to export (luke-jax or Hugging Face "
                             "directory, or whatever luke_jax.from_pretrained reads).",
                             required=True)
_OUT = flags.DEFINE_string("out", None, "Directory to write (must not exist).", required=True)
_ARCH = flags.DEFINE_string("architecture", None,
                            "Head to load --model as; default the checkpoint's own.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "Compute and stored parameter dtype.")
_PLATFORMS = flags.DEFINE_list("platforms", None, "Platforms the program is lowered for "
                               "(any of cpu, cuda, tpu); default all three.")
_TOKENIZER = flags.DEFINE_string("tokenizer", None,
                                 "Tokenizer directory; default --model's own files.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --out if it exists.")


def main(argv):
  del argv
  out = export_lib.export(_MODEL.value, _OUT.value, architecture=_ARCH.value,
                          dtype=_DTYPE.value, platforms=_PLATFORMS.value,
                          tokenizer=_TOKENIZER.value, overwrite=_OVERWRITE.value)
  sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} KiB"
                    for p in sorted(out.iterdir()) if p.is_file())
  print(f"wrote {out}: {sizes}")


if __name__ == "__main__":
  cli.run(main)

r"""Convert LUKE checkpoints between PyTorch formats and luke-jax.

  python -m luke_jax.convert --src_format=hf --src=HF_DIR --dst=OUT_DIR
  python -m luke_jax.convert --src_format=original --src=ARCHIVE_DIR --dst=OUT_DIR
  python -m luke_jax.convert --src_format=roberta --src=ROBERTA_DIR --dst=OUT_DIR \
      --entity_vocab_size=500000
  python -m luke_jax.convert --src_format=flax --src=JAX_DIR --dst=HF_DIR --dst_format=hf
  python -m luke_jax.convert --src=studio-ousia/luke-base --dst=OUT_DIR

--src may be a Hugging Face Hub id instead of a directory (except for --src_format=original):
it is read from the Hugging Face cache and downloaded into it when missing (--revision,
--cache_dir, --local_files_only, --token; HF_HOME, HF_HUB_OFFLINE and HF_TOKEN as for
transformers). See `luke_jax.hub`.

Output directories are written under a temporary name and renamed when complete; --dst may
not be --src, contain it or lie inside it. Errors are one line on stderr, exit status 2 (see
`luke_jax.cli`).
"""

from __future__ import annotations

from absl import app, flags

from luke_jax import checkpoint, cli, hub_flags
from luke_jax.convert import hf, original, roberta

_SRC_FORMAT = flags.DEFINE_enum("src_format", "hf", ["hf", "original", "roberta", "flax"],
                                "Format of --src.")
_SRC = flags.DEFINE_string("src", None, "Source directory, or a Hub repo id (org/name; not for "
                           "--src_format=original).", required=True)
_HUB = hub_flags.HubFlags("--src")
flags.adopt_module_key_flags(hub_flags)  # listed by --help, not only --helpfull
_DST = flags.DEFINE_string("dst", None, "Destination directory (must not exist).", required=True)
_DST_FORMAT = flags.DEFINE_enum("dst_format", None, ["flax", "hf"],
                                "Output format; default flax, or hf when --src_format=flax.")
_ARCH = flags.DEFINE_string("architecture", None,
                            "Target class, e.g. LukeForEntityClassification; default: the "
                            "checkpoint's own (heads missing from it are newly initialised).")
_NUM_LABELS = flags.DEFINE_integer("num_labels", None,
                                   "Labels of a newly initialised classification head.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --dst if it exists.")
_ALLOW_PICKLE = flags.DEFINE_bool("allow_pickle", False,
                                  "Unpickle .bin weights in full, running any code they hold: "
                                  "only for a file from a trusted source that the safe load "
                                  "(tensors and plain containers only) refuses.")
_ENTITY_VOCAB_SIZE = flags.DEFINE_integer("entity_vocab_size", 500000,
                                          "roberta: entity vocabulary size of the new model.")
_ENTITY_EMB_SIZE = flags.DEFINE_integer("entity_emb_size", 256,
                                        "roberta: entity embedding size of the new model.")
_EAA = flags.DEFINE_bool("use_entity_aware_attention", None,
                         "original/roberta: entity-aware attention (default: original on, "
                         "roberta off, as LUKE pretraining used plain attention).")
_MARKER_IDS = flags.DEFINE_list("entity_marker_source_ids", None,
                                "original: word ids whose rows initialise <ent> and <ent2> "
                                "(default: '@' and '#' looked up in --src/vocab.json).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for newly initialised parameters.")


def main(argv):
  del argv
  src_format, dst_format = _SRC_FORMAT.value, _DST_FORMAT.value
  if dst_format is None:
    dst_format = "hf" if src_format == "flax" else "flax"
  allow_pickle = _ALLOW_PICKLE.value
  if src_format == "flax" and dst_format != "hf":
    raise app.UsageError("--src_format=flax converts to --dst_format=hf only")
  # An existing --dst is refused before a Hub id's download, not after.
  checkpoint.check_destination(_DST.value, _OVERWRITE.value)
  src = _SRC.value
  if src_format != "original":  # an original archive is a local directory
    src = _HUB.resolve(src)
  if src_format == "flax":
    hf.flax_to_hf(src, _DST.value, overwrite=_OVERWRITE.value)
  elif src_format == "hf":
    hf.convert(src, _DST.value, dst_format=dst_format, architecture=_ARCH.value,
               num_labels=_NUM_LABELS.value, overwrite=_OVERWRITE.value, seed=_SEED.value,
               allow_pickle=allow_pickle)
  elif src_format == "original":
    original.convert(src, _DST.value, dst_format=dst_format,
                     use_entity_aware_attention=_EAA.value,
                     marker_source_ids=_MARKER_IDS.value, overwrite=_OVERWRITE.value,
                     allow_pickle=allow_pickle)
  else:
    roberta.convert(src, _DST.value, dst_format=dst_format,
                    entity_vocab_size=_ENTITY_VOCAB_SIZE.value,
                    entity_emb_size=_ENTITY_EMB_SIZE.value,
                    use_entity_aware_attention=bool(_EAA.value), seed=_SEED.value,
                    overwrite=_OVERWRITE.value, allow_pickle=allow_pickle)


if __name__ == "__main__":
  cli.run(main)

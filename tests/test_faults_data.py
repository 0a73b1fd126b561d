"""Damaged data files fail loudly, naming the file (and line) and what to change (issue #16).

Each case is met as a user meets it: a file on disk read through the public function, or the
command-line tool and its exit code, on tiny inputs. The damaged dumps are the real sample cut
at half its bytes, and the sample with garbage bytes written over its middle.
"""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, finetune_config
from luke_jax.data import dataset, entity_vocab_builder, train_sentencepiece, wikipedia
from luke_jax.tokenization.entity_vocab import Entity, EntityVocab

CONFIG = dict(max_seq_length=32, max_entity_length=4, max_mention_length=4)
DOCS = 2  # articles per tiny dataset
SHARD = (f"{dataset.RECORDS}/{dataset.NAME}/{dataset.VERSION}/"
         f"{dataset.NAME}-train.array_record-00000-of-00001")


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dumps(wiki_dump, tmp_path_factory):
  data = wiki_dump.read_bytes()
  root = tmp_path_factory.mktemp("dumps")
  cut = root / "cut.xml.bz2"
  cut.write_bytes(data[:len(data) // 2])
  mid = len(data) // 2
  garbage = root / "garbage.xml.bz2"
  garbage.write_bytes(data[:mid] + b"\xde\xad\xbe\xef" * 256 + data[mid + 1024:])
  return {"cut": cut, "garbage": garbage}


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
  names = ["[PAD]", "[UNK]", "[MASK]", "Anarchism", "Political philosophy", "Autism"]
  path = tmp_path_factory.mktemp("vocab") / "entity_vocab.jsonl"
  EntityVocab((i, [Entity(name)], 1) for i, name in enumerate(names)).save(path)
  return path


@pytest.fixture(scope="module")
def clis(dumps, luke_dir, vocab_file, tmp_path_factory):
  """The three tools run at once on the cut dump without --allow_truncated_dump (they share
  the two cores; each mostly imports). Each output path holds a file the user had before."""
  root = tmp_path_factory.mktemp("clis")
  dataset_dir = root / "dataset"
  dataset_dir.mkdir()
  (dataset_dir / "notes.txt").write_text("mine")
  vocab_out = root / "entity_vocab.jsonl"
  vocab_out.write_text("an older vocabulary\n")
  tokenizer_dir = root / "tokenizer"
  cut = dumps["cut"]
  commands = {
      "build_pretraining_dataset": [
          f"--dump={cut}", f"--tokenizer={luke_dir}", f"--entity_vocab={vocab_file}",
          f"--output_dir={dataset_dir}", "--max_seq_length=32", "--max_entity_length=4",
          "--max_mention_length=4", f"--max_num_documents={DOCS}", "--workers=1"],
      "build_entity_vocab": [f"--dump={cut}", f"--output={vocab_out}", "--vocab_size=10"],
      "train_sentencepiece": [f"--dump={cut}", f"--output_dir={tokenizer_dir}",
                              "--vocab_size=300"],
  }
  procs = {name: subprocess.Popen([sys.executable, "-m", f"luke_jax.data.{name}", *args],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
           for name, args in commands.items()}
  results = {}
  for name, proc in procs.items():
    stdout, stderr = proc.communicate(timeout=300)
    results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
  return results, dataset_dir, vocab_out, tokenizer_dir


@pytest.fixture(scope="module")
def built(wiki_dump, luke_dir, vocab_file, tmp_path_factory):
  """A tiny healthy dataset, built once; tests damage copies of it."""
  out = tmp_path_factory.mktemp("built") / "dataset"
  # Sentences without links too: a few hundred examples from two articles.
  meta = dataset.build(wiki_dump, luke_dir, vocab_file, out, workers=1, max_num_documents=DOCS,
                       config=dict(CONFIG, include_sentences_without_entities=True))
  assert meta["number_of_items"] > 3
  return out, meta


def damaged_copy(built, tmp_path):
  src, _ = built
  copy = tmp_path / "dataset"
  shutil.copytree(src, copy)
  return copy, copy / SHARD


def assert_failed_loudly(result, dump):
  assert result.returncode != 0, result.stdout + result.stderr
  assert "--allow_truncated_dump" in result.stderr and str(dump) in result.stderr


# -- 7: truncated or corrupt dumps ------------------------------------------------------------
def test_pretraining_dataset_cli_fails_on_a_truncated_dump(clis, dumps):
  results, dataset_dir, _, _ = clis
  assert_failed_loudly(results["build_pretraining_dataset"], dumps["cut"])
  assert not (dataset_dir / "metadata.json").exists()  # what marks a dataset complete
  assert (dataset_dir / "notes.txt").read_text() == "mine"
  with pytest.raises(FileNotFoundError, match="did not finish"):
    dataset.data_source(dataset_dir)


def test_entity_vocab_cli_fails_on_a_truncated_dump(clis, dumps):
  results, _, vocab_out, _ = clis
  assert_failed_loudly(results["build_entity_vocab"], dumps["cut"])
  assert vocab_out.read_text() == "an older vocabulary\n"  # neither replaced nor deleted


def test_sentencepiece_cli_fails_on_a_truncated_dump(clis, dumps):
  results, _, _, tokenizer_dir = clis
  assert_failed_loudly(results["train_sentencepiece"], dumps["cut"])
  assert not tokenizer_dir.exists()
  assert not list(tokenizer_dir.parent.glob(f".{tokenizer_dir.name}.tmp-*"))


def test_corrupt_dump_fails_every_builder(dumps, luke_dir, vocab_file, tmp_path):
  garbage = dumps["garbage"]
  with pytest.raises(wikipedia.DumpError, match="allow_truncated_dump") as info:
    dataset.build(garbage, luke_dir, vocab_file, tmp_path / "dataset", config=CONFIG,
                  workers=1, max_num_documents=DOCS)
  assert str(garbage) in str(info.value) and "\n" not in str(info.value)
  assert not (tmp_path / "dataset" / "metadata.json").exists()
  with pytest.raises(wikipedia.DumpError, match="allow_truncated_dump"):
    entity_vocab_builder.count_links(garbage)
  with pytest.raises(wikipedia.DumpError, match="allow_truncated_dump"):
    train_sentencepiece.train(str(garbage), tmp_path / "tokenizer", vocab_size=300)
  assert not (tmp_path / "tokenizer").exists()


def test_allow_truncated_dump_writes_output_marked_partial(dumps, luke_dir, vocab_file,
                                                           tmp_path, caplog):
  cut = dumps["cut"]
  with caplog.at_level("WARNING"):
    meta = dataset.build(cut, luke_dir, vocab_file, tmp_path / "dataset", config=CONFIG,
                         workers=1, max_num_documents=DOCS, allow_truncated_dump=True)
  assert "PARTIAL" in caplog.text
  on_disk = json.loads((tmp_path / "dataset" / "metadata.json").read_text())
  assert meta == on_disk and meta["partial"] and meta["number_of_items"] > 0
  assert "Auteur Theory Film" in meta["partial"]  # the last page read before the damage
  assert len(dataset.data_source(tmp_path / "dataset")) == meta["number_of_items"]
  # A rerun without the flag does not take the partial dataset for a complete one.
  with pytest.raises(FileExistsError, match="allow_truncated_dump"):
    dataset.build(cut, luke_dir, vocab_file, tmp_path / "dataset", config=CONFIG, workers=1,
                  max_num_documents=DOCS)

  counts = entity_vocab_builder.count_links(cut, allow_truncated_dump=True)
  assert counts.stats.truncated and 0 < counts.stats.pages < 206 and counts.counts

  caplog.clear()
  with caplog.at_level("WARNING"):
    # BPE: unigram training takes ten times as long on this text.
    out = train_sentencepiece.train(str(cut), tmp_path / "tokenizer", vocab_size=300,
                                    model_type="bpe", allow_truncated_dump=True)
  assert (out / "sentencepiece.bpe.model").exists() and "PARTIAL" in caplog.text


# -- 8, 12: entity vocabulary files -----------------------------------------------------------
SPECIAL_LINES = "[PAD]\t0\n[UNK]\t0\n[MASK]\t0\n"


@pytest.mark.parametrize("text, line, reason", [
    ("[PAD]\t0\n[UNK]\t0\n\n[MASK]\t0\nTokyo\t3\n", 3, "blank line"),
    (SPECIAL_LINES + "Tokyo\t3\n\n", 5, "blank line"),
    (SPECIAL_LINES + "Tokyo\tmany\n", 4, "count 'many' is not an integer"),
    (SPECIAL_LINES + "Tokyo\t3\textra\n", 4, "3 tab-separated fields"),
    (SPECIAL_LINES + "Tokyo\n", 4, "1 tab-separated field"),
    (SPECIAL_LINES + "\t3\n", 4, "empty title"),
    (SPECIAL_LINES + "Tokyo\t3\nJapan\t2\nTokyo\t1\n", 6, "'Tokyo' is already on line 4"),
])
def test_tsv_entity_vocab_errors_name_file_and_line(tmp_path, text, line, reason):
  path = tmp_path / "entity_vocab.tsv"
  path.write_text(text, encoding="utf-8")
  with pytest.raises(ValueError, match=reason) as info:
    EntityVocab.load(path)
  assert str(info.value).startswith(f"{path}:{line}: ") and "\n" not in str(info.value)


JSONL_SPECIALS = [{"id": i, "entities": [[name, None]], "count": 0}
                  for i, name in enumerate(["[PAD]", "[UNK]", "[MASK]"])]


@pytest.mark.parametrize("item, reason", [
    ({"id": -1, "entities": [["Tokyo", "en"]], "count": 3}, "id -1"),
    ({"id": 3.5, "entities": [["Tokyo", "en"]], "count": 3}, "id 3.5"),
    ({"id": 3, "entities": [], "count": 3}, "no entities"),
    ({"id": 3, "entities": [[None, "en"]], "count": 3}, "title"),
    ({"id": 3, "entities": [["Tokyo", 7]], "count": 3}, "language"),
    ({"id": 3, "entities": [["[UNK]", None]], "count": 3}, r"'\[UNK\]' is already on line 2"),
])
def test_jsonl_entity_vocab_errors_name_file_and_line(tmp_path, item, reason):
  path = tmp_path / "entity_vocab.jsonl"
  path.write_text("".join(json.dumps(x) + "\n" for x in JSONL_SPECIALS + [item]))
  with pytest.raises(ValueError, match=reason) as info:
    EntityVocab.load(path)
  assert str(info.value).startswith(f"{path}:4: ")


def test_titles_with_unicode_line_separators_keep_their_ids(tmp_path):
  # `str.splitlines` splits at U+2028 and U+0085 too; the files split lines at "\n" only.
  names = ["[PAD]", "[UNK]", "[MASK]", "A\u2028B", "C\x85D", "Tokyo"]
  vocab = EntityVocab((i, [Entity(name)], i) for i, name in enumerate(names))
  for suffix in (".tsv", ".jsonl"):
    again = EntityVocab.load(vocab.save(tmp_path / f"entity_vocab{suffix}"))
    assert [again.get_id(name) for name in names] == list(range(6)), suffix


def test_json_entity_vocab_that_is_not_an_object_names_the_file(tmp_path):
  path = tmp_path / "entity_vocab.json"
  path.write_text('["[PAD]", "[UNK]", "[MASK]"]\n')
  with pytest.raises(ValueError, match="not a JSON object") as info:
    EntityVocab.load(path)
  assert str(info.value).startswith(f"{path}: ")


# -- 8: CoNLL-2003 columns ---------------------------------------------------------------------
CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
"""


@pytest.mark.parametrize("text, line, columns, expected", [
    (CONLL.replace("rejects VBZ B-VP O", "rejects VBZ B-VP"), 4, 3, 4),  # the NER column lost
    (CONLL.replace("rejects VBZ B-VP O", "rejects VBZ B-VP O O"), 4, 5, 4),
    # The first token line lost it: the next line disagrees with it.
    (CONLL.replace("EU NNP B-NP B-ORG", "EU NNP B-NP"), 4, 4, 3),
])
def test_conll_line_with_other_columns_is_an_error(tmp_path, luke_dir, text, line, columns,
                                                   expected):
  from luke_jax.finetune.task import DataError  # pylint: disable=g-import-not-at-top
  from luke_jax.finetune.tasks import ner  # pylint: disable=g-import-not-at-top
  from luke_jax.tokenization.tokenizer import LukeTokenizer  # pylint: disable=g-import-not-at-top
  path = tmp_path / "eng.train"
  path.write_text(text, encoding="utf-8")
  task = ner.NerTask(finetune_config("conll2003").data, LukeTokenizer.from_pretrained(luke_dir))
  with pytest.raises(DataError, match=rf"{columns} columns .* expected {expected} as on line"
                     ) as info:
    task.read(path, "train")
  assert info.value.path == str(path) and info.value.line == line
  # The same file with its columns intact reads, tags from the last column.
  good = tmp_path / "good.train"
  good.write_text(CONLL, encoding="utf-8")
  assert [kind for _, _, kind in task.read(good, "train")[0].spans] == ["ORG", "MISC"]


# -- 11: ArrayRecord shards --------------------------------------------------------------------
def test_healthy_dataset_opens(built):
  out, meta = built
  assert len(dataset.data_source(out)) == meta["number_of_items"]


def test_truncated_shard_is_named_when_the_dataset_opens(built, tmp_path):
  copy, shard = damaged_copy(built, tmp_path)
  data = shard.read_bytes()
  shard.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match="rebuild") as info:
    dataset.data_source(copy)
  assert str(shard) in str(info.value) and "\n" not in str(info.value)


def test_shard_with_fewer_records_is_named_when_the_dataset_opens(built, tmp_path):
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  copy, shard = damaged_copy(built, tmp_path)
  reader = array_record_module.ArrayRecordReader(str(shard))
  records = reader.read([0, 1, 2])
  reader.close()
  shard.unlink()
  writer = array_record_module.ArrayRecordWriter(str(shard), "group_size:1")
  for record in records:
    writer.write(record)
  writer.close()
  with pytest.raises(ValueError, match=rf"3 records, expected "
                     rf"{built[1]['number_of_items']}.*rebuild") as info:
    dataset.data_source(copy)
  assert str(shard) in str(info.value)


def test_missing_shard_is_named_when_the_dataset_opens(built, tmp_path):
  copy, shard = damaged_copy(built, tmp_path)
  shard.unlink()
  with pytest.raises(ValueError, match="missing.*rebuild") as info:
    dataset.data_source(copy)
  assert str(shard) in str(info.value)

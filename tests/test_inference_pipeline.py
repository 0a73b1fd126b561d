"""`luke_jax.pipeline`: raw text in, answers out (NER, entity typing, relation classification).

The checkpoints are tiny random heads saved with `luke_jax.save_checkpoint` (no training): what
is tested is the way from text to answers (offsets, decoding, scores, shapes, compilations),
which does not depend on the weights being any good.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

import luke_jax
from luke_jax.finetune.tasks import ner_metric
from luke_jax.finetune.tasks.entity_typing import TypingExample
from luke_jax.finetune.tasks.ner import Document, Sentence
from luke_jax.bucketing import buckets, compilation_cache
from luke_jax.tokenization import words
from luke_jax.models import registry
from luke_jax.models.config import preset
from luke_jax.tokenization.tokenizer import LukeTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]
NER_LABELS = ("O", "LOC", "ORG", "PER")
TYPES = ("location", "organization", "person")
RELATIONS = ("no_relation", "org:founded_by", "per:employee_of")
# Small buckets keep the compilations few and quick; the logic is the same at 512 x 128.
SMALL = dict(buckets=(16, 32, 64), entity_buckets=(16, 64), max_seq_length=64, batch_size=4)
TEXTS = [
    "Beyoncé lives in Los Angeles.",
    "The U.S. economy grew 3.5% in 2020, didn't it?",
    "  Mr. Smith's\tfirm,\u00a0AT&T Inc.,\nhired\u3000José\u200bMaría (CEO) — \"finally\"!",
    "東京 is in Japan 🇯🇵 and Beyonce\u0301 isn't.",
]


def _random_params(architecture, config, seed):
  """Random weights without compiling the initialiser (seconds saved per head): normal(0, 0.2)
  everywhere, LayerNorm scales 1."""
  rng = np.random.default_rng(seed)
  shapes = registry.abstract_params(architecture, config)
  def fill(path, leaf):
    if str(getattr(path[-1], "key", "")) == "scale":
      return np.ones(leaf.shape, leaf.dtype)
    return (rng.standard_normal(leaf.shape) * 0.2).astype(leaf.dtype)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def _save(directory, tokenizer_dir, architecture, labels, seed):
  tok = LukeTokenizer.from_pretrained(tokenizer_dir)
  config = preset("tiny", vocab_size=len(tok), entity_vocab_size=len(tok.entity_vocab),
                  max_position_embeddings=258, id2label=tuple(enumerate(labels)))
  return luke_jax.save_checkpoint(directory, _random_params(architecture, config, seed), config,
                                  architecture, tokenizer_dir=tokenizer_dir)


@pytest.fixture(scope="module", autouse=True)
def quick_compiles():
  """Most XLA optimisations off (conftest's `fast_compile`, for the whole module): compiling,
  not running, is what a tiny model costs. Parity holds all the same: both sides of every
  comparison are compiled alike."""
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, luke_dir):
  root = tmp_path_factory.mktemp("pipeline_checkpoints")
  return dict(
      ner=_save(root / "ner", luke_dir, "LukeForEntitySpanClassification", NER_LABELS, 0),
      typing=_save(root / "typing", luke_dir, "LukeForEntityClassification", TYPES, 1),
      relation=_save(root / "relation", luke_dir, "LukeForEntityPairClassification", RELATIONS,
                     2))


@pytest.fixture(scope="module")
def ner(checkpoints):
  return luke_jax.pipeline("ner", model=checkpoints["ner"], max_mention_length=6, **SMALL)


@pytest.fixture(scope="module")
def typing(checkpoints):
  return luke_jax.pipeline("entity-typing", model=checkpoints["typing"], **SMALL)


@pytest.fixture(scope="module")
def relation(checkpoints):
  return luke_jax.pipeline("relation-classification", model=checkpoints["relation"], **SMALL)


def _direct(pipe, inputs):
  """The model on exactly `inputs` (no bucket padding), jitted once for their shape."""
  apply = jax.jit(lambda p, b: pipe.module.apply({"params": p}, **b, deterministic=True))
  inputs = {k: np.asarray(v, np.int32) for k, v in inputs.items()}
  return np.asarray(apply(pipe.forward.params, inputs).logits, np.float64)


# ---- words ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Beyoncé lives in Los Angeles.", ["Beyoncé", "lives", "in", "Los", "Angeles", "."]),
    ("The U.S. and e.g. U.K. rules", ["The", "U.S.", "and", "e.g.", "U.K.", "rules"]),
    ("I don't think Germany's can't", ["I", "do", "n't", "think", "Germany", "'s", "ca",
                                       "n't"]),
    ("O'Neil's rock'n'roll", ["O'Neil", "'s", "rock'n'roll"]),
    ("Germany 's rep does n't 'sell'", ["Germany", "'s", "rep", "does", "n't", "'", "sell",
                                        "'"]),
    ("Mr. J. Smith of Acme Inc. left.", ["Mr.", "J.", "Smith", "of", "Acme", "Inc.", "left",
                                         "."]),
    ("It cost $1,000.50 at 10:30 on 1996-08-22...", ["It", "cost", "$", "1,000.50", "at",
                                                     "10:30", "on", "1996-08-22", "..."]),
    ("COVID-19, AT&T (and example.com)!", ["COVID-19", ",", "AT&T", "(", "and", "example.com",
                                          ")", "!"]),
    ("Tokyo,Japan students' books", ["Tokyo", ",", "Japan", "students", "'", "books"]),
    ("a\u00a0b\u3000c\u2009d\u200be\ufefff\tg\r\nh\x00i", list("abcdefghi")),
    ("Beyonce\u0301 हिन्दी", ["Beyonce\u0301", "हिन्दी"]),
    ("❤️ 👍", ["❤️", "👍"]),
    ("   \n\t ", []),
])
def test_split_words(text, expected):
  split = words.split_words(text)
  assert [w.text for w in split] == expected
  assert all(text[w.start:w.end] == w.text for w in split)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aZé0 .,'’-&/:$()\u00a0\u3000\u200b\t\n\u0301"
                                              "東😀")), max_size=40))
def test_split_words_offsets(text):
  split = words.split_words(text)
  assert all(text[w.start:w.end] == w.text and w.text for w in split)
  assert all(a.end <= b.start for a, b in zip(split, split[1:]))
  # Between words there is only whitespace and invisible separators: nothing is lost.
  covered = np.zeros(len(text), bool)
  for w in split:
    covered[w.start:w.end] = True
  assert all(c.isspace() or c in "\u200b" for c, k in zip(text, covered) if not k)


def test_buckets():
  assert buckets.sizes((32, 64, 128, 256, 512), 200) == (32, 64, 128, 200)
  assert buckets.sizes((16, 64), 64) == (16, 64)
  assert [buckets.pick(n, (16, 64)) for n in (0, 16, 17, 64, 99)] == [16, 16, 64, 64, 64]
  mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 1, 1, 1]])
  assert buckets.used_lengths(mask).tolist() == [2, 0, 4]
  with pytest.raises(ValueError, match="positive integers"):
    buckets.sizes((0, 8), 16)


# ---- NER ------------------------------------------------------------------------------------

def test_ner_offsets_scores_and_single_vs_list(ner):
  many = ner(TEXTS)
  assert isinstance(many, list) and len(many) == len(TEXTS)
  assert ner(TEXTS[0]) == many[0]  # one text in, one result out
  assert ner([]) == [] and ner(["", " \n"]) == [[], []]
  found = 0
  for text, entities in zip(TEXTS, many):
    assert entities == sorted(entities, key=lambda e: e["start"])
    for e in entities:
      assert set(e) == {"start", "end", "text", "label", "score"}
      assert e["text"] == text[e["start"]:e["end"]] and e["text"].strip() == e["text"]
      assert e["label"] in NER_LABELS[1:] and 0.0 < e["score"] <= 1.0
      found += 1
    # Accepted spans never overlap.
    assert all(a["end"] <= b["start"] for a, b in zip(entities, entities[1:]))
  assert found  # random weights still name some spans: the checks above ran
  # Sentences of one document, each read with the others as context.
  sentences = [TEXTS[0], "", TEXTS[1]]
  (document,) = ner.documents([sentences])
  assert len(document) == 3 and document[1] == []
  assert all(e["text"] == text[e["start"]:e["end"]]
             for text, entities in zip(sentences, document) for e in entities)
  with pytest.raises(TypeError, match="list of sentence strings"):
    ner.documents(["a text, not a document"])


def _sentences(texts):
  out = []
  for text in texts:
    tokens = [w.text for w in words.split_words(text)]
    out.append(Sentence(tokens, None, [], Document([tokens]), 0, "t", [1] * len(tokens)))
  return out


def test_ner_decoding_scores_and_parity(ner):
  examples = _sentences(TEXTS)
  features = ner.task.featurize(examples, ner.labels, "predict")
  outputs = ner.outputs(features)
  logits = outputs["logits"]
  # The pipeline's entities are the task's decoding of the same logits, at character offsets.
  tags = ner.task.decode(examples, features, outputs, ner.labels)
  for text, example, sentence_tags, entities in zip(TEXTS, examples, tags, ner(TEXTS)):
    split = words.split_words(text)
    spans = ner_metric.tags_to_spans(sentence_tags)
    assert [(split[s].start, split[e - 1].end, kind) for s, e, kind in spans] == [
        (e["start"], e["end"], e["label"]) for e in entities]
  # Score = the chosen label's softmax probability; logits equal the unpadded model's.
  for row in range(len(features)):
    used = int(features.arrays["attention_mask"][row].sum())
    k = len(features.meta[row]["spans"])
    inputs = {key: features.arrays[key][row:row + 1, :used] if key in (
        "input_ids", "attention_mask") else features.arrays[key][row:row + 1, :k]
              for key in ner.task.input_keys}
    np.testing.assert_allclose(logits[row, :k], _direct(ner, inputs)[0], atol=1e-5, rtol=0)
    if row == 0:
      break  # one compilation of the direct model is enough
  predicted = ner.task.predict_spans(examples, features, outputs, ner.labels)
  for accepted in predicted:
    for p in accepted:
      row = next(r for r, m in enumerate(features.meta)
                 if (p.start, p.end) in m["spans"] and features.example_index[r] ==
                 predicted.index(accepted))
      k = features.meta[row]["spans"].index((p.start, p.end))
      z = logits[row, k].astype(np.float64)
      assert p.probability == pytest.approx(np.exp(z - z.max())[NER_LABELS.index(p.label)]
                                            / np.exp(z - z.max()).sum(), rel=1e-9)


def test_ner_long_text_takes_several_rows(ner):
  text = " ".join(f"Word{i} in Paris." for i in range(40))  # far above 64 subwords
  examples = _sentences([text])
  features = ner.task.featurize(examples, ner.labels, "predict")
  assert len(features) > 1
  covered = {w for m in features.meta for s, e in m["spans"] for w in range(s, e)}
  assert covered == set(range(len(examples[0].words)))  # every word is in some span
  entities = ner(text)
  assert all(e["text"] == text[e["start"]:e["end"]] for e in entities)
  assert max((e["start"] for e in entities), default=0) > len(text) // 2  # not cut off


def test_compilations_once_per_bucket(checkpoints):
  pipe = luke_jax.pipeline("ner", model=checkpoints["ner"], max_mention_length=4,
                           max_entity_length=64, **SMALL)
  rng = np.random.default_rng(0)
  vocabulary = "Paris Tokyo Mr. Smith visited the U.S. in 1996 , and left .".split()
  stream = [" ".join(rng.choice(vocabulary, rng.integers(1, 30))) for _ in range(40)]
  used = set()
  for start in range(0, len(stream), 5):  # arrives a few texts at a time
    chunk = stream[start:start + 5]
    features = pipe.task.featurize(_sentences(chunk), pipe.labels, "predict")
    used |= set(pipe.runner.plan(features.arrays))
    pipe(chunk)
  assert len(used) >= 2  # the stream did span several buckets
  assert pipe.compilations == len(used) <= 3 * 2  # word x entity buckets
  pipe(stream)  # all again, in one call: nothing new to compile
  assert pipe.compilations == len(used)
  print(f"40 mixed-length texts: {pipe.compilations} compilations for buckets {sorted(used)}")


# ---- entity typing and relation classification ---------------------------------------------

def test_entity_typing(typing):
  text = TEXTS[0]
  one = typing(text, span=(0, 7))
  assert one["mention"] == "Beyoncé" and (one["start"], one["end"]) == (0, 7)
  scores = [s["score"] for s in one["scores"]]
  assert scores == sorted(scores, reverse=True) and {s["label"] for s in one["scores"]} == set(
      TYPES)
  assert one["labels"] == [s for s in one["scores"] if s["score"] > 0.5]
  batch = typing([text, TEXTS[3]], spans=[(0, 7), (0, 2)])
  assert batch[0] == one and batch[1]["mention"] == "東京"
  assert typing([text], entity_spans=[[(0, 7)]]) == [one]  # transformers' spelling
  assert typing(text, span=(0, 7), threshold=0.0)["labels"] == one["scores"]
  # Parity with the model on the tokenizer's own unpadded encoding (transformers' example).
  tok = typing.tokenizer
  inputs = tok(text, entity_spans=[(0, 7)], return_tensors="np")
  logits = _direct(typing, {k: inputs[k] for k in typing.task.input_keys})[0]
  expected = {TYPES[j]: 1 / (1 + np.exp(-logits[j])) for j in range(len(TYPES))}
  assert {s["label"]: s["score"] for s in one["scores"]} == pytest.approx(expected, abs=1e-6)
  # threshold 0.5 is the task's own decoding (logit > 0).
  features = typing.task.featurize([TypingExample("0", text, (0, 7), None, "x", 1)],
                                   typing.labels, "predict")
  decoded = typing.task.decode([None], features, typing.outputs(features), typing.labels)
  assert sorted(decoded[0]) == sorted(s["label"] for s in one["labels"])


def test_relation_classification(relation):
  text = "Bill Gates founded Microsoft in 1975."
  one = relation(text, subj=(0, 10), obj=(19, 28))
  assert set(one) == {"label", "score"} and one["label"] in RELATIONS
  many = relation([text, text], subj=[(0, 10), (19, 28)], obj=[(19, 28), (0, 10)])
  assert many[0] == one
  assert relation([text], entity_spans=[[(0, 10), (19, 28)]]) == [one]
  tok = relation.tokenizer
  inputs = tok(text, entity_spans=[(0, 10), (19, 28)], return_tensors="np")
  logits = _direct(relation, {k: inputs[k] for k in relation.task.input_keys})[0]
  probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
  assert one["label"] == RELATIONS[int(np.argmax(logits))]
  assert one["score"] == pytest.approx(probabilities.max(), abs=1e-6)


def test_bad_inputs(checkpoints, typing, relation):
  with pytest.raises(ValueError, match="not inside"):
    typing("short", span=(2, 40))
  with pytest.raises(ValueError, match="only whitespace"):
    typing("a   b", span=(1, 4))
  with pytest.raises(ValueError, match="overlap"):
    relation("Bill Gates", subj=(0, 4), obj=(2, 10))
  with pytest.raises(ValueError, match="once"):
    typing("Bill", span=(0, 4), entity_spans=[(0, 4)])
  with pytest.raises(ValueError, match="2 texts but 1"):
    typing(["a", "b"], spans=[(0, 1)])
  with pytest.raises(TypeError, match="str"):
    typing(3, span=(0, 1))
  assert typing([], spans=[]) == [] and relation([], entity_spans=[]) == []
  with pytest.raises(ValueError, match="needs a LukeForEntitySpanClassification"):
    luke_jax.pipeline("ner", model=checkpoints["typing"])
  with pytest.raises(ValueError, match="unknown pipeline task"):
    luke_jax.pipeline("summarization", model=checkpoints["ner"])
  with pytest.raises(TypeError, match="unknown option"):
    luke_jax.pipeline("ner", model=checkpoints["ner"], tag_schema="iob1")
  with pytest.raises(ValueError, match="max_seq_length=999"):
    luke_jax.pipeline("ner", model=checkpoints["ner"], max_seq_length=999)


# ---- the persistent compilation cache -------------------------------------------------------

def test_compilation_cache_already_set_is_kept(tmp_path):
  # conftest gives the test session a cache directory before jax starts: it stays in use.
  current = jax.config.jax_compilation_cache_dir
  assert current
  assert compilation_cache.enable(tmp_path / "other") == current
  assert compilation_cache.enable(None) == current


_CACHE_SCRIPT = """
import sys, jax, luke_jax
hits = []
HIT = "/jax/compilation_cache/cache_hits"
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event == HIT else None)
for _ in range(2):  # a new pipeline compiles anew: the second one finds the first's programs
  pipe = luke_jax.pipeline("ner", model=sys.argv[1], buckets=(16,), entity_buckets=(16,),
                           max_seq_length=16, max_entity_length=16, batch_size=2)
  pipe("Paris")
print(jax.config.jax_compilation_cache_dir, pipe.compilations, len(hits))
"""


def test_compilation_cache_from_environment(tmp_path, checkpoints):
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
  env.update(JAX_PLATFORMS="cpu", LUKE_JAX_COMPILATION_CACHE=str(tmp_path / "cache"))
  proc = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT, str(checkpoints["ner"])], env=env,
                        capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  directory, compilations, hits = proc.stdout.split()
  assert directory == str(tmp_path / "cache") and compilations == "1" and int(hits) >= 1
  assert any((tmp_path / "cache").iterdir())


# ---- run_finetune.py --predict_only --output_format=jsonl -----------------------------------

def test_cli_prints_jsonl(tmp_path, checkpoints, ner):
  raw = tmp_path / "raw.txt"
  # Blank lines between the sentences: each is its own document, as `ner(text)` reads it.
  raw.write_text(f"{TEXTS[0]}\n\n{TEXTS[1]}\n\n  Tokyo ,\tJapan.\n", encoding="utf-8")
  proc = subprocess.run(
      [sys.executable, "run_finetune.py", "--config", "configs/finetune/conll2003.py",
       "--predict_only", f"--predict_file={raw}", f"--checkpoint={checkpoints['ner']}",
       f"--workdir={tmp_path / 'work'}", "--output=-", "--output_format=jsonl",
       "--config.data.max_seq_length=64", "--config.data.max_mention_length=6"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = [json.loads(line) for line in proc.stdout.splitlines()]  # every line is JSON
  texts = [TEXTS[0], TEXTS[1], "  Tokyo ,\tJapan."]
  assert [r["text"] for r in records] == texts
  assert "wrote 3 predictions to stdout" in proc.stderr
  for record, expected in zip(records, ner(texts)):
    assert [(e["start"], e["end"], e["text"], e["label"]) for e in record["entities"]] == [
        (e["start"], e["end"], e["text"], e["label"]) for e in expected]
    assert [e["score"] for e in record["entities"]] == pytest.approx(
        [e["score"] for e in expected], abs=1e-5)


def test_jsonl_records_of_marked_files(tmp_path, typing, relation):
  from luke_jax.inference import files
  path = tmp_path / "typing.txt"
  path.write_text("<e>Beyoncé</e> lives in Los Angeles.\n", encoding="utf-8")
  assert files.predict(typing, "open_entity", path) == [
      {"text": TEXTS[0], **typing(TEXTS[0], span=(0, 7))}]
  path = tmp_path / "relation.txt"
  path.write_text("<e1>Bill Gates</e1> founded <e2>Microsoft</e2> in 1975.\n", encoding="utf-8")
  text = "Bill Gates founded Microsoft in 1975."
  assert files.predict(relation, "tacred", path) == [
      {"text": text, "subj": [0, 10], "obj": [19, 28],
       **relation(text, subj=(0, 10), obj=(19, 28))}]

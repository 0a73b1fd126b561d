"""Hub ids (`luke_jax.hub`): checkpoints and tokenizers named `org/name`, read from the Hugging
Face cache, with no network.

The cache is built here by hand in the layout huggingface_hub writes
(https://huggingface.co/docs/huggingface_hub/guides/manage-cache): `models--org--name/` with
`blobs/<sha256>`, `snapshots/<commit>/<file>` (symlinks into blobs/, or plain files as on
systems without symlinks) and `refs/<branch or tag>` holding the commit hash. In this process
offline mode and the cache location are switched the way huggingface_hub's own tests do it,
by patching `huggingface_hub.constants` (it reads the environment once, at import); the
subprocesses get environment variables only, as a user's shell would give them. Every socket
connection fails, here (`no_network`) and in the subprocesses (a `sitecustomize` on their
PYTHONPATH), so a test that reached for the network would fail.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.utils import filter_repo_objects

import luke_jax
from luke_jax import hub
from luke_jax.convert.torch_to_flax import params_to_state_dict
from luke_jax.tokenization.tokenizer import LukeTokenizer

from conftest import TINY, save_torch_model, torch_model

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[1]
MAIN, V1 = "1" * 40, "2" * 40  # commit hashes of the two revisions of org/name
_NETWORK_OFF = "network access is disabled in tests/test_hub.py"


def _refuse(*args, **kwargs):
  raise OSError(_NETWORK_OFF)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  """Every connection (and name lookup) in this process fails."""
  monkeypatch.setattr(socket.socket, "connect", _refuse)
  monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
  monkeypatch.setattr(socket, "getaddrinfo", _refuse)


@pytest.fixture(scope="module")
def guard_dir(tmp_path_factory):
  """A PYTHONPATH entry whose sitecustomize fails every connection of a subprocess."""
  directory = tmp_path_factory.mktemp("no_network")
  (directory / "sitecustomize.py").write_text(textwrap.dedent(f"""\
      import socket
      def _refuse(*args, **kwargs):
        raise OSError({_NETWORK_OFF!r})
      socket.socket.connect = socket.socket.connect_ex = _refuse
      socket.getaddrinfo = _refuse
      """))
  return directory


# -- a Hugging Face cache, written as huggingface_hub writes one ------------------------------


def write_snapshot(cache: Path, repo_id: str, commit: str, src: Path, refs=("main",),
                   symlinks: bool = True) -> Path:
  """`src`'s files as the snapshot `commit` of `repo_id` in `cache`; returns the snapshot dir."""
  repo = cache / f"models--{repo_id.replace('/', '--')}"
  snapshot = repo / "snapshots" / commit
  for file in sorted(p for p in src.rglob("*") if p.is_file()):
    data = file.read_bytes()
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    target = snapshot / file.relative_to(src)
    target.parent.mkdir(parents=True, exist_ok=True)
    if symlinks:  # relative links, as huggingface_hub makes them
      target.symlink_to(os.path.relpath(blob, target.parent))
    else:
      shutil.copyfile(blob, target)
  for ref in refs:
    (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
  return snapshot


def _params_digest(params) -> str:
  import jax
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.asarray(leaf).tobytes())
  return digest.hexdigest()


def _assert_trees_equal(a, b):
  import jax
  assert jax.tree.structure(a) == jax.tree.structure(b)
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory, luke_dir, finetune_base):
  """HF_HOME with hub/ holding:

  org/name     main (symlinks): a tiny transformers LukeModel (model.safetensors), tokenizer
               files and a `pytorch_model.bin` that is no pickle at all, so a test passes
               only if the safetensors are read; tag v1 (plain files): other weights.
  org/bin-only main: the same kind of model with only `pytorch_model.bin` (weights only).
  org/jax      main: a luke-jax checkpoint (params/ in Orbax's layout) with its tokenizer.
  """
  home = tmp_path_factory.mktemp("hf_home")
  cache = home / "hub"
  sources = tmp_path_factory.mktemp("sources")
  for name, seed, safe in (("main", 0, True), ("v1", 1, True), ("bin", 2, False)):
    src = Path(save_torch_model(torch_model("LukeModel", seed=seed, **TINY), sources / name,
                                safe=safe))
    for file in luke_dir.iterdir():
      shutil.copyfile(file, src / file.name)
  (sources / "main" / "pytorch_model.bin").write_bytes(b"not a pickle: must never be read")
  write_snapshot(cache, "org/name", MAIN, sources / "main")
  write_snapshot(cache, "org/name", V1, sources / "v1", refs=("v1",), symlinks=False)
  write_snapshot(cache, "org/bin-only", "3" * 40, sources / "bin")
  write_snapshot(cache, "org/jax", "4" * 40, Path(finetune_base))
  return home


@pytest.fixture()
def offline(monkeypatch, hf_home):
  """This process offline on `hf_home`'s cache, as HF_HOME and HF_HUB_OFFLINE=1 would set it."""
  monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
  monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
  return hf_home / "hub"


def _env(hf_home, guard_dir, **extra):
  """A user's environment: HF_HOME and HF_HUB_OFFLINE as given, no other HF settings."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
  env.update(HF_HOME=str(hf_home), PYTHONPATH=str(guard_dir), **extra)
  return env


def _run(args, env, timeout=300):
  return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)


def _error_line(proc, prog):
  lines = proc.stderr.strip().splitlines()
  assert lines and lines[-1].startswith(f"{prog}: error: "), proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  return lines[-1]


# -- the guards themselves -------------------------------------------------------------------


def test_no_connection_leaves_this_process_or_its_subprocesses(guard_dir, hf_home):
  with pytest.raises(OSError, match=_NETWORK_OFF):
    socket.create_connection(("127.0.0.1", 9), timeout=1)
  proc = _run(["-c", "import socket; socket.create_connection(('127.0.0.1', 9), timeout=1)"],
              _env(hf_home, guard_dir))
  assert proc.returncode == 1 and _NETWORK_OFF in proc.stderr, proc.stderr


# -- local paths and what counts as an id ----------------------------------------------------


def test_local_directories_are_used_as_they_are(tmp_path, monkeypatch):
  assert hub.resolve(tmp_path) == tmp_path
  assert hub.resolve(str(tmp_path)) == tmp_path
  monkeypatch.setenv("HOME", str(tmp_path))
  (tmp_path / "model").mkdir()
  assert hub.resolve("~/model") == tmp_path / "model"
  monkeypatch.chdir(tmp_path)
  (tmp_path / "org" / "name").mkdir(parents=True)
  assert hub.resolve("org/name") == Path("org/name")  # a directory wins over the Hub


def test_local_looking_paths_that_do_not_exist_are_named(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "runs").mkdir()
  (tmp_path / "file.txt").write_text("x")
  for name in ("/no/such/model", "./model", "../model", "~/no-such-model", "runs/best",
               "a/b/c", "not an id", "org/na--me"):
    with pytest.raises(FileNotFoundError, match=f"^{name}: no such directory$"):
      hub.resolve(name)
  with pytest.raises(FileNotFoundError, match="^org/name: no such directory$"):
    hub.resolve(Path("org/name"))  # a Path is a path, never an id
  with pytest.raises(NotADirectoryError, match="^file.txt: not a directory"):
    hub.resolve("file.txt")


def test_a_local_tokenizer_needs_no_huggingface_hub(luke_dir, hf_home, guard_dir):
  code = ("import sys, luke_jax\n"
          f"luke_jax.LukeTokenizer.from_pretrained({str(luke_dir)!r})\n"
          "print('huggingface_hub' in sys.modules, 'jax' in sys.modules)\n")
  proc = _run(["-c", code], _env(hf_home, guard_dir))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split() == ["False", "False"]


# -- which files a download asks for ---------------------------------------------------------


def _selected(listing, **kwargs):
  return set(filter_repo_objects(listing, allow_patterns=kwargs["allow_patterns"],
                                 ignore_patterns=kwargs["ignore_patterns"]))


def test_patterns_select_what_a_luke_model_reads():
  listing = [".gitattributes", "README.md", "config.json", "model.safetensors",
             "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "onnx/model.onnx",
             "checkpoint-500/model.safetensors", "checkpoint-500/pytorch_model.bin",
             "model-00001-of-00002.safetensors", "model.safetensors.index.json",
             "params/_METADATA", "params/d/0123abcd", "training_args.bin",
             *hub.TOKENIZER_FILES]
  weights = dict(allow_patterns=list(hub.CONFIG_FILES + hub.TOKENIZER_FILES
                                     + hub.LUKE_JAX_FILES + hub.SAFETENSORS_FILES),
                 ignore_patterns=hub.NESTED_WEIGHTS)
  assert _selected(listing, **weights) == {
      "config.json", "model.safetensors", "model-00001-of-00002.safetensors",
      "model.safetensors.index.json", "params/_METADATA", "params/d/0123abcd",
      *hub.TOKENIZER_FILES}
  pickles = dict(allow_patterns=list(hub.PICKLE_FILES), ignore_patterns=hub.NESTED_WEIGHTS)
  assert _selected(listing + ["pytorch_model-00001-of-00002.bin",
                              "pytorch_model.bin.index.json"], **pickles) == {
      "pytorch_model.bin", "pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json"}


class FakeHub:
  """`snapshot_download` over an in-memory repository: what an online download would do."""

  def __init__(self, cache: Path, files: list[str], commit: str = "5" * 40):
    self.cache, self.files, self.commit, self.calls = cache, files, commit, []

  def __call__(self, repo_id, **kwargs):
    self.calls.append(kwargs)
    folder = self.cache / "snapshots" / self.commit
    for name in filter_repo_objects(self.files, allow_patterns=kwargs["allow_patterns"],
                                    ignore_patterns=kwargs["ignore_patterns"]):
      (folder / name).parent.mkdir(parents=True, exist_ok=True)
      (folder / name).write_text(name)
    return str(folder)


def _fake_download(monkeypatch, tmp_path, files):
  fake = FakeHub(tmp_path, files)
  monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
  return fake


def test_safetensors_are_fetched_and_pickles_are_not(tmp_path, monkeypatch):
  fake = _fake_download(monkeypatch, tmp_path, ["config.json", "model.safetensors",
                                                "pytorch_model.bin", "vocab.json"])
  folder = hub.resolve("org/both", revision="v2", token="hf_x")
  assert len(fake.calls) == 1 and not (folder / "pytorch_model.bin").exists()
  assert (folder / "model.safetensors").exists() and (folder / "vocab.json").exists()
  call = fake.calls[0]
  assert (call["revision"], call["token"], call["local_files_only"]) == ("v2", "hf_x", False)
  assert call["cache_dir"] is None  # huggingface_hub's own default: HF_HUB_CACHE


def test_pickles_are_fetched_only_without_safetensors(tmp_path, monkeypatch):
  fake = _fake_download(monkeypatch, tmp_path, ["config.json", "pytorch_model.bin",
                                                "merges.txt"])
  folder = hub.resolve("org/old", local_files_only=True)
  assert (folder / "pytorch_model.bin").exists() and (folder / "merges.txt").exists()
  assert len(fake.calls) == 2
  assert fake.calls[1]["revision"] == fake.commit  # the same commit, no second look-up
  assert fake.calls[1]["allow_patterns"] == list(hub.PICKLE_FILES)
  assert all(call["local_files_only"] for call in fake.calls)


def test_a_tokenizer_fetches_no_weights(tmp_path, monkeypatch, luke_dir):
  files = ["config.json", "model.safetensors", "pytorch_model.bin", "params/_METADATA",
           *(f.name for f in luke_dir.iterdir())]
  fake = _fake_download(monkeypatch, tmp_path, files)
  folder = hub.resolve("org/name", weights=False)
  assert len(fake.calls) == 1
  assert sorted(p.name for p in folder.iterdir()) == sorted(["config.json", *(
      f.name for f in luke_dir.iterdir())])


@pytest.mark.parametrize("error, status, kind, message", [
    ("RepositoryNotFoundError", 404, FileNotFoundError,
     r"^org/x: no such model repository on the Hugging Face Hub, or it is private .*--token"),
    ("GatedRepoError", 403, ValueError,
     r"^org/x is a gated repository: request access at https://huggingface.co/org/x and "),
    ("RevisionNotFoundError", 404, FileNotFoundError, r"^org/x: no revision 'v9' on the "),
    ("HfHubHTTPError", 401, ValueError, r"^org/x: the Hugging Face Hub refused the token"),
])
def test_what_the_hub_answers_is_one_line_naming_the_id(monkeypatch, error, status, kind,
                                                        message):
  import httpx2  # huggingface_hub's HTTP client

  def refuse(repo_id, **kwargs):
    request = httpx2.Request("GET", f"https://huggingface.co/api/models/{repo_id}")
    raise getattr(huggingface_hub.errors, error)(
        f"{status} Client Error.\nmore lines", response=httpx2.Response(status, request=request))

  monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
  with pytest.raises(kind, match=message) as raised:
    hub.resolve("org/x", revision="v9")
  assert "\n" not in str(raised.value)


# -- loading from the cache, offline ---------------------------------------------------------


def test_from_pretrained_by_id_equals_the_snapshot_directory(offline):
  snapshot = offline / "models--org--name" / "snapshots" / MAIN
  assert (snapshot / "pytorch_model.bin").exists()  # not a pickle: safetensors must win
  assert hub.resolve("org/name") == snapshot
  model, params = luke_jax.from_pretrained("org/name")
  ref_model, ref_params = luke_jax.from_pretrained(snapshot)
  _assert_trees_equal(params, ref_params)
  assert type(model) is type(ref_model) and model.config == ref_model.config
  # (The outputs are compared in test_readme_first_screen_runs.)


def test_revision_picks_the_other_snapshot(offline):
  _, main = luke_jax.from_pretrained("org/name")
  _, by_tag = luke_jax.from_pretrained("org/name", revision="v1")
  _, by_commit = luke_jax.from_pretrained("org/name", revision=V1)
  _, direct = luke_jax.from_pretrained(offline / "models--org--name" / "snapshots" / V1)
  _assert_trees_equal(by_tag, direct)
  _assert_trees_equal(by_commit, direct)
  assert _params_digest(by_tag) != _params_digest(main)


def test_a_repository_with_only_a_pickle_loads_it_safely(offline):
  reference = torch_model("LukeModel", seed=2, **TINY).state_dict()
  model, params = luke_jax.from_pretrained("org/bin-only", local_files_only=True)
  state = params_to_state_dict(params, model.config, "LukeModel")
  assert state.keys() == reference.keys()
  assert all(np.array_equal(value, reference[key].numpy()) for key, value in state.items())


def test_tokenizer_by_id(offline, luke_dir):
  text, spans = "Beyoncé lives in Los Angeles.", [(0, 7), (17, 28)]
  by_id = LukeTokenizer.from_pretrained("org/name", task="entity_pair_classification")
  local = LukeTokenizer.from_pretrained(luke_dir, task="entity_pair_classification")
  assert by_id(text, entity_spans=spans) == local(text, entity_spans=spans)
  assert len(LukeTokenizer.from_pretrained("org/name", revision="v1")) == len(local)


def test_readme_first_screen_runs(offline):
  import jax
  readme = (ROOT / "README.md").read_text(encoding="utf-8")
  code = readme.split("```python\n", 1)[1].split("```", 1)[0]
  assert 'luke_jax.from_pretrained("studio-ousia/luke-base")' in code
  scope = {}
  exec(code.replace("studio-ousia/luke-base", "org/name"), scope)  # pylint: disable=exec-used
  out = scope["out"]
  assert out.entity_last_hidden_state.shape == (1, 2, TINY["hidden_size"])
  # The same outputs as the snapshot directory loaded by its path.
  model, params = luke_jax.from_pretrained(offline / "models--org--name" / "snapshots" / MAIN)
  ref = jax.jit(lambda p, **inputs: model.apply({"params": p}, **inputs, deterministic=True))(
      params, **scope["batch"])
  np.testing.assert_array_equal(out.last_hidden_state, ref.last_hidden_state)
  np.testing.assert_array_equal(out.entity_last_hidden_state, ref.entity_last_hidden_state)


def test_not_cached_offline_is_one_line_naming_the_id(offline):
  with pytest.raises(FileNotFoundError) as error:
    luke_jax.from_pretrained("org/missing")
  assert str(error.value) == (
      f"org/missing is not in the Hugging Face cache at {offline} and downloads are off "
      "(HF_HUB_OFFLINE=1): run `hf download org/missing` once online, or pass a local "
      "directory")
  with pytest.raises(FileNotFoundError, match=r"^org/name \(revision v9\) is not in the "
                     r".*`hf download org/name --revision v9`"):
    LukeTokenizer.from_pretrained("org/name", revision="v9")


def test_local_files_only_and_an_unreachable_hub(monkeypatch, hf_home, tmp_path):
  # Online as far as huggingface_hub knows; the connection fails (no_network).
  monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
  cache = hf_home / "hub"
  assert hub.resolve("org/name", cache_dir=cache) == (
      cache / "models--org--name" / "snapshots" / MAIN)  # as transformers: the cached copy
  with pytest.raises(FileNotFoundError, match=r"^org/missing is not in the Hugging Face cache "
                     r".* the Hub cannot be reached \(ConnectError: "):
    hub.resolve("org/missing", cache_dir=cache)
  with pytest.raises(FileNotFoundError, match=r"downloads are off \(local_files_only\): run "
                     rf"`hf download org/missing --cache-dir {tmp_path}`"):
    hub.resolve("org/missing", cache_dir=tmp_path, local_files_only=True)


def test_an_incomplete_snapshot_is_named(offline, tmp_path):
  # A download cut short: the cached tree listing names a file the snapshot lacks.
  src = tmp_path / "src"
  src.mkdir()
  (src / "config.json").write_text("{}")
  commit = "6" * 40
  snapshot = write_snapshot(offline, "org/cut", commit, src)
  trees = offline / "models--org--cut" / "trees"
  trees.mkdir()
  (trees / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": {
      "config.json": {"size": 2, "blob_id": "a" * 40},
      "model.safetensors": {"size": 9, "blob_id": "b" * 40, "lfs_sha256": "c" * 64,
                            "lfs_size": 9}}}))
  with pytest.raises(FileNotFoundError, match=rf"^org/cut: the cached snapshot {snapshot} "
                     r"misses files .* run `hf download org/cut` once online"):
    hub.resolve("org/cut")


# -- the command lines, as a user runs them --------------------------------------------------


def test_user_session_offline_by_environment_only(hf_home, guard_dir, offline):
  code = ("import hashlib, jax, numpy as np, luke_jax\n"
          "model, params = luke_jax.from_pretrained('org/name')\n"
          "h = hashlib.sha256()\n"
          "for path, leaf in jax.tree_util.tree_leaves_with_path(params):\n"
          "  h.update(jax.tree_util.keystr(path).encode()); h.update(np.asarray(leaf).tobytes())\n"
          "tok = luke_jax.LukeTokenizer.from_pretrained('org/name')\n"
          "print(type(model).__name__, h.hexdigest(), len(tok))\n")
  proc = _run(["-c", code], _env(hf_home, guard_dir, HF_HUB_OFFLINE="1"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  _, params = luke_jax.from_pretrained(offline / "models--org--name" / "snapshots" / MAIN)
  tokens = len(LukeTokenizer.from_pretrained("org/name"))
  assert proc.stdout.split() == ["LukeModel", _params_digest(params), str(tokens)]


def test_converter_cli_by_id(hf_home, guard_dir, tmp_path, offline):
  dst = tmp_path / "converted"
  env = _env(hf_home, guard_dir, HF_HUB_OFFLINE="1")
  proc = _run(["-m", "luke_jax.convert", "--src=org/name", "--revision=v1", f"--dst={dst}"], env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  _, converted = luke_jax.from_pretrained(dst)
  _, want = luke_jax.from_pretrained("org/name", revision="v1")
  _assert_trees_equal(converted, want)
  # Tokenizer files are copied out of the cache as files, not as links into its blobs.
  assert (dst / "vocab.json").is_file() and not (dst / "vocab.json").is_symlink()

  missing = _run(["-m", "luke_jax.convert", "--src=org/missing", f"--dst={tmp_path / 'x'}"], env)
  assert missing.returncode == 2, missing.stderr[-3000:]
  line = _error_line(missing, "luke_jax.convert")
  assert line == (f"luke_jax.convert: error: org/missing is not in the Hugging Face cache at "
                  f"{hf_home / 'hub'} and downloads are off (HF_HUB_OFFLINE=1): run `hf download "
                  "org/missing` once online, or pass a local directory")
  assert not (tmp_path / "x").exists()


def test_run_finetune_by_id(hf_home, guard_dir, tmp_path):
  # Online as far as the environment says; --local_files_only keeps the run off the network.
  env = _env(hf_home, guard_dir)
  train = tmp_path / "train.txt"
  train.write_text("-DOCSTART- -X- -X- O\n\nAlice NNP B-NP B-PER\nvisited VBD B-VP O\n"
                   "Tokyo NNP B-NP B-LOC\n. . O O\n\n")
  work = tmp_path / "work"
  # Every check before compiling passes (checkpoint, tokenizer, features against the model's
  # tables, the workdir); a run of zero steps then stops, as cheap as a run gets.
  proc = _run(["run_finetune.py", "--config", "configs/finetune/conll2003.py",
               "--config.train.init_checkpoint=org/jax", "--local_files_only",
               f"--config.data.train_file={train}", "--config.data.max_seq_length=48",
               "--config.train.num_epochs=0", "--config.train.steps=0", f"--workdir={work}"], env)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert _error_line(proc, "run_finetune.py") == (
      "run_finetune.py: error: config.train.num_epochs and config.train.steps are both 0; set one")
  assert json.loads((work / "labels.json").read_text())  # featurized with the id's tokenizer
  recorded = json.loads((work / "config.json").read_text())
  assert recorded["train"]["init_checkpoint"] == "org/jax"  # the run's config keeps the id

  raw = tmp_path / "raw.txt"
  raw.write_text("Alice visited Paris .\n")
  proc = _run(["run_finetune.py", "--config", "configs/finetune/conll2003.py", "--predict_only",
               f"--predict_file={raw}", "--checkpoint=org/tuned", "--revision=v2",
               "--local_files_only", f"--workdir={work}"], env)
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert _error_line(proc, "run_finetune.py") == (
      f"run_finetune.py: error: org/tuned (revision v2) is not in the Hugging Face cache at "
      f"{hf_home / 'hub'} and downloads are off (local_files_only): run `hf download org/tuned "
      "--revision v2` once online, or pass a local directory")


def test_run_pretrain_init_checkpoint_by_id(hf_home, guard_dir, tmp_path, luke_dir):
  from luke_jax.tokenization.entity_vocab import EntityVocab
  dataset = tmp_path / "dataset"  # what the run reads before its init checkpoint
  shutil.copytree(luke_dir, dataset)
  EntityVocab.load(luke_dir / "entity_vocab.json").save(dataset / "entity_vocab.jsonl")
  (dataset / "metadata.json").write_text(json.dumps(
      {"max_seq_length": 8, "max_entity_length": 1, "max_mention_length": 1}))
  proc = _run(["run_pretrain.py", "--config", "configs/pretrain_tiny.py",
               f"--config.data.dataset_dir={dataset}", "--config.train.init_checkpoint=org/name",
               "--revision=v1", f"--workdir={tmp_path / 'work'}"],
              _env(hf_home, guard_dir, HF_HUB_OFFLINE="1"))
  assert proc.returncode == 2, proc.stderr[-3000:]
  snapshot = hf_home / "hub" / "models--org--name" / "snapshots" / V1
  assert _error_line(proc, "run_pretrain.py").startswith(
      f"run_pretrain.py: error: config.train.init_checkpoint={snapshot} holds a LukeModel; ")

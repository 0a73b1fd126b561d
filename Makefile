# Quickstart: `make demo` and `make test`; both create .venv with pinned versions if missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-luke-jax

.PHONY: install demo test bench clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==25.3
	$(PY) -m pip install -q -c constraints.txt -e '.[test,convert]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m luke_jax.demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf demo_out .pytest_cache

# Two set-up commands for a fresh machine: `make run` (service, embedded backend) and `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel on CI machines; on a GPU machine the same pin installs the CUDA build.
TORCH ?= torch==2.13.0
# `make install EXTRAS=worker,test,gpu` adds bitsandbytes (method qlora) on a GPU machine.
EXTRAS ?= worker,test
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test chaos demo bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/traindock up --host $(HOST) --port $(PORT)

test: install
	$(VENV)/bin/pytest -q

chaos: install
	$(VENV)/bin/pytest -q -m chaos tests/chaos

demo: install
	$(VENV)/bin/traindock demo

bench: install
	$(VENV)/bin/python bench/overhead.py

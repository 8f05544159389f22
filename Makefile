# Set-up and the two everyday commands. `make demo` and `make test` set up .venv first if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first, pinned: on a machine whose pip finds the local CPU wheel (this
# project's dev machines) that is a ~200 MB CPU build, elsewhere PyPI's default build (CUDA on
# Linux). For a CPU-only machine with internet access, set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu to avoid the CUDA download.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
EXTRAS ?= dev,ray

.PHONY: setup demo test smoke-sweep clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || \
	  $(BIN)/pip install --disable-pip-version-check -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --disable-pip-version-check -q -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(BIN)/che run --task reverse_string --pe dape-kerple --preset cpu

test: setup
	$(BIN)/python -m pytest -q

# A few seconds' sweep on a local Ray instance (tests/test_sweep.py runs the same in CI).
smoke-sweep: setup
	$(BIN)/che sweep --tasks parity_check,reverse_string --pes none,alibi --preset smoke --executor ray \
	  --results runs/smoke-sweep

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache

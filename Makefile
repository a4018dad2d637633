# Two commands do all the set-up themselves on a fresh machine:
#   make demo   fine-tune the packaged all-MiniLM-L6-v2 on BBC news with R3F (offline, < 10 min on 2 CPU cores)
#   make test   run the test suite
# Both create .venv and install rxf into it first (once; again when pyproject.toml changes).

PYTHON ?= python3
# The CPU wheel of PyTorch that lies on this project's machines; set TORCH_SPEC to choose another build.
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rxf-installed

.PHONY: install demo test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[demo,test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/rxf train --output-dir runs/demo --overwrite

test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

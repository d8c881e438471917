# The two set-up commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint chromium clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	# Google's speech embedding's two ONNX files and the GE2E checkpoint (both Apache-2.0),
	# for the speech tests and the pretrained speech recipes; --no-deps: only the files are
	# used (the library imports neither package)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps openwakeword==0.4.0 \
		resemblyzer==0.1.4
	touch $(STAMP)

# Train on digits 0-5 (bundled with scikit-learn), evaluate on the never-seen digits 6-9.
demo: $(STAMP)
	$(VENV)/bin/siamese train --config configs/digits.toml --out runs/demo --force

test: $(STAMP) chromium
	$(PY) -m pytest -q

chromium:
	@tools/ensure_chromium.sh

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf runs .pytest_cache

# snnconvert: make demo (install + run the bundled pipeline), make test (install + run all tests),
# make test-fast (the tests not marked slow), make docs (the documentation site; docs/development.md lists every target).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast lint docs bench bench-sws bench-codings bench-peers bench-finetune bench-finetune-defaults bench-adaptive-bits bench-spquant bench-dtss bench-onnx bench-beta3 fuzz gpu-smoke gpu-check clean

$(STAMP): pyproject.toml requirements/nir-consumers.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev,docs]"
	$(BIN)/pip install -q --no-deps -r requirements/nir-consumers.txt
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/snnconvert demo

test: install
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check snnconvert tests bench models

DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e ".[docs]"
	touch $(DOCS_STAMP)

# the documentation site (docs/, mkdocs.yml) into site/; any warning fails the build
docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict

bench-sws: install
	$(BIN)/python bench/sws_resnet20.py

bench-codings: install
	$(BIN)/python bench/codings_resnet20.py

bench-peers: install
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python bench/compare_spikingjelly.py

bench-finetune: install
	$(BIN)/python bench/finetune_resnet20.py

bench-finetune-defaults: install
	cd bench && ../$(BIN)/python finetune_defaults.py

bench-adaptive-bits: install
	flock /tmp/snnconvert-bench.lock $(BIN)/python bench/adaptive_bits_resnet20.py --budget-min 6

bench-spquant: install
	cd bench && flock /tmp/snnconvert-bench.lock ../$(BIN)/python spquant_resnet20.py --budget-min 6

bench-onnx: install
	flock /tmp/snnconvert-bench.lock $(BIN)/python bench/onnx_qdq_resnet20.py

bench-dtss: install
	flock /tmp/snnconvert-bench.lock $(BIN)/python bench/dtss_spikformer.py --budget-min 25

bench-beta3: install
	flock /tmp/snnconvert-bench.lock $(BIN)/python bench/sws_beta3_resnet20.py

fuzz: install
	SNNCONVERT_FUZZ=large $(BIN)/pytest -q -p no:cacheprovider tests/fuzz tests/test_reliability_inputs.py

gpu-smoke: install
	$(BIN)/python bench/gpu_smoke.py

gpu-check: install  # the prepared GPU script (about 8 minutes on one H100): smoke checks + short M-LIF and SWS runs
	$(BIN)/python bench/gpu_check.py

bench: bench-sws bench-codings

clean:
	rm -rf snnconvert-runs .pytest_cache

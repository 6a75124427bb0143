# medcompute: the two commands a newcomer needs are `make run` and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
ADDRESS ?= 127.0.0.1:50051
DATA_DIR ?= data
PYTEST_ARGS ?=
BENCH_ARGS ?=
# buf (lint, format, breaking) and the Node.js foreign-client test's packages, from npm,
# installed into $(TOOLS) (node and npm themselves from apt where missing).
TOOLS   ?= .tools
NPM_PACKAGES := @bufbuild/buf@1.75.0 @grpc/grpc-js@1.14.7 @grpc/proto-loader@0.8.1
BUF     = $(abspath $(TOOLS))/node_modules/.bin/buf

.PHONY: run test fuzz proto bench bench-quick clean tools lint-proto breaking-image peers imports lint
.PHONY: gpu-check

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The project and what it needs to run.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

# ... plus the test extras.
$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

## run: set up .venv and start the server on $(ADDRESS) with an embedded Dask cluster
run: $(VENV)/.installed
	$(VENV)/bin/medcompute serve --address $(ADDRESS) --data-dir $(DATA_DIR)

## tools: node and npm (apt-get, where missing), then buf and grpc-js into $(TOOLS)
tools: $(TOOLS)/.installed

$(TOOLS)/.installed: Makefile
	@command -v node >/dev/null && command -v npm >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error $(NPM_PACKAGES)
	$(BUF) --version
	touch $@

## lint-proto: buf lint (STANDARD), buf format (no changes allowed), buf breaking against
## the committed v1 image proto/buf.image.binpb
lint-proto: $(TOOLS)/.installed
	cd proto && $(BUF) lint
	cd proto && $(BUF) format --diff --exit-code
	cd proto && $(BUF) breaking --against buf.image.binpb

## breaking-image: rewrite proto/buf.image.binpb from the protos as they are now (only when
## a change is meant to be the new baseline; buf breaking compares against it)
breaking-image: $(TOOLS)/.installed
	cd proto && $(BUF) build -o buf.image.binpb

## peers: install the DICOM peers the tests run against (dcmtk, Orthanc) with apt-get where
## missing; their packaged services are not started
peers:
	.ci/install-peers

## imports: check the house plan's import contracts (pyproject.toml [tool.importlinter]).
## import-linter reads packages from folders named as they import, so build/imports holds
## medcompute/{server,client,kernels,proto} as links to the top-level folders.
imports: $(VENV)/.installed-test
	rm -rf build/imports && mkdir -p build/imports/medcompute
	touch build/imports/medcompute/__init__.py
	for d in server client kernels proto; do ln -s $(CURDIR)/$$d build/imports/medcompute/$$d; done
	PYTHONPATH=build/imports $(VENV)/bin/lint-imports --no-cache

## lint: ruff (pyflakes, pycodestyle, import order, bugbear, pyupgrade) over the Python code
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check server client kernels proto tests benchmarks

## test: set up .venv with the test extras, the tools and the DICOM peers, lint the protos
## and the code, check the import contracts, run the whole suite
test: $(VENV)/.installed-test $(TOOLS)/.installed peers lint-proto lint imports
	$(PY) -m pytest $(PYTEST_ARGS)

## fuzz: the property-based fuzz tests with thousands of examples each (make test runs a few dozen)
fuzz: $(VENV)/.installed-test
	MEDCOMPUTE_FUZZ_PROFILE=long $(PY) -m pytest tests/fuzz $(PYTEST_ARGS)

# ... plus the benchmark extras (plots, SimpleITK baselines).
$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.installed

## bench: set up .venv with the bench extras, run the whole harness, write
## benchmarks/results/<timestamp>-full.json and benchmarks/results/report.html
bench: $(VENV)/.installed-bench
	$(PY) benchmarks/run.py $(BENCH_ARGS)

## bench-quick: the same in a few minutes on a 2-core machine (fewer repeats)
bench-quick: $(VENV)/.installed-bench
	$(PY) benchmarks/run.py --quick $(BENCH_ARGS)

## proto: regenerate proto/v1 from proto/medcompute/v1/*.proto
proto: $(VENV)/.installed-test
	$(PY) -m medcompute.proto.generate

clean:
	rm -rf $(VENV) $(TOOLS) build *.egg-info .pytest_cache

## gpu-check: on a machine with a GPU, in under ten minutes: the gpu-marked tests, every
## operation cold and warm on 128x512x512, the service end to end on a GPU worker against
## CPU, the harness's GPU section; one JSON in benchmarks/results (docs/gpu-device.md).
## Without a GPU it exits at once (status 3) saying so.
gpu-check: $(VENV)/.installed-test
	$(PY) benchmarks/gpu_check.py

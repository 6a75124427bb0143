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
.PHONY: stress
.PHONY: dicom3tools
.PHONY: docs tour
.PHONY: postgres
.PHONY: browser ohif
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

## postgres: install PostgreSQL (apt-get, where missing), the catalog the tests also run
## against; its packaged service is not started (the tests start their own server)
postgres:
	.ci/install-postgres

## browser: Chromium and chromedriver (apt-get, where missing), for the viewer tests
browser:
	.ci/install-browser

## ohif: the OHIF Viewer's built application (npm's @ohif/app ships it in dist/) into
## $(TOOLS)/ohif/dist, served by the viewer tests from the DICOMweb port
OHIF_VERSION ?= 3.13.2
ohif: $(TOOLS)/ohif/.installed

$(TOOLS)/ohif/.installed: Makefile | $(TOOLS)/.installed
	rm -rf $(TOOLS)/ohif && mkdir -p $(TOOLS)/ohif
	cd $(TOOLS)/ohif && npm pack --silent @ohif/app@$(OHIF_VERSION) >/dev/null && \
		tar xzf ohif-app-$(OHIF_VERSION).tgz --strip-components=1 package/dist package/package.json && \
		rm ohif-app-$(OHIF_VERSION).tgz
	test -f $(TOOLS)/ohif/dist/index.html
	touch $@

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

# ... plus the documentation site's extras (MkDocs, mkdocstrings).
$(VENV)/.installed-docs: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $@ $(VENV)/.installed

## docs: the documentation site (docs/, mkdocs.yml) into build/site: the gRPC API reference
## generated from the protos' comments, the Python client's from its docstrings;
## mkdocs build --strict fails on a broken link, anchor or reference
docs: $(VENV)/.installed-docs
	rm -rf build/docs-src && mkdir -p build/docs-src/medcompute
	touch build/docs-src/medcompute/__init__.py
	for d in server client kernels proto; do ln -s $(CURDIR)/$$d build/docs-src/medcompute/$$d; done
	$(PY) -m medcompute.proto.reference --out docs/reference/grpc-api.md
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

## tour: run the README's and the docs' tour blocks, in order, against a real server
tour: $(VENV)/.installed-test
	$(PY) -m pytest -m tour tests/docs $(PYTEST_ARGS)

## test: set up .venv with the test extras, the tools, the DICOM peers, dciodvfy, PostgreSQL,
## Chromium and the OHIF Viewer, lint the protos and the code, check the import contracts,
## build the docs, run the whole suite (the tour included)
test: $(VENV)/.installed-test $(TOOLS)/.installed peers dicom3tools postgres browser ohif lint-proto lint imports docs
	$(PY) -m pytest $(PYTEST_ARGS)

## stress: the whole suite $(RUNS) times in a row (default 5) while stress-ng (installed with
## apt-get where missing) keeps every core busy; stops at the first failing run
RUNS ?= 5
stress: $(VENV)/.installed-test $(TOOLS)/.installed peers dicom3tools postgres
	.ci/install-stress
	.ci/stress-runs $(RUNS) $(PYTEST_ARGS)

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

## dicom3tools: install dciodvfy (the DICOM IOD validator the conformance tests run) with
## apt-get where missing
dicom3tools:
	.ci/install-dicom3tools

## gpu-check: on a machine with a GPU, in under ten minutes: the gpu-marked tests, every
## operation cold and warm on 128x512x512, the service end to end on a GPU worker against
## CPU, the harness's GPU section; one JSON in benchmarks/results (docs/gpu-device.md).
## Without a GPU it exits at once (status 3) saying so.
gpu-check: $(VENV)/.installed-test
	$(PY) benchmarks/gpu_check.py

# medcompute: the two commands a newcomer needs are `make run` and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
ADDRESS ?= 127.0.0.1:50051
DATA_DIR ?= data
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: run test fuzz proto bench bench-quick clean peers

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

## peers: install the DICOM peers the tests run against (dcmtk, Orthanc) with apt-get where
## missing; their packaged services are not started
peers:
	.ci/install-peers

## test: set up .venv with the test extras and the DICOM peers, run the whole suite
test: $(VENV)/.installed-test peers
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
	rm -rf $(VENV) build *.egg-info .pytest_cache

# medcompute: the two commands a newcomer needs are `make run` and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
ADDRESS ?= 127.0.0.1:50051
DATA_DIR ?= data
PYTEST_ARGS ?=

.PHONY: run test proto bench clean

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

## test: set up .venv with the test extras and run the whole suite
test: $(VENV)/.installed-test
	$(PY) -m pytest $(PYTEST_ARGS)

## proto: regenerate proto/v1 from proto/medcompute/v1/*.proto
proto: $(VENV)/.installed-test
	$(PY) -m medcompute.proto.generate

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# gopool: `make demo`, `make test`, `make bench`, `make build`.
# Everything installs into .venv with the machine's python3; the Go tools
# (gopy, goimports) are built by setup.py from the versions pinned in go.mod.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_FLAGS ?= -q -p no:cacheprovider -ra
# The suite has more tests than this; fewer means something silently vanished.
MIN_TESTS ?= 100

.PHONY: build test test-go test-py demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

build: $(PY)
	$(PY) -m pip install -q --disable-pip-version-check . pytest pytest-timeout ipython dask parmap

test: build test-go test-py

test-go:
	@test -z "$$(gofmt -l gopool pybind)" || { gofmt -l gopool pybind; echo "gofmt: files above need formatting"; exit 1; }
	go vet ./gopool/... ./pybind
	go test -race -count=1 ./gopool/... ./pybind

test-py: build
	cd tests && ../$(PY) -m pytest $(PYTEST_FLAGS) --junitxml=../build/junit.xml .
	$(PY) tests/check_results.py build/junit.xml $(MIN_TESTS)

demo: build
	$(PY) -m gopool.demo

bench: build
	$(PY) -m pip install -q --disable-pip-version-check faster-fifo
	$(PY) tests/bench/bench_pool.py --rounds 3 --write build/bench_pool.md
	$(PY) tests/bench/bench_queue.py --rounds 2 --write build/bench_queue.md

clean:
	rm -rf $(VENV) build python/gopool/_gobind

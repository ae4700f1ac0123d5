# ferroloop: `make help` lists the targets.
PY := .venv/bin/python

.PHONY: help setup build demo test test-rust test-python conformance soak bench bench-net bench-rust
help:            ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

setup:           ## create .venv with the dev dependencies and build the extension (release)
	bash scripts/setup.sh

build: setup     ## same as setup

demo: setup      ## build, then run the seeds' programs on ferroloop and the sleep(0) table
	$(PY) examples/demo.py

test: setup test-rust test-python conformance soak  ## build and run every test

test-rust:       ## the engine's Rust tests and the Rust API's examples (examples/rust)
	cargo test -p ferroloop -q
	bash scripts/run-rust-examples.sh

test-python:     ## the pytest suite on asyncio, ferroloop (and uvloop), normal and debug mode
	$(PY) -m pytest -q tests
	PYTHONASYNCIODEBUG=1 $(PY) -m pytest -q tests

conformance:     ## CPython's test_asyncio against ferroloop (fails on unexpected results)
	$(PY) conformance/run.py

soak:            ## short soaks: loop lifecycles and short connections, fd count and memory flat
	$(PY) scripts/soak.py --short
	$(PY) scripts/soak_connections.py --short
	$(PY) scripts/soak_connections.py --tls --count 2000

bench: setup     ## the benchmark table: asyncio, uvloop, rloop, ferroloop interleaved
	$(PY) benches/bench_core.py

bench-rust:      ## the Rust API against tokio's current-thread runtime, interleaved
	cargo bench -p ferroloop --bench vs_tokio

bench-net: setup ## the network benchmarks: echo servers, bulk transfer, uvicorn under wrk
	$(PY) benches/bench_echo.py
	$(PY) benches/bench_http.py

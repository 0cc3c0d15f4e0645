# The two commands of the README: `make run` and `make test` (each sets up first).
.PHONY: setup run test test-fast bench lint

setup:
	scripts/setup

run: setup
	.venv/bin/corral run -- sh -c 'echo "hello from $$(uname -sr) in a Corral sandbox"'

test: setup
	.venv/bin/python -m pytest -q

test-fast: setup
	.venv/bin/python -m pytest -q -m "not vm"

bench: setup
	.venv/bin/python -m bench

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	scripts/check

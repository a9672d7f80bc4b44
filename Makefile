.PHONY: install serve test test-pg lint format bench

install:
	python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'

serve:
	./scripts/serve

test:
	./scripts/test

test-pg:
	./scripts/test -k postgres

lint:
	.venv/bin/ruff check src tests bench && .venv/bin/ruff format --check src tests bench && .venv/bin/mypy \
		&& .venv/bin/lint-imports

format:
	.venv/bin/ruff format src tests bench && .venv/bin/ruff check --fix src tests bench

bench:
	.venv/bin/python bench/ingest.py

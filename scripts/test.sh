#!/usr/bin/env bash
# Sets up everything (virtualenv, model, Asterisk sandbox, embedded PostgreSQL
# comes up inside the tests) and runs lint, type checks and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "==> ruff"
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
# Two workers: the end-to-end half beside the rest (tests/conftest.py).
.venv/bin/pytest -n 2 --dist loadgroup "$@"

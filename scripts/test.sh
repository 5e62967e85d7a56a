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
.venv/bin/pytest "$@"

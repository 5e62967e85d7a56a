#!/usr/bin/env bash
# Sets up, then starts the Asterisk sandbox and the service with embedded
# defaults, places a few demo calls from ../shared/scenarios/dev and keeps
# serving (web UI on http://127.0.0.1:8080/) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/callcenter demo --keep-running "$@"

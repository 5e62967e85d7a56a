#!/usr/bin/env bash
# Sets up everything the service and the tests need, idempotently:
#   1. the virtualenv with the pinned dependencies (.venv),
#   2. the Vosk model (verified and unpacked into the cache),
#   3. Chromium and a Chinese font for the browser tests (apt; needs root),
#   4. the Asterisk 22 sandbox root (Debian sid, cached; needs root),
#   5. the ticket classifier's models, trained on the corpus once and cached (minutes
#      on two cores: done here, not by the first call or test that needs them).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    echo "==> virtualenv (.venv) with pinned dependencies"
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/pip install -q pip==23.2.1
    .venv/bin/pip install -q -c constraints.txt -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi

scripts/build-web.sh

echo "==> speech model"
.venv/bin/python -m callcenter.asr.model

if [ "$(id -u)" = 0 ]; then
    # The browser tests drive Debian's Chromium (Playwright, no downloaded browser);
    # the font renders the Chinese pages.
    if ! command -v chromium >/dev/null || ! dpkg -s fonts-wqy-zenhei >/dev/null 2>&1; then
        echo "==> chromium and a Chinese font (apt)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends chromium fonts-wqy-zenhei >/dev/null
    fi
    echo "==> Asterisk sandbox"
    .venv/bin/callcenter sandbox build
else
    echo "==> skipping the Asterisk sandbox (needs root: chroot and mounts)"
fi

echo "==> ticket models"
.venv/bin/python -c "from callcenter.tickets import learned; learned.trained()"

#!/usr/bin/env bash
# Builds the agent console's browser softphone: JsSIP and our module bundled by
# esbuild into callcenter/web/static/build/softphone.js (not committed). Pinned
# by callcenter/web/softphone/package-lock.json; rebuilt when it or src/ change.
set -euo pipefail
cd "$(dirname "$0")/../callcenter/web/softphone"
if ! command -v npm >/dev/null; then
    echo "npm not found: the console works without its browser softphone (desk phones only)" >&2
    exit 0
fi
stamp=node_modules/.built-$(cat package.json package-lock.json src/*.js | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ -f ../static/build/softphone.js ]; then
    exit 0
fi
echo "==> browser softphone (npm ci, esbuild)"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
npm run --silent build
rm -f node_modules/.built-*
touch "$stamp"

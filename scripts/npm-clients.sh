#!/usr/bin/env bash
# npm-clients.sh [DIR] — installs the third-party HTTP clients that test_httpd drives against
# elm-httpd (the official `openai` and `ollama` npm packages, and playwright-core, which drives
# Debian's chromium for the chat page's test; it downloads no browser), exactly as pinned by
# tests/http/package-lock.json, into DIR (default build/http-clients). Run by scripts/test.sh;
# the only download of the test command besides Debian's packages. Safe to run again: it
# installs nothing when DIR already holds this lock file's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build/http-clients}
mkdir -p "$dir"
if cmp -s tests/http/package-lock.json "$dir/package-lock.json" && [ -d "$dir/node_modules" ]; then
  exit 0
fi
cp tests/http/package.json tests/http/package-lock.json "$dir/"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

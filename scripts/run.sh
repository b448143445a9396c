#!/usr/bin/env bash
# run.sh — the README's main command: installs what is missing, builds, starts elmd on the
# default model (ELM_MODEL overrides it), streams a completion through the daemon with
# `elmctl generate`, shows `elmctl status`, and stops the daemon. Extra arguments are the prompt.
#
# The daemon runs in a private runtime directory so the demo never meets another elmd of yours.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release >/dev/null
B=build/release
model=${ELM_MODEL:-$(cd .. && pwd)/shared/models/stories260K.gguf}
prompt=${*:-Once upon a time}
export ELM_RUNTIME_DIR
ELM_RUNTIME_DIR=$(mktemp -d /tmp/elm-run-XXXXXX)
trap '$B/cli/elmctl stop >/dev/null 2>&1 || true; rm -rf "$ELM_RUNTIME_DIR"' EXIT
$B/cli/elmctl start --model "$model"
$B/cli/elmctl generate -n 200 "$prompt"
$B/cli/elmctl status

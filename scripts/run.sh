#!/usr/bin/env bash
# run.sh — the README's main command: installs what is missing, builds, and streams a completion
# from the default model (ELM_MODEL overrides it). Extra arguments are the prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh release >/dev/null
model=${ELM_MODEL:-$(cd .. && pwd)/shared/models/stories260K.gguf}
prompt=${*:-}
build/release/cli/elmctl generate --local "$model" -n 200 "$prompt"

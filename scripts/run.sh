#!/usr/bin/env bash
# run.sh — the README's main command: installs what is missing, builds, starts elmd on the
# default model (stories260K.gguf in ELM_MODELS_DIR, default ../shared/models; ELM_MODEL
# overrides it), streams a completion through the daemon with `elmctl generate`, shows `elmctl
# status`, and stops the daemon. Extra arguments are the prompt.
#
# The daemon runs in a private runtime directory so the demo never meets another elmd of yours.
# Each step says what it does on stderr; the build shows its progress (one updating line on a
# terminal, every 10 % otherwise) and compiler messages in full.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "run: checking the build dependencies (scripts/deps.sh)" >&2
scripts/deps.sh
echo "run: building build/release (1-2 minutes the first time on 2 cores)" >&2
tty=0
[ -t 2 ] && tty=1
scripts/build.sh release 2>&1 | awk -v tty=$tty '
  /^\[ *[0-9]+%\] / {
    pct = substr($0, 2, index($0, "%") - 2) + 0
    what = substr($0, index($0, "]") + 2)
    if (tty) printf "\rrun: build %3d%% %-70.70s", pct, what > "/dev/stderr"
    else if (pct >= next_pct) { printf "run: build %d%%\n", pct > "/dev/stderr"; next_pct = pct + 10 }
    next
  }
  /^Consolidate compiler generated dependencies/ { next }
  { print > "/dev/stderr" }
  END { if (tty) printf "\rrun: build done%-75s\n", "" > "/dev/stderr" }'
B=build/release
model=${ELM_MODEL:-${ELM_MODELS_DIR:-$(cd .. && pwd)/shared/models}/stories260K.gguf}
prompt=${*:-Once upon a time}
export ELM_RUNTIME_DIR
ELM_RUNTIME_DIR=$(mktemp -d /tmp/elm-run-XXXXXX)
trap '$B/cli/elmctl stop >/dev/null 2>&1 || true; rm -rf "$ELM_RUNTIME_DIR"' EXIT
echo "run: starting elmd on $model" >&2
$B/cli/elmctl start --model "$model"
echo "run: elmctl generate -n 200 \"$prompt\"" >&2
$B/cli/elmctl generate -n 200 "$prompt"
echo "run: elmctl status" >&2
$B/cli/elmctl status
echo "run: stopping elmd" >&2

# Shared helpers for the e2e scripts. Sourced, never executed.
# shellcheck shell=bash

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$E2E_DIR/.." && pwd)
# shellcheck source=versions.sh
. "$E2E_DIR/lib/versions.sh"

# Built tools are cached outside the clone, keyed by version, so a fresh clone
# on a machine that has built them before starts in seconds.
CACHE_DIR=${MCPK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-kafka-operator}
# Runtime state of one stack (certs, data, logs, pids, env) lives in the clone.
STATE_DIR=${MCPK_STATE_DIR:-$E2E_DIR/.stack}

log()  { printf '[stack] %s\n' "$*" >&2; }
die()  { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

need_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed${2:+ ($2)}"
}

# Run a long step with its output in a log file; on failure show the tail and
# the log's path instead of a wall of text.
run_logged() {
  local logfile=$1; shift
  mkdir -p "$(dirname "$logfile")"
  if ! "$@" >"$logfile" 2>&1; then
    tail -n 25 "$logfile" >&2
    die "'$*' failed; full log: $logfile"
  fi
}

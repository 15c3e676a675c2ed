# Shared helpers for the e2e scripts. Sourced, never executed.
# shellcheck shell=bash

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$E2E_DIR/.." && pwd)
# shellcheck source=versions.sh
. "$E2E_DIR/lib/versions.sh"
# shellcheck source=system-packages.sh
. "$E2E_DIR/lib/system-packages.sh"

# Built tools are cached outside the clone, keyed by version, so a fresh clone
# on a machine that has built them before starts in seconds.
CACHE_DIR=${MCPK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mcp-kafka-operator}
# Runtime state of one stack (certs, data, logs, pids, env) lives in the clone.
STATE_DIR=${MCPK_STATE_DIR:-$E2E_DIR/.stack}
# kubectl's discovery cache (keyed by host:port, which another ground may
# answer on too) stays in the state dir, not in ~/.kube/cache.
export KUBECACHEDIR=$STATE_DIR/kubectl-cache

log()  { printf '[stack] %s\n' "$*" >&2; }
die()  { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

need_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed${2:+ ($2)}"
}

# Writes standard input to FILE only when it differs from what FILE holds:
# a running component may watch its file (kube-proxy exits when its
# config file is written at all), and `e2e/stack up` on a running ground
# writes every config again.
write_if_changed() {
  local file=$1 tmp
  tmp=$(mktemp "$file.XXXXXX")
  cat >"$tmp"
  if cmp -s "$tmp" "$file"; then rm -f "$tmp"; else mv -f "$tmp" "$file"; fi
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

# A cargo build cache outside the clone, cleared first when it has grown
# past MCPK_BUILD_CACHE_MAX_GIB (default 20): each dependency, toolchain or
# flag change leaves the old artifacts behind, and this cache once grew to
# 63 GiB (half of it incremental-compilation data) and filled the disk,
# which failed a link with a bus error.
prune_build_cache() {
  local dir=$1 max_gib=${MCPK_BUILD_CACHE_MAX_GIB:-20} kib
  [ -d "$dir" ] || return 0
  kib=$(du -sk "$dir" 2>/dev/null | cut -f1)
  if [ "${kib:-0}" -gt $((max_gib * 1024 * 1024)) ]; then
    log "build cache $dir holds $((kib / 1024 / 1024)) GiB, over $max_gib: clearing it"
    rm -rf "$dir"
  fi
}

# Builds go to $CARGO_TARGET_DIR when set (left as it is), else to the
# shared cache, so that a fresh clone reuses them. Incremental data there
# is off unless CARGO_INCREMENTAL says otherwise: it is kept per checkout
# path (about 3 GiB for each fresh clone) and a one-off build never reads it.
use_build_cache() {
  if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    prune_build_cache "$CACHE_DIR/target"
    export CARGO_TARGET_DIR=$CACHE_DIR/target
    export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
  fi
}

# Builds that overlap. On 2 cores one build alone leaves a core idle for
# stretches (a link, one large crate, a download), so a second build, or a
# build next to the tests, runs in those stretches. The background one runs
# at a lower CPU priority, so the step in front keeps its speed (and a
# component's start its readiness waits) and the background takes what is
# left. start_background NAME CMD... starts CMD (a function or a command)
# with its output in $CACHE_DIR/build/NAME.log; wait_background NAME waits
# for it and fails as it failed. A script that exits before it waited
# stops what it started (its EXIT trap: scripts that call this set none of
# their own).
declare -A BACKGROUND_PIDS=()
start_background() {
  local name=$1; shift
  local logfile=$CACHE_DIR/build/$name.log
  mkdir -p "$(dirname "$logfile")"
  log "$name: in the background (log: $logfile)"
  # Job control gives the step a process group of its own, to stop as one.
  set -m
  ( renice -n 10 -p "$BASHPID" >/dev/null; "$@" ) >"$logfile" 2>&1 </dev/null &
  BACKGROUND_PIDS[$name]=$!
  set +m
  trap stop_background EXIT
}
wait_background() {
  local name=$1 started=$SECONDS rc=0
  wait "${BACKGROUND_PIDS[$name]}" || rc=$?
  unset "BACKGROUND_PIDS[$name]"
  if [ "$rc" -ne 0 ]; then
    tail -n 25 "$CACHE_DIR/build/$name.log" >&2
    die "$name failed (exit $rc); full log: $CACHE_DIR/build/$name.log"
  fi
  log "$name: done (waited $((SECONDS - started))s for it)"
}
stop_background() {
  local pid
  for pid in "${BACKGROUND_PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
}

# Starting, finding and stopping the stack's processes by PID file.
# Sourced by e2e/stack.
# shellcheck shell=bash

PID_DIR=$STATE_DIR/pids
LOG_DIR=$STATE_DIR/logs

# proc_pid NAME: prints the PID of our running NAME, or fails. A PID file
# whose process is gone, or whose PID now belongs to some other program (its
# command line does not mention our state dir), is stale and removed.
proc_pid() {
  local pidfile=$PID_DIR/$1.pid pid cmdline="" try
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  # A live process whose command line does not name the state dir is read
  # again for up to 2 s before it is called a stranger: between two execs
  # (setsid, nsenter, then the program) a starting component shows an
  # empty or another command line for a moment (before its first exec it is
  # a copy of this shell), and on a busy machine that moment made live
  # components look dead (the apiserver in one CI run, kube-router in
  # another).
  for try in $(seq 20); do
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || break
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || cmdline=""
    if [[ -n "$cmdline" && "$cmdline" == *"$STATE_DIR"* ]]; then
      echo "$pid"; return 0
    fi
    sleep 0.1
  done
  log "removing stale PID file for $1 (PID ${pid:-?} is not ours any more${cmdline:+: it runs ${cmdline:0:120}})"
  rm -f "$pidfile"
  return 1
}

# proc_rss_mib NAME: the resident memory of our running NAME, in MiB.
proc_rss_mib() {
  local pid
  pid=$(proc_pid "$1") || { echo "?"; return 0; }
  awk '/^VmRSS:/ {printf "%d", $2 / 1024}' "/proc/$pid/status"
}

# port_owner PORT: prints a description of whoever listens on 127.0.0.1:PORT.
port_owner() {
  ss -Hltnp "sport = :$1" 2>/dev/null | head -n1
}

# check_port NAME PORT VAR: fail clearly if the port is taken by someone else.
check_port() {
  local owner
  owner=$(port_owner "$2")
  [ -z "$owner" ] || die "port $2 for $1 is already in use ($owner); stop that process or choose another port with $3=..."
}

# start_proc NAME CMD...: start CMD detached (it outlives this script), with
# stdout+stderr in logs/NAME.log and its PID in pids/NAME.pid.
start_proc() {
  local name=$1; shift
  mkdir -p "$PID_DIR" "$LOG_DIR"
  # Without job control the background child is not a group leader, so
  # setsid execs in place and $! is the real PID.
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$PID_DIR/$name.pid"
}

# wait_until NAME SECONDS CMD...: poll CMD until it succeeds; fail with the
# component's log if its process dies or time runs out.
wait_until() {
  local name=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ! proc_pid "$name" >/dev/null; then
      tail -n 20 "$LOG_DIR/$name.log" >&2
      die "$name exited during start-up; log: $LOG_DIR/$name.log"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$LOG_DIR/$name.log" >&2
      die "$name was not ready after ${seconds}s; log: $LOG_DIR/$name.log"
    fi
    sleep 0.5
  done
}

# stop_proc NAME: SIGTERM, then SIGKILL after a grace period.
stop_proc() {
  local name=$1 pid i
  pid=$(proc_pid "$name") || return 0
  log "stopping $name (PID $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop in 30s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_DIR/$name.pid"
}

# kill_proc NAME: SIGKILL (a crash, for fault tests), and wait until it is gone.
kill_proc() {
  local name=$1 pid
  pid=$(proc_pid "$name") || die "$name is not running"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$PID_DIR/$name.pid"
  log "killed $name (PID $pid)"
}

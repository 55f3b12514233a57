# Background processes for scripts/dev-cluster and scripts/demo, sourced by both: each runs
# detached, and $state/NAME.pid records it. Callers set `state`.

# alive PID: the process exists and is not a zombie (a container's init may never reap it).
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }

# running NAME: $state/NAME.pid names a live process of the binary NAME, not a recycled pid. A
# binary that cargo has rebuilt since shows as "NAME (deleted)".
running() {
  local pid_file=$state/$1.pid pid exe
  [ -f "$pid_file" ] || return 1
  pid=$(cat "$pid_file")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  [ "${exe##*/}" = "$1" ]
}

# spawn NAME STDOUT STDERR COMMAND...: starts COMMAND, whose binary is NAME, detached (a session of
# its own, no stdin, so that neither ^C nor a closed terminal reaches it). STDOUT and STDERR may
# name the same file.
spawn() {
  local name=$1 out=$2 err=$3; shift 3
  (
    # A lock the caller holds on descriptor $lock_fd must not live on in a leftover process.
    [ -z "${lock_fd:-}" ] || exec {lock_fd}>&-
    exec >"$out" </dev/null
    if [ "$err" = "$out" ]; then exec 2>&1; else exec 2>"$err"; fi
    exec setsid "$@"
  ) &
  echo $! >"$state/$name.pid"
}

# stop NAME: SIGTERM, then SIGKILL after 60 s; returns once the process and its children are gone
# (the control plane's etcd and kube-apiserver die with it, through PR_SET_PDEATHSIG). Fails if
# NAME was not running.
stop() {
  local name=$1 pid children child waited=0
  if ! running "$name"; then
    rm -f "$state/$name.pid"
    return 1
  fi
  pid=$(cat "$state/$name.pid")
  children=$(ps -o pid= --ppid "$pid" || true)
  kill -TERM "$pid" 2>/dev/null || true
  while alive "$pid"; do
    if [ "$waited" -eq 600 ]; then
      echo "$name (pid $pid) still runs 60 s after SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.1; waited=$((waited + 1))
  done
  wait "$pid" 2>/dev/null || true # reaps it when it is the caller's child
  for child in $children; do
    while alive "$child"; do sleep 0.1; done
  done
  rm -f "$state/$name.pid"
}

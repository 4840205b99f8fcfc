#!/usr/bin/env bash
# Stops the daemons that tools/slurm/start.sh (make slurm) started: slurmd, slurmctld, munged,
# each by the pid in its own pid file.  Daemons it did not start are left running.  Running jobs
# keep running (scancel them first).  --slurm-only leaves munged running (used by start.sh on a config change).
set -euo pipefail

RUN_DIR=/run/slurm
STARTED=$RUN_DIR/sbc-started

die() { echo "error: $*" >&2; exit 1; }
say() { echo "[slurm] $*"; }

[ "$(id -u)" = 0 ] || die "make slurm-stop must run as root: sudo make slurm-stop"
if [ ! -s "$STARTED" ]; then
  say "nothing to stop (make slurm started no daemon here)"
  exit 0
fi

stop() {  # stop NAME PIDFILE
  local pid
  grep -qx "$1" "$STARTED" || return 0
  if [ -s "$2" ]; then
    pid=$(cat "$2")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; then
      say "stopping $1 (pid $pid)"
      kill -TERM "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        say "$1 (pid $pid) did not stop in 10 s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  fi
  sed -i "/^$1\$/d" "$STARTED"
}

stop slurmd "$RUN_DIR/slurmd.pid"
stop slurmctld "$RUN_DIR/slurmctld.pid"
if [ "${1:-}" != "--slurm-only" ]; then
  stop munged /run/munge/munged.pid
fi
say "stopped"

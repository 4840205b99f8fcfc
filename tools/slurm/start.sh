#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for running studies with [cluster] kind = "slurm"
# and for tests/test_slurm.py (make slurm; make slurm-stop stops it again).
#
# Installs munge and SLURM (slurmctld, slurmd, the client commands) from the distribution's
# packages if missing, writes /etc/slurm/slurm.conf for this machine (its real core count and
# memory, one partition "debug"), makes a munge key if there is none, starts munged, slurmctld
# and slurmd as daemons (no systemd needed) and waits until `sinfo` shows the node up.
# Running it again changes nothing while the cluster is up.  Needs root and apt-get (Debian,
# Ubuntu).  An existing slurm.conf that this script did not write is never overwritten.
#
# Environment: SLURM_START_TIMEOUT (seconds to wait for the node, default 60).
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
RUN_DIR=/run/slurm
STARTED=$RUN_DIR/sbc-started        # the daemons this script started (stop.sh stops only those)
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
MARK="# written by tools/slurm/start.sh"
TIMEOUT=${SLURM_START_TIMEOUT:-60}

die() { echo "error: $*" >&2; exit 1; }
say() { echo "[slurm] $*"; }

[ "$(id -u)" = 0 ] || die "make slurm must run as root (it installs packages and starts daemons): sudo make slurm"

# 1. packages
need=()
command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ] || need+=(munge)
[ -x /usr/sbin/slurmctld ] || need+=(slurmctld)
[ -x /usr/sbin/slurmd ] || need+=(slurmd)
command -v sbatch >/dev/null 2>&1 || need+=(slurm-client)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${need[*]} with this system's package manager, then run make slurm again"
  say "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; } \
    || die "apt-get could not install ${need[*]}"
fi

# 2. configuration for this machine
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
[ -n "$MEM_MB" ] && [ "$MEM_MB" -gt 0 ] || die "cannot read the memory size from /proc/meminfo"
getent hosts "$HOST" >/dev/null || die "the host name $HOST does not resolve; add '127.0.0.1 $HOST' to /etc/hosts"

mkdir -p "$CONF_DIR" "$RUN_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR"
new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat > "$new_conf" <<EOF
$MARK (one node: $HOST, $CPUS CPUs, $MEM_MB MB); make slurm-stop stops it
ClusterName=sbc-local
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ReturnToService=2
# the seconds between SIGTERM and SIGKILL when a job is cancelled or reaches its walltime
KillWait=5
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# one job per core and its memory, so single-core jobs share the node
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job that asks for no memory gets its cores' share (not the whole node's)
DefMemPerCPU=$((MEM_MB / CPUS))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# no accounting database, so no sacct: each finished job is one line of this file instead
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

running() {  # running NAME PIDFILE: the daemon of that pid file is alive
  local pid
  [ -s "$2" ] || return 1
  pid=$(cat "$2")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}
remember() { grep -qx "$1" "$STARTED" 2>/dev/null || echo "$1" >> "$STARTED"; }

changed=0
if [ -e "$CONF" ]; then
  head -n 1 "$CONF" | grep -qF "$MARK" \
    || die "$CONF exists and was not written by make slurm (a real cluster's configuration?); it is left alone: move it away to use the one-node cluster"
  cmp -s "$new_conf" "$CONF" || changed=1
else
  changed=1
fi
if [ $changed = 1 ]; then
  if running slurmctld "$RUN_DIR/slurmctld.pid" || running slurmd "$RUN_DIR/slurmd.pid"; then
    say "the configuration changed: restarting slurmctld and slurmd"
    "$(dirname "$0")/stop.sh" --slurm-only
  fi
  install -m 0644 "$new_conf" "$CONF"
  say "wrote $CONF ($HOST: $CPUS CPUs, $MEM_MB MB, partition debug)"
fi
touch "$STARTED"

# 3. munge
if [ ! -s /etc/munge/munge.key ]; then
  say "creating a munge key"
  mkdir -p /etc/munge
  if command -v mungekey >/dev/null 2>&1; then mungekey --create --keyfile=/etc/munge/munge.key --force
  else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
fi
chown -R munge:munge /etc/munge
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
if ! running munged /run/munge/munged.pid; then
  say "starting munged"
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  runuser -u munge -- /usr/sbin/munged || die "munged did not start; see /var/log/munge/munged.log"
  remember munged
fi
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null 2>&1 || die "munge does not work (munge -n | unmunge); see /var/log/munge/munged.log"

# 4. slurmctld, slurmd
if ! running slurmctld "$RUN_DIR/slurmctld.pid"; then
  say "starting slurmctld"
  /usr/sbin/slurmctld || die "slurmctld did not start; see $LOG_DIR/slurmctld.log"
  remember slurmctld
fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.2; done
scontrol ping 2>/dev/null | grep -q "is UP" || die "slurmctld does not answer (scontrol ping); see $LOG_DIR/slurmctld.log"
if ! running slurmd "$RUN_DIR/slurmd.pid"; then
  say "starting slurmd"
  /usr/sbin/slurmd || die "slurmd did not start; see $LOG_DIR/slurmd.log"
  remember slurmd
fi

# 5. the node up
state=""
resumed=0
for _ in $(seq $((TIMEOUT * 2))); do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n 1)
  case "$state" in
    idle|mixed|allocated|completing) break ;;
    down*|drain*|drained*)
      if [ $resumed = 0 ]; then
        scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
        resumed=1
      fi ;;
  esac
  sleep 0.5
done
case "$state" in
  idle|mixed|allocated|completing) ;;
  *) reason=$(sinfo -h -R -n "$HOST" -o %E 2>/dev/null | head -n 1)
     die "the node $HOST is not up after ${TIMEOUT} s (sinfo: ${state:-no answer}${reason:+, reason: $reason}); see $LOG_DIR/slurmd.log and $LOG_DIR/slurmctld.log" ;;
esac
say "node $HOST is $state (partition debug, $CPUS CPUs, $MEM_MB MB); stop with: make slurm-stop"

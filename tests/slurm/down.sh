#!/usr/bin/env bash
# Stop the single-node SLURM that tests/slurm/up.sh started: cancel its jobs, stop
# slurmd, slurmctld and munged by the pidfiles up.sh left (nothing else), and remove the
# slurm.conf that up.sh wrote.
# Safe to run when nothing is up. --quiet: say nothing when there is nothing to stop.
set -euo pipefail

die() { echo "tests/slurm/down.sh: $*" >&2; exit 1; }
[[ $EUID -eq 0 ]] || die "must run as root (the daemons run as root, slurm and munge)"

DIR=${PLAYPEN_SLURM_DIR:-/var/lib/playpen-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# Written by playpen-attribution tests/slurm/up.sh"  # as in up.sh
quiet=${1:-}

stop() {  # stop PIDFILE NAME
  local pidfile=$1 name=$2 pid
  [[ -s $pidfile ]] || return 0
  pid=$(<"$pidfile")
  if [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$name" ]]; then
    kill -TERM "$pid"
    for _ in $(seq 50); do [[ -e /proc/$pid ]] || break; sleep 0.2; done
    [[ -e /proc/$pid ]] && kill -KILL "$pid"
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

# Jobs first: a job's processes belong to slurmstepd, which outlives slurmd.
if [[ -s $DIR/ctld/slurmctld.pid ]] && scontrol ping 2>/dev/null | grep -q UP; then
  mapfile -t jobs < <(squeue -h -t PENDING,RUNNING,SUSPENDED -o %A 2>/dev/null)
  if ((${#jobs[@]})); then
    scancel "${jobs[@]}" || true
    for _ in $(seq 50); do [[ -z $(squeue -h -t RUNNING,COMPLETING 2>/dev/null) ]] && break; sleep 0.2; done
    echo "cancelled SLURM jobs ${jobs[*]}"
  fi
fi
stop "$DIR/d/slurmd.pid" slurmd
stop "$DIR/ctld/slurmctld.pid" slurmctld
stop "$DIR/munge/munged.pid" munged
# Our slurm.conf goes too: while it names a controller that is down, every SLURM command
# retries it for ~10 s, and so does every Snakemake start where the executor plugin is
# installed (it asks `scontrol show config` on import).
if [[ -e $CONF && $(head -n 1 "$CONF") == "$MARK"* ]]; then
  rm -f "$CONF"
fi
[[ $quiet == --quiet ]] || echo "SLURM is down"

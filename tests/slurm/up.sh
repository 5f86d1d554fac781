#!/usr/bin/env bash
# Bring up a single-node SLURM (slurmctld + slurmd + munged) on this Debian machine, for
# the SLURM test (tests/test_slurm.py) and CI (.ci/run). Run as root; idempotent: a
# second run finds the daemons up (by their pidfiles) and leaves them alone.
# Stop it with tests/slurm/down.sh (by pidfile only).
#
# No systemd and no cgroups: the daemons are started directly, with pidfiles under
# $PLAYPEN_SLURM_DIR (default /var/lib/playpen-slurm). They listen on SLURM's usual ports
# (6817, 6818) and address each other as 127.0.0.1 only. Without slurmdbd there is no
# accounting, so `sacct` fails: the profile uses `squeue` for job status (see
# profiles/slurm/config.yaml), which needs MinJobAge (here 300 s) >= 3 x the plugin's
# init-seconds-before-status-checks.
set -euo pipefail

die() { echo "tests/slurm/up.sh: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (it installs Debian packages and starts daemons)"
command -v apt-get >/dev/null 2>&1 || die "needs apt-get (a Debian machine) to install SLURM"

DIR=${PLAYPEN_SLURM_DIR:-/var/lib/playpen-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# Written by playpen-attribution tests/slurm/up.sh"  # down.sh removes such a file
PARTITION=local
HERE=$(cd "$(dirname "$0")" && pwd)

# 1. Packages (SLURM 22.05 on Debian 12), only those missing.
packages=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[[ -s /etc/munge/munge.key ]] || { mungekey --create --keyfile=/etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }

# 2. Directories: every parent traversable by the daemon users (slurm, munge).
install -d -m 0755 "$DIR"
install -d -m 0700 -o munge -g munge "$DIR/munge"
install -d -m 0755 -o munge -g munge /run/munge
install -d -m 0700 -o slurm -g slurm "$DIR/ctld"
install -d -m 0755 "$DIR/d"

# 3. slurm.conf: one node (this machine, as 127.0.0.1), one partition.
if [[ -e $CONF ]] && [[ $(head -n 1 "$CONF") != "$MARK"* ]]; then
  die "$CONF exists and was not written by this script; refusing to overwrite it"
fi
host=$(hostname -s)
read -r cpus sockets cores threads real_mb < <(slurmd -C | awk '
  /^NodeName/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
  END { print v["CPUs"], v["SocketsPerBoard"], v["CoresPerSocket"], v["ThreadsPerCore"], v["RealMemory"] }')
mem_mb=$((real_mb * 9 / 10))  # a bit under the real figure, or slurmd drains the node
new_conf=$(cat <<CONF_EOF
$MARK (single-node test cluster)
ClusterName=playpen
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmctldPidFile=$DIR/ctld/slurmctld.pid
SlurmctldLogFile=$DIR/ctld/slurmctld.log
SlurmdSpoolDir=$DIR/d
SlurmdPidFile=$DIR/d/slurmd.pid
SlurmdLogFile=$DIR/d/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
ReturnToService=2
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF_EOF
)

alive() {  # alive PIDFILE NAME: the pidfile names a running process called NAME
  local pid
  [[ -s $1 ]] && pid=$(<"$1") && [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$2" ]]
}

if [[ -e $CONF && "$(<"$CONF")" == "$new_conf" ]] && alive "$DIR/ctld/slurmctld.pid" slurmctld &&
  alive "$DIR/d/slurmd.pid" slurmd && scontrol ping 2>/dev/null | grep -q UP; then
  echo "SLURM is already up (partition $PARTITION); stop it with tests/slurm/down.sh"
  exit 0
fi
# Not (all) up, or up with another config: start over from our own pidfiles.
bash "$HERE/down.sh" --quiet
printf '%s\n' "$new_conf" >"$CONF"

# 4. Daemons. munged unless one already answers (e.g. the machine's own).
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- munged --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
    --seed-file="$DIR/munge/munged.seed"
fi
slurmctld -c  # -c: a fresh controller state, no jobs left from an earlier run
slurmd

# 5. Wait until the node takes jobs.
for _ in $(seq 60); do
  state=$(sinfo -h -n "$host" -p "$PARTITION" -o %t 2>/dev/null || true)
  [[ $state == idle ]] && { echo "SLURM is up: partition $PARTITION, node $host, ${cpus} CPUs, ${mem_mb} MB"; exit 0; }
  sleep 0.5
done
echo "tests/slurm/up.sh: the node did not become idle (state: '${state:-none}'); last log lines:" >&2
tail -n 5 "$DIR/ctld/slurmctld.log" "$DIR/d/slurmd.log" >&2 || true
exit 1

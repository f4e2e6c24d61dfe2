#!/usr/bin/env bash
# Brings up a single-node Slurm cluster on this machine (Debian 12, root, no systemd) for the
# Slurm executor's tests and for local use. Idempotent: when the packages are installed, the
# configuration is current and the daemons answer, it changes nothing and exits 0.
#
#   bash deploy/slurm/install.sh
#
# Environment: SLURM_WAIT_S (default 60) bounds the wait for the node to become usable.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: must run as root (it installs packages and starts daemons)" >&2
  exit 1
fi

wait_s="${SLURM_WAIT_S:-60}"
conf_dir=/etc/slurm
conf="$conf_dir/slurm.conf"
log_dir=/var/log/slurm
jobcomp_log="$log_dir/jobcomp.log"
node="$(hostname -s)"

log() { echo "slurm-install: $*"; }

# --- packages -------------------------------------------------------------------------------
packages=(munge slurmctld slurmd slurm-client)
missing=()
for p in "${packages[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt may hold the lock (CI installs other packages too): wait for it, bounded.
  apt_opts=(-q -y -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confold)
  apt_log="$(mktemp)"
  if ! { apt-get -q -o DPkg::Lock::Timeout=300 update \
      && apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    echo "install.sh: could not install ${missing[*]}" >&2
    exit 1
  fi
  rm -f "$apt_log"
fi

# --- munge ----------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating /etc/munge/munge.key"
  if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --keyfile=/etc/munge/munge.key
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
  log "starting munged"
  # A munged killed without cleanup leaves its socket and pid file behind; it refuses to start
  # over them.
  rm -f /run/munge/munge.socket.2 /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 1 20); do munge_ok && break; sleep 0.5; done
  munge_ok || { echo "install.sh: munged did not come up" >&2; exit 1; }
fi

# --- slurm.conf -----------------------------------------------------------------------------
cpus="$(nproc)"
mem_total_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
# slurmd drains a node whose memory is below RealMemory; keep 5 % (at least 512 MB) back for the
# kernel's own variations and for the daemons.
margin_mb=$((mem_total_mb / 20))
[ "$margin_mb" -lt 512 ] && margin_mb=512
real_mem_mb=$((mem_total_mb - margin_mb))
[ "$real_mem_mb" -lt 256 ] && real_mem_mb=256
# A job that asks for no memory would otherwise get the whole node and run alone.
def_mem_mb=$((real_mem_mb / cpus))
[ "$def_mem_mb" -gt 1024 ] && def_mem_mb=1024

install -d -m 0755 "$conf_dir" "$log_dir" /var/spool/slurmctld /var/spool/slurmd
new_conf="$(mktemp)"
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<EOF
# Written by deploy/slurm/install.sh: a single-node cluster for maas. Rerun it to regenerate.
ClusterName=maas
# The addresses are given so that nothing depends on the host name resolving.
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=${def_mem_mb}
ReturnToService=2
# Finished jobs stay visible to squeue for this long; after that maas asks sacct or reads the
# exit-code file that its batch wrapper writes.
MinJobAge=300
SchedulerType=sched/backfill
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=${log_dir}/slurmctld.log
SlurmdLogFile=${log_dir}/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
MailProg=/bin/true
# No slurmdbd: accounting storage is off, finished jobs are recorded by the job-completion
# plugin in a text file, which sacct reads with --completion.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/filetxt
JobCompLoc=${jobcomp_log}
NodeName=${node} NodeAddr=127.0.0.1 NodeHostname=${node} CPUs=${cpus} RealMemory=${real_mem_mb} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
EOF

conf_changed=0
if ! cmp -s "$new_conf" "$conf" 2>/dev/null; then
  log "writing $conf (node $node, $cpus CPUs, ${real_mem_mb} MB)"
  install -m 0644 "$new_conf" "$conf"
  conf_changed=1
fi

# --- daemons --------------------------------------------------------------------------------
# A pid file names a live daemon only if that pid still runs the program it names.
pid_alive() { # pidfile program
  local pid
  pid="$(cat "$1" 2>/dev/null || true)"
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$2" ]
}
ctld_ok() { timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }

if [ "$conf_changed" = 1 ] && { pid_alive /run/slurmctld.pid slurmctld || pid_alive /run/slurmd.pid slurmd; }; then
  log "configuration changed: restarting the Slurm daemons"
  for d in slurmctld slurmd; do
    if pid_alive "/run/$d.pid" "$d"; then kill "$(cat "/run/$d.pid")"; fi
  done
  for _ in $(seq 1 30); do
    pid_alive /run/slurmctld.pid slurmctld || pid_alive /run/slurmd.pid slurmd || break
    sleep 0.5
  done
fi

if ! pid_alive /run/slurmctld.pid slurmctld; then
  log "starting slurmctld"
  slurmctld
fi
for _ in $(seq 1 $((wait_s * 2))); do ctld_ok && break; sleep 0.5; done
ctld_ok || { echo "install.sh: slurmctld does not answer; see $log_dir/slurmctld.log" >&2; exit 1; }

if ! pid_alive /run/slurmd.pid slurmd; then
  log "starting slurmd -N $node"
  slurmd -N "$node"
fi

# --- wait for the node ----------------------------------------------------------------------
deadline=$((SECONDS + wait_s))
state=""
while :; do
  state="$(timeout 10 sinfo -h -n "$node" -o %T 2>/dev/null | head -n1 || true)"
  case "$state" in
    idle | mixed | allocated | completing) break ;;
    down* | drain* | fail*)
      log "node $node is $state: resuming it"
      timeout 10 scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
      ;;
  esac
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "install.sh: node $node is '${state:-unknown}' after ${wait_s}s; see $log_dir/slurmd.log" >&2
    timeout 10 scontrol show node "$node" >&2 || true
    exit 1
  fi
  sleep 1
done

sinfo

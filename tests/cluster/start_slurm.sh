#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (root, Debian/Ubuntu) for the SLURM test.
#
#   bash tests/cluster/start_slurm.sh      # idempotent: does nothing if it is already up
#   bash tests/cluster/stop_slurm.sh       # stops only the daemons this script started
#
# Installs slurm-wlm and munge with apt if missing, writes /etc/slurm/slurm.conf for localhost
# (no cgroups: proctrack/linuxproc, task/none; no accounting database, so status queries go
# through squeue), starts munged, slurmctld and slurmd and waits until the node is idle.
# The node advertises fake GPUs (gres gpu without device files) so `gpu=1` rules schedule on a
# machine without GPUs, at least SLURM_MIN_CPUS CPUs (the profile's grouped jobs ask for 2) and
# at least SLURM_MIN_MEM_MB of memory so the profile's production memory requests fit on a small
# CI box (neither is enforced: no cgroups; SlurmdParameters=config_overrides).
# Environment: SLURM_LOCAL_BASE (state, logs, pid files; default /tmp/spikerbm-slurm),
# SLURM_FAKE_GPUS (default 2), SLURM_PARTITION (default debug), SLURM_MIN_CPUS (default 2),
# SLURM_MIN_MEM_MB (default 65536).
set -euo pipefail
BASE=${SLURM_LOCAL_BASE:-/tmp/spikerbm-slurm}
GPUS=${SLURM_FAKE_GPUS:-2}
PARTITION=${SLURM_PARTITION:-debug}
MIN_MEM=${SLURM_MIN_MEM_MB:-65536}
MIN_CPUS=${SLURM_MIN_CPUS:-2}
CONF=/etc/slurm/slurm.conf
MARK="# written by spikerbm tests/cluster/start_slurm.sh"

die() { echo "start_slurm.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts system daemons)"
alive_pid() { [[ -s $1 ]] && ps -o stat= -p "$(cat "$1")" 2>/dev/null | grep -qv Z; }  # zombies are dead
alive() { pgrep -x "$1" -r R,S,D >/dev/null 2>&1; }                            # by exact name, no zombies

if ! dpkg -s slurm-wlm munge >/dev/null 2>&1; then
    command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and there is no apt-get"
    echo "installing slurm-wlm and munge with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

mkdir -p "$BASE"/{state,spool,log,run} /etc/slurm /run/munge /var/log/munge /var/lib/munge
touch "$BASE/started"

# Already up (ours)? Then just wait for the node below.
if alive_pid "$BASE/run/slurmctld.pid" && alive_pid "$BASE/run/slurmd.pid"; then
    echo "SLURM already running (pid files in $BASE/run)" >&2
else
    if alive slurmctld || alive slurmd; then
        die "a slurmctld/slurmd not started by this script is running; stop it first (or use that cluster)"
    fi
    if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        [[ -e $BASE/slurm.conf.orig ]] || cp -p "$CONF" "$BASE/slurm.conf.orig"   # restored by stop
    fi

    # munge: Debian's postinst made /etc/munge/munge.key; create one if it did not.
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
    chmod 400 /etc/munge/munge.key
    if ! alive munged; then
        rm -f /run/munge/munged.pid
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid \
            || die "munged did not start (see /var/log/munge/munged.log)"
        echo munged >> "$BASE/started"
    fi

    HOST=$(hostname -s)
    CPUS=$(nproc --all)                          # plain nproc obeys OMP_NUM_THREADS
    (( CPUS < MIN_CPUS )) && CPUS=$MIN_CPUS
    MEM=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
    (( MEM < MIN_MEM )) && MEM=$MIN_MEM
    GRES=""
    (( GPUS > 0 )) && GRES="Gres=gpu:${GPUS}"
    cat > "$CONF" <<CONF
$MARK (single-node test cluster)
ClusterName=localcluster
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=300
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} ${GRES} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
CONF
    if (( GPUS > 0 )); then
        # fake devices (slurmd needs a File per GPU; these are never opened as GPUs)
        files=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
        (( GPUS <= ${#files[@]} )) || die "SLURM_FAKE_GPUS=$GPUS: at most ${#files[@]} fake GPUs"
        for ((i = 0; i < GPUS; i++)); do echo "NodeName=${HOST} Name=gpu File=${files[i]}"; done \
            > /etc/slurm/gres.conf
    else
        rm -f /etc/slurm/gres.conf
    fi
    rm -rf "${BASE:?}/state" && mkdir -p "$BASE/state"   # a fresh cluster: no stale node/job state
    alive_pid "$BASE/run/slurmctld.pid" || { /usr/sbin/slurmctld; echo slurmctld >> "$BASE/started"; }
    alive_pid "$BASE/run/slurmd.pid" || { /usr/sbin/slurmd; echo slurmd >> "$BASE/started"; }
fi

for _ in $(seq 120); do
    state=$(timeout 3 sinfo -h -N -o %T 2>/dev/null | head -n1 || true)
    [[ $state == idle* || $state == mixed* || $state == allocated* ]] && break
    sleep 0.5
done
[[ $state == idle* || $state == mixed* || $state == allocated* ]] \
    || die "node not ready (state '${state:-none}'); logs: $BASE/log/slurmctld.log $BASE/log/slurmd.log"
sinfo

#!/usr/bin/env bash
# Stop the daemons tests/cluster/start_slurm.sh started (idempotent; never kills by name):
# slurmctld/slurmd by their pid files, munged only if start_slurm.sh started it; restores a
# slurm.conf that was there before.
set -uo pipefail
BASE=${SLURM_LOCAL_BASE:-/tmp/spikerbm-slurm}
[[ -e $BASE/started ]] || { echo "stop_slurm.sh: nothing started from $BASE" >&2; exit 0; }

alive_pid() { ps -o stat= -p "$1" 2>/dev/null | grep -qv Z; }
stop_pidfile() {  # SIGTERM, wait up to 10 s, then SIGKILL
    local file=$1 pid
    [[ -s $file ]] || return 0
    pid=$(cat "$file")
    alive_pid "$pid" || { rm -f "$file"; return 0; }
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do alive_pid "$pid" || break; sleep 0.2; done
    alive_pid "$pid" && kill -9 "$pid" 2>/dev/null
    rm -f "$file"
}

grep -qx slurmctld "$BASE/started" && timeout 5 scontrol shutdown >/dev/null 2>&1
grep -qx slurmd "$BASE/started" && stop_pidfile "$BASE/run/slurmd.pid"
grep -qx slurmctld "$BASE/started" && stop_pidfile "$BASE/run/slurmctld.pid"
grep -qx munged "$BASE/started" && stop_pidfile /run/munge/munged.pid
if [[ -e $BASE/slurm.conf.orig ]]; then
    cp -p "$BASE/slurm.conf.orig" /etc/slurm/slurm.conf && rm -f "$BASE/slurm.conf.orig"
elif grep -qF "written by spikerbm tests/cluster/start_slurm.sh" /etc/slurm/slurm.conf 2>/dev/null; then
    rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf
fi
rm -f "$BASE/started"
echo "stop_slurm.sh: stopped" >&2

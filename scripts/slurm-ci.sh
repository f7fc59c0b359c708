#!/usr/bin/env bash
# Start a single-node Slurm cluster on 127.0.0.1 (Debian's slurm-wlm and munge), run the example
# array job with a dependent commit over the sample data, and check the result equals `filter`.
# Needs root. Used by .ci/run; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
if ! command -v slurmctld >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi
mkdir -p /etc/slurm /var/lib/slurm/slurmd /var/lib/slurm/slurmctld /var/log/slurm /run/munge /etc/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=corpusgate-ci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=2000 State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
rm -f /etc/slurm/cgroup.conf
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || munged --force
pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
sleep 1
slurmctld -c
slurmd -N localhost
for _ in $(seq 1 30); do
  sinfo -h -o %T 2>/dev/null | grep -qE "idle|mixed" && break
  sleep 1
done
sinfo
scontrol update nodename=localhost state=resume 2>/dev/null || true

cargo build --release -q
cg="$root/target/release/corpusgate"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out="$work/out"
ids=$(CORPUSGATE="$cg" examples/slurm/submit.sh configs/meta-uk-2024.yaml "$out" 4 2 sample-data/corpus | tail -1)
echo "submitted: $ids"
commit_id="${ids##*commit=}"
for _ in $(seq 1 180); do
  state=$(scontrol show job "$commit_id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1 || true)
  case "$state" in
    *COMPLETED*) break ;;
    *FAILED*|*CANCELLED*|*TIMEOUT*|*NODE_FAIL*) echo "commit job: $state"; cat "$out"/*.log 2>/dev/null || true; exit 1 ;;
  esac
  sleep 1
done
[ -f "$out/_SUCCESS" ] || { echo "slurm: no _SUCCESS after the commit job ($state)"; squeue; cat "$out"/*.log 2>/dev/null; exit 1; }
"$cg" filter --policy configs/meta-uk-2024.yaml --output "$work/single" --progress never sample-data/corpus 2>/dev/null
diff -r "$out/data" "$work/single/data"
diff -r "$out/excluded" "$work/single/excluded"
echo "slurm: array of 4 shards (2 at a time) and the dependent commit match a single filter run"

#!/usr/bin/env bash
# Stop the local Slurm cluster that slurm/local/up.sh started: cancel its jobs, stop slurmd,
# slurmctld, slurmdbd, munged and the MariaDB server up.sh started, and (after `up.sh --nodes N`)
# remove the node namespaces, the veth links, the bridge and the /etc/hosts block.
# Idempotent: with nothing running it only says so.
#   sudo bash slurm/local/down.sh      # (--nodes N is accepted and ignored: it removes what exists)
# The state and logs under LG_SLURM_DIR (default /tmp/lg-slurm) stay: the logs are what you read
# after a failure, and the saved state keeps job ids counting up across a restart (run
# directories are keyed on the job id). `rm -rf` that folder yourself for a clean slate.
set -euo pipefail
case "${1:-}" in
  "") ;;
  --nodes) shift 2 || true ;;
  --nodes=*) shift ;;
  *) echo "slurm/local/down.sh: ERROR: unknown argument '$1' (usage: down.sh [--nodes N])" >&2; exit 2 ;;
esac

LG_SLURM_DIR=${LG_SLURM_DIR:-/tmp/lg-slurm}
export PATH="$PATH:/usr/sbin:/sbin"
say() { printf 'slurm/local/down.sh: %s\n' "$*"; }
[ "$(id -u)" -eq 0 ] || { echo "slurm/local/down.sh: ERROR: must run as root" >&2; exit 1; }
# Same lock as up.sh: never stop daemons while another up.sh is starting them.
exec 9>/run/lg-slurm.lock
flock -w 120 9 || { echo "slurm/local/down.sh: ERROR: /run/lg-slurm.lock is held" >&2; exit 1; }

# live_pids, is_live, stop_daemon (TERM, wait, KILL)
# shellcheck source=slurm/local/daemons.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemons.sh"
# net_down: the namespaces, links and /etc/hosts block of `up.sh --nodes N`
# shellcheck source=slurm/local/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/netns.sh"

stopped_any=0
# Cancel jobs while slurmctld still answers, so a later up.sh does not recover and rerun them,
# and their processes (children of slurmstepd) do not outlive the cluster.
if is_live slurmctld && scontrol ping >/dev/null 2>&1; then
  jobs=$(squeue -h -o '%i' 2>/dev/null || true)
  if [ -n "$jobs" ]; then
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do  # KillWait is 10 s; give it 15
      [ -z "$(squeue -h -o '%i' 2>/dev/null || true)" ] && break
      sleep 0.1
    done
    say "cancelled jobs: ${jobs//$'\n'/ }"
  fi
fi
for name in slurmd slurmstepd slurmctld slurmdbd munged; do
  is_live "$name" && stopped_any=1
  stop_daemon "$name"
done
# MariaDB only if up.sh started it (it records the pid): a database server that was already
# running for something else is not ours to stop. TERM lets it shut down cleanly (it flushes).
ours="$LG_SLURM_DIR/run/mariadbd.ours"
if [ -f "$ours" ]; then
  pid=$(cat "$ours")
  if [ "$(ps -p "$pid" -o comm=,stat= 2>/dev/null | awk '$2 !~ /^Z/ { print $1 }')" = mariadbd ]; then
    stopped_any=1
    kill -TERM "$pid"
    for ((i = 0; i < 300; i++)); do  # a clean InnoDB shutdown takes a few seconds at most
      [ "$(ps -p "$pid" -o stat= 2>/dev/null | cut -c1)" = Z ] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    say "stopped mariadbd"
  fi
  rm -f "$ours"
fi
# The multi-node network (whatever --nodes it was brought up with): after the daemons, so no
# slurmd loses its node under it.
if [ -n "$(net_nodes)" ] || ip link show "$LG_BRIDGE" >/dev/null 2>&1 \
   || grep -qxF "$HOSTS_BEGIN" /etc/hosts; then
  stopped_any=1
  net_down
fi
[ "$stopped_any" -eq 1 ] || say "nothing was running"

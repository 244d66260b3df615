#!/usr/bin/env bash
# Bring up a real one-node Slurm cluster (munged, slurmctld, slurmd; slurmdbd + MariaDB for
# sacct) on this Debian machine, as root, without systemd. Used by .ci/run before the tests and
# by developers:
#   bash slurm/local/up.sh      # idempotent: when it is already up, it only checks (~1 s)
#   bash slurm/local/up.sh --nodes 2   # two compute nodes, each in its own network + UTS namespace
#   bash slurm/local/down.sh    # stops it again (and removes the namespaces, links, hosts entries)
# --nodes N (1..8, default 1): N > 1 makes a network namespace lg-node<i> per node, with its own
# hostname lgnode<i> (a UTS namespace, so gloo resolves its own name to its own address) and
# address 10.213.7.<10+i>/24 on a veth pair into a bridge lgbr0 that holds the controller's
# address 10.213.7.1/24; /etc/hosts gets the node names (a block between markers). Only these
# links and addresses are made: no other interface, address, route, NAT or forwarding setting of
# the machine is touched. slurmctld (and slurmdbd) stay in the machine's own namespace, where
# sbatch/sinfo run; each slurmd runs inside its node's namespaces, and so do its jobs.
# Environment:
#   LG_SLURM_DIR         state, spool, pid and log files (default /tmp/lg-slurm)
#   LG_SLURM_ACCOUNTING  1 (default): slurmdbd + MariaDB, so `sacct` works; 0: no database
#   LG_SLURM_WAIT_S      how long to wait for each daemon and for the node (default 60)
# Why accounting by default: submitit (the Hydra Slurm launcher) learns a job's state only from
# sacct; without it a job that dies before writing its result stays UNKNOWN and the launcher
# polls forever. It costs ~9 s of packages once and ~2.5 s per bring-up here.
# The config goes to /etc/slurm/ (not under LG_SLURM_DIR) so that every client -- sinfo in a
# shell, sbatch from submitit, srun inside a job -- finds it without SLURM_CONF.
set -euo pipefail

NODES=1
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES=${2:-}; shift 2 || { echo "slurm/local/up.sh: ERROR: --nodes needs a number" >&2; exit 2; } ;;
    --nodes=*) NODES=${1#--nodes=}; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "slurm/local/up.sh: ERROR: unknown argument '$1' (usage: up.sh [--nodes N])" >&2; exit 2 ;;
  esac
done
case "$NODES" in [1-8]) ;; *) echo "slurm/local/up.sh: ERROR: --nodes must be 1..8, not '$NODES'" >&2; exit 2 ;; esac
LG_SLURM_DIR=${LG_SLURM_DIR:-/tmp/lg-slurm}
ACCOUNTING=${LG_SLURM_ACCOUNTING:-1}
WAIT_S=${LG_SLURM_WAIT_S:-60}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# managed by lightning_gans slurm/local/up.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)
[ "$ACCOUNTING" = 1 ] && PACKAGES+=(slurmdbd mariadb-server)
# The Debian packages put the daemons in /usr/sbin, which a non-login root shell may lack.
export PATH="$PATH:/usr/sbin:/sbin"

t0=$EPOCHREALTIME
say() { printf 'slurm/local/up.sh: %s\n' "$*"; }
die() { printf 'slurm/local/up.sh: ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"
case "$ACCOUNTING" in 0|1) ;; *) die "LG_SLURM_ACCOUNTING must be 0 or 1, not '$ACCOUNTING'" ;; esac
# Several engineers (and CI) share this machine: two up.sh/down.sh at once would start daemons
# twice or stop them halfway. The lock is released when the script exits.
exec 9>/run/lg-slurm.lock
flock -w 120 9 || die "another slurm/local/up.sh or down.sh holds /run/lg-slurm.lock"
# Every daemon below is started with `9>&-`: one that inherited the lock's descriptor would
# hold the lock for as long as it runs (munged, mariadbd and slurmdbd do not close it).

# live_pids, is_live, stop_daemon (TERM, wait, KILL)
# shellcheck source=slurm/local/daemons.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemons.sh"
# net_up, net_down, node_* names and addresses (the namespaces of --nodes N > 1)
# shellcheck source=slurm/local/netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/netns.sh"

show_logs() {
  local f
  for f in "$LG_SLURM_DIR"/log/{slurmctld,slurmd,slurmdbd,mariadb}.log \
           "$LG_SLURM_DIR"/log/slurmd-*.log /var/log/munge/munged.log; do
    [ -f "$f" ] && { echo "---- tail $f"; tail -n 25 "$f"; }
  done
  echo "---- sinfo -R"; sinfo -R 2>&1 || true
  echo "---- processes"
  # shellcheck disable=SC2009  # ps shows state and elapsed time too, pgrep does not
  ps -eo pid,stat,etime,cmd | grep -E '[s]lurm|[m]unge|[m]ariadb' || true
}
fail() { printf 'slurm/local/up.sh: ERROR: %s\n' "$*" >&2; show_logs >&2; exit 1; }

# Poll "$@" every 0.1 s until it succeeds or WAIT_S pass; the caller reports the failure.
wait_for() {
  local deadline=$(( $(date +%s) + WAIT_S ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# ---- 1. packages ---------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  ti=$EPOCHREALTIME
  say "installing ${missing[*]}"
  # A fresh machine may have empty package lists; update only then (it costs a few seconds).
  if ! apt-cache policy slurmctld 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq
  fi
  # --no-install-recommends: the recommends pull in mail servers and docs we do not need.
  # Service starts attempted by maintainer scripts do not matter: there is no systemd here and
  # we start the daemons ourselves below. Output only on failure (pages of progress otherwise).
  apt_log=$(mktemp)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >"$apt_log" 2>&1 || { tail -n 30 "$apt_log" >&2; die "apt-get install failed"; }
  rm -f "$apt_log"
  say "packages installed in $(elapsed "$ti") s"
fi

for f in "$CONF" "$DBD_CONF"; do
  if [ -e "$f" ] && ! head -n 1 "$f" | grep -qF "$MARK"; then
    die "$f exists and was not written by this script; refusing to overwrite a real config"
  fi
done
# A fresh LG_SLURM_DIR (no saved state) starts job ids at 1 again; the accounting database
# must then start empty too, or sacct would mix old and new jobs with the same id. The marker
# is ours: slurmctld writes its own state files only some seconds after it starts.
db_marker="$LG_SLURM_DIR/state/lg-accounting-db-reset"
mkdir -p /etc/slurm "$LG_SLURM_DIR"/{state,spool,run,log}
chmod 0755 "$LG_SLURM_DIR"
started=()

# ---- 2. munge ------------------------------------------------------------------------------
# munged refuses to run as root and checks the ownership of its directories: run it as munge.
mkdir -p /run/munge
chown munge:munge /run/munge
chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  say "creating /etc/munge/munge.key"
  runuser -u munge -- mungekey --create
fi
if ! is_live munged; then
  runuser -u munge -- "$(command -v munged)" 9>&- || fail "munged did not start"
  started+=(munged)
fi
# munged daemonizes before its socket is ready: wait until a credential round-trips.
munge_ok() { munge -n | unmunge; }
wait_for munge_ok || fail "munged does not answer"

# ---- 3. slurm.conf (and slurmdbd.conf) -----------------------------------------------------
host=$(hostname -s)
# not plain nproc: it honours OMP_NUM_THREADS (1 in the test environment) and would shrink the nodes
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
mem_total=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
# Headroom below the physical memory: slurmd drains a node whose RealMemory is more than it
# measures, and the OS and daemons need some anyway. 10%, at least 512 MiB.
headroom=$((mem_total / 10 > 512 ? mem_total / 10 : 512))
mem=$((mem_total - headroom))
# Without a default, a job that does not ask for memory gets the whole node under
# CR_Core_Memory, and two 1-CPU jobs (a 2-point sweep) could not run side by side.
if [ "$ACCOUNTING" = 1 ]; then
  accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost"
else
  accounting="AccountingStorageType=accounting_storage/none"
fi

if [ "$NODES" -eq 1 ]; then
  ctl_addr=127.0.0.1
  slurmd_files="SlurmdSpoolDir=$LG_SLURM_DIR/spool
SlurmdPidFile=$LG_SLURM_DIR/run/slurmd.pid
SlurmdLogFile=$LG_SLURM_DIR/log/slurmd.log"
  nodes_text="NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN"
  node_list=$host
  node_names=("$host")
else
  # Every node gets all of the machine's CPUs (N x oversubscribed: the nodes are namespaces,
  # not machines) and 1/N of the memory; slurmd's files per node (%n = node name).
  ctl_addr=$LG_CTL_ADDR
  mem=$((mem / NODES))
  slurmd_files="SlurmdSpoolDir=$LG_SLURM_DIR/spool/%n
SlurmdPidFile=$LG_SLURM_DIR/run/slurmd-%n.pid
SlurmdLogFile=$LG_SLURM_DIR/log/slurmd-%n.log
# A node that stops answering (killed, link cut) is DOWN after this many seconds (default 300),
# and its jobs end NODE_FAIL (or are requeued, with --requeue).
SlurmdTimeout=30"
  nodes_text=""
  node_names=()
  for ((i = 1; i <= NODES; i++)); do
    node_names+=("$(node_name "$i")")
    nodes_text+="NodeName=$(node_name "$i") NodeAddr=$(node_addr "$i") CPUs=$cpus RealMemory=$mem State=UNKNOWN"$'\n'
  done
  nodes_text=${nodes_text%$'\n'}
  node_list="lgnode[1-$NODES]"
fi
mem_per_cpu=$((mem / cpus))

conf_text=$(cat <<EOF
$MARK -- rewritten on every run; edit the script, not this file.
ClusterName=lgtest
# One node: loopback (nothing depends on DNS for the machine's own name). Several nodes: the
# bridge address that every node namespace reaches (slurm/local/netns.sh).
SlurmctldHost=$host($ctl_addr)
AuthType=auth/munge
CredType=cred/munge
# A requeued job can start only after its old credential expires (default 120 s): the
# preemption tests would wait two minutes per requeue.
AuthInfo=cred_expire=30
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$LG_SLURM_DIR/state
SlurmctldPidFile=$LG_SLURM_DIR/run/slurmctld.pid
SlurmctldLogFile=$LG_SLURM_DIR/log/slurmctld.log
$slurmd_files
# No mail server here (the default MailProg is missing and slurmctld logs an error).
MailProg=/bin/true
# No cgroups without systemd here: track job processes through /proc, do not pin them.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
# Scheduling passes are triggered by events, but a requeued job that becomes eligible by time
# alone (its credential expired) waits for the next periodic main pass (sched_interval, 60 s
# by default: a requeue took 45 s), and a job that arrives while the node still completes
# the previous one waits for a backfill pass (bf_interval, 30 s). On one node a pass costs
# nothing: with these, a requeued job restarts ~cred_expire after the requeue.
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A node that was DOWN comes back by itself once slurmd registers with a valid config.
ReturnToService=2
$accounting
JobAcctGatherType=jobacct_gather/none
# One line per finished job (state, exit code) in a file: works with or without the database,
# and after a job has left slurmctld's memory (MinJobAge, 300 s).
JobCompType=jobcomp/filetxt
JobCompLoc=$LG_SLURM_DIR/log/jobcomp.txt
# Seconds between SIGTERM and SIGKILL on scancel or time limit (default 30): tests cancel
# jobs and should not wait half a minute each time.
KillWait=10
InactiveLimit=0
$nodes_text
PartitionName=debug Nodes=$node_list Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=$mem_per_cpu
EOF
)

# Write $2 to $1 if it differs; returns 0 when the file changed.
write_if_changed() {
  [ "$(cat "$1" 2>/dev/null || true)" != "$2" ] || return 1
  printf '%s\n' "$2" > "$1.tmp"
  mv "$1.tmp" "$1"
}
conf_changed=0
write_if_changed "$CONF" "$conf_text" && conf_changed=1

# ---- 4. accounting: MariaDB + slurmdbd -----------------------------------------------------
if [ "$ACCOUNTING" = 1 ]; then
  # slurmdbd runs as root and reaches MariaDB over its Unix socket as the database's root user,
  # which Debian authenticates by unix_socket: no password to store. The database lives in the
  # package's /var/lib/mysql; MariaDB listens on no TCP port.
  dbd_text=$(cat <<EOF
$MARK -- rewritten on every run; edit the script, not this file.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$LG_SLURM_DIR/run/slurmdbd.pid
LogFile=$LG_SLURM_DIR/log/slurmdbd.log
EOF
)
  dbd_changed=0
  write_if_changed "$DBD_CONF" "$dbd_text" && dbd_changed=1
  chmod 0600 "$DBD_CONF"  # slurmdbd refuses a config that others can read

  mkdir -p /run/mysqld
  chown mysql:mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null \
    || fail "mariadb-install-db failed"
  db_ping() { mariadb-admin --connect-timeout=2 ping; }
  if ! db_ping >/dev/null 2>&1; then
    # setsid + </dev/null: the server must not hold this script's terminal or pipes open.
    setsid mariadbd --user=mysql --skip-networking --log-error="$LG_SLURM_DIR/log/mariadb.log" \
      </dev/null >/dev/null 2>&1 9>&- &
    echo $! > "$LG_SLURM_DIR/run/mariadbd.ours"  # down.sh stops only a server we started
    started+=(mariadbd)
    wait_for db_ping || fail "MariaDB does not answer"
  fi
  if [ ! -e "$db_marker" ]; then
    # slurmctld registers the cluster only when it starts: restart it (below) after a reset.
    stop_daemon slurmctld
    stop_daemon slurmdbd
    mariadb -e 'DROP DATABASE IF EXISTS slurm_acct_db' || fail "cannot reset slurm_acct_db"
    touch "$db_marker"
  elif [ "$dbd_changed" = 1 ]; then
    stop_daemon slurmdbd
  fi
  if ! is_live slurmdbd; then
    slurmdbd 9>&- || fail "slurmdbd did not start"
    started+=(slurmdbd)
  fi
  # slurmdbd creates its tables on first start (~1 s); sacctmgr answers once it is ready.
  wait_for sacctmgr -n list cluster || fail "slurmdbd does not answer"
fi

# ---- 5. network (--nodes N > 1), slurmctld, slurmd per node ----------------------------
# Namespaces of another node count (or of a multi-node cluster when one node is asked for):
# stop every slurmd and remove them, then make what this mode needs.
have_nodes=$(net_nodes | sort -n | tr '\n' ' ')
want_nodes=""
[ "$NODES" -gt 1 ] && want_nodes=$(seq 1 "$NODES" | tr '\n' ' ')
if [ -n "$have_nodes" ] && [ "$have_nodes" != "$want_nodes" ]; then
  say "node namespaces ${have_nodes% } exist, ${want_nodes:-none} wanted: removing them"
  stop_daemon slurmd
  stop_daemon slurmstepd
  net_down
fi
if [ "$NODES" -gt 1 ]; then
  net_up "$NODES" || fail "could not set up the node namespaces (slurm/local/netns.sh)"
fi
if [ "$conf_changed" -eq 1 ] && { is_live slurmctld || is_live slurmd; }; then
  # Daemons running an older config (other CPUs, memory, dir, nodes or accounting): start afresh.
  say "slurm.conf changed: restarting slurmctld and slurmd"
  stop_daemon slurmd
  stop_daemon slurmctld
fi
if ! is_live slurmctld; then
  # No -c: keep the saved state so job ids keep counting up across restarts. Run directories
  # are keyed on the job id; a reused id would make a new run resume an old run's checkpoint.
  slurmctld 9>&- || fail "slurmctld did not start"
  started+=(slurmctld)
fi
# slurmd of node i (1-based) is running: in the machine's own namespace for one node, inside
# lg-node<i> otherwise.
node_live() {
  if [ "$NODES" -eq 1 ]; then is_live slurmd; else [ -n "$(node_slurmd_pids "$1")" ]; fi
}
declare -A slurmd_since=()
for ((i = 1; i <= NODES; i++)); do
  node_live "$i" && continue
  name=${node_names[i - 1]}
  slurmd_since[$name]=$(date +%s)
  if [ "$NODES" -eq 1 ]; then
    slurmd 9>&- || fail "slurmd did not start"
  else
    mkdir -p "$LG_SLURM_DIR/spool/$name"
    # Inside the node's network namespace and a new UTS namespace with the node's hostname:
    # slurmd, its slurmstepds and every job process live there, and gloo/NCCL, which bind to
    # the address their hostname resolves to, use the node's own address. nsenter, not
    # `ip netns exec`: that also remounts /sys in a new mount namespace, which hides
    # /sys/fs/cgroup, and slurmd does not start without it.
    nsenter --net="/run/netns/$(node_ns "$i")" unshare --uts -- \
      sh -c 'hostname "$1" && exec slurmd -N "$1"' sh "$name" 9>&- \
      || fail "slurmd of $name did not start"
  fi
  started+=("slurmd($name)")
done

# ---- 6. wait for the nodes -----------------------------------------------------------------
# Ready = every node is idle (or busy with jobs) AND, where we just started its slurmd, that
# slurmd has registered: a restarted slurmctld reports the node state it saved, which can say
# idle before the new slurmd has said anything.
registered() {
  local t since=${slurmd_since[$1]:-0}
  [ "$since" -eq 0 ] && return 0
  t=$(scontrol show node -o "$1" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)
  [ -n "$t" ] && [ "$t" != None ] && [ "$(date -d "$t" +%s)" -ge "$since" ]
}
deadline=$(( $(date +%s) + WAIT_S ))
declare -A resumed=()
states=()
for name in "${node_names[@]}"; do
  state=""
  while :; do
    state=$(sinfo -h -N -n "$name" -o '%T' 2>/dev/null | head -n 1 || true)
    case "$state" in
      idle|mixed|allocated|completing) registered "$name" && break ;;
      # A drain left in the saved state by an earlier bad config survives a restart, and a node
      # that was DOWN (killed, its link cut) may wait for its next registration: clear it once.
      # If the cause is still there, slurmd drains the node again and we time out below.
      drain*|down*)
        if [ -z "${resumed[$name]:-}" ] && registered "$name"; then
          scontrol update NodeName="$name" State=RESUME >/dev/null 2>&1 || true
          say "node $name was $state ($(sinfo -h -N -n "$name" -o '%E' 2>/dev/null)): resumed it"
          resumed[$name]=1
        fi ;;
    esac
    [ "$(date +%s)" -lt "$deadline" ] \
      || fail "node $name not ready after ${WAIT_S} s (state '${state:-no answer}')"
    sleep 0.1
  done
  states+=("$name $state")
done
if [ "$ACCOUNTING" = 1 ]; then
  # slurmctld adds the cluster to the database when it starts; before that, sacct knows no jobs.
  cluster_known() { sacctmgr -n -P list cluster format=cluster | grep -qx lgtest; }
  wait_for cluster_known || fail "slurmctld did not register cluster lgtest with slurmdbd"
fi

nodes_said=$(IFS=,; echo "${states[*]}")
if [ ${#started[@]} -eq 0 ]; then
  say "already up: ${nodes_said//,/, } ($(elapsed "$t0") s)"
else
  say "up in $(elapsed "$t0") s: started ${started[*]}; ${nodes_said//,/, }," \
      "CPUs=$cpus RealMemory=${mem} MiB per node, accounting=$ACCOUNTING; logs in $LG_SLURM_DIR/log"
fi

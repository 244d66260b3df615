# The network of the multi-node local cluster (`up.sh --nodes N`, N > 1); sourced by up.sh and
# down.sh after daemons.sh. Everything here has a name of ours and is made or removed only here:
#   bridge lgbr0 (in the machine's namespace) with the controller's address 10.213.7.1/24;
#   per node i: network namespace lg-node<i>, a veth pair lgv<i> (bridge side) <-> eth0 (inside)
#   with 10.213.7.<10+i>/24, loopback up; hostname lgnode<i> in the node's UTS namespace (made
#   when its slurmd starts); and "10.213.7.<10+i> lgnode<i>" in /etc/hosts between two markers.
# No other interface, address, route, NAT or sysctl is touched: the /24 is a private L2 segment
# between this machine and its namespaces only, with no route beyond it.

LG_NET=10.213.7
LG_BRIDGE=lgbr0
LG_CTL_ADDR=$LG_NET.1
HOSTS_BEGIN="# BEGIN lightning_gans slurm/local/up.sh --nodes (down.sh removes this block)"
HOSTS_END="# END lightning_gans slurm/local/up.sh --nodes"

node_name() { echo "lgnode$1"; }
node_ns() { echo "lg-node$1"; }
node_addr() { echo "$LG_NET.$((10 + $1))"; }
node_veth() { echo "lgv$1"; }

# /etc/hosts without our block, then the block for nodes 1..$1 (none for 0). Written in place
# (not renamed over): /etc/hosts may be a bind mount. Unchanged file: not rewritten.
hosts_set() {
  local n=$1 i text
  text=$(awk -v b="$HOSTS_BEGIN" -v e="$HOSTS_END" '$0 == b { skip = 1; next } $0 == e { skip = 0; next } !skip' /etc/hosts)
  if [ "$n" -gt 0 ]; then
    text+=$'\n'"$HOSTS_BEGIN"
    for ((i = 1; i <= n; i++)); do text+=$'\n'"$(node_addr "$i") $(node_name "$i")"; done
    text+=$'\n'"$HOSTS_END"
  fi
  [ "$text" = "$(cat /etc/hosts)" ] || printf '%s\n' "$text" > /etc/hosts
}

# Make (or repair: a link set down, an address missing) the bridge and nodes 1..$1.
net_up() {
  local n=$1 i ns veth addr
  ip link show "$LG_BRIDGE" >/dev/null 2>&1 || ip link add "$LG_BRIDGE" type bridge
  ip -4 addr show dev "$LG_BRIDGE" | grep -q "inet $LG_CTL_ADDR/24" \
    || ip addr add "$LG_CTL_ADDR/24" dev "$LG_BRIDGE"
  ip link set "$LG_BRIDGE" up
  for ((i = 1; i <= n; i++)); do
    ns=$(node_ns "$i"); veth=$(node_veth "$i"); addr=$(node_addr "$i")
    [ -e "/run/netns/$ns" ] || ip netns add "$ns"
    # Deleting either end of a veth pair deletes both: one check covers the pair.
    ip link show "$veth" >/dev/null 2>&1 || ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$LG_BRIDGE"
    ip link set "$veth" up
    ip -n "$ns" link set lo up
    ip -n "$ns" -4 addr show dev eth0 | grep -q "inet $addr/24" || ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  hosts_set "$n"
}

# Our namespaces that exist, by node number (lg-node1 -> 1).
net_nodes() {
  local f
  for f in /run/netns/lg-node*; do
    [ -e "$f" ] && echo "${f##*/lg-node}"
  done
  return 0
}

# Live slurmd processes inside node $1's namespace.
node_slurmd_pids() {
  local pid ns
  ns=$(node_ns "$1")
  for pid in $(live_pids slurmd); do
    [ "$(ip netns identify "$pid" 2>/dev/null)" = "$ns" ] && echo "$pid"
  done
  return 0
}

# Remove what net_up made: processes still inside our namespaces (job leftovers), the
# namespaces (which removes their veth ends and so the pairs), leftover lgv* links, the bridge,
# the hosts block.
net_down() {
  local i ns pids link
  for i in $(net_nodes); do
    ns=$(node_ns "$i")
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    ip netns del "$ns" && say "removed namespace $ns"
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep -E '^lgv[0-9]+$' || true); do
    ip link del "$link" 2>/dev/null || true
  done
  if ip link show "$LG_BRIDGE" >/dev/null 2>&1; then
    ip link del "$LG_BRIDGE" && say "removed bridge $LG_BRIDGE"
  fi
  hosts_set 0
}

# Daemon helpers shared by up.sh and down.sh (sourced; they define `say` first).

# PIDs of live processes whose command name is exactly $1. Zombies are left out on purpose:
# PID 1 on these machines reaps slowly, so a killed daemon lingers as <defunct> for a while and
# a pid file or `pgrep` alone would call it running.
live_pids() {
  { ps -C "$1" -o pid=,stat= 2>/dev/null || true; } | awk '$2 !~ /^Z/ { print $1 }'
}
is_live() { [ -n "$(live_pids "$1")" ]; }

# TERM, wait up to 10 s, then KILL. Returns once no live process of that name is left.
stop_daemon() {
  local name=$1 pids i
  pids=$(live_pids "$name")
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086  # word splitting of the pid list is intended
  kill -TERM $pids 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    is_live "$name" || { say "stopped $name"; return 0; }
    sleep 0.1
  done
  pids=$(live_pids "$name")
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    is_live "$name" || { say "killed $name (it ignored SIGTERM for 10 s)"; return 0; }
    sleep 0.1
  done
  say "WARNING: $name still alive after SIGKILL"
}

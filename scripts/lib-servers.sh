# Sourced by the bench scripts (after `set -euo pipefail` and `cd` to the project root): a
# release build, a work directory, servers started in the background and stopped on exit,
# and a wait for a port to answer. Everything the callers start listens on 127.0.0.1 only.

# bench_setup NAME TOOL…: checks that the tools are installed, builds quipu, makes $work and
# stops what `background` started when the script exits.
bench_setup() {
  local name=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
  done
  cargo build --release --bin quipu >/dev/null 2>&1 || cargo build --release --bin quipu
  work=$(mktemp -d "${TMPDIR:-/tmp}/quipu-$name.XXXXXX")
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # Only what `background` started: a helper left running must not hold the exit.
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$work"
}

# background COMMAND…: starts a server and remembers its pid (the last is ${pids[-1]}).
background() {
  "$@" &
  pids+=($!)
}

# wait_port PORT: until a PING there answers, for at most 10 s.
wait_port() {
  for _ in $(seq 1 100); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "port $1 did not answer" >&2
  exit 1
}

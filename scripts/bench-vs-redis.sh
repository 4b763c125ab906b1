#!/usr/bin/env bash
# quipu serve against redis-server on the same machine, in the same run, with the same
# redis-benchmark arguments (../shared/BENCHMARKS.md). Prints one markdown table: requests/s,
# p50 and p99 for each server and the ratio quipu / Redis, then bytes per key after 1M SETs.
#
# Usage: scripts/bench-vs-redis.sh            (N=100000 requests per test, ROUNDS=2)
#        N=20000 ROUNDS=1 scripts/bench-vs-redis.sh   (a quick look)
#        THREADS=1 scripts/bench-vs-redis.sh           (quipu with --threads 1)
#        PIN=1 scripts/bench-vs-redis.sh               (every server on CPU 1, redis-benchmark on
#                                                       CPU 0: the client gets a core of its own)
# The tests alternate quipu and Redis, ROUNDS times each, and report the best round of each:
# the machine is shared, and interleaving keeps drift from favouring either server.
# Ports: quipu 7479, Redis 7480 (no persistence), Redis 7481 (appendonly, appendfsync always).
# Everything listens on 127.0.0.1 only; every run is bounded by -n.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
ROUNDS=${ROUNDS:-2}
MEM_KEYS=${MEM_KEYS:-1000000}
IDLE=${IDLE:-10000}
QP=7479
RP=7480
RAOF=7481
. scripts/lib-servers.sh
bench_setup bench redis-server redis-cli redis-benchmark python3 bc
bench_data="target/bench-data/vs-redis"
rm -rf "$bench_data" && mkdir -p "$bench_data"
# With PIN=1 the servers share CPU 1 and the load generator has CPU 0 to itself; by default
# all three share both cores, as ../shared/BENCHMARKS.md asks.
server_cpu=() client_cpu=()
if [ -n "${PIN:-}" ]; then server_cpu=(taskset -c 1) client_cpu=(taskset -c 0); fi
start_quipu() {
  rm -rf "$bench_data/quipu"
  local http=()
  target/release/quipu serve --help | grep -q -- --http-port && http=(--http-port 7482)
  [ -n "${THREADS:-}" ] && http+=(--threads "$THREADS")
  background "${server_cpu[@]}" target/release/quipu serve --data-dir "$bench_data/quipu" --port $QP \
    "${http[@]}" --max-bytes $((4 << 30)) --max-clients 10200 2>"$work/quipu.err"
  QUIPU_PID=${pids[-1]}
  wait_port $QP
}
stop_quipu() { kill "$QUIPU_PID" 2>/dev/null || true; wait "$QUIPU_PID" 2>/dev/null || true; }

background "${server_cpu[@]}" redis-server --port $RP --bind 127.0.0.1 --protected-mode no --save "" \
  --appendonly no --dir "$work" --maxclients 10200 --daemonize no --logfile "$work/redis.log"
mkdir -p "$bench_data/redis-aof"
background "${server_cpu[@]}" redis-server --port $RAOF --bind 127.0.0.1 --save "" --appendonly yes \
  --appendfsync always --dir "$bench_data/redis-aof" --daemonize no --logfile "$work/redis-aof.log"
start_quipu
wait_port $RP
wait_port $RAOF

# One redis-benchmark run; prints "rps p50 p99". Pipelined runs send 8×N requests: at
# -P 16, N alone is over in a fraction of a second, too short to say anything.
run() {
  local port=$1; shift
  local n=$N
  [[ " $* " == *" -P 16 "* ]] && n=$((N * 8))
  "${client_cpu[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -c 50 -n "$n" --csv -q "$@" 2>/dev/null |
    awk -F'","' 'NR==2 { gsub(/"/, "", $0); split($0, f, ","); print f[2], f[5], f[7] }'
}

best() { sort -k1 -g -r | head -1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u '+%F %H:%M UTC')"
echo "redis: $(redis-server --version | awk '{print $3}'), quipu: $(target/release/quipu --version), I/O threads: ${THREADS:-default}, pinned: $([ -n "${PIN:-}" ] && echo 'servers on CPU 1, client on CPU 0' || echo no)"
echo "each test: redis-benchmark -c 50 -n $N (-n $((N * 8)) with -P 16), best of $ROUNDS interleaved rounds; $([ -n "${PIN:-}" ] && echo 'the servers share CPU 1, the client has CPU 0' || echo 'servers and client share the cores')"
echo
echo "| test | quipu req/s | p50 / p99 ms | Redis req/s | p50 / p99 ms | quipu / Redis |"
echo "|---|---:|---:|---:|---:|---:|"

row() {
  local label=$1 peer=$2; shift 2
  local q="" r=""
  for _ in $(seq 1 "$ROUNDS"); do
    q+="$(run $QP "$@")"$'\n'
    r+="$(run "$peer" "$@")"$'\n'
  done
  q=$(printf '%s' "$q" | grep . | best)
  r=$(printf '%s' "$r" | grep . | best)
  read -r qr qp50 qp99 <<<"$q"
  read -r rr rp50 rp99 <<<"$r"
  printf '| %s | %.0f | %s / %s | %.0f | %s / %s | **%.2f×** |\n' \
    "$label" "$qr" "$qp50" "$qp99" "$rr" "$rp50" "$rp99" "$(echo "$qr / $rr" | bc -l)"
}

for p in 1 16; do
  row "PING, -P $p" $RP -P $p -t ping_mbulk
  for d in 64 1024; do
    row "SET $d B, -P $p" $RP -P $p -d $d -r 100000 -t set
    row "GET $d B, -P $p" $RP -P $p -d $d -r 100000 -t get
  done
  row "INCR, -P $p" $RP -P $p -r 100000 -t incr
  row "MSET (10 keys), -P $p" $RP -P $p -r 100000 -t mset
  row "PUBLISH (no subscriber), -P $p" $RP -P $p PUBLISH bench.channel hello
  row "XADD, Always vs appendfsync always, -P $p" $RAOF -P $p XADD bench.stream '*' f __rand_int__
done

echo
echo "GET 64 B with $IDLE idle connections held open (-c 50, -P 1):"
echo
echo "| server | req/s | p50 / p99 ms |"
echo "|---|---:|---:|"
for target in "quipu $QP 127.0.0.2" "Redis $RP 127.0.0.3"; do
  read -r name port source <<<"$target"
  holder_out="$work/idle-$port"
  background python3 scripts/idle-connections.py "$port" "$IDLE" "$source" >"$holder_out" 2>&1
  holder=${pids[-1]}
  for _ in $(seq 1 600); do grep -q ready "$holder_out" && break; sleep 0.1; done
  if grep -q ready "$holder_out"; then
    read -r rr p50 p99 <<<"$(run "$port" -d 64 -r 100000 -t get)"
    [ -n "$rr" ] || { echo "| $name | redis-benchmark failed | |"; kill "$holder"; continue; }
    printf '| %s | %.0f | %s / %s |\n' "$name" "$rr" "$p50" "$p99"
  else
    echo "| $name | could not hold $IDLE connections: $(tail -1 "$holder_out") | |"
  fi
  kill "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
done

echo
echo "Memory after $MEM_KEYS SETs of 64-byte values (distinct keys):"
stop_quipu
start_quipu
redis-cli -p $RP flushall >/dev/null
for port in $QP $RP; do
  redis-benchmark -h 127.0.0.1 -p $port -c 50 -n "$MEM_KEYS" -P 16 -d 64 -r 1000000000 -t set -q >/dev/null 2>&1
done
mem_of() {
  local port=$1 pid=$2 keys used rss
  keys=$(redis-cli -p "$port" dbsize)
  used=$(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ { print $2 }' | tr -d '\r')
  rss=$(awk '/VmRSS/ { print $2 * 1024 }' "/proc/$pid/status")
  printf '%s keys, used_memory %s B (%.1f B/key), RSS %s B (%.1f B/key)' \
    "$keys" "$used" "$(echo "$used / $keys" | bc -l)" "$rss" "$(echo "$rss / $keys" | bc -l)"
}
redis_pid=$(redis-cli -p $RP info server | awk -F: '/^process_id:/ { print $2 }' | tr -d '\r')
echo "- quipu: $(mem_of $QP "$QUIPU_PID")"
echo "- Redis: $(mem_of $RP "$redis_pid")"

#!/usr/bin/env bash
# HSET and HGET on one hash of N fields, quipu against redis-server in the same run
# (redis-benchmark -c 50, random fields of the hash). Usage: scripts/bench-big-hash.sh [N ...]
# (default 10 1000 10000). Ports: quipu 7479, Redis 7480; loopback only; bounded by -n.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-servers.sh
bench_setup hash redis-server redis-cli redis-benchmark python3 bc
background target/release/quipu serve --data-dir "$work/quipu" --port 7479 --no-http 2>"$work/quipu.err"
background redis-server --port 7480 --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --logfile "$work/redis.log"
wait_port 7479
wait_port 7480
fill() { # port n: HSET bigh 0..n-1 in one pipeline
  python3 - "$1" "$2" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"".join(b"*4\r\n$4\r\nHSET\r\n$4\r\nbigh\r\n$%d\r\n%d\r\n$1\r\nv\r\n" % (len(str(i)), i) for i in range(n)))
got = b""
while got.count(b"\r\n") < n:
    got += s.recv(1 << 20)
PY
}
rate() { redis-benchmark -p "$1" -c 50 -n "$3" -r "$2" --csv -q "${@:4}" | tail -1 | cut -d, -f2 | tr -d '"'; }
echo "| fields | quipu HSET/s | Redis HSET/s | ratio | quipu HGET/s | Redis HGET/s | ratio |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for n in "${@:-10 1000 10000}"; do
  for port in 7479 7480; do redis-cli -p $port del bigh >/dev/null; fill $port "$n"; done
  req=$((n >= 10000 ? 20000 : 100000))
  qs=$(rate 7479 "$n" $req HSET bigh __rand_int__ w); rs=$(rate 7480 "$n" $req HSET bigh __rand_int__ w)
  qg=$(rate 7479 "$n" $req HGET bigh __rand_int__); rg=$(rate 7480 "$n" $req HGET bigh __rand_int__)
  printf '| %s | %.0f | %.0f | **%.2f×** | %.0f | %.0f | **%.2f×** |\n' "$n" "$qs" "$rs" \
    "$(echo "$qs / $rs" | bc -l)" "$qg" "$rg" "$(echo "$qg / $rg" | bc -l)"
done

#!/usr/bin/env bash
# A full `redis-cli --scan` (SCAN with COUNT 10 until the cursor is 0) over KEYS keys, quipu
# against redis-server in the same run: wall time and keys listed, and the ratio.
#
# Usage: scripts/bench-scan.sh             (KEYS=1000000)
#        KEYS=100000 scripts/bench-scan.sh
# Ports: quipu 7479, Redis 7480 (no persistence); 127.0.0.1 only; bounded by KEYS.
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-1000000}
QP=7479
RP=7480
. scripts/lib-servers.sh
bench_setup scan redis-server redis-cli bc
background target/release/quipu serve --data-dir "$work/quipu" --port $QP --http-port 7482 \
  --max-bytes $((4 << 30)) 2>"$work/quipu.err"
background redis-server --port $RP --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1
wait_port $QP
wait_port $RP

# KEYS SETs of `key:<i>` to `v`, as RESP, through redis-cli's pipe mode.
seq 1 "$KEYS" | awk '{k="key:" $1; printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n", length(k), k}' \
  >"$work/load.resp"

scan() {
  redis-cli -p "$1" --pipe <"$work/load.resp" >/dev/null
  local t0 t1 n
  t0=$(date +%s.%N)
  n=$(redis-cli -p "$1" --scan | wc -l)
  t1=$(date +%s.%N)
  echo "$n $(echo "$t1 - $t0" | bc)"
}

read -r qn qt < <(scan $QP)
read -r rn rt < <(scan $RP)
echo "| server | keys listed | full scan, s |"
echo "|---|---:|---:|"
echo "| quipu | $qn | $qt |"
echo "| Redis | $rn | $rt |"
echo
echo "quipu / Redis time: $(echo "scale=2; $qt / $rt" | bc)x (of $KEYS keys)"

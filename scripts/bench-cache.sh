#!/usr/bin/env bash
# Runs the cache benchmarks (quipu, moka, quick_cache and the RwLock<HashMap> floor in the same
# run) and prints throughput ratios quipu / peer (above 1: quipu is faster), then the hit-ratio
# table. Usage: scripts/bench-cache.sh [criterion filter]   (SKIP_HIT_RATIO=1 skips the table)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
cargo bench --bench cache -- "${1:-}" >/dev/null 2>&1
python3 - <<'PY'
import json, os
root = "target/criterion"
def t(group, peer):
    f = os.path.join(root, group.replace("/", "_"), peer, "new", "estimates.json")
    if not os.path.exists(f):
        return None
    return json.load(open(f))["median"]["point_estimate"]  # ns per operation
print(f"\n{'group':<24} {'quipu ns':>9} {'/moka':>7} {'/quick_cache':>13} {'/floor':>7}")
for op in ("get_hit", "get_miss", "insert", "insert_evict", "mix90_10"):
    for size in ("64B", "1KiB"):
        for threads in ("1t", "2t"):
            g = f"{op}/{size}/{threads}"
            q = t(g, "quipu")
            if q is None:
                continue
            r = lambda p: (f"{t(g, p) / q:.2f}" if t(g, p) else "-")
            print(f"{g:<24} {q:9.0f} {r('moka'):>7} {r('quick_cache'):>13} {r('rwlock_floor'):>7}")
PY
if [ -z "${SKIP_HIT_RATIO:-}" ]; then
    cargo run --release --example hit_ratio 2>/dev/null
fi

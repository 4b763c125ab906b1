#!/usr/bin/env bash
# Runs the log benchmarks (quipu and its floors in the same run) and prints the ratios that
# docs/BENCHMARKS.md reports. Usage: scripts/bench-log.sh [criterion filter]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
cargo bench --bench log -- "${1:-}" >/dev/null 2>&1
python3 - <<'PY'
import json, os
root = "target/criterion"
def t(path):
    f = os.path.join(root, path, "new", "estimates.json")
    if not os.path.exists(f):
        return None
    return json.load(open(f))["mean"]["point_estimate"]  # ns per iteration
def row(name, quipu, floor, better_is_lower=True, target=None):
    q, f = t(quipu), t(floor)
    if q is None or f is None:
        return
    ratio = q / f if better_is_lower else f / q
    goal = "" if target is None else f"  (target {target})"
    print(f"{name:<52} {ratio:7.2f}{goal}")
print("\nappend, Durability::Never: quipu time / floor time (lower is better)")
for size in (100, 1024):
    row(f"  {size} B, 1 appender vs BufWriter::write_all", f"append_never/quipu/{size}", f"append_never/file_bufwriter/{size}", target="<= 2")
    row(f"  {size} B, 1 appender vs File::write_all (no buffer)", f"append_never/quipu/{size}", f"append_never/file_write_all_unbuffered/{size}")
    row(f"  {size} B, 1 Appender vs BufWriter::write_all", f"append_never/quipu_appender/{size}", f"append_never/file_bufwriter/{size}", target="<= 2")
    row(f"  {size} B, batches of 100 vs BufWriter::write_all", f"append_never/quipu_batch_of_100/{size}", f"append_never/file_bufwriter/{size}")
    row(f"  {size} B, 1 Appender vs 64 KiB-aligned writes", f"append_never/quipu_appender/{size}", f"append_never/file_aligned_64k/{size}")
    row(f"  {size} B, BufWriter vs 64 KiB-aligned writes", f"append_never/file_bufwriter/{size}", f"append_never/file_aligned_64k/{size}")
print("\nappend, Durability::Always: quipu records/s / (write + fsync per record) records/s")
floor = "append_always/file_write_fsync_per_record"
for n, target in ((1, None), (4, None), (16, ">= 8")):
    row(f"  {n} thread(s)", f"append_always/quipu_threads/{n}", floor, better_is_lower=False, target=target)
for n, target in ((16, None), (256, ">= 50")):
    row(f"  {n} async tasks", f"append_always/quipu_async_tasks/{n}", floor, better_is_lower=False, target=target)
print("\nsequential read of a cold-started partition: quipu time / raw file read time")
for size in (100, 1024):
    row(f"  {size} B records, read() into records", f"read_sequential/quipu_records/{size}", f"read_sequential/file_read_raw/{size}", target="<= 2")
    row(f"  {size} B records, visit_batches() + record_views()", f"read_sequential/quipu_record_views/{size}", f"read_sequential/file_read_raw/{size}", target="<= 2")
    row(f"  {size} B records, read_batches()", f"read_sequential/quipu_batches/{size}", f"read_sequential/file_read_raw/{size}", target="<= 2")
    row(f"  {size} B records, visit_batches()", f"read_sequential/quipu_visit_batches/{size}", f"read_sequential/file_read_raw/{size}", target="<= 2")
PY

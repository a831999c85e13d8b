#!/usr/bin/env bash
# Runs the criterion benchmarks in benches/negotiation.rs with shortened times, then prints each
# benchmark's median and its ratio to the baseline of its group measured in the same run.
#
#   bash scripts/bench.sh                 # everything (about 80 s once compiled)
#   bash scripts/bench.sh cancel_request  # extra arguments go to criterion (here a filter)
#
# The machines this runs on are shared and noisy: publish the ratios, with the absolute times
# only beside them. criterion's full output is kept in target/bench-negotiation.log.
set -euo pipefail

cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
criterion_dir="${CRITERION_HOME:-$target_dir/criterion}"
log="$target_dir/bench-negotiation.log"
mkdir -p "$target_dir"

# Compile first, so that the timing of the run below is the benchmarks' alone.
cargo bench --bench negotiation --no-run

# Results older than this marker are from earlier runs and are not reported.
marker="$(mktemp)"
trap 'rm -f "$marker"' EXIT

start=$(date +%s)
cargo bench --bench negotiation -- --warm-up-time 1 --measurement-time 3 "$@" 2>&1 | tee "$log"
echo "benchmarks ran in $(($(date +%s) - start)) s; criterion's output is in $log"
echo

python3 - "$criterion_dir" "$marker" <<'EOF'
import json
import os
import sys

criterion_dir, marker = sys.argv[1], sys.argv[2]
since = os.path.getmtime(marker)

results = []  # (group, function, value, median ns, low ns, high ns)
for root, _dirs, files in os.walk(criterion_dir):
    if os.path.basename(root) != "new" or "estimates.json" not in files:
        continue
    estimates = os.path.join(root, "estimates.json")
    if os.path.getmtime(estimates) < since:
        continue
    with open(os.path.join(root, "benchmark.json")) as f:
        bench = json.load(f)
    with open(estimates) as f:
        median = json.load(f)["median"]
    ci = median["confidence_interval"]
    results.append((bench["group_id"], bench.get("function_id") or "", bench.get("value_str") or "",
                    median["point_estimate"], ci["lower_bound"], ci["upper_bound"]))

if not results:
    sys.exit(f"no results from this run under {criterion_dir}")

def fmt(ns):
    for unit, scale in (("ns", 1.0), ("µs", 1e3), ("ms", 1e6)):
        if ns < 1000 * scale or unit == "ms":
            return f"{ns / scale:.3g} {unit}"

baselines = {(g, v): m for g, f, v, m, _, _ in results if f == "baseline"}
order = {}
rows = []
for g, f, v, m, lo, hi in results:
    name = "/".join(x for x in (g, f, v) if x)
    base = baselines.get((g, v), baselines.get((g, "")))
    ratio = "-" if base is None else f"{m / base:.1f}x"
    rows.append((g, f != "baseline", v.zfill(8), name, fmt(m), f"[{fmt(lo)} .. {fmt(hi)}]", ratio))
rows.sort()
width = max(len(r[3]) for r in rows)
print(f"{'benchmark':<{width}}  {'median':>9}  {'95% CI of the median':<24}  ratio to baseline")
for _g, _b, _v, name, med, ci, ratio in rows:
    print(f"{name:<{width}}  {med:>9}  {ci:<24}  {ratio}")
EOF

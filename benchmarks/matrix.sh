#!/usr/bin/env bash
# Runs `chancy bench --json` over a matrix and appends one JSON object per run (plus the
# arguments) to benchmarks/runs/<name>.jsonl. Each configuration runs $REPEAT times (default
# 3); benchmarks/plot.py summarises medians. Needs a release build and DATABASE_URL.
#   benchmarks/matrix.sh <name> "<bench args>" ["<bench args>" ...]
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
out=benchmarks/runs/$name.jsonl
mkdir -p benchmarks/runs
for args in "$@"; do
  for _ in $(seq "${REPEAT:-3}"); do
    # shellcheck disable=SC2086
    json=$(./target/release/chancy -q --prefix "mx$$_" bench $args --json)
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["args"]=sys.argv[2]; print(json.dumps(r))' "$json" "$args" >> "$out"
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); d=r.get("drain") or {}; e=r.get("enqueue") or {}; l=r.get("latency") or {}; print(sys.argv[2], "| load", r["load_average"][0], "| enqueue", round(e.get("jobs_per_second",0)), "| drain", round(d.get("jobs_per_second",0)), "| p50/p99 start", (l.get("push_to_start_ms") or {}).get("p50"), (l.get("push_to_start_ms") or {}).get("p99"))' "$json" "$args"
  done
done

#!/usr/bin/env bash
# Issue 16: scale-out over worker processes. Runs `chancy bench --mode drain --workers N`
# for N = 1, 2, 4 with 10 and with 500 queues, $REPEAT rounds (default 3), interleaved (one
# run of every configuration per round, so a change of load hits them all alike), appending
# to benchmarks/runs/workers.jsonl; `uptime` before and after each run goes to stderr and
# into the run's JSON (`uptime_before`, `uptime_after`). Then prints the medians
# (benchmarks/workers.py). Needs a release build and DATABASE_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-50000}
out=benchmarks/runs/workers.jsonl
mkdir -p benchmarks/runs
for round in $(seq "${REPEAT:-3}"); do
  for queues in 10 500; do
    for workers in 1 2 4; do
      args="--mode drain --jobs $jobs --concurrency 16 --queues $queues --workers $workers"
      before=$(uptime)
      # shellcheck disable=SC2086
      json=$(./target/release/chancy -q --prefix "wk$$_" bench $args --json)
      after=$(uptime)
      echo "round $round: $args | before: $before | after: $after" >&2
      python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["args"]=sys.argv[2]; r["uptime_before"]=sys.argv[3].strip(); r["uptime_after"]=sys.argv[4].strip(); print(json.dumps(r))' \
        "$json" "$args" "$before" "$after" >> "$out"
    done
  done
done
python3 benchmarks/workers.py

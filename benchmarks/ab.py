#!/usr/bin/env python3
"""A/B of two chancy binaries on the same workload, interleaved (A B, B A, A B, …).

    python3 benchmarks/ab.py --a /tmp/chancy-a --b target/release/chancy [--rounds 3]
        [--args "--mode drain --jobs 100000 --concurrency 256"] [--label fillfactor]

Each round runs `<binary> -q --prefix ab<pid>_<a|b>_ bench <args> --json` for both binaries,
the order alternating per round so a drifting load does not favour one side. Prints the
medians (min–max) of the drain's cost figures for A and B with B's change against A, the
load average before and after, and appends every raw run (plus the arguments and the
1-minute load at its start) to benchmarks/runs/ab-<label>-<UTC stamp>.jsonl.

Needs DATABASE_URL. A run that fails is recorded with its error and left out of the medians.
"""

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ROWS = [
    ("drain jobs/s", "drain.jobs_per_second", "{:,.0f}"),
    ("PostgreSQL CPU µs/job, all", "drain.costs.postgres_cpu_us_per_job", "{:.1f}"),
    ("PostgreSQL CPU µs/job, own", "drain.costs.postgres_own_cpu_us_per_job", "{:.1f}"),
    ("worker CPU µs/job", "drain.costs.worker_cpu_us_per_job", "{:.1f}"),
    ("WAL bytes/job", "drain.costs.wal_bytes_per_job", "{:,.0f}"),
    ("WAL records/job", "drain.costs.wal_records_per_job", "{:.2f}"),
    ("commits/job", "drain.costs.commits_per_job", "{:.4f}"),
    ("statements/job", "drain.costs.statements_per_job", "{:.4f}"),
    ("claim buffers/row", "drain.claim.buffers_per_row", "{:.1f}"),
    ("claim WAL bytes/row", "drain.claim.wal_bytes_per_row", "{:.0f}"),
    ("steady p50 ms", "steady.push_to_start_ms.p50", "{:.2f}"),
    ("steady p99 ms", "steady.push_to_start_ms.p99", "{:.2f}"),
    ("steady PostgreSQL CPU µs/job, own", "steady.costs.postgres_own_cpu_us_per_job", "{:.1f}"),
    ("steady commits/job", "steady.costs.commits_per_job", "{:.3f}"),
    ("latency p50 ms", "latency.push_to_start_ms.p50", "{:.2f}"),
    ("latency p99 ms", "latency.push_to_start_ms.p99", "{:.2f}"),
]


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def get(report, path):
    cur = report
    for key in path.split("."):
        if not isinstance(cur, dict) or cur.get(key) is None:
            return None
        cur = cur[key]
    return cur


def run(binary, tag, args):
    cmd = [binary, "-q", "--prefix", f"ab{os.getpid()}_{tag}_", "bench", *shlex.split(args), "--json"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        lines = [l for l in out.stderr.strip().splitlines() if l.strip()]
        return {"error": f"exit {out.returncode}: " + " / ".join(lines[-3:])}
    return json.loads(out.stdout)


def cell(values, fmt):
    if not values:
        return "—", None
    med = statistics.median(values)
    text = fmt.format(med)
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}–{fmt.format(max(values))})"
    return text, med


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="binary A (the baseline)")
    p.add_argument("--b", required=True, help="binary B (the change)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--args", default="--mode drain --jobs 100000 --concurrency 256")
    p.add_argument("--label", default="ab")
    args = p.parse_args()
    if not os.environ.get("DATABASE_URL"):
        sys.exit("DATABASE_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H%M")
    out = os.path.join(ROOT, "benchmarks", "runs", f"ab-{args.label}-{stamp}.jsonl")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load()
    results = {"a": [], "b": []}
    with open(out, "a") as f:
        for rnd in range(args.rounds):
            order = ["a", "b"] if rnd % 2 == 0 else ["b", "a"]
            for tag in order:
                at_start = load()
                r = run(getattr(args, tag), tag, args.args)
                r.update({"side": tag, "binary": getattr(args, tag), "args": args.args,
                          "round": rnd + 1, "load_at_start": at_start})
                f.write(json.dumps(r) + "\n")
                f.flush()
                results[tag].append(r)
                summary = r.get("error") or get(r, "drain.jobs_per_second") or get(r, "steady.push_to_start_ms.p50")
                print(f"round {rnd + 1} {tag}: {summary} (load {at_start})", file=sys.stderr)
    print(f"A/B `{args.label}`: `chancy bench {args.args}`, {args.rounds} interleaved rounds, medians (min–max); "
          f"started {started}, load average before {load_before}, after {load()}")
    print(f"A = {args.a}, B = {args.b}")
    print()
    print("| | A | B | B vs A |")
    print("|---|---|---|---|")
    for label, path, fmt in ROWS:
        a_text, a = cell([v for r in results["a"] if "error" not in r and (v := get(r, path)) is not None], fmt)
        b_text, b = cell([v for r in results["b"] if "error" not in r and (v := get(r, path)) is not None], fmt)
        if a is None and b is None:
            continue
        change = f"{(b - a) / a * 100:+.1f} %" if a and b is not None else "—"
        print(f"| {label} | {a_text} | {b_text} | {change} |")
    failed = [r for side in results.values() for r in side if "error" in r]
    for r in failed:
        print(f"\nfailed: round {r['round']} {r['side']}: {r['error']}")
    print(f"\nraw runs: {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()

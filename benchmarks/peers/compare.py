#!/usr/bin/env python3
"""chancy bench and graphile-worker, interleaved, side by side (see README.md here).

    python3 benchmarks/peers/compare.py [--rounds 3] [--jobs 100000]
        [--steady-rate 5000 --steady-seconds 30] [--chancy-args "--concurrency 256"]

Needs DATABASE_URL, a release build (target/release/chancy) and `npm ci` in
benchmarks/peers/graphile. Prints a markdown table of medians (min-max) with ratios
chancy / graphile, and appends every raw run to benchmarks/runs/compare-<stamp>.jsonl.
"""

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRAPHILE = os.path.join(ROOT, "benchmarks", "peers", "graphile")


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_json(cmd, cwd=ROOT):
    """Runs one benchmark; a failed run becomes {"error": ...} (counted, shown, not fatal)."""
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        lines = [l for l in out.stderr.strip().splitlines() if l.strip()]
        return {"error": f"exit {out.returncode}: " + " / ".join(lines[-3:])}
    return json.loads(out.stdout)


def chancy(args, mode_args):
    cmd = [args.chancy, "-q", "--prefix", f"cmp{os.getpid()}_", "bench"]
    cmd += mode_args + shlex.split(args.chancy_args) + ["--json"]
    return run_json(cmd)


def graphile(mode_args):
    return run_json(["node", "bench.mjs", *mode_args, "--json"], cwd=GRAPHILE)


def get(report, path):
    cur = report
    for key in path.split("."):
        if not isinstance(cur, dict) or cur.get(key) is None:
            return None
        cur = cur[key]
    return cur


# (label, JSON path, unit, format)
DRAIN_ROWS = [
    ("drain jobs/s", "drain.jobs_per_second", "", "{:,.0f}"),
    ("PostgreSQL CPU per job, all processes", "drain.costs.postgres_cpu_us_per_job", " µs", "{:.1f}"),
    ("PostgreSQL CPU per job, own backends + background", "drain.costs.postgres_own_cpu_us_per_job", " µs", "{:.1f}"),
    ("worker CPU per job", "drain.costs.worker_cpu_us_per_job", " µs", "{:.1f}"),
    ("WAL bytes per drained job", "drain.costs.wal_bytes_per_job", "", "{:,.0f}"),
    ("WAL records per drained job", "drain.costs.wal_records_per_job", "", "{:.2f}"),
    ("WAL full-page images per drained job", "drain.costs.wal_fpi_per_job", "", "{:.3f}"),
    ("commits per drained job (database-wide)", "drain.costs.commits_per_job", "", "{:.3f}"),
    ("enqueue jobs/s (bulk)", "enqueue.jobs_per_second", "", "{:,.0f}"),
    ("WAL bytes per pushed job", "enqueue.wal_bytes_per_job", "", "{:,.0f}"),
]
STEADY_ROWS = [
    ("steady: push→start p50", "steady.push_to_start_ms.p50", " ms", "{:.2f}"),
    ("steady: push→start p99", "steady.push_to_start_ms.p99", " ms", "{:.2f}"),
    ("steady: achieved arrivals/s", "steady.achieved_rate", "", "{:,.0f}"),
    ("steady: PostgreSQL CPU per job, all", "steady.costs.postgres_cpu_us_per_job", " µs", "{:.1f}"),
    ("steady: PostgreSQL CPU per job, own", "steady.costs.postgres_own_cpu_us_per_job", " µs", "{:.1f}"),
    ("steady: worker CPU per job", "steady.costs.worker_cpu_us_per_job", " µs", "{:.1f}"),
    ("steady: WAL bytes per job", "steady.costs.wal_bytes_per_job", "", "{:,.0f}"),
    ("steady: WAL records per job", "steady.costs.wal_records_per_job", "", "{:.2f}"),
    ("steady: commits per job", "steady.costs.commits_per_job", "", "{:.3f}"),
]


def cell(values, fmt, unit):
    if not values:
        return "—", None
    med = statistics.median(values)
    text = fmt.format(med) + unit
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}–{fmt.format(max(values))})"
    return text, med


def table(rows, ours, theirs):
    ours = [r for r in ours if "error" not in r]
    theirs = [r for r in theirs if "error" not in r]
    lines = ["| | chancy | graphile-worker batched | ratio |", "|---|---|---|---|"]
    for label, path, unit, fmt in rows:
        a_text, a = cell([v for r in ours if (v := get(r, path)) is not None], fmt, unit)
        b_text, b = cell([v for r in theirs if (v := get(r, path)) is not None], fmt, unit)
        ratio = f"{a / b:.2f}×" if a is not None and b else "—"
        lines.append(f"| {label} | {a_text} | {b_text} | {ratio} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--steady-rate", type=int, default=5000)
    p.add_argument("--steady-seconds", type=int, default=30, help="0 skips the steady runs")
    p.add_argument("--chancy-args", default="--concurrency 256")
    p.add_argument("--chancy", default=os.path.join(ROOT, "target", "release", "chancy"))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if not os.environ.get("DATABASE_URL"):
        sys.exit("DATABASE_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    if not os.path.exists(args.chancy):
        sys.exit(f"{args.chancy} not found: run `cargo build --release` first")
    if not os.path.isdir(os.path.join(GRAPHILE, "node_modules")):
        sys.exit(f"run `npm ci` in {GRAPHILE} first")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H%M")
    out = args.out or os.path.join(ROOT, "benchmarks", "runs", f"compare-{stamp}.jsonl")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load()

    drain_args = ["--mode", "drain", "--jobs", str(args.jobs)]
    steady_args = ["--mode", "steady", "--rate", str(args.steady_rate), "--seconds", str(args.steady_seconds)]
    ours, theirs = [], []
    runs = [("drain", drain_args)]
    if args.steady_seconds > 0:
        runs.append(("steady", steady_args))
    with open(out, "a") as f:
        for rnd in range(args.rounds):
            for what, mode_args in runs:
                # Alternate who goes first, so a drifting load does not favour one side.
                order = [("chancy", chancy), ("graphile", graphile)]
                if rnd % 2:
                    order.reverse()
                for name, fn in order:
                    r = fn(args, mode_args) if name == "chancy" else fn(mode_args)
                    r.update({"system": name, "round": rnd + 1, "run": what, "load_at_start": load()})
                    f.write(json.dumps(r) + "\n")
                    f.flush()
                    (ours if name == "chancy" else theirs).append(r)
                    summary = get(r, "drain.jobs_per_second") or get(r, "steady.push_to_start_ms.p50")
                    summary = r.get("error") or f"{summary:,.2f}"
                    print(f"round {rnd + 1} {what} {name}: {summary} (load {r['load_at_start']})", file=sys.stderr)

    version = subprocess.run(
        ["psql", os.environ["DATABASE_URL"], "-Atc", "SHOW server_version"], capture_output=True, text=True
    ).stdout.strip()
    version_of_peer = next((r["version"] for r in theirs if "version" in r), "?")
    print(f"chancy bench vs graphile-worker {version_of_peer}, {args.rounds} interleaved rounds, "
          f"medians (min–max); started {started}")
    print(f"machine: {os.cpu_count()} cpus, PostgreSQL {version or '?'}; load average before {load_before}, "
          f"after {load()}")
    print(f"chancy: `chancy bench --mode drain --jobs {args.jobs} {args.chancy_args}`; graphile: "
          f"`node bench.mjs --jobs {args.jobs}` (concurrency 24, localQueue.size 500, completeJobBatchDelay 0, "
          f"failJobBatchDelay 0)")
    print()
    print(table(DRAIN_ROWS, ours, theirs))
    if args.steady_seconds > 0:
        print()
        print(f"steady: {args.steady_rate} arrivals/s for {args.steady_seconds} s, open loop, into a running worker")
        print()
        print(table(STEADY_ROWS, ours, theirs))
    failed = [r for r in ours + theirs if "error" in r]
    if failed:
        print()
        print("Failed runs (left out of the medians):")
        for r in failed:
            print(f"- round {r['round']} {r['run']} {r['system']}: {r['error']}")
    print()
    print(f"raw runs: {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()

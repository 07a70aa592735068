#!/usr/bin/env python3
"""Medians of the runs in benchmarks/runs/*.jsonl (written by benchmarks/matrix.sh).

Prints a Markdown table per file: one row per argument set, with the run count, the median
load average, and the median enqueue, drain and latency figures. With matplotlib installed
(`python3 -m venv target/plotvenv && target/plotvenv/bin/pip install matplotlib`), also
renders benchmarks/drain.png: drain jobs/s by concurrency and by backlog.
"""
import json
import pathlib
import re
import statistics
import sys

RUNS = pathlib.Path(__file__).parent / "runs"


def load(name):
    path = RUNS / f"{name}.jsonl"
    if not path.exists():
        return {}
    groups = {}
    for line in path.read_text().splitlines():
        if line.strip():
            run = json.loads(line)
            groups.setdefault(run["args"], []).append(run)
    return groups


def med(runs, *path):
    values = []
    for run in runs:
        v = run
        for p in path:
            v = (v or {}).get(p)
        if v is not None:
            values.append(v)
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def table(name):
    groups = load(name)
    if not groups:
        return
    print(f"\n### {name}\n")
    print("| arguments | runs | load | enqueue jobs/s | drain jobs/s (min–max) | WAL B/job push / drain | push→start p50 / p95 / p99 ms | push→completed p50 / p99 ms | idle CPU % / RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for args, runs in groups.items():
        drains = [r["drain"]["jobs_per_second"] for r in runs if r.get("drain")]
        spread = f" ({fmt(min(drains))}–{fmt(max(drains))})" if drains else ""
        print(
            f"| `{args}` | {len(runs)} | {fmt(statistics.median(r['load_average'][0] for r in runs), 2)}"
            f" | {fmt(med(runs, 'enqueue', 'jobs_per_second'))}"
            f" | {fmt(med(runs, 'drain', 'jobs_per_second'))}{spread}"
            f" | {fmt(med(runs, 'enqueue', 'wal_bytes_per_job'))} / {fmt(med(runs, 'drain', 'wal_bytes_per_job'))}"
            f" | {fmt(med(runs, 'latency', 'push_to_start_ms', 'p50'), 2)} / {fmt(med(runs, 'latency', 'push_to_start_ms', 'p95'), 2)} / {fmt(med(runs, 'latency', 'push_to_start_ms', 'p99'), 2)}"
            f" | {fmt(med(runs, 'latency', 'push_to_completed_ms', 'p50'), 2)} / {fmt(med(runs, 'latency', 'push_to_completed_ms', 'p99'), 2)}"
            f" | {fmt(med(runs, 'idle', 'cpu_percent'), 2)} / {fmt(med(runs, 'idle', 'rss_mb'), 1)} |"
        )


def plot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plot)", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    for name, label in (("concurrency", "09:50 series, load 2.7–3.0"), ("quiet", "10:15 series, load 1.8 → 20")):
        xs, ys, lo, hi = [], [], [], []
        for args, runs in load(name).items():
            m = re.search(r"--concurrency (\d+)$", args)
            if not m or "--jobs 20000" not in args:
                continue
            drains = [r["drain"]["jobs_per_second"] for r in runs]
            xs.append(int(m.group(1)))
            ys.append(statistics.median(drains))
            lo.append(min(drains))
            hi.append(max(drains))
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        if not order:
            continue
        line = ax.plot([xs[i] for i in order], [ys[i] for i in order], "o-", label=f"median of 3, {label}")
        ax.fill_between([xs[i] for i in order], [lo[i] for i in order], [hi[i] for i in order], alpha=0.15, color=line[0].get_color())
    ax.axhline(40_000, color="red", linestyle="--", label="target 40k/s")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("queue concurrency (executor threads)")
    ax.set_ylabel("drain jobs/s (20k no-op jobs)")
    ax.set_ylim(bottom=0)
    ax.set_title("Drain by concurrency")
    ax.legend()
    ax = axes[1]
    for names, label in ((("backlog", "concurrency"), "09:50–10:07 series, load 2.7–4"), (("quiet",), "10:15 series, load 1.8 → 17")):
        points = []
        for name in names:
            for args, runs in load(name).items():
                if args.endswith("--concurrency 256"):
                    n = int(re.search(r"--jobs (\d+)", args).group(1))
                    points.append((n, statistics.median(r["drain"]["jobs_per_second"] for r in runs)))
        points.sort()
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("jobs pushed before the drain (backlog)")
    ax.set_ylabel("drain jobs/s (c=256)")
    ax.axhline(40_000, color="red", linestyle="--", label="target 40k/s")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title("Drain by backlog")
    fig.tight_layout()
    out = pathlib.Path(__file__).parent / "drain.png"
    fig.savefig(out, dpi=100)
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(p.stem for p in RUNS.glob("*.jsonl")):
        table(name)
    plot()

#!/usr/bin/env python3
"""Medians of benchmarks/runs/workers.jsonl (written by benchmarks/workers.sh): one Markdown
row per configuration of `chancy bench --mode drain --workers N --queues Q`."""
import statistics

from summarise import fmt, load, med


def main():
    groups = load("workers")
    print("| queues | workers | runs | load (1 min, median) | drain jobs/s (min–max) | without startup jobs/s | startup s | connections: most together / per process (budget) | each job once | worker CPU µs/job | PostgreSQL CPU µs/job (own) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for args, runs in groups.items():
        s = runs[0]["settings"]
        drains = [r["drain"]["jobs_per_second"] for r in runs]
        once = all(
            r["drain"]["ran_once"] == r["drain"]["jobs"] == r["drain"]["succeeded"]
            for r in runs
        )
        per_process = max(
            w["max_connections"] for r in runs for w in r["drain"]["processes"]["per_worker"]
        )
        print(
            f"| {s['queues']} | {s['workers']} | {len(runs)}"
            f" | {fmt(statistics.median(r['load_average'][0] for r in runs), 1)}"
            f" | {fmt(med(runs, 'drain', 'jobs_per_second'))} ({fmt(min(drains))}–{fmt(max(drains))})"
            f" | {fmt(med(runs, 'drain', 'processes', 'busy_jobs_per_second'))}"
            f" | {fmt(med(runs, 'drain', 'processes', 'startup_seconds'), 2)}"
            f" | {fmt(max(r['drain']['processes']['max_connections_total'] for r in runs))}"
            f" / {per_process} ({runs[0]['drain']['processes']['connection_budget']})"
            f" | {'yes' if once else 'NO'}"
            f" | {fmt(med(runs, 'drain', 'costs', 'worker_cpu_us_per_job'), 1)}"
            f" | {fmt(med(runs, 'drain', 'costs', 'postgres_cpu_us_per_job'), 1)}"
            f" ({fmt(med(runs, 'drain', 'costs', 'postgres_own_cpu_us_per_job'), 1)}) |"
        )


if __name__ == "__main__":
    main()

"""Python-side job functions and helper commands for the interop tests.

Run as `python interop_jobs.py <command> <dsn> <prefix> [args...]`; prints JSON.
"""
import asyncio
import json
import sys
import uuid

from chancy import Chancy, Job, Limit, Queue, QueuedJob, Reference, Worker


def py_job(*, context: QueuedJob, x: int = 0):
    """A job a Python worker runs for jobs pushed from Rust."""
    context.meta["ran_by"] = "python"
    context.meta["x_seen"] = x


def py_record(*, context: QueuedJob, dsn: str, table: str, gate: int | None = None):
    """Records that Python ran this job (one row per run) in `table`; then, with `gate`,
    waits until the test releases its advisory lock `gate` (held until a Rust worker has
    joined, so both runtimes share the queue)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{table}" (job_id, runner) VALUES (%s, %s)', (str(context.id), "python")
        )
        if gate is not None:
            conn.execute("SELECT pg_advisory_lock_shared(%s)", (gate,))
            conn.execute("SELECT pg_advisory_unlock_shared(%s)", (gate,))


def py_fail():
    raise ValueError("python says no")


async def check(dsn, prefix):
    async with Chancy(dsn, prefix=prefix) as chancy:
        print(json.dumps({"up_to_date": await chancy.is_up_to_date()}))


async def migrate(dsn, prefix):
    async with Chancy(dsn, prefix=prefix) as chancy:
        await chancy.migrate()
        print(json.dumps({"migrated": True}))


async def push(dsn, prefix, queue, spec):
    """Pushes the jobs described by a JSON list of {func, kwargs, priority, max_attempts,
    unique_key, delay, meta} and prints their ids in order."""
    from datetime import datetime, timedelta, timezone

    async with Chancy(dsn, prefix=prefix) as chancy:
        jobs = []
        for s in json.loads(spec):
            job = Job(
                func=s["func"],
                queue=queue,
                kwargs=s.get("kwargs", {}),
                priority=s.get("priority", 0),
                max_attempts=s.get("max_attempts", 1),
                unique_key=s.get("unique_key"),
                meta=s.get("meta", {}),
                limits=[Limit(Limit.Type.TIME, v) for v in s.get("time_limit", [])],
                scheduled_at=datetime.now(timezone.utc) + timedelta(seconds=s.get("delay", 0)),
            )
            jobs.append(job)
        ids = []
        if len(jobs) == 1:
            ids.append(str((await chancy.push(jobs[0])).identifier))
        else:
            async for refs in chancy.push_many(jobs):
                ids.extend(str(r.identifier) for r in refs)
        print(json.dumps(ids))


async def cancel(dsn, prefix, job_id):
    async with Chancy(dsn, prefix=prefix) as chancy:
        await chancy.cancel_job(Reference(uuid.UUID(job_id)))
        print(json.dumps({"cancelled": job_id}))


async def workers(dsn, prefix):
    async with Chancy(dsn, prefix=prefix) as chancy:
        rows = await chancy.get_all_workers()
        print(json.dumps(
            [{"worker_id": r["worker_id"], "tags": sorted(r["tags"]), "queues": sorted(r["queues"])}
             for r in rows]
        ))


async def queues(dsn, prefix):
    async with Chancy(dsn, prefix=prefix) as chancy:
        print(json.dumps([q.pack() for q in await chancy.get_all_queues()], default=str))


async def work(dsn, prefix, ids, seconds):
    """Runs a Python worker until the given jobs are finished (or the time is up)."""
    async with Chancy(dsn, prefix=prefix) as chancy:
        async with Worker(chancy, register_signal_handlers=False, shutdown_timeout=10) as worker:
            refs = [Reference(uuid.UUID(i)) for i in json.loads(ids)]
            done = await chancy.wait_for_jobs(refs, interval=0.2, timeout=float(seconds))
            print(json.dumps([
                {"id": str(j.id), "state": j.state.value, "meta": j.meta, "attempts": j.attempts,
                 "errors": j.errors}
                for j in done
            ]))


async def cron_schedule(dsn, prefix, key, func):
    """Schedules `func` every minute in Europe/Paris with Python's Cron plugin."""
    from zoneinfo import ZoneInfo

    from chancy.plugins.cron import Cron

    async with Chancy(dsn, prefix=prefix, plugins=[Cron()]) as chancy:
        job = Job(func=func, queue="default", unique_key=key, kwargs={"from": "python-cron"})
        await Cron.schedule(chancy, "* * * * *", job, timezone=ZoneInfo("Europe/Paris"))
        print(json.dumps({"scheduled": key}))


async def workflow_push(dsn, prefix, func):
    """Pushes a diamond workflow of `func` steps with Python's WorkflowPlugin."""
    from chancy.plugins.workflow import Workflow, WorkflowPlugin

    async with Chancy(dsn, prefix=prefix) as chancy:
        wf = (
            Workflow("py-diamond")
            .add("a", Job(func=func, kwargs={"step": "a"}))
            .add("b", Job(func=func, kwargs={"step": "b"}), ["a"])
            .add("c", Job(func=func, kwargs={"step": "c"}), ["a"])
            .add("d", Job(func=func, kwargs={"step": "d"}), ["b", "c"])
        )
        print(json.dumps(str(await WorkflowPlugin.push(chancy, wf))))


async def metrics_read(dsn, prefix, metric_prefix):
    """Reads metrics with 0.26.0's own query API (1-hour buckets, last hour) and prints
    {key: {type, unit, summary, points}} plus the list of keys."""
    from chancy.plugins.metrics import Metrics

    async with Chancy(dsn, prefix=prefix) as chancy:
        metrics = Metrics()
        result = await metrics.get_metrics(
            chancy, metric_prefix, resolution="1hour", range_seconds=3600
        )
        print(json.dumps({
            "keys": await metrics.list_metrics(chancy),
            "series": {
                key: {"type": m.type, "unit": m.unit, "summary": m.summary,
                      "points": len(m.data)}
                for key, m in result["series"].items()
            },
        }))


async def metrics_write(dsn, prefix, key, value):
    """Adds `value` to the counter `key` with 0.26.0's Metrics and flushes it."""
    from chancy.plugins.metrics import Metrics

    async with Chancy(dsn, prefix=prefix) as chancy:
        metrics = Metrics()
        await metrics.increment_counter(key, float(value))
        await metrics.flush(chancy)
        print(json.dumps({"written": key}))


COMMANDS = {"check": check, "migrate": migrate, "push": push, "cancel": cancel,
            "workers": workers, "queues": queues, "work": work,
            "cron_schedule": cron_schedule, "workflow_push": workflow_push,
            "metrics_read": metrics_read, "metrics_write": metrics_write}

if __name__ == "__main__":
    asyncio.run(COMMANDS[sys.argv[1]](*sys.argv[2:]))

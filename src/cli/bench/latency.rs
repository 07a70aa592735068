//! Latency mode: single pushes into an idle worker (notifications on), timed from the push
//! to the handler starting and to the outcome's commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use uuid::Uuid;

use super::report::{Latency, Percentiles};
use super::BenchArgs;
use crate::error::{Error, Result};
use crate::{Chancy, Job, Plugin, Queue, QueuedJob, Worker};

/// The handler name of latency jobs.
const LATENCY: &str = "chancy.bench.latency";
/// How long one sample may take before the run fails.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A plugin that reports when the writer has committed a latency job's outcome.
pub(super) struct CompletionProbe {
    tx: Sender<(Uuid, Instant)>,
    rx: Receiver<(Uuid, Instant)>,
}

impl CompletionProbe {
    pub(super) fn new() -> Arc<CompletionProbe> {
        let (tx, rx) = unbounded();
        Arc::new(CompletionProbe { tx, rx })
    }
}

impl Plugin for CompletionProbe {
    fn identifier(&self) -> &'static str {
        "chancy.bench.completion_probe"
    }

    fn on_job_updated(&self, job: &QueuedJob) {
        if job.func == LATENCY {
            let _ = self.tx.send((job.id, Instant::now()));
        }
    }
}

/// Times `args.latency_samples` single pushes on the first benchmark queue.
pub(super) fn run(
    chancy: &Chancy,
    probe: &Arc<CompletionProbe>,
    args: &BenchArgs,
) -> Result<Latency> {
    let (tx, started) = unbounded::<(Uuid, Instant)>();
    let worker = Worker::builder(chancy)
        .job(LATENCY, move |ctx| {
            let _ = tx.send((ctx.job().id, Instant::now()));
            Ok(())
        })
        .build()?;
    chancy.declare_upsert(
        &Queue::new("bench")
            .concurrency(4)
            .polling_interval(Duration::from_secs(60)),
    )?;
    worker.start()?;
    std::thread::sleep(Duration::from_millis(500));
    while probe.rx.try_recv().is_ok() {}
    let mut to_start = Vec::with_capacity(args.latency_samples);
    let mut to_done = Vec::with_capacity(args.latency_samples);
    let result = (|| {
        for _ in 0..args.latency_samples {
            let t = Instant::now();
            let id = chancy.push(&Job::new(LATENCY).queue("bench"))?.id();
            to_start.push(wait_for(&started, id, "start")?.duration_since(t));
            to_done.push(wait_for(&probe.rx, id, "complete")?.duration_since(t));
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok::<(), Error>(())
    })();
    worker.stop();
    result?;
    Ok(Latency {
        samples: args.latency_samples,
        push_to_start_ms: Percentiles::of(to_start),
        push_to_completed_ms: Percentiles::of(to_done),
    })
}

fn wait_for(rx: &Receiver<(Uuid, Instant)>, id: Uuid, what: &str) -> Result<Instant> {
    let deadline = Instant::now() + SAMPLE_TIMEOUT;
    loop {
        match rx.recv_deadline(deadline) {
            Ok((got, at)) if got == id => return Ok(at),
            Ok(_) => continue,
            Err(_) => {
                return Err(Error::timeout(format!(
                    "a latency job did not {what} within {SAMPLE_TIMEOUT:?}"
                )))
            }
        }
    }
}

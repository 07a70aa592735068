//! Waiting on an in-process worker through its hub: [`Events`] records every event from the
//! moment it is made, so "do X, then wait for the event X causes" cannot miss an event that
//! came before the wait began (as a bare `Hub::wait_for` can).

use std::time::{Duration, Instant};

use chancy::{Event, HandlerId, Hub, Worker, QUEUE_POLLED, SERVICE_PASSED};
use crossbeam_channel::{unbounded, Receiver};

/// Every hub event since [`Events::of`], in order.
pub struct Events {
    hub: Hub,
    id: HandlerId,
    rx: Receiver<Event>,
    /// Names of the last events consumed without matching (for the failure message).
    seen: std::cell::RefCell<Vec<String>>,
}

impl Events {
    /// Starts recording `worker`'s hub.
    pub fn of(worker: &Worker) -> Events {
        Events::on(worker.hub())
    }

    /// Starts recording `hub`.
    pub fn on(hub: &Hub) -> Events {
        let (tx, rx) = unbounded();
        let id = hub.on_any(move |event| {
            let _ = tx.send(event.clone());
        });
        Events {
            hub: hub.clone(),
            id,
            rx,
            seen: Default::default(),
        }
    }

    /// The next event named `name` whose body satisfies `matches` (events before it are
    /// consumed); panics after `within` naming what was seen meanwhile.
    pub fn next_where(
        &self,
        name: &str,
        within: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Event {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(event) if event.name == name && matches(&event.body) => return event,
                Ok(event) => self.skipped(event),
                Err(_) => {
                    let mut seen = self.seen.borrow().clone();
                    seen.dedup();
                    panic!("no matching {name:?} event within {within:?}; seen: {seen:?}")
                }
            }
        }
    }

    /// The next event named `name`.
    pub fn next(&self, name: &str, within: Duration) -> Event {
        self.next_where(name, within, |_| true)
    }

    /// Waits for `worker.queue.started` of `queue` (the worker serves it from now on).
    pub fn queue_started(&self, queue: &str, within: Duration) {
        self.next_where(chancy::QUEUE_STARTED, within, |b| b["queue"] == queue);
    }

    fn skipped(&self, event: Event) {
        let mut seen = self.seen.borrow_mut();
        if seen.len() >= 100 {
            seen.remove(0);
        }
        seen.push(event.name);
    }

    /// The next recorded visit of `queue` (`worker.queue.polled`), e.g. its first visit after
    /// [`Events::queue_started`].
    pub fn next_poll(&self, queue: &str, within: Duration) -> Event {
        self.next_where(QUEUE_POLLED, within, |b| b["queue"] == queue)
    }

    /// Forgets the events recorded so far: what is waited for next happens after this call.
    pub fn forget(&self) {
        while let Ok(event) = self.rx.try_recv() {
            self.skipped(event);
        }
    }

    /// Waits for `n` due visits of `queue` by the fetch scheduler (`worker.queue.polled`)
    /// that end after this call. Two visits after an action mean at least one claim began
    /// after it.
    pub fn polls(&self, queue: &str, n: usize, within: Duration) {
        self.forget();
        for _ in 0..n {
            self.next_where(QUEUE_POLLED, within, |b| b["queue"] == queue);
        }
    }

    /// Waits for `n` passes of the periodic service `service` (`worker.service.passed`, e.g.
    /// `queues`, `heartbeat`, `plugin-chancy.leadership`) that end after this call. Two
    /// passes after an action mean at least one whole pass ran after it.
    pub fn passes(&self, service: &str, n: usize, within: Duration) {
        self.forget();
        for _ in 0..n {
            self.next_where(SERVICE_PASSED, within, |b| b["service"] == service);
        }
    }
}

/// Starts `worker` with its events recorded from before the start.
pub fn start(worker: &Worker) -> Events {
    let events = Events::of(worker);
    worker.start().expect("start the worker");
    events
}

impl Drop for Events {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

//! The event hub: local events of the worker and every NOTIFY it receives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use parking_lot::Mutex;
use serde_json::Value;

/// An event: a name (e.g. `queue.pushed`) and a JSON body (the NOTIFY payload without `t`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// The event name.
    pub name: String,
    /// The body; an object.
    pub body: Value,
}

impl Event {
    /// An event named `name` with `body` (e.g. to test a handler given to [`Hub::on`]).
    pub fn new(name: impl Into<String>, body: Value) -> Event {
        Event {
            name: name.into(),
            body,
        }
    }
}

type Handler = Arc<dyn Fn(&Event) + Send + Sync>;

/// Identifies a registered handler, for [`Hub::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandlerId(u64);

struct Waiter {
    id: u64,
    names: Vec<String>,
    tx: Sender<Event>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    handlers: HashMap<String, Vec<(HandlerId, Handler)>>,
    any: Vec<(HandlerId, Handler)>,
    waiters: Vec<Waiter>,
}

/// Dispatches events to handlers and waiters. Handlers run on the emitting thread, in
/// registration order (named handlers first, then wildcard ones), outside the hub's lock.
///
/// ```
/// use std::time::Duration;
/// use serde_json::json;
/// use chancy::Hub;
/// let hub = Hub::default();
/// hub.on("queue.pushed", |e| assert_eq!(e.body["q"], "default"));
/// hub.emit("queue.pushed", json!({"q": "default"}));
/// assert!(hub.wait_for(&["never"], Duration::from_millis(1)).is_none());
/// ```
#[derive(Default, Clone)]
pub struct Hub {
    state: Arc<Mutex<State>>,
}

impl Hub {
    /// Runs `handler` for every `event`.
    pub fn on(&self, event: &str, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        let mut state = self.state.lock();
        let id = next_id(&mut state);
        state
            .handlers
            .entry(event.to_string())
            .or_default()
            .push((id, Arc::new(handler)));
        id
    }

    /// Runs `handler` for every event.
    pub fn on_any(&self, handler: impl Fn(&Event) + Send + Sync + 'static) -> HandlerId {
        let mut state = self.state.lock();
        let id = next_id(&mut state);
        state.any.push((id, Arc::new(handler)));
        id
    }

    /// Removes a handler registered with [`Hub::on`] or [`Hub::on_any`].
    pub fn remove(&self, id: HandlerId) {
        let mut state = self.state.lock();
        for list in state.handlers.values_mut() {
            list.retain(|(h, _)| *h != id);
        }
        state.any.retain(|(h, _)| *h != id);
    }

    /// Removes every handler.
    pub fn clear(&self) {
        let mut state = self.state.lock();
        state.handlers.clear();
        state.any.clear();
    }

    /// Emits an event: runs its handlers, then wakes [`Hub::wait_for`] callers waiting for it.
    /// A panicking handler is logged and does not stop the others.
    pub fn emit(&self, name: &str, body: Value) {
        let event = Event {
            name: name.to_string(),
            body,
        };
        let handlers: Vec<Handler> = {
            let mut state = self.state.lock();
            state.waiters.retain(|w| {
                if w.names.iter().any(|n| n == name) {
                    let _ = w.tx.try_send(event.clone());
                    false
                } else {
                    true
                }
            });
            let named = state.handlers.get(name).into_iter().flatten();
            named
                .chain(state.any.iter())
                .map(|(_, h)| Arc::clone(h))
                .collect()
        };
        for handler in handlers {
            let call = std::panic::AssertUnwindSafe(|| handler(&event));
            if std::panic::catch_unwind(call).is_err() {
                log::error!("a hub handler for {name:?} panicked");
            }
        }
    }

    /// Blocks until one of `events` is emitted or `timeout` passes; returns that event.
    pub fn wait_for(&self, events: &[&str], timeout: Duration) -> Option<Event> {
        let (tx, rx) = bounded(1);
        let id = {
            let mut state = self.state.lock();
            let id = next_id(&mut state).0;
            state.waiters.push(Waiter {
                id,
                names: events.iter().map(|s| s.to_string()).collect(),
                tx,
            });
            id
        };
        let result = rx.recv_timeout(timeout).ok();
        if result.is_none() {
            self.state.lock().waiters.retain(|w| w.id != id);
        }
        result
    }
}

fn next_id(state: &mut State) -> HandlerId {
    state.next_id += 1;
    HandlerId(state.next_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn handlers_and_waiters_see_events() {
        let hub = Hub::default();
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        let id = hub.on("a", move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        });
        let c2 = Arc::clone(&count);
        hub.on_any(move |_| {
            c2.fetch_add(10, Ordering::SeqCst);
        });
        let h = hub.clone();
        let waiter = std::thread::spawn(move || h.wait_for(&["a", "b"], Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(50));
        hub.emit("a", json!({"x": 1}));
        assert_eq!(waiter.join().unwrap().unwrap().body["x"], 1);
        assert_eq!(count.load(Ordering::SeqCst), 11);
        hub.remove(id);
        hub.emit("a", json!({}));
        assert_eq!(count.load(Ordering::SeqCst), 21);
    }

    #[test]
    fn timed_out_waiters_are_dropped() {
        let hub = Hub::default();
        for _ in 0..5 {
            assert!(hub.wait_for(&["x"], Duration::from_millis(1)).is_none());
        }
        assert!(hub.state.lock().waiters.is_empty());
    }

    #[test]
    fn a_panicking_handler_does_not_stop_others() {
        let hub = Hub::default();
        let seen = Arc::new(AtomicUsize::new(0));
        hub.on("e", |_| panic!("boom"));
        let s = Arc::clone(&seen);
        hub.on("e", move |_| {
            s.fetch_add(1, Ordering::SeqCst);
        });
        hub.emit("e", json!({}));
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }
}

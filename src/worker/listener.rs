//! The listener: a dedicated connection LISTENing on `<prefix>events`, turning every NOTIFY
//! into a hub event. Reconnects with backoff; a malformed payload is logged and skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use serde_json::Value;

use super::backoff::Backoff;
use super::manager::ServiceState;
use super::WorkerShared;
use crate::error::{Error, Result};
use crate::events;
use crate::pool::Conn;

/// Local hub event emitted after the listener reconnected (NOTIFYs may have been missed).
pub const LISTENER_RECONNECTED: &str = "worker.listener.reconnected";

/// How often the listener checks for shutdown while idle.
const TICK: Duration = Duration::from_millis(200);
/// How often an idle listener checks that its connection is alive.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Connects and LISTENs; used for the first connection (synchronously, by `start`) and for
/// every reconnection.
pub(crate) fn connect(shared: &WorkerShared) -> Result<Conn> {
    let mut conn = shared.chancy.connect_dedicated()?;
    let sql = format!("LISTEN \"{}\"", shared.chancy.prefix().channel());
    conn.client
        .batch_execute(&sql)
        .map_err(|e| Error::database("starting to LISTEN", e))?;
    log::info!(
        "started listening for realtime notifications on {}",
        shared.chancy.prefix().channel()
    );
    Ok(conn)
}

/// The listener thread's body, starting with an already listening connection.
pub(crate) fn run(
    shared: Arc<WorkerShared>,
    first: Conn,
    state: Arc<parking_lot::Mutex<ServiceState>>,
) {
    let mut conn = Some(first);
    let mut backoff = Backoff::new(shared.config.backoff_initial, shared.config.backoff_max);
    while !shared.shutdown.is_triggered() {
        let c = match conn.take() {
            Some(c) => c,
            None => match connect(&shared) {
                Ok(c) => {
                    backoff.reset();
                    *state.lock() = ServiceState::Running;
                    shared.hub.emit(LISTENER_RECONNECTED, serde_json::json!({}));
                    shared.wake_all_queues();
                    c
                }
                Err(err) => {
                    wait_after_failure(&shared, &mut backoff, &state, &err);
                    continue;
                }
            },
        };
        if let Err(err) = listen(&shared, c) {
            wait_after_failure(&shared, &mut backoff, &state, &err);
        }
    }
}

fn wait_after_failure(
    shared: &WorkerShared,
    backoff: &mut Backoff,
    state: &parking_lot::Mutex<ServiceState>,
    err: &Error,
) {
    let delay = backoff.fail();
    log::error!(
        "chancy-listener: connection lost (attempt {}), reconnecting in {delay:?}: {err}",
        backoff.failures()
    );
    *state.lock() = ServiceState::BackingOff {
        failures: backoff.failures(),
        last_error: err.to_string(),
    };
    shared.shutdown.sleep(delay);
}

/// Delivers notifications until shutdown (Ok) or a connection error (Err).
fn listen(shared: &WorkerShared, mut conn: Conn) -> Result<()> {
    let mut last_check = Instant::now();
    while !shared.shutdown.is_triggered() {
        {
            let mut notifications = conn.client.notifications();
            let mut iter = notifications.timeout_iter(TICK);
            while let Some(n) = iter
                .next()
                .map_err(|e| Error::database("receiving notifications", e))?
            {
                dispatch(shared, n.payload());
            }
        }
        if last_check.elapsed() >= KEEPALIVE {
            conn.client
                .simple_query("")
                .map_err(|e| Error::database("checking the listener connection", e))?;
            last_check = Instant::now();
        }
        if conn.client.is_closed() {
            return Err(Error::unavailable("the listener connection was closed"));
        }
    }
    Ok(())
}

fn dispatch(shared: &WorkerShared, payload: &str) {
    match events::parse(payload) {
        Ok((name, body)) => shared.hub.emit(&name, Value::Object(body)),
        Err(err) => log::warn!("chancy-listener: ignoring a notification: {err}"),
    }
}

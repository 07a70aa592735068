//! The listener: a dedicated connection LISTENing on `<prefix>events`, turning every NOTIFY
//! into a hub event. Reconnects with backoff; a malformed payload is logged and skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use serde_json::Value;

use super::backoff::Backoff;
use super::hub::Hub;
use super::manager::ServiceState;
use crate::app::Chancy;
use crate::error::{Error, Result};
use crate::events;
use crate::pool::Conn;
use crate::sync::Shutdown;

/// Local hub event emitted after the listener reconnected (NOTIFYs may have been missed).
pub const LISTENER_RECONNECTED: &str = "worker.listener.reconnected";

/// How often the listener checks for shutdown while idle.
const TICK: Duration = Duration::from_millis(200);
/// How often an idle listener checks that its connection is alive.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// What the listener thread uses, and nothing else of the worker.
pub(crate) struct ListenerDeps {
    pub(crate) chancy: Chancy,
    /// Where every NOTIFY goes (and [`LISTENER_RECONNECTED`], which wakes every queue).
    pub(crate) hub: Hub,
    pub(crate) shutdown: Arc<Shutdown>,
    /// Reconnection backoff: first and largest delay.
    pub(crate) backoff: (Duration, Duration),
}

/// Connects and LISTENs; used for the first connection (synchronously, by `start`) and for
/// every reconnection.
pub(crate) fn connect(chancy: &Chancy) -> Result<Conn> {
    let mut conn = chancy.connect_dedicated()?;
    let sql = format!("LISTEN \"{}\"", chancy.prefix().channel());
    conn.client
        .batch_execute(&sql)
        .map_err(|e| Error::database("starting to LISTEN", e))?;
    log::info!(
        "started listening for realtime notifications on {}",
        chancy.prefix().channel()
    );
    Ok(conn)
}

/// The listener thread's body, starting with an already listening connection.
pub(crate) fn run(deps: ListenerDeps, first: Conn, state: Arc<parking_lot::Mutex<ServiceState>>) {
    let mut conn = Some(first);
    let mut backoff = Backoff::new(deps.backoff.0, deps.backoff.1);
    while !deps.shutdown.is_triggered() {
        let c = match conn.take() {
            Some(c) => c,
            None => match connect(&deps.chancy) {
                Ok(c) => {
                    backoff.reset();
                    *state.lock() = ServiceState::Running;
                    deps.hub.emit(LISTENER_RECONNECTED, serde_json::json!({}));
                    c
                }
                Err(err) => {
                    wait_after_failure(&deps, &mut backoff, &state, &err);
                    continue;
                }
            },
        };
        if let Err(err) = listen(&deps, c) {
            wait_after_failure(&deps, &mut backoff, &state, &err);
        }
    }
}

fn wait_after_failure(
    deps: &ListenerDeps,
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
    deps.shutdown.sleep(delay);
}

/// Delivers notifications until shutdown (Ok) or a connection error (Err).
fn listen(deps: &ListenerDeps, mut conn: Conn) -> Result<()> {
    let mut last_check = Instant::now();
    while !deps.shutdown.is_triggered() {
        {
            let mut notifications = conn.client.notifications();
            let mut iter = notifications.timeout_iter(TICK);
            while let Some(n) = iter
                .next()
                .map_err(|e| Error::database("receiving notifications", e))?
            {
                dispatch(deps, n.payload());
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

fn dispatch(deps: &ListenerDeps, payload: &str) {
    match events::parse(payload) {
        Ok((name, body)) => deps.hub.emit(&name, Value::Object(body)),
        Err(err) => log::warn!("chancy-listener: ignoring a notification: {err}"),
    }
}

//! Why a connection could not be made, said at once and in the server's words.
//!
//! r2d2 makes connections on its own threads and retries them with backoff; a checkout only
//! sees "timed out waiting for connection" after the full connection timeout. The pool's
//! connection manager records each attempt's outcome in a [`ConnectHealth`];
//! [`checkout`](crate::pool::checkout) reads it while it waits, so a wrong database name,
//! role or password, or a host name the resolver does not know, fails as soon as that is
//! known, and a refused port after
//! [`REFUSED_GRACE`] (long enough to ride out a restart), each with the server's own message
//! and a hint that matches the cause.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{describe_pg, Error};

/// How long a refused connection is retried before a checkout gives up on it.
pub(crate) const REFUSED_GRACE: Duration = Duration::from_secs(1);
/// A recorded failure older than this no longer decides a checkout on its own (the next
/// attempt is awaited instead).
const FRESH: Duration = Duration::from_secs(3);

/// What stopped a connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The server refused the login: unknown role or wrong password (SQLSTATE class 28).
    Login,
    /// The database named in the URL does not exist (SQLSTATE 3D000).
    NoDatabase,
    /// Nothing listens at that address (connection refused, or no socket file).
    Refused,
    /// Nothing answered at the address within `connect_timeout` (or the host or network is
    /// unreachable): the packets go nowhere. Waited out (the host may be coming back).
    Unreachable,
    /// Something accepted the TCP connection but closed it before a PostgreSQL server
    /// said anything (another service, a proxy or a firewall on that port). Waited out.
    ClosedEarly,
    /// The host name did not resolve (the resolver's answer, e.g. `Name or service not
    /// known`): no retry can help until the URL or the DNS changes.
    Resolve,
    /// Anything else (too many clients, server starting up, TLS, ...): waited out.
    Other,
}

impl Cause {
    /// What to check, for the error message.
    fn hint(self) -> &'static str {
        match self {
            Cause::Login => "check the role name and password in the database URL",
            Cause::NoDatabase => "create it, or fix the database name in the database URL",
            Cause::Refused => "is PostgreSQL running there, on that port?",
            Cause::Resolve => "check the host name in the database URL",
            Cause::Unreachable => {
                "check the host and port in the database URL, and that no firewall drops the \
                 packets"
            }
            Cause::ClosedEarly => {
                "the connection was accepted but closed before PostgreSQL answered: is \
                 PostgreSQL (not another service, a proxy or a firewall) listening there?"
            }
            Cause::Other => "the server may be busy, starting up or out of connections",
        }
    }
}

/// Classifies a failed connection attempt.
pub(crate) fn classify(err: &postgres::Error) -> Cause {
    match err.code().map(|c| c.code()) {
        Some("28P01") | Some("28000") => return Cause::Login,
        Some("3D000") => return Cause::NoDatabase,
        Some(_) => return Cause::Other,
        None => {}
    }
    // The server answered nothing at all: the connection closed during the startup.
    if err.is_closed() {
        return Cause::ClosedEarly;
    }
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if is_resolver_error(io) {
                return Cause::Resolve;
            }
            let unreachable = [libc::EHOSTUNREACH, libc::ENETUNREACH];
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                    Cause::Refused
                }
                // tokio-postgres's own `connect_timeout` error.
                std::io::ErrorKind::TimedOut => Cause::Unreachable,
                _ if io.raw_os_error().is_some_and(|e| unreachable.contains(&e)) => {
                    Cause::Unreachable
                }
                // The stream ended inside the server's first message, or was reset.
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                    Cause::ClosedEarly
                }
                _ if io.to_string() == "bytes remaining on stream" => Cause::ClosedEarly,
                _ => Cause::Other,
            };
        }
        source = s.source();
    }
    Cause::Other
}

/// What a failed attempt to `target` says before its hint: the server's (or the client
/// library's) own words, or for an unreachable host which host and which timeout.
fn what_failed(cause: Cause, target: &str, err: &postgres::Error) -> String {
    let message = describe_pg(err);
    if cause != Cause::Unreachable {
        return message;
    }
    // `postgresql://host:port/db` → `host:port` (the target never holds a password).
    let host = target
        .split_once("://")
        .map_or(target, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or(target);
    format!("could not reach host {host} within connect_timeout ({message})")
}

/// Whether `io` is a failed host name lookup: std's `getaddrinfo` error (`failed to lookup
/// address information: …`, no stable `ErrorKind` of its own) or tokio-postgres's answer to
/// a name with no address.
fn is_resolver_error(io: &std::io::Error) -> bool {
    let text = io.to_string();
    text.starts_with("failed to lookup address information")
        || text == "could not resolve any addresses"
}

/// The error for a failed connection attempt to `target`: the server's message and the hint
/// for its cause. Always [`Error::is_unavailable`].
pub(crate) fn connect_error(target: &str, err: postgres::Error) -> Error {
    let cause = classify(&err);
    let message = what_failed(cause, target, &err);
    Error::connect_failed(
        format!(
            "could not connect to the database at {target}: {message} ({})",
            cause.hint()
        ),
        err,
    )
}

#[derive(Debug, Clone)]
struct Failure {
    cause: Cause,
    message: String,
    /// When the current run of failures began.
    first: Instant,
    /// When the latest attempt failed.
    last: Instant,
}

impl Failure {
    /// The server's message and the hint for its cause: `message (hint)`.
    fn describe(&self) -> String {
        format!("{} ({})", self.message, self.cause.hint())
    }
}

/// The outcome of a pool's latest connection attempts, written by the connection manager
/// (any r2d2 thread) and read by waiting checkouts.
#[derive(Debug, Default)]
pub(crate) struct ConnectHealth {
    failure: Mutex<Option<Failure>>,
}

impl ConnectHealth {
    /// Records a successful connection: earlier failures no longer matter.
    pub(crate) fn succeeded(&self) {
        *self.failure.lock() = None;
    }

    /// Records a failed attempt (and logs it at DEBUG, so `-v` shows every one).
    pub(crate) fn failed(&self, target: &str, err: &postgres::Error) {
        let cause = classify(err);
        let message = what_failed(cause, target, err);
        log::debug!("connecting to {target} failed: {message}");
        let now = Instant::now();
        let mut slot = self.failure.lock();
        let first = match slot.as_ref() {
            Some(f) if f.cause == cause => f.first,
            _ => now,
        };
        *slot = Some(Failure {
            cause,
            message,
            first,
            last: now,
        });
    }

    /// The failure that settles a checkout waiting since `since`, if any: a login,
    /// missing-database or host-name failure at once, refusals once they lasted [`REFUSED_GRACE`]. Only
    /// an attempt that failed after `since` counts, so a failure recorded before the server
    /// came back never decides a new checkout: it waits for the pool's next attempt.
    fn decisive(&self, now: Instant, since: Instant) -> Option<Failure> {
        let slot = self.failure.lock();
        let f = slot.as_ref()?;
        if f.last < since || now.saturating_duration_since(f.last) > FRESH {
            return None;
        }
        let settles = match f.cause {
            Cause::Login | Cause::NoDatabase | Cause::Resolve => true,
            Cause::Refused => now.saturating_duration_since(f.first) >= REFUSED_GRACE,
            Cause::Unreachable | Cause::ClosedEarly | Cause::Other => false,
        };
        settles.then(|| f.clone())
    }

    fn latest(&self) -> Option<Failure> {
        self.failure.lock().clone()
    }

    /// `message (hint)` of the failure that settles a checkout waiting since `since`, if any
    /// (see [`ConnectHealth::decisive`]).
    pub(crate) fn settled(&self, now: Instant, since: Instant) -> Option<String> {
        self.decisive(now, since).map(|f| f.describe())
    }

    /// `message (hint)` of the latest failed attempt, if the latest attempt failed.
    pub(crate) fn last_failure(&self) -> Option<String> {
        self.latest().map(|f| f.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_settle_only_after_the_grace_period() {
        let health = ConnectHealth::default();
        let start = Instant::now();
        *health.failure.lock() = Some(Failure {
            cause: Cause::Refused,
            message: "connection refused".into(),
            first: start,
            last: start,
        });
        assert!(health.decisive(start, start).is_none());
        assert!(health.decisive(start + REFUSED_GRACE, start).is_some());
        // Stale evidence waits for the next attempt.
        assert!(health
            .decisive(start + FRESH + REFUSED_GRACE, start)
            .is_none());
        // A failure recorded before the checkout began (the server may be back) does not
        // decide it.
        assert!(health
            .decisive(start + REFUSED_GRACE, start + Duration::from_millis(1))
            .is_none());
        health.succeeded();
        assert!(health.decisive(start + REFUSED_GRACE, start).is_none());
    }

    #[test]
    fn an_unknown_host_is_a_resolver_failure_with_the_resolvers_message() {
        let err = "host=no-such-host.invalid user=postgres connect_timeout=5"
            .parse::<postgres::Config>()
            .unwrap()
            .connect(postgres::NoTls)
            .err()
            .expect("no-such-host.invalid does not resolve");
        assert_eq!(classify(&err), Cause::Resolve, "{err:?}");
        let text =
            connect_error("postgresql://no-such-host.invalid:5432/postgres", err).to_string();
        assert!(
            text.contains("failed to lookup address information")
                && text.contains("check the host name"),
            "{text}"
        );
    }

    /// A listener on 127.0.0.1 whose accept queue is full and never drained: a new
    /// connection's SYN is dropped, so connecting times out as to an unreachable host.
    fn black_hole() -> (std::net::SocketAddr, Vec<std::net::TcpStream>, i32) {
        // SAFETY: plain socket calls on a descriptor owned here; `addr` outlives them.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(libc::bind(fd, std::ptr::addr_of!(addr).cast(), len), 0);
            assert_eq!(libc::listen(fd, 0), 0);
            let mut got_len = len;
            assert_eq!(
                libc::getsockname(fd, std::ptr::addr_of_mut!(addr).cast(), &mut got_len),
                0
            );
            let port = u16::from_be(addr.sin_port);
            let at = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            // Fill the queue (backlog 0 still admits one or two).
            let held = (0..4)
                .filter_map(|_| {
                    std::net::TcpStream::connect_timeout(&at, Duration::from_millis(300)).ok()
                })
                .collect();
            (at, held, fd)
        }
    }

    #[test]
    fn a_connect_timeout_says_the_host_was_not_reached() {
        let (at, _held, fd) = black_hole();
        let err = format!(
            "host=127.0.0.1 port={} user=postgres connect_timeout=1",
            at.port()
        )
        .parse::<postgres::Config>()
        .unwrap()
        .connect(postgres::NoTls)
        .err()
        .expect("nothing accepts");
        // SAFETY: closing the descriptor black_hole opened.
        unsafe { libc::close(fd) };
        assert_eq!(classify(&err), Cause::Unreachable, "{err:?}");
        let target = format!("postgresql://127.0.0.1:{}/postgres", at.port());
        let text = connect_error(&target, err).to_string();
        assert!(
            text.contains(&format!(
                "could not reach host 127.0.0.1:{} within connect_timeout",
                at.port()
            )) && !text.contains("busy"),
            "{text}"
        );
    }

    #[test]
    fn a_listener_that_closes_at_once_is_not_called_a_busy_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let closer = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            drop(stream);
        });
        let err = format!("host=127.0.0.1 port={port} user=postgres connect_timeout=5")
            .parse::<postgres::Config>()
            .unwrap()
            .connect(postgres::NoTls)
            .err()
            .expect("closed at once");
        closer.join().unwrap();
        assert_eq!(classify(&err), Cause::ClosedEarly, "{err:?}");
        let text = connect_error("postgresql://127.0.0.1/postgres", err).to_string();
        assert!(
            text.contains("closed before PostgreSQL answered") && !text.contains("busy"),
            "{text}"
        );
    }

    #[test]
    fn login_failures_settle_at_once_and_busy_servers_never() {
        let health = ConnectHealth::default();
        let now = Instant::now();
        for (cause, settles) in [
            (Cause::Login, true),
            (Cause::Resolve, true),
            (Cause::NoDatabase, true),
            (Cause::Other, false),
            (Cause::Unreachable, false),
            (Cause::ClosedEarly, false),
        ] {
            *health.failure.lock() = Some(Failure {
                cause,
                message: "m".into(),
                first: now,
                last: now,
            });
            assert_eq!(health.decisive(now, now).is_some(), settles, "{cause:?}");
        }
    }
}

//! The crate's one error type.
//!
//! [`Error`] is opaque: what went wrong is told by its `Display` text (one clear sentence a
//! user can act on), by [`std::error::Error::source`] and by the `is_*` predicates.

use std::fmt;

/// A `Result` whose error defaults to the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in chancy, outside of a job's own outcome (see
/// [`JobError`](crate::JobError) for that).
pub struct Error {
    kind: Kind,
    message: String,
    source: Option<BoxError>,
}

/// What kind of failure an [`Error`] is ([`Error::kind`]); the `is_*` predicates test the
/// same thing. New kinds may be added in a minor version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration (DSN, prefix, a builder setting) is invalid.
    Config,
    /// An argument was rejected before anything was written.
    InvalidInput,
    /// The database could not be reached (or the connection broke).
    Unavailable,
    /// The server refused a statement ([`Error::db_code`] has its SQLSTATE).
    Database,
    /// The schema is older than this crate needs: run `chancy migrate`.
    MigrationsNeeded,
    /// A migration could not be applied.
    Migration,
    /// The queue, job or other object does not exist.
    NotFound,
    /// A wait ran out of time.
    Timeout,
    /// A stored row holds a value chancy cannot read (another client wrote, say, a queue
    /// or job state chancy does not know): bad data in the database, not in the caller's
    /// input. The API answers it 500 with the reason; listings skip such rows and name them.
    UnreadableRow,
}

use ErrorKind as Kind;

impl Error {
    fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    fn with_source(mut self, source: impl Into<BoxError>) -> Error {
        self.source = Some(source.into());
        self
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(Kind::Config, message)
    }

    pub(crate) fn invalid_input(message: impl Into<String>) -> Error {
        Error::new(Kind::InvalidInput, message)
    }

    pub(crate) fn migrations_needed(message: impl Into<String>) -> Error {
        Error::new(Kind::MigrationsNeeded, message)
    }

    pub(crate) fn migration(message: impl Into<String>) -> Error {
        Error::new(Kind::Migration, message)
    }

    pub(crate) fn unreadable_row(message: impl Into<String>) -> Error {
        Error::new(Kind::UnreadableRow, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Error {
        Error::new(Kind::NotFound, message)
    }

    pub(crate) fn timeout(message: impl Into<String>) -> Error {
        Error::new(Kind::Timeout, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Error {
        Error::new(Kind::Unavailable, message)
    }

    /// Wraps a database error, keeping the server's own message in the text:
    /// `"<context>: <server message>"`. The kind is [`ErrorKind::Unavailable`] for a lost
    /// connection, [`ErrorKind::MigrationsNeeded`] for a missing table, else
    /// [`ErrorKind::Database`]; [`Error::db_code`] is the SQLSTATE. Public so your own
    /// statements (e.g. in a [`Plugin::run_once`](crate::Plugin::run_once)) report like the
    /// crate's.
    ///
    /// ```no_run
    /// # fn main() -> chancy::Result<()> {
    /// let chancy = chancy::Chancy::builder("postgresql://localhost/postgres").build()?;
    /// let mut conn = chancy.connection()?;
    /// conn.batch_execute("SELECT 1")
    ///     .map_err(|e| chancy::Error::database("checking the audit table", e))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn database(context: &str, err: postgres::Error) -> Error {
        let undefined_table = err.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE);
        let (kind, advice) = if is_connection_error(&err) {
            (Kind::Unavailable, "")
        } else if undefined_table {
            (
                Kind::MigrationsNeeded,
                " (the schema is not migrated for this prefix; run `chancy migrate` or call Chancy::migrate())",
            )
        } else {
            (Kind::Database, "")
        };
        Error::new(kind, format!("{context}: {}{advice}", describe_pg(&err))).with_source(err)
    }

    /// A connection attempt failed; `message` already names the target, the server's words
    /// and the hint (see `crate::connect`).
    pub(crate) fn connect_failed(message: String, err: postgres::Error) -> Error {
        Error::new(Kind::Unavailable, message).with_source(err)
    }

    /// Wraps a JSON (de)serialisation failure.
    pub(crate) fn json(context: &str, err: serde_json::Error) -> Error {
        Error::new(Kind::InvalidInput, format!("{context}: {err}")).with_source(err)
    }

    /// What kind of failure this is.
    ///
    /// ```
    /// let err = chancy::Chancy::builder("postgresql://localhost/db").prefix("bad-prefix").build().unwrap_err();
    /// assert_eq!(err.kind(), chancy::ErrorKind::Config);
    /// assert_eq!(err.db_code(), None);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The SQLSTATE code the server reported (e.g. `"23505"` unique violation, `"40001"`
    /// serialization failure, `"57P01"` admin shutdown), as rust-postgres's
    /// `Error::code()`; `None` when the error did not come from the server.
    pub fn db_code(&self) -> Option<&str> {
        self.source
            .as_ref()
            .and_then(|s| s.downcast_ref::<postgres::Error>())
            .and_then(postgres::Error::code)
            .map(|c| c.code())
    }

    /// The configuration (DSN, prefix, a builder setting) is invalid.
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }

    /// An argument was rejected before anything was written (bad kwargs, queue name, ...).
    pub fn is_invalid_input(&self) -> bool {
        self.kind == Kind::InvalidInput
    }

    /// The database could not be reached or the connection was lost. Worth retrying.
    pub fn is_unavailable(&self) -> bool {
        self.kind == Kind::Unavailable
    }

    /// The database answered with an error.
    pub fn is_database(&self) -> bool {
        self.kind == Kind::Database
    }

    /// The schema is behind the code: run `chancy migrate` (or [`Chancy::migrate`](crate::Chancy::migrate)).
    pub fn is_migrations_needed(&self) -> bool {
        self.kind == Kind::MigrationsNeeded
    }

    /// A migration could not be applied (unknown version, failing step).
    pub fn is_migration(&self) -> bool {
        self.kind == Kind::Migration
    }

    /// A stored row holds a value chancy cannot read ([`ErrorKind::UnreadableRow`]).
    pub fn is_unreadable_row(&self) -> bool {
        self.kind == Kind::UnreadableRow
    }

    /// A queue, job or other named object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == Kind::NotFound
    }

    /// A wait ran out of time.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }

    /// Whether the server refused the data itself (SQLSTATE class 22 data exception, 23
    /// integrity constraint violation or 54 program limit exceeded): the same statement with
    /// the same values will fail again.
    pub(crate) fn is_rejected_data(&self) -> bool {
        self.kind == Kind::Database
            && self
                .source
                .as_ref()
                .and_then(|s| s.downcast_ref::<postgres::Error>())
                .and_then(postgres::Error::code)
                .is_some_and(|c| {
                    ["22", "23", "54"]
                        .iter()
                        .any(|class| c.code().starts_with(class))
                })
    }

    /// Whether retrying the same operation later may succeed (the database was unreachable or
    /// the server reported a transient condition such as a serialization failure).
    pub fn is_transient(&self) -> bool {
        match self.kind {
            Kind::Unavailable => true,
            Kind::Database => self
                .source
                .as_ref()
                .and_then(|s| s.downcast_ref::<postgres::Error>())
                .is_some_and(is_transient_db_error),
            _ => false,
        }
    }
}

/// The server's message (with detail and hint) when there is one, else the client's text.
pub(crate) fn describe_pg(err: &postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut text = db.message().to_string();
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" hint: {hint}"));
        }
        return text;
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Connection-level failures: closed sockets, refused connections, admin shutdowns.
pub(crate) fn is_connection_error(err: &postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"
        }
        None => {
            let text = err.to_string();
            io_error_in_chain(err)
                || text.starts_with("error connecting to server")
                || text.starts_with("connection closed")
                || text.starts_with("timeout")
        }
    }
}

/// Whether an I/O error caused `err` (a broken socket), as opposed to e.g. a parameter that
/// could not be converted, which retrying cannot fix.
fn io_error_in_chain(err: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn is_transient_db_error(err: &postgres::Error) -> bool {
    if is_connection_error(err) {
        return true;
    }
    matches!(
        err.code().map(|c| c.code()),
        Some("40001") | Some("40P01") | Some("55P03") | Some("53300")
    )
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_message() {
        let e = Error::invalid_input("kwargs must be a JSON object");
        assert_eq!(e.to_string(), "kwargs must be a JSON object");
        assert!(e.is_invalid_input());
        assert!(!e.is_transient());
    }
}

//! Statements that leave nothing behind on the server connection: each call is one
//! unnamed, typed extended-protocol exchange (Parse, Bind, Describe, Execute, Sync in one
//! round trip).
//!
//! `postgres::Client::query("…", params)` prepares a *named* statement (`s0`, `s1`, …) in a
//! first round trip, binds it in a second and closes it whenever the returned rows are
//! dropped. Behind a transaction-pooling proxy (PgBouncer `pool_mode = transaction`, any
//! version) the two round trips may reach different server connections (`prepared
//! statement "s3" does not exist`), and a statement whose rows outlive the transaction
//! stays on a server connection that another client process, counting its own names from
//! `s0`, may then collide with (`prepared statement "s3" already exists`). Every query of
//! chancy's own goes through [`Unnamed`] instead, in every pooling mode (it is also one
//! round trip instead of two where no cached statement is used).
//!
//! The parameter types an unnamed typed query needs are learned once per statement text and
//! process: the statement is prepared inside its own transaction (or savepoint), its
//! parameter types are read and it is closed before that transaction ends, so even this
//! happens on one server connection and leaves nothing on it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use postgres::types::{ToSql, Type};
use postgres::{Error as PgError, GenericClient, Row};

/// The most statement texts whose parameter types are remembered; past it the memory starts
/// over (texts are few and fixed per prefix; a process serving many prefixes only relearns).
const MAX_REMEMBERED: usize = 4096;

/// Parameter types by statement text.
static TYPES: Mutex<Option<HashMap<String, Arc<[Type]>>>> = Mutex::new(None);

/// The parameter types of `sql`, from the server the first time (see the module docs).
pub(crate) fn param_types<C: GenericClient>(
    client: &mut C,
    sql: &str,
) -> Result<Arc<[Type]>, PgError> {
    if let Some(types) = TYPES.lock().as_ref().and_then(|m| m.get(sql)) {
        return Ok(types.clone());
    }
    let mut tx = client.transaction()?;
    let types: Arc<[Type]> = {
        // Dropping the statement queues its Close ahead of the COMMIT below.
        let stmt = tx.prepare(sql)?;
        stmt.params().into()
    };
    tx.commit()?;
    let mut memory = TYPES.lock();
    let map = memory.get_or_insert_with(HashMap::new);
    if map.len() >= MAX_REMEMBERED {
        map.clear();
    }
    map.insert(sql.to_string(), types.clone());
    Ok(types)
}

/// Parameters paired with their types, as `query_typed` takes them.
pub(crate) type TypedParams<'a> = Vec<(&'a (dyn ToSql + Sync), Type)>;

/// `params` paired with `sql`'s parameter types, or `None` when their counts differ (the
/// caller then lets the named path report the mismatch in its usual words).
fn typed<'a, C: GenericClient>(
    client: &mut C,
    sql: &str,
    params: &'a [&'a (dyn ToSql + Sync)],
) -> Result<Option<TypedParams<'a>>, PgError> {
    if params.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let types = param_types(client, sql)?;
    if types.len() != params.len() {
        return Ok(None);
    }
    Ok(Some(
        params.iter().copied().zip(types.iter().cloned()).collect(),
    ))
}

/// Unnamed, typed versions of `query`, `query_one`, `query_opt` and `execute` for any
/// client or transaction (see the module docs). Same arguments, results and errors as the
/// `postgres` methods they stand for.
pub(crate) trait Unnamed: GenericClient + Sized {
    /// The rows of `sql` (as [`postgres::Client::query`]).
    fn query_unnamed(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        match typed(self, sql, params)? {
            Some(pairs) => self.query_typed(sql, &pairs),
            None => self.query(sql, params),
        }
    }

    /// Exactly one row of `sql` (as [`postgres::Client::query_one`]).
    fn query_one_unnamed(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError> {
        match typed(self, sql, params)? {
            Some(pairs) => self.query_typed_one(sql, &pairs),
            None => self.query_one(sql, params),
        }
    }

    /// At most one row of `sql` (as [`postgres::Client::query_opt`]).
    fn query_opt_unnamed(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError> {
        match typed(self, sql, params)? {
            Some(pairs) => self.query_typed_opt(sql, &pairs),
            None => self.query_opt(sql, params),
        }
    }

    /// The number of rows `sql` changed (as [`postgres::Client::execute`]).
    fn execute_unnamed(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgError> {
        match typed(self, sql, params)? {
            Some(pairs) => self.execute_typed(sql, &pairs),
            None => self.execute(sql, params),
        }
    }
}

impl<C: GenericClient> Unnamed for C {}

//! Leader election on the `<prefix>leader` row `id = 1` (upstream's `Leadership`), and
//! `ImmediateLeadership` for tests.
//!
//! Each pass, in one transaction: delete an expired lease; then the current leader renews
//! only its own row (`ON CONFLICT (id) DO UPDATE ... WHERE leader.worker_id =
//! EXCLUDED.worker_id`) and anyone else tries `ON CONFLICT DO NOTHING`. One row affected
//! means this worker leads. A leader whose lease was taken over affects no row and steps
//! down, so there is never more than one worker that believes it leads past its lease.
//!
//! Deliberate differences from upstream (documented in the README):
//! * the first election runs when the worker starts, not one `poll_interval` later;
//! * a stopping leader deletes its own lease row (only while its worker row carries its
//!   session, so never another process's lease), so a successor takes over at its next pass
//!   instead of waiting for the lease to expire;
//! * a worker that restarts under the id of a crashed leader adopts its lease at once;
//! * the defaults are faster: `poll_interval` 5 s, `timeout` 15 s (upstream 60 s / 120 s),
//!   so a dead leader's successor runs recovery within ~20 s.

use crate::unnamed::Unnamed;
use std::time::Duration;

use postgres::Client;
use serde_json::json;

use crate::error::{Error, Result};
use crate::events;
use crate::worker::plugin::{Plugin, PluginContext};

/// The identifier of every leadership plugin.
pub const LEADERSHIP: &str = "chancy.leadership";
/// Default [`LeadershipBuilder::poll_interval`]: 5 s (upstream 60 s).
pub const DEFAULT_LEADERSHIP_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Default [`LeadershipBuilder::timeout`]: 15 s (upstream 120 s).
pub const DEFAULT_LEADERSHIP_TIMEOUT: Duration = Duration::from_secs(15);

// Lease times come from the database clock only: a worker whose clock runs ahead would
// otherwise take over a live lease (upstream passes the worker's clock).
const DELETE_EXPIRED: &str = r#"DELETE FROM "{prefix}leader" WHERE expires_at < NOW()"#;
const RENEW: &str = r#"
INSERT INTO "{prefix}leader" (id, worker_id, expires_at)
VALUES (1, $1, NOW() + make_interval(secs => $2))
ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at
WHERE "{prefix}leader".worker_id = EXCLUDED.worker_id"#;
/// Releases the lease of worker id $1 only while that id's row carries this process's
/// session tag $2: a process never deletes the lease of another process under the same id.
const RELEASE: &str = r#"
DELETE FROM "{prefix}leader"
WHERE id = 1 AND worker_id = $1
  AND EXISTS (SELECT 1 FROM "{prefix}workers" w WHERE w.worker_id = $1 AND $2 = ANY(w.tags))"#;

/// Elects one leader among the workers sharing a database, with a lease on the
/// `<prefix>leader` table. Identifier `chancy.leadership`; part of the default set.
///
/// ```
/// use std::time::Duration;
/// use chancy::plugins::Leadership;
/// let leadership = Leadership::builder()
///     .poll_interval(Duration::from_secs(5))
///     .timeout(Duration::from_secs(15))
///     .build()?;
/// # Ok::<(), chancy::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Leadership {
    poll_interval: Duration,
    timeout: Duration,
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership {
            poll_interval: DEFAULT_LEADERSHIP_POLL_INTERVAL,
            timeout: DEFAULT_LEADERSHIP_TIMEOUT,
        }
    }
}

/// Configures a [`Leadership`]. Created by [`Leadership::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct LeadershipBuilder {
    inner: Leadership,
}

impl LeadershipBuilder {
    /// How often the lease is renewed or tried (default 5 s).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.inner.poll_interval = d;
        self
    }

    /// How long a lease lasts without renewal (default 15 s); at least `poll_interval`.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.inner.timeout = d;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    /// A configuration error when `timeout` is shorter than `poll_interval` or
    /// `poll_interval` is zero.
    pub fn build(self) -> Result<Leadership> {
        let l = self.inner;
        if l.poll_interval.is_zero() {
            return Err(Error::config("Leadership poll_interval must be positive"));
        }
        if l.timeout < l.poll_interval {
            return Err(Error::config(format!(
                "Leadership timeout ({:?}) must be at least poll_interval ({:?})",
                l.timeout, l.poll_interval
            )));
        }
        Ok(l)
    }
}

impl Leadership {
    /// Starts configuring a leadership plugin with the defaults.
    pub fn builder() -> LeadershipBuilder {
        LeadershipBuilder {
            inner: Leadership::default(),
        }
    }

    /// The renewal interval.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The lease length.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One election pass for the worker of `ctx`: updates its leadership flag
    /// ([`PluginContext::set_leader`], read by `Worker::is_leader`) and NOTIFYs
    /// `leadership.gained`, `leadership.renewed` or `leadership.lost`. Returns whether the
    /// worker leads now.
    ///
    /// # Errors
    /// When the database is unreachable or a statement fails (the flag is unchanged).
    pub fn elect(&self, ctx: &PluginContext) -> Result<bool> {
        let chancy = ctx.chancy();
        let prefix = chancy.prefix();
        let me = ctx.worker_id();
        let was_leader = ctx.is_leader();
        let lease = self.timeout.as_secs_f64();
        let mut conn = chancy.connection()?;
        let context = "electing a leader";
        let mut tx = conn
            .client
            .transaction()
            .map_err(|e| Error::database(context, e))?;
        tx.execute_unnamed(prefix.render(DELETE_EXPIRED).as_str(), &[])
            .map_err(|e| Error::database(context, e))?;
        // Upstream acquires with ON CONFLICT DO NOTHING when it does not lead. RENEW also
        // acquires a free lease, and adopts a live lease under this worker id: one id is one
        // live process (`Worker::start`), so such a lease is this process's own from before
        // a crash, and a restarted worker leads again at once instead of after its expiry.
        let rows = tx
            .execute_unnamed(prefix.render(RENEW).as_str(), &[&me, &lease])
            .map_err(|e| Error::database(context, e))?;
        tx.commit().map_err(|e| Error::database(context, e))?;
        let leads = rows == 1;
        let event = match (was_leader, leads) {
            (true, true) => Some(events::LEADERSHIP_RENEWED),
            (false, true) => {
                ctx.set_leader(true);
                log::info!("worker {me} became the leader");
                Some(events::LEADERSHIP_GAINED)
            }
            (true, false) => {
                ctx.set_leader(false);
                log::warn!("worker {me} lost the leadership (its lease was taken over)");
                Some(events::LEADERSHIP_LOST)
            }
            (false, false) => None,
        };
        if let Some(event) = event {
            notify(&mut conn.client, ctx, event)?;
        }
        Ok(leads)
    }

    /// Gives up the lease if the worker of `ctx` holds it (deletes its own row only, and
    /// only while the worker row carries [`PluginContext::session_tag`]) and clears the flag.
    ///
    /// # Errors
    /// When the database is unreachable; the lease then expires on its own.
    pub fn release(&self, ctx: &PluginContext) -> Result<()> {
        let chancy = ctx.chancy();
        let was_leader = ctx.is_leader();
        ctx.set_leader(false);
        let mut conn = chancy.connection()?;
        let rows = conn
            .client
            .execute_unnamed(
                chancy.prefix().render(RELEASE).as_str(),
                &[&ctx.worker_id(), &ctx.session_tag()],
            )
            .map_err(|e| Error::database("releasing the leader lease", e))?;
        if was_leader || rows > 0 {
            log::info!("worker {} released the leadership", ctx.worker_id());
            notify(&mut conn.client, ctx, events::LEADERSHIP_LOST)?;
        }
        Ok(())
    }
}

fn notify(client: &mut Client, ctx: &PluginContext, event: &str) -> Result<()> {
    ctx.chancy()
        .notify_in(client, &[(event, json!({ "worker_id": ctx.worker_id() }))])
}

impl Plugin for Leadership {
    fn identifier(&self) -> &'static str {
        LEADERSHIP
    }

    fn tables(&self) -> Vec<&'static str> {
        vec!["leader"]
    }

    fn interval(&self) -> Option<Duration> {
        Some(self.poll_interval)
    }

    fn run_once(&self, ctx: &PluginContext) -> Result<()> {
        self.elect(ctx).map(|_| ())
    }

    /// Holds the first election at once (upstream waits one `poll_interval`). A failure is
    /// logged, not fatal: the service retries.
    fn on_worker_started(&self, ctx: &PluginContext) -> Result<()> {
        if let Err(err) = self.elect(ctx) {
            log::warn!(
                "worker {}: first leader election failed, retrying in the background: {err}",
                ctx.worker_id()
            );
        }
        Ok(())
    }

    /// Releases the lease so a successor takes over at its next pass (upstream lets it
    /// expire).
    fn on_worker_stopped(&self, ctx: &PluginContext) {
        if let Err(err) = self.release(ctx) {
            log::warn!(
                "worker {}: could not release the leader lease, it expires in {:?}: {err}",
                ctx.worker_id(),
                self.timeout
            );
        }
    }
}

/// Makes every worker a leader as soon as it starts, without touching the table. For tests
/// and single-worker setups only; identifier `chancy.leadership`, so it replaces
/// [`Leadership`] in the default set.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImmediateLeadership;

impl Plugin for ImmediateLeadership {
    fn identifier(&self) -> &'static str {
        LEADERSHIP
    }

    fn on_worker_started(&self, ctx: &PluginContext) -> Result<()> {
        ctx.set_leader(true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_must_cover_the_poll_interval() {
        let err = Leadership::builder()
            .poll_interval(Duration::from_secs(10))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_err();
        assert!(err.is_config());
        assert!(err.to_string().contains("timeout"), "{err}");
        assert!(Leadership::builder()
            .poll_interval(Duration::ZERO)
            .build()
            .is_err());
        let ok = Leadership::builder().build().unwrap();
        assert_eq!(ok.poll_interval(), DEFAULT_LEADERSHIP_POLL_INTERVAL);
        assert_eq!(ok.timeout(), DEFAULT_LEADERSHIP_TIMEOUT);
    }
}

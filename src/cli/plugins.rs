//! Plugins chosen by name (`worker start --plugins`, `migrate --plugin`) and the advice
//! naming the `chancy migrate` command that creates a key's tables.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::migrate::{self, MigrationStatus};
use crate::plugins::cron::DEFAULT_CRON_POLL_INTERVAL;
use crate::plugins::workflow::DEFAULT_WORKFLOW_POLLING_INTERVAL;
use crate::plugins::{
    Cron, Leadership, Metrics, Pruner, Recovery, RetryPlugin, Trigger, WorkflowPlugin,
    DEFAULT_LEADERSHIP_POLL_INTERVAL, DEFAULT_LEADERSHIP_TIMEOUT, DEFAULT_PRUNER_POLL_INTERVAL,
    DEFAULT_RECOVERY_POLL_INTERVAL,
};
use crate::worker::plugin::Plugin;
use crate::{Chancy, ChancyBuilder};

/// Plugin intervals from the `worker start` flags; `None` keeps the plugin's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Intervals {
    pub(crate) leadership_poll: Option<Duration>,
    pub(crate) leadership_timeout: Option<Duration>,
    pub(crate) recovery_poll: Option<Duration>,
    pub(crate) pruner_poll: Option<Duration>,
    pub(crate) cron_poll: Option<Duration>,
    pub(crate) workflow_poll: Option<Duration>,
}

impl Intervals {
    /// `(flag, short name of the plugin it configures)` for every flag that was given.
    fn given(&self) -> Vec<(&'static str, &'static str)> {
        [
            (
                self.leadership_poll,
                "--leadership-poll-interval",
                "leadership",
            ),
            (
                self.leadership_timeout,
                "--leadership-timeout",
                "leadership",
            ),
            (self.recovery_poll, "--recovery-poll-interval", "recovery"),
            (self.pruner_poll, "--pruner-poll-interval", "pruner"),
            (self.cron_poll, "--cron-poll-interval", "cron"),
            (self.workflow_poll, "--workflow-poll-interval", "workflow"),
        ]
        .into_iter()
        .filter_map(|(v, flag, plugin)| v.map(|_| (flag, plugin)))
        .collect()
    }
}

type MakePlugin = fn(&Intervals) -> Result<Arc<dyn Plugin>>;

/// Every plugin this build can add by name: `(short name, identifier, constructor)`. Both
/// names are accepted. Adding a plugin (e.g. `metrics`) is one line here. Reprioritize is
/// left out: it needs a rule, which has no command-line form.
const PLUGINS: &[(&str, &str, MakePlugin)] = &[
    ("leadership", "chancy.leadership", |i| {
        let b = Leadership::builder()
            .poll_interval(
                i.leadership_poll
                    .unwrap_or(DEFAULT_LEADERSHIP_POLL_INTERVAL),
            )
            .timeout(i.leadership_timeout.unwrap_or(DEFAULT_LEADERSHIP_TIMEOUT));
        let leadership = b.build().map_err(|e| {
            Error::config(format!(
                "{e} (--leadership-timeout must be at least --leadership-poll-interval)"
            ))
        })?;
        Ok(Arc::new(leadership))
    }),
    ("pruner", "chancy.pruner", |i| {
        let d = i.pruner_poll.unwrap_or(DEFAULT_PRUNER_POLL_INTERVAL);
        Ok(Arc::new(Pruner::default().poll_interval(d)))
    }),
    ("recovery", "chancy.recovery", |i| {
        let d = i.recovery_poll.unwrap_or(DEFAULT_RECOVERY_POLL_INTERVAL);
        Ok(Arc::new(Recovery::new().poll_interval(d)))
    }),
    ("metrics", "chancy.metrics", |_| {
        Ok(Arc::new(Metrics::default()))
    }),
    ("workflow", "chancy.workflow_plugin", |i| {
        let d = i.workflow_poll.unwrap_or(DEFAULT_WORKFLOW_POLLING_INTERVAL);
        Ok(Arc::new(WorkflowPlugin::new().polling_interval(d)))
    }),
    ("cron", "chancy.cron", |i| {
        let d = i.cron_poll.unwrap_or(DEFAULT_CRON_POLL_INTERVAL);
        Ok(Arc::new(Cron::new().poll_interval(d)))
    }),
    ("retry", "chancy.retry_plugin", |_| {
        Ok(Arc::new(RetryPlugin))
    }),
    ("trigger", "chancy.trigger", |_| Ok(Arc::new(Trigger))),
];

/// What `worker start` runs without `--plugins`: the library's default set
/// (`ChancyBuilder` without `no_default_plugins`; a unit test keeps the two equal).
pub(crate) const DEFAULT_SET: &[&str] =
    &["leadership", "pruner", "recovery", "metrics", "workflow"];

/// The `--plugins` value that selects no plugin at all.
pub(crate) const NONE: &str = "none";

/// The short names, for messages.
pub(crate) fn available() -> String {
    PLUGINS
        .iter()
        .map(|(short, _, _)| *short)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The constructor entry for a short name or identifier (case-insensitive).
fn lookup(name: &str) -> Option<&'static (&'static str, &'static str, MakePlugin)> {
    let name = name.trim().to_lowercase();
    PLUGINS
        .iter()
        .find(|(short, id, _)| *short == name || *id == name)
}

fn unknown(name: &str) -> Error {
    Error::invalid_input(format!(
        "unknown plugin {:?}: this build has {} (or `{NONE}`)",
        name.trim(),
        available()
    ))
}

/// Parses a `--plugins` value: comma-separated names, `none`, or `None` for the default set.
pub(crate) fn parse_list(list: Option<&str>) -> Result<Vec<&'static str>> {
    let Some(list) = list else {
        return Ok(DEFAULT_SET.to_vec());
    };
    if list.trim().eq_ignore_ascii_case(NONE) {
        return Ok(Vec::new());
    }
    let mut chosen: Vec<&'static str> = Vec::new();
    for name in list.split(',').filter(|n| !n.trim().is_empty()) {
        let (short, _, _) = lookup(name).ok_or_else(|| unknown(name))?;
        if chosen.contains(short) {
            return Err(Error::invalid_input(format!(
                "plugin {short:?} is listed twice in --plugins"
            )));
        }
        chosen.push(short);
    }
    if chosen.is_empty() {
        return Err(Error::invalid_input(format!(
            "--plugins is empty; give names ({}) or `{NONE}`",
            available()
        )));
    }
    Ok(chosen)
}

/// Adds the plugins `names` (short names from [`parse_list`]) to `builder`, configured with
/// `intervals`. An interval flag for a plugin that is not chosen is an error.
pub(crate) fn add_all(
    mut builder: ChancyBuilder,
    names: &[&str],
    intervals: &Intervals,
) -> Result<ChancyBuilder> {
    for (flag, plugin) in intervals.given() {
        if !names.contains(&plugin) {
            return Err(Error::invalid_input(format!(
                "{flag} configures the {plugin} plugin, which is not enabled (add it to --plugins)"
            )));
        }
    }
    for name in names {
        let (_, _, make) = lookup(name).ok_or_else(|| unknown(name))?;
        builder = builder.plugin_arc(make(intervals)?);
    }
    Ok(builder)
}

/// The migration key of a plugin given by name: `Ok(None)` for a plugin without tables of
/// its own, `Err` for an unknown name.
pub(crate) fn migration_key_of(name: &str) -> Result<Option<&'static str>> {
    let (_, _, make) = lookup(name).ok_or_else(|| unknown(name))?;
    Ok(make(&Intervals::default())?.migrations().map(|m| m.key()))
}

/// The keys plain `chancy migrate` brings up to date: those of the CLI's default
/// application (core, the Rust-only index, and the tables of Python's default plugin set).
/// Every other key needs `chancy migrate --plugin KEY`. A unit test keeps this equal to the
/// library's list.
const PLAIN_MIGRATE_KEYS: [&str; 4] = [
    migrate::CORE,
    migrate::RUST,
    crate::plugins::METRICS_MIGRATIONS.key(),
    crate::plugins::WORKFLOW_MIGRATIONS.key(),
];

/// "run `chancy migrate` and `chancy migrate --plugin cron`" for the keys that are behind.
fn advice(behind: &[&MigrationStatus]) -> String {
    let mut commands: Vec<String> = Vec::new();
    for s in behind {
        let command = if PLAIN_MIGRATE_KEYS.contains(&s.key.as_str()) {
            "`chancy migrate`".to_string()
        } else {
            format!("`chancy migrate --plugin {}`", s.key)
        };
        if !commands.contains(&command) {
            commands.push(command);
        }
    }
    format!("run {}", commands.join(" and "))
}

/// Fails with a one-line "needs migrating …; run `chancy migrate …`" error unless every
/// required key in `keys` is up to date.
pub(crate) fn ensure_keys(chancy: &Chancy, keys: &[&str]) -> Result<()> {
    let statuses = chancy.migration_status(keys)?;
    let behind: Vec<&MigrationStatus> = statuses
        .iter()
        .filter(|s| !s.is_up_to_date() && migrate::is_required(&s.key))
        .collect();
    if behind.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = behind
        .iter()
        .map(|s| format!("{} at {} of {}", s.key, s.current, s.latest))
        .collect();
    Err(Error::migrations_needed(format!(
        "the database schema for prefix {:?} needs migrating ({}); {}",
        chancy.prefix().as_str(),
        what.join(", "),
        advice(&behind)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline() -> ChancyBuilder {
        Chancy::builder("postgresql://nobody@127.0.0.1:1/none").min_connection_pool_size(0)
    }

    #[test]
    fn the_default_set_is_the_librarys() {
        let library = offline().build().unwrap();
        let ours = add_all(
            offline().no_default_plugins(),
            &parse_list(None).unwrap(),
            &Intervals::default(),
        )
        .unwrap()
        .build()
        .unwrap();
        let ids = |c: &Chancy| -> Vec<&'static str> {
            c.plugins().iter().map(|p| p.identifier()).collect()
        };
        assert_eq!(ids(&ours), ids(&library));
        assert_eq!(library.migration_keys(), PLAIN_MIGRATE_KEYS.to_vec());
    }

    #[test]
    fn names_and_identifiers_resolve_and_unknown_names_list_the_available_ones() {
        assert_eq!(
            parse_list(Some("Leadership, chancy.cron,workflow")).unwrap(),
            vec!["leadership", "cron", "workflow"]
        );
        assert_eq!(parse_list(Some("none")).unwrap(), Vec::<&str>::new());
        let err = parse_list(Some("leadership,metrix"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"metrix\"") && err.contains("leadership, pruner"),
            "{err}"
        );
        assert!(parse_list(Some("cron,chancy.cron")).is_err());
        assert!(parse_list(Some(" , ")).is_err());
        assert_eq!(migration_key_of("cron").unwrap(), Some("cron"));
        assert_eq!(
            migration_key_of("chancy.workflow_plugin").unwrap(),
            Some("workflow")
        );
        assert_eq!(migration_key_of("recovery").unwrap(), None);
    }

    #[test]
    fn intervals_reach_the_plugins_and_orphan_flags_are_refused() {
        let intervals = Intervals {
            cron_poll: Some(Duration::from_millis(250)),
            leadership_poll: Some(Duration::from_secs(2)),
            leadership_timeout: Some(Duration::from_secs(6)),
            ..Intervals::default()
        };
        let chancy = add_all(
            offline().no_default_plugins(),
            &["leadership", "cron"],
            &intervals,
        )
        .unwrap()
        .build()
        .unwrap();
        let interval = |id: &str| {
            chancy
                .plugins()
                .iter()
                .find(|p| p.identifier() == id)
                .and_then(|p| p.interval())
        };
        assert_eq!(interval("chancy.cron"), Some(Duration::from_millis(250)));
        assert_eq!(interval("chancy.leadership"), Some(Duration::from_secs(2)));
        assert!(chancy.migration_keys().contains(&"cron"));

        let err = add_all(offline().no_default_plugins(), &["leadership"], &intervals)
            .err()
            .expect("an orphan interval flag")
            .to_string();
        assert!(err.contains("--cron-poll-interval"), "{err}");
        let bad = Intervals {
            leadership_poll: Some(Duration::from_secs(60)),
            ..Intervals::default()
        };
        assert!(
            add_all(offline(), &["leadership"], &bad).is_err(),
            "timeout < poll"
        );
    }

    #[test]
    fn advice_names_the_right_migrate_command() {
        let status = |key: &str| MigrationStatus {
            key: key.into(),
            current: 0,
            latest: 1,
            steps: vec![],
        };
        let (core, cron) = (status("chancy"), status("cron"));
        assert_eq!(advice(&[&core]), "run `chancy migrate`");
        assert_eq!(
            advice(&[&core, &cron]),
            "run `chancy migrate` and `chancy migrate --plugin cron`"
        );
    }
}

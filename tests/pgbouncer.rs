//! Chancy through a real PgBouncer (Debian's `pgbouncer` package; 1.18 on Debian 12) that
//! each test starts on a private port, with its configuration in a temporary directory, in
//! front of the test PostgreSQL:
//!
//! - session pooling (`pool_mode = session`, a pool as large as the worker's connection
//!   budget): the worker's core cases, no setting needed;
//! - transaction pooling (`pool_mode = transaction`, 4 server connections shared by every
//!   client): with `--transaction-pooling` / `ChancyBuilder::transaction_pooling`, two
//!   `chancy worker start` processes drain 20,000 jobs, each claimed exactly once (a trigger
//!   counts the claims), and the producer API and the CLI work; without the setting a
//!   worker's cached claim statement fails with PgBouncer's `prepared statement "s…" does
//!   not exist` as soon as its server connection changes.
//!
//! The test installs the package with apt when it runs as root on Debian (like
//! `tests/browser.rs` installs Chromium); otherwise it fails and says how to get it.
//! `$PGBOUNCER` names another binary.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chancy::tooling::WorkerTooling;
use chancy::{Chancy, Job, JobError, JobState, Queue, Reference, Worker};
use postgres::{Client, NoTls, SimpleQueryMessage};

mod support;
use db::{database_url, drop_prefix};
use support::apt::{self, is_root};
use support::{db, wait};

const BIN: &str = env!("CARGO_BIN_EXE_chancy");
/// Bound on every wait of these tests (a failure guard, not a performance limit).
const WAIT: Duration = Duration::from_secs(60);

fn pgbouncer_path() -> PathBuf {
    std::env::var_os("PGBOUNCER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/pgbouncer"))
}

/// Installs Debian's `pgbouncer` when it is missing and we may (root, apt), then fails with
/// instructions when it is still missing.
fn require_pgbouncer() -> PathBuf {
    if std::env::var_os("PGBOUNCER").is_none() {
        apt::provision("pgbouncer", || pgbouncer_path().exists());
    }
    let path = pgbouncer_path();
    let version = Command::new(&path).arg("--version").output();
    assert!(
        matches!(&version, Ok(out) if out.status.success()),
        "the PgBouncer tests need PgBouncer at {} ({version:?}). Install it with \
         `apt-get install pgbouncer` (Debian/Ubuntu; the test does this itself when it runs \
         as root) or set PGBOUNCER to its path.",
        path.display()
    );
    path
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One private PgBouncer process; stopped and its directory removed on drop.
struct Bouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
    user: String,
    dbname: String,
}

impl Bouncer {
    /// PgBouncer in `mode` (`session` or `transaction`) with `pool_size` server
    /// connections in front of the tests' database.
    fn start(mode: &str, pool_size: u32) -> Bouncer {
        let bin = require_pgbouncer();
        let upstream = postgres::Config::from_str(&database_url()).expect("test database URL");
        let host = match upstream.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "127.0.0.1".into(),
        };
        let port = upstream.get_ports().first().copied().unwrap_or(5432);
        let user = upstream.get_user().unwrap_or("postgres").to_string();
        let dbname = upstream.get_dbname().unwrap_or(&user).to_string();
        let password = upstream
            .get_password()
            .map(|p| format!(" password={}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("chancy-pgbouncer-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        let listen = free_port();
        let userlist = dir.join("userlist.txt");
        fs::write(&userlist, format!("\"{user}\" \"\"\n")).unwrap();
        let ini = dir.join("pgbouncer.ini");
        fs::write(
            &ini,
            format!(
                "[databases]\n\
                 {dbname} = host={host} port={port} dbname={dbname}{password}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {listen}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {}\n\
                 admin_users = {user}\n\
                 pool_mode = {mode}\n\
                 default_pool_size = {pool_size}\n\
                 max_db_connections = {pool_size}\n\
                 max_client_conn = 500\n\
                 server_login_retry = 1\n\
                 ignore_startup_parameters = extra_float_digits\n",
                userlist.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("pgbouncer.log")).unwrap();
        let mut cmd = Command::new(bin);
        if is_root() {
            // PgBouncer refuses to run as root.
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start pgbouncer");
        let mut bouncer = Bouncer {
            child,
            port: listen,
            dir,
            user,
            dbname,
        };
        let listening = wait::poll(WAIT, || {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("pgbouncer exited ({status}): {}", bouncer.log());
            }
            TcpStream::connect(("127.0.0.1", listen)).ok()
        });
        assert!(
            listening.is_some(),
            "pgbouncer did not listen: {}",
            bouncer.log()
        );
        bouncer
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// The database URL through this PgBouncer.
    fn url(&self) -> String {
        format!(
            "postgresql://{}@127.0.0.1:{}/{}",
            self.user, self.port, self.dbname
        )
    }

    /// The rows of an admin console command (`SHOW SERVERS`, ...) as column → value maps.
    fn admin(&self, command: &str) -> Vec<Vec<(String, String)>> {
        let mut admin = Client::connect(
            &format!(
                "host=127.0.0.1 port={} user={} dbname=pgbouncer",
                self.port, self.user
            ),
            NoTls,
        )
        .expect("pgbouncer admin console");
        admin
            .simple_query(command)
            .unwrap_or_else(|e| panic!("{command}: {e}"))
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    row.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.name().to_string(), row.get(i).unwrap_or("").into()))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// Rows of `SHOW SERVERS` / `SHOW CLIENTS` for the test database.
    fn connections(&self, what: &str) -> usize {
        self.admin(&format!("SHOW {what}"))
            .iter()
            .filter(|row| {
                row.iter()
                    .any(|(k, v)| k == "database" && *v == self.dbname)
            })
            .count()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A random table prefix, dropped (directly on PostgreSQL) when this goes out of scope.
struct Prefix(String);

impl Prefix {
    fn new() -> Prefix {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Prefix(format!("pgb{}_", &id[..10]))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        drop_prefix(&self.0);
    }
}

fn direct() -> Client {
    Client::connect(&database_url(), NoTls).expect("test database")
}

fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait::eventually(WAIT, what, cond);
}

fn finished(chancy: &Chancy, r: &Reference) -> chancy::QueuedJob {
    chancy
        .wait_for_job(r, WAIT)
        .expect("wait for job")
        .expect("job exists")
}

#[test]
fn session_pooling_runs_the_worker_core_cases_without_a_setting() {
    // Session pooling gives each client connection a server connection for its whole
    // session: the pool must hold the worker's whole connection budget (10 pooled + 1
    // listener), or the connections past it wait in PgBouncer's queue.
    let bouncer = Bouncer::start("session", 12);
    let prefix = Prefix::new();
    let chancy = Chancy::builder(bouncer.url())
        .prefix(prefix.0.clone())
        .connection_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    chancy.migrate().unwrap();
    chancy
        .declare(
            &Queue::new("core")
                .concurrency(4)
                .polling_interval(Duration::from_secs(1))
                .eager_polling(true),
        )
        .unwrap();
    let flaky_runs = Arc::new(AtomicU32::new(0));
    let (started, saw_cancel) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let runs = Arc::clone(&flaky_runs);
    let (st, seen) = (Arc::clone(&started), Arc::clone(&saw_cancel));
    let worker = Worker::builder(&chancy)
        .worker_id("pgb-session")
        .job("t.ok", |_| Ok(()))
        .job("t.flaky", move |_| {
            match runs.fetch_add(1, Ordering::SeqCst) {
                0 => Err(JobError::new("first attempt fails")),
                _ => Ok(()),
            }
        })
        .job("t.long", move |ctx| {
            st.store(true, Ordering::SeqCst);
            if wait::poll_every(Duration::from_millis(10), WAIT, || {
                ctx.is_cancelled().then_some(())
            })
            .is_some()
            {
                seen.store(true, Ordering::SeqCst);
                return Err(JobError::cancelled());
            }
            Ok(())
        })
        .build()
        .unwrap();
    worker.start().unwrap();

    // push and run
    let ok = chancy.push(&Job::new("t.ok").queue("core")).unwrap();
    let job = finished(&chancy, &ok);
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 1));
    assert_eq!(job.taken_by.as_deref(), Some("pgb-session"));

    // retry after a failure
    let flaky = chancy
        .push(&Job::new("t.flaky").queue("core").max_attempts(3))
        .unwrap();
    let job = finished(&chancy, &flaky);
    assert_eq!((job.state, job.attempts), (JobState::Succeeded, 2));
    assert_eq!(job.errors.len(), 1);
    assert!(job.errors[0].traceback.contains("first attempt fails"));

    // unique keys: a second push of a waiting key returns the first job
    let later = Job::new("t.ok")
        .queue("core")
        .unique_key("only-one")
        .delay(Duration::from_secs(3600));
    let first = chancy.push(&later).unwrap();
    assert_eq!(chancy.push(&later).unwrap(), first);

    // cancelling a running job reaches the worker through LISTEN (session pooling keeps it)
    let long = chancy.push(&Job::new("t.long").queue("core")).unwrap();
    wait_until("t.long started", || started.load(Ordering::SeqCst));
    chancy.cancel_job(&long).unwrap();
    wait_until("the worker saw the cancel", || {
        saw_cancel.load(Ordering::SeqCst)
    });
    assert!(worker.stop(), "graceful stop through PgBouncer");
    let job = chancy.get_job(&long).unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(flaky_runs.load(Ordering::SeqCst), 2);
    assert!(
        bouncer.connections("SERVERS") <= worker.connection_budget() as usize,
        "one server connection per client connection at most"
    );
}

/// Runs the built `chancy` with `args` through `url` (transaction pooling on).
fn cli(url: &str, prefix: &str, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args([
            "--database-url",
            url,
            "--prefix",
            prefix,
            "--transaction-pooling",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chancy {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Counts every claim of a job of `prefix` (a new non-null `claim_id`) in `<prefix>claims`.
fn count_claims(prefix: &str) {
    let jobs = format!("\"{prefix}jobs\"");
    let claims = format!("\"{prefix}claims\"");
    let func = format!("\"{prefix}count_claim\"");
    direct()
        .batch_execute(&format!(
            "CREATE TABLE {claims} (job uuid NOT NULL);
             CREATE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO {claims} VALUES (NEW.id); RETURN NULL; END $$;
             CREATE TRIGGER count_claim AFTER UPDATE ON {jobs} FOR EACH ROW
             WHEN (NEW.claim_id IS NOT NULL AND NEW.claim_id IS DISTINCT FROM OLD.claim_id)
             EXECUTE FUNCTION {func}();"
        ))
        .unwrap();
}

fn drop_claim_counter(prefix: &str) {
    let _ = direct().batch_execute(&format!(
        "DROP FUNCTION IF EXISTS \"{prefix}count_claim\"() CASCADE"
    ));
}

#[test]
fn transaction_pooling_drains_20000_jobs_exactly_once_with_two_worker_processes() {
    const JOBS: i64 = 20_000;
    let bouncer = Bouncer::start("transaction", 4);
    let url = bouncer.url();
    let prefix = Prefix::new();
    let p = prefix.0.as_str();
    // The CLI through transaction pooling: schema, queue, a job, the queue list.
    cli(&url, p, &["migrate"]);
    cli(
        &url,
        p,
        &[
            "queue",
            "declare",
            "bulk",
            "--concurrency",
            "16",
            "--eager-polling",
        ],
    );
    let listed = cli(&url, p, &["queue", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("bulk"));
    count_claims(p);
    // The producer API through transaction pooling: 20,000 jobs (COPY) and a unique key.
    let chancy = Chancy::builder(url.clone())
        .prefix(p)
        .transaction_pooling(true)
        .connection_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let jobs: Vec<Job> = (0..JOBS - 1)
        .map(|i| {
            Job::new("chancy.builtin.noop")
                .queue("bulk")
                .kwargs(serde_json::json!({ "n": i }))
        })
        .collect();
    assert_eq!(chancy.push_many(&jobs).unwrap().len(), jobs.len());
    let keyed = Job::new("chancy.builtin.noop")
        .queue("bulk")
        .unique_key("k");
    let one = chancy.push(&keyed).unwrap();
    assert_eq!(
        chancy.push(&keyed).unwrap(),
        one,
        "unique key through the proxy"
    );
    let pushed = cli(
        &url,
        p,
        &[
            "job",
            "push",
            "chancy.builtin.echo",
            "--queue",
            "bulk",
            "--kwargs",
            "{\"via\": \"cli\"}",
        ],
    );
    let cli_id = String::from_utf8_lossy(&pushed.stdout).trim().to_string();

    let workers: Vec<Child> = ["pgb-a", "pgb-b"]
        .iter()
        .map(|id| {
            Command::new(BIN)
                .args([
                    "--database-url",
                    &url,
                    "--prefix",
                    p,
                    "--transaction-pooling",
                ])
                .args([
                    "worker",
                    "start",
                    "--worker-id",
                    id,
                    "--shutdown-timeout",
                    "10",
                ])
                .args([
                    "--heartbeat-poll-interval",
                    "1",
                    "--heartbeat-timeout",
                    "10",
                ])
                .args(["--leadership-poll-interval", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut db = direct();
    let count_sql =
        format!("SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FROM \"{p}jobs\"");
    let mut last = (0, 0);
    let drained = wait::poll(Duration::from_secs(600), || {
        let row = db.query_one(count_sql.as_str(), &[]).unwrap();
        last = (row.get::<_, i64>(0), row.get::<_, i64>(1));
        (last.0 == last.1).then_some(last.1)
    });
    let Some(all) = drained else {
        panic!("only {} of {} jobs done", last.0, last.1);
    };
    assert_eq!(all, JOBS + 1);
    // While both run: the leader and the workers, through the proxy, with few servers.
    let listed = cli(&url, p, &["worker", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        listed.contains("pgb-a") && listed.contains("pgb-b"),
        "{listed}"
    );
    wait_until("one worker leads", || {
        direct()
            .query_one(format!("SELECT count(*) FROM \"{p}leader\"").as_str(), &[])
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
    });
    let (servers, clients) = (
        bouncer.connections("SERVERS"),
        bouncer.connections("CLIENTS"),
    );
    assert!(servers <= 4, "{servers} server connections");
    assert!(
        clients > servers,
        "{clients} client connections share {servers} server connections"
    );
    let got = cli(&url, p, &["job", "get", &cli_id]);
    assert!(String::from_utf8_lossy(&got.stdout).contains("succeeded"));

    for w in workers {
        // SAFETY: kill with a pid we spawned.
        unsafe { libc::kill(w.id() as i32, libc::SIGTERM) };
        let out = w.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "worker exit {:?}: {log}", out.status);
        assert!(
            !log.contains("prepared statement") && !log.contains("ERROR"),
            "{log}"
        );
    }
    let row = db
        .query_one(
            format!(
                "SELECT count(*), count(DISTINCT job), \
                 (SELECT count(DISTINCT taken_by) FROM \"{p}jobs\"), \
                 (SELECT max(attempts) FROM \"{p}jobs\"), \
                 (SELECT count(*) FROM \"{p}jobs\" WHERE errors <> '[]'::jsonb) \
                 FROM \"{p}claims\""
            )
            .as_str(),
            &[],
        )
        .unwrap();
    let (claims, distinct, takers, max_attempts, with_errors): (i64, i64, i64, i32, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    drop_claim_counter(p);
    assert_eq!(
        (claims, distinct),
        (JOBS + 1, JOBS + 1),
        "each job claimed exactly once"
    );
    assert_eq!(takers, 2, "both worker processes claimed jobs");
    assert_eq!((max_attempts, with_errors), (1, 0));
    let meta: serde_json::Value = db
        .query_one(
            format!("SELECT meta FROM \"{p}jobs\" WHERE id = $1").as_str(),
            &[&uuid::Uuid::parse_str(&cli_id).unwrap()],
        )
        .unwrap()
        .get(0);
    assert_eq!(meta["echo"]["via"], "cli", "the echo job ran: {meta}");
}

/// The same claims, with and without the setting, after PgBouncer moved the client to
/// another server connection (`RECONNECT`, as `server_lifetime` does every hour): without it
/// the cached named statement is gone and the claim fails at once with PgBouncer's error; with
/// it the claim works.
#[test]
fn without_the_setting_transaction_pooling_fails_with_a_clear_error() {
    let bouncer = Bouncer::start("transaction", 2);
    let prefix = Prefix::new();
    let build = |pooling: bool| {
        Chancy::builder(bouncer.url())
            .prefix(prefix.0.clone())
            .no_default_plugins()
            .transaction_pooling(pooling)
            .connection_timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let setup = build(true);
    setup.migrate().unwrap();
    setup.declare(&Queue::new("q")).unwrap();
    for pooling in [true, false] {
        let chancy = build(pooling);
        let worker = Worker::builder(&chancy).build().unwrap();
        chancy
            .push_many(&vec![Job::new("t.x").queue("q"); 2])
            .unwrap();
        let mut conn = chancy.connection().unwrap();
        let first = worker.fetch_jobs(&Queue::new("q"), &mut conn, 1);
        bouncer.admin("RECONNECT");
        let second = worker.fetch_jobs(&Queue::new("q"), &mut conn, 1);
        if pooling {
            assert_eq!(first.unwrap().len(), 1);
            assert_eq!(second.unwrap().len(), 1, "claims after a server change");
        } else {
            let err = first
                .and(second)
                .expect_err("a cached statement on a new server");
            let text = err.to_string();
            assert!(
                text.contains("prepared statement") && text.contains("does not exist"),
                "{text}"
            );
        }
    }
}

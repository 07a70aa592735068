//! A private, throwaway PostgreSQL server for `chancy demo`, `chancy bench` and tests.
//!
//! [`TempPostgres::start`] finds the server binaries ([`PgBinaries::find`]), creates a cluster
//! in a fresh temporary directory (`initdb`, trust auth, superuser `postgres`), starts
//! `postgres` listening only on a Unix socket in that directory (`listen_addresses=''`, no
//! TCP) with settings for a throwaway (`fsync`, `synchronous_commit` and `full_page_writes`
//! off), and waits until it accepts connections. The library's normal path never uses this
//! module; chancy only starts a server when asked to.
//!
//! Nothing is left behind:
//! * **drop** (also while unwinding from a panic) stops the server (SIGQUIT: immediate
//!   shutdown), waits for it and removes the directory;
//! * **Ctrl-C / SIGTERM**: the crate's one process signal handler (shared with
//!   [`Worker`](crate::Worker)) stops every live private server, removes its directory and
//!   exits with code 130;
//! * **anything else** (SIGKILL, `std::process::exit`, a static that is never dropped): a
//!   watchdog (`/bin/sh`) holds the read end of a pipe whose only write end is in this process.
//!   When the process goes away, the pipe closes and the watchdog stops the server and removes
//!   the directory. The watchdog and the server run in their own process groups, so a Ctrl-C
//!   at the terminal reaches only this process.
//!
//! Running as root, `initdb` and `postgres` run as the unprivileged user `postgres` (which
//! must exist; the directory is handed to it), because PostgreSQL refuses to run as root.
//!
//! ```no_run
//! use chancy::pgtemp::TempPostgres;
//! use chancy::Chancy;
//!
//! let server = TempPostgres::start()?;
//! println!("PostgreSQL {} in {}", server.version(), server.dir().display());
//! let chancy = Chancy::builder(server.url()).build()?;
//! chancy.migrate()?;
//! drop(chancy);
//! drop(server); // stopped, directory removed
//! # Ok::<(), chancy::Error>(())
//! ```

use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use postgres::NoTls;

use crate::error::{Error, Result};
use crate::pool::encode_host;

/// How long [`TempPostgres::start`] waits for the new server to accept connections.
pub(crate) const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stop waits for the server to exit after SIGQUIT before it SIGKILLs the group.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The unprivileged account the server runs as when this process is root.
const SERVER_USER: &str = "postgres";

const INSTALL_ADVICE: &str = "install PostgreSQL (e.g. `apt-get install postgresql`, \
    `dnf install postgresql-server` or `brew install postgresql`), or point chancy at a \
    running server with --database-url / DATABASE_URL";

/// Stops the server when the process dies without running destructors. `$1` is the
/// directory; the process writes `pid <n>` once the server runs and `done` after a clean stop.
const WATCHDOG: &str = r#"pid=
while read -r cmd arg; do
  case "$cmd" in
    pid) pid="$arg" ;;
    done) exit 0 ;;
  esac
done
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
  [ "$state" != Z ]
}
if [ -n "$pid" ]; then
  kill -QUIT "$pid" 2>/dev/null
  n=0
  while alive "$pid" && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL -- "-$pid" 2>/dev/null
fi
rm -rf -- "$1"
"#;

/// The directory holding `initdb` and `postgres` of one PostgreSQL installation.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// `initdb` and `postgres` on `PATH`, else the newest `/usr/lib/postgresql/<version>/bin`
    /// (where Debian and Ubuntu install them, off `PATH`).
    ///
    /// ```no_run
    /// let bins = chancy::pgtemp::PgBinaries::find()?;
    /// println!("{}", bins.dir().display());
    /// # Ok::<(), chancy::Error>(())
    /// ```
    ///
    /// # Errors
    /// A configuration error saying how to install PostgreSQL when neither has them.
    pub fn find() -> Result<PgBinaries> {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        if let Some(dir) = on_path.into_iter().find(|d| has_server(d)) {
            return Ok(PgBinaries { dir });
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let major = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((major, e.path().join("bin")))
            })
            .filter(|(_, bin)| has_server(bin))
            .collect();
        versions.sort();
        match versions.pop() {
            Some((_, dir)) => Ok(PgBinaries { dir }),
            None => Err(Error::config(format!(
                "no PostgreSQL server binaries found (initdb and postgres, on PATH or in \
                 /usr/lib/postgresql/*/bin): {INSTALL_ADVICE}"
            ))),
        }
    }

    /// The binaries in `dir`.
    ///
    /// ```no_run
    /// let bins = chancy::pgtemp::PgBinaries::in_dir("/usr/lib/postgresql/15/bin")?;
    /// # Ok::<(), chancy::Error>(())
    /// ```
    ///
    /// # Errors
    /// A configuration error when `dir` lacks `initdb` or `postgres`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Result<PgBinaries> {
        let dir = dir.into();
        if has_server(&dir) {
            Ok(PgBinaries { dir })
        } else {
            Err(Error::config(format!(
                "{} has no initdb and postgres executables: {INSTALL_ADVICE}",
                dir.display()
            )))
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn has_server(dir: &Path) -> bool {
    ["initdb", "postgres"].iter().all(|name| {
        std::fs::metadata(dir.join(name))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Whether a PostgreSQL server answers at `url` within `timeout`: it accepted the
/// connection, or it replied with an error (e.g. a failed login). `false` when nothing
/// listens there, the URL is malformed or the wait ran out.
///
/// ```no_run
/// use std::time::Duration;
/// let up = chancy::pgtemp::answers("postgresql://postgres@localhost/postgres", Duration::from_secs(3));
/// ```
pub fn answers(url: &str, timeout: Duration) -> bool {
    let Ok(mut config) = postgres::Config::from_str(url) else {
        return false;
    };
    config.connect_timeout(timeout);
    match config.connect(NoTls) {
        Ok(_) => true,
        Err(e) => e.as_db_error().is_some(),
    }
}

/// A `postgresql://` URL for the server whose Unix socket is in `socket_dir` (the path is
/// percent-encoded into the host part, which both chancy and libpq accept).
///
/// ```
/// let url = chancy::pgtemp::socket_url(std::path::Path::new("/tmp/pg"), "postgres", "app");
/// assert_eq!(url, "postgresql://postgres@%2Ftmp%2Fpg/app");
/// ```
pub fn socket_url(socket_dir: &Path, user: &str, dbname: &str) -> String {
    format!("postgresql://{user}@{}/{dbname}", encode_host(socket_dir))
}

/// A running private PostgreSQL server; stopped and deleted on drop (also while unwinding).
/// See the
/// [module docs](self).
#[derive(Debug)]
pub struct TempPostgres {
    server: Arc<Server>,
    url: String,
    version: String,
    startup: Duration,
}

impl TempPostgres {
    /// Starts a private server with the binaries of [`PgBinaries::find`], waiting up to
    /// 30 s for it to accept connections.
    ///
    /// ```no_run
    /// let server = chancy::pgtemp::TempPostgres::start()?;
    /// println!("{}", server.url());
    /// # Ok::<(), chancy::Error>(())
    /// ```
    ///
    /// # Errors
    /// No binaries, root without a `postgres` user, `initdb` or the server failing (the
    /// message includes their output), or a timeout.
    pub fn start() -> Result<TempPostgres> {
        TempPostgres::start_with(&PgBinaries::find()?, DEFAULT_READY_TIMEOUT)
    }

    /// Starts a private server with `bins`, waiting up to `ready_timeout` for it to accept
    /// connections.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use chancy::pgtemp::{PgBinaries, TempPostgres};
    /// let bins = PgBinaries::in_dir("/usr/lib/postgresql/15/bin")?;
    /// let server = TempPostgres::start_with(&bins, Duration::from_secs(10))?;
    /// # Ok::<(), chancy::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`TempPostgres::start`].
    pub fn start_with(bins: &PgBinaries, ready_timeout: Duration) -> Result<TempPostgres> {
        let began = Instant::now();
        let owner = server_owner()?;
        let dir = make_dir(owner)?;
        // From here on the directory belongs to `server`: its drop removes it.
        let server = Arc::new(Server {
            dir: dir.clone(),
            bins: bins.clone(),
            owner,
            state: Mutex::new(State {
                postmaster: None,
                pid: 0,
                watchdog: spawn_watchdog(&dir),
                stopped: false,
            }),
        });
        register(&server);
        let version = init_cluster(bins, &dir, owner)?;
        server.launch()?;
        let url = socket_url(&dir, SERVER_USER, "postgres");
        server.wait_ready(&url, began + ready_timeout)?;
        Ok(TempPostgres {
            server,
            url,
            version,
            startup: began.elapsed(),
        })
    }

    /// The URL to connect with (Unix socket, user `postgres`, database `postgres`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory holding the cluster (`data/`), the socket and `postgres.log`.
    pub fn dir(&self) -> &Path {
        &self.server.dir
    }

    /// The server's major version, e.g. `"15"`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The process id of the postmaster (the latest one after a
    /// [`restart`](TempPostgres::restart)).
    pub fn pid(&self) -> u32 {
        self.server.lock().pid
    }

    /// Whether the server process is running (false between
    /// [`stop_server`](TempPostgres::stop_server) and
    /// [`start_server`](TempPostgres::start_server)).
    pub fn is_running(&self) -> bool {
        self.server.lock().postmaster.is_some()
    }

    /// Restarts the server on the same data directory and socket: a fast shutdown (every
    /// client connection is terminated, committed data is kept) followed by a start, like
    /// `pg_ctl restart -m fast`. Returns once it accepts connections again. Meant for fault
    /// tests: clients see their connections die and must reconnect.
    ///
    /// ```no_run
    /// let server = chancy::pgtemp::TempPostgres::start()?;
    /// let old = server.pid();
    /// server.restart()?;
    /// assert_ne!(server.pid(), old);
    /// # Ok::<(), chancy::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`start_server`](TempPostgres::start_server).
    pub fn restart(&self) -> Result<()> {
        self.stop_server();
        self.start_server()
    }

    /// Stops the server process with a fast shutdown (`pg_ctl stop -m fast`: clients are
    /// disconnected, committed data is kept) and waits for it to exit, keeping the data
    /// directory; connecting fails until [`start_server`](TempPostgres::start_server).
    /// Does nothing when it is not running.
    ///
    /// ```no_run
    /// let server = chancy::pgtemp::TempPostgres::start()?;
    /// server.stop_server();
    /// assert!(!chancy::pgtemp::answers(server.url(), std::time::Duration::from_secs(1)));
    /// server.start_server()?;
    /// # Ok::<(), chancy::Error>(())
    /// ```
    pub fn stop_server(&self) {
        let postmaster = {
            let mut state = self.server.lock();
            if let Some((_, stdin)) = state.watchdog.as_mut() {
                // Nothing for the watchdog to stop while the server is down.
                let _ = writeln!(stdin, "pid");
            }
            state.postmaster.take()
        };
        if let Some(mut child) = postmaster {
            stop_postmaster(&mut child, libc::SIGINT);
        }
    }

    /// Starts the server again on the same data directory and socket after
    /// [`stop_server`](TempPostgres::stop_server), waiting up to 30 s
    /// for it to accept connections. Does nothing when it is running.
    ///
    /// ```no_run
    /// let server = chancy::pgtemp::TempPostgres::start()?;
    /// server.stop_server();
    /// server.start_server()?;
    /// assert!(server.is_running());
    /// # Ok::<(), chancy::Error>(())
    /// ```
    ///
    /// # Errors
    /// When the server was removed ([`stop`](TempPostgres::stop) or the signal path), fails
    /// to start (the message has its log's last lines), or does not accept connections in
    /// time.
    pub fn start_server(&self) -> Result<()> {
        {
            let state = self.server.lock();
            if state.stopped {
                return Err(Error::unavailable(format!(
                    "the private PostgreSQL server in {} was removed",
                    self.server.dir.display()
                )));
            }
            if state.postmaster.is_some() {
                return Ok(());
            }
        }
        self.server.launch()?;
        self.server
            .wait_ready(&self.url, Instant::now() + DEFAULT_READY_TIMEOUT)
    }

    /// How long [`TempPostgres::start`] took, from creating the directory to the first
    /// accepted connection.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Stops the server and removes its directory now, reporting failures (drop does the
    /// same but can only log them).
    ///
    /// ```no_run
    /// chancy::pgtemp::TempPostgres::start()?.stop()?;
    /// # Ok::<(), chancy::Error>(())
    /// ```
    ///
    /// # Errors
    /// When the directory could not be removed.
    pub fn stop(self) -> Result<()> {
        self.server.shutdown()
    }
}

/// One private server for the whole process, started on the first call (later calls return
/// the same one, or the first call's error). It is never dropped: its watchdog stops it and
/// removes its directory when the process exits. Meant for test harnesses, which have no
/// global teardown.
///
/// ```no_run
/// let url = chancy::pgtemp::process_wide()?.url();
/// # Ok::<(), chancy::Error>(())
/// ```
///
/// # Errors
/// As [`TempPostgres::start`] (the same message on every call).
pub fn process_wide() -> Result<&'static TempPostgres> {
    static SHARED: OnceLock<std::result::Result<TempPostgres, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| TempPostgres::start().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::config(e.clone()))
}

/// Stops every live private server of this process and removes its directory; `true` when
/// there was one. Run by the process signal handler (registered with
/// `signals::on_signal_exit_if`), which then exits the process.
fn stop_all_on_signal() -> bool {
    let live: Vec<Arc<Server>> = servers()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for server in &live {
        if let Err(e) = server.shutdown() {
            log::warn!("{e}");
        }
    }
    if live.is_empty() {
        return false;
    }
    log::warn!("received a stop signal; stopped the private PostgreSQL server, exiting");
    true
}

fn servers() -> &'static Mutex<Vec<Weak<Server>>> {
    static SERVERS: Mutex<Vec<Weak<Server>>> = Mutex::new(Vec::new());
    &SERVERS
}

/// Registers `server` for the signal path and makes sure the process handler is installed.
fn register(server: &Arc<Server>) {
    let mut list = servers().lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|w| w.strong_count() > 0);
    list.push(Arc::downgrade(server));
    drop(list);
    // One hook for all servers; later calls return the first outcome.
    static HOOKED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let hooked = HOOKED.get_or_init(|| {
        crate::signals::on_signal_exit_if(stop_all_on_signal).map_err(|e| e.to_string())
    });
    if let Err(e) = hooked {
        // Another handler owns SIGINT: the watchdog still cleans up when the process dies.
        log::debug!("private PostgreSQL: {e}");
    }
}

#[derive(Debug)]
struct Server {
    dir: PathBuf,
    bins: PgBinaries,
    owner: Option<(u32, u32)>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    postmaster: Option<Child>,
    /// The latest postmaster's pid.
    pid: u32,
    watchdog: Option<(Child, ChildStdin)>,
    stopped: bool,
}

impl Server {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the postmaster (appending to `postgres.log`) and tells the watchdog its pid.
    fn launch(&self) -> Result<u32> {
        let (bins, owner) = (&self.bins, self.owner);
        let log_path = self.dir.join("postgres.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_error("creating", &log_path, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| io_error("opening", &log_path, e))?;
        let socket_dir = self.dir.to_string_lossy().into_owned();
        let mut cmd = Command::new(bins.dir.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-c", "listen_addresses="])
            .arg("-c")
            .arg(format!("unix_socket_directories={socket_dir}"))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        as_owner(&mut cmd, owner);
        let child = cmd
            .spawn()
            .map_err(|e| Error::unavailable(format!("could not run postgres: {e}")))?;
        let pid = child.id();
        let mut state = self.lock();
        state.postmaster = Some(child);
        state.pid = pid;
        if let Some((_, stdin)) = state.watchdog.as_mut() {
            let _ = writeln!(stdin, "pid {pid}");
        }
        Ok(pid)
    }

    fn wait_ready(&self, url: &str, deadline: Instant) -> Result<()> {
        let mut config = postgres::Config::from_str(url)
            .map_err(|e| Error::config(format!("invalid private server URL {url}: {e}")))?;
        config.connect_timeout(Duration::from_secs(1));
        loop {
            let exited = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                match state.postmaster.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => Some(status.to_string()),
                    _ => None,
                }
            };
            if let Some(status) = exited {
                return Err(Error::unavailable(format!(
                    "the private PostgreSQL server exited at startup ({status}): {}",
                    self.log_tail()
                )));
            }
            match config.connect(NoTls) {
                Ok(_) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    return Err(Error::timeout(format!(
                        "the private PostgreSQL server in {} did not accept connections in \
                         time ({e}): {}",
                        self.dir.display(),
                        self.log_tail()
                    )))
                }
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Idempotent: dismisses the watchdog, stops the server, removes the directory.
    fn shutdown(&self) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.stopped {
            return Ok(());
        }
        state.stopped = true;
        if let Some((mut watchdog, mut stdin)) = state.watchdog.take() {
            let _ = writeln!(stdin, "done");
            drop(stdin);
            let _ = watchdog.wait();
        }
        if let Some(mut postmaster) = state.postmaster.take() {
            stop_postmaster(&mut postmaster, libc::SIGQUIT);
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing", &self.dir, e)),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::warn!("{e}");
        }
    }
}

/// `signal` (SIGQUIT: immediate shutdown; SIGINT: fast shutdown — either way the postmaster
/// stops its children, then exits), then SIGKILL to the whole process group if it takes
/// longer than [`STOP_TIMEOUT`].
fn stop_postmaster(child: &mut Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
    unsafe { libc::kill(pid, signal) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: the postmaster leads its own process group (pgid == pid) and is not reaped.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.wait();
}

/// `(uid, gid)` to run the server as: `None` unless this process is root.
fn server_owner() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    lookup_user(SERVER_USER).map(Some).ok_or_else(|| {
        Error::config(format!(
            "PostgreSQL refuses to run as root and there is no unprivileged user \
             {SERVER_USER:?} to run a private server as: create one (e.g. `useradd --system \
             {SERVER_USER}`), run as a normal user, or pass --database-url / set DATABASE_URL"
        ))
    })
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data, filled in by getpwnam_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call and buf.len() is its size.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points into buf, which is still alive.
    let found = unsafe { CStr::from_ptr(pwd.pw_name) };
    (found.to_bytes() == name.as_bytes()).then_some((pwd.pw_uid, pwd.pw_gid))
}

fn as_owner(cmd: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid).env("USER", SERVER_USER);
    }
}

/// A fresh `chancy-pg-<random>` directory in the temp dir, mode 0700, owned by `owner`.
fn make_dir(owner: Option<(u32, u32)>) -> Result<PathBuf> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("chancy-pg-{}", &id[..12]));
    std::fs::create_dir(&dir).map_err(|e| io_error("creating", &dir, e))?;
    let setup = || -> std::io::Result<()> {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        Ok(())
    };
    setup().map_err(|e| {
        let _ = std::fs::remove_dir(&dir);
        io_error("preparing", &dir, e)
    })?;
    Ok(dir)
}

/// The watchdog, in its own process group, reading a pipe whose write end (close-on-exec)
/// only this process holds. `None` (logged) when `/bin/sh` cannot run: drop and the signal
/// handler still clean up.
fn spawn_watchdog(dir: &Path) -> Option<(Child, ChildStdin)> {
    let spawned = Command::new("/bin/sh")
        .args(["-c", WATCHDOG, "chancy-pg-watchdog"])
        .arg(dir)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    match spawned {
        Ok(mut child) => child.stdin.take().map(|stdin| (child, stdin)),
        Err(e) => {
            log::warn!("private PostgreSQL: no watchdog (/bin/sh: {e})");
            None
        }
    }
}

/// `initdb` into `<dir>/data`; returns the major version.
fn init_cluster(bins: &PgBinaries, dir: &Path, owner: Option<(u32, u32)>) -> Result<String> {
    let data = dir.join("data");
    let mut cmd = Command::new(bins.dir.join("initdb"));
    cmd.arg("-D")
        .arg(&data)
        .args(["-U", SERVER_USER, "-A", "trust", "-E", "UTF8", "--locale=C"])
        .arg("--no-sync")
        .current_dir(dir)
        .stdin(Stdio::null());
    as_owner(&mut cmd, owner);
    let out = cmd
        .output()
        .map_err(|e| Error::unavailable(format!("could not run initdb: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::unavailable(format!(
            "initdb failed ({}): {}",
            out.status,
            stderr.trim().replace('\n', " | ")
        )));
    }
    let version_file = data.join("PG_VERSION");
    std::fs::read_to_string(&version_file)
        .map(|v| v.trim().to_string())
        .map_err(|e| io_error("reading", &version_file, e))
}

fn io_error(action: &str, path: &Path, err: std::io::Error) -> Error {
    Error::unavailable(format!(
        "private PostgreSQL: {action} {}: {err}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_url_percent_encodes_the_directory() {
        let url = socket_url(Path::new("/tmp/chancy-pg-1 a"), "postgres", "postgres");
        assert_eq!(
            url,
            "postgresql://postgres@%2Ftmp%2Fchancy-pg-1%20a/postgres"
        );
        let config = postgres::Config::from_str(&url).expect("parses");
        assert!(matches!(
            &config.get_hosts()[0],
            postgres::config::Host::Unix(p) if p == Path::new("/tmp/chancy-pg-1 a")
        ));
    }

    #[test]
    fn in_dir_rejects_a_directory_without_binaries() {
        let err = PgBinaries::in_dir("/").unwrap_err();
        assert!(err.is_config());
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }
}

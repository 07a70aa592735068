//! `chancy web`: the dashboard and JSON API on their own, and the pieces `worker start
//! --web` shares.

use clap::Args;

use crate::error::Result;
use crate::plugins::Cron;
use crate::web::{
    WebConfig, WebServer, DEFAULT_HOST, DEFAULT_PORT, ENV_PASSWORD, ENV_SECRET, ENV_USERNAME,
};
use crate::{Chancy, ChancyBuilder};

/// Arguments of `chancy web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Address to listen on (loopback by default; put TLS in front before exposing it).
    #[arg(long, default_value = DEFAULT_HOST)]
    pub host: String,
    /// Port to listen on (0 = any free port, printed at start).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// An origin allowed to call the API from its pages (CORS), e.g.
    /// `https://ops.example.com` (repeatable).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Login name [default: admin].
    #[arg(long, env = ENV_USERNAME)]
    pub username: Option<String>,
    /// Login password [default: a random one, printed at start].
    #[arg(long, env = ENV_PASSWORD, hide_env_values = true)]
    pub password: Option<String>,
    /// Secret that signs session tokens [default: random, so sessions end on restart].
    #[arg(long, env = ENV_SECRET, hide_env_values = true)]
    pub secret: Option<String>,
}

/// The server settings for these flags.
pub(crate) fn config(
    host: &str,
    port: u16,
    origins: &[String],
    username: Option<String>,
    password: Option<String>,
    secret: Option<String>,
) -> WebConfig {
    let mut config = WebConfig::new().host(host).port(port);
    for o in origins {
        config = config.allow_origin(o.clone());
    }
    if let Some(u) = username.filter(|u| !u.is_empty()) {
        config = config.username(u);
    }
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        config = config.password(p);
    }
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        config = config.secret(s);
    }
    config
}

/// Starts the server and prints where it listens and, when generated, the password.
pub(crate) fn start(chancy: &Chancy, config: WebConfig) -> Result<WebServer> {
    let server = WebServer::start(chancy, config)?;
    outln!("dashboard: {}", server.url());
    match server.generated_password() {
        Some(pw) => outln!(
            "login: {} / {pw} (generated; set --password or {ENV_PASSWORD} to choose one)",
            server.username()
        ),
        None => outln!("login: {} (password as configured)", server.username()),
    }
    Ok(server)
}

/// The application `chancy web` serves: the default plugins, plus [`Cron`] when its tables
/// exist for the prefix (so `/api/v1/configuration` lists `Cron` and upstream's UI shows
/// its Scheduled Jobs page, as it does for a Python app configured with the plugin).
pub(super) fn app(builder: impl Fn() -> ChancyBuilder) -> Result<Chancy> {
    let chancy = builder().build()?;
    let cron = chancy
        .migration_status(&[crate::plugins::CRON_MIGRATIONS.key()])
        .map(|s| s.iter().any(|s| s.current > 0))
        .unwrap_or(false);
    if !cron {
        return Ok(chancy);
    }
    drop(chancy);
    builder().plugin(Cron::new()).build()
}

/// `chancy web`: serves until Ctrl-C or SIGTERM.
pub(super) fn run(chancy: &Chancy, a: &WebArgs) -> Result<i32> {
    let config = config(
        &a.host,
        a.port,
        &a.allow_origins,
        a.username.clone(),
        a.password.clone(),
        a.secret.clone(),
    );
    let server = std::sync::Arc::new(start(chancy, config)?);
    // The first SIGINT/SIGTERM stops the server gracefully (exit 0); a second one exits.
    let stopping = std::sync::Arc::clone(&server);
    crate::signals::on_stop(move || stopping.stop())?;
    server.join();
    Ok(0)
}

/// The server of `worker start --web`, configured from the environment for the
/// credentials.
pub(crate) fn for_worker(chancy: &Chancy, host: &str, port: u16) -> Result<WebServer> {
    let env = |name: &str| std::env::var(name).ok();
    start(
        chancy,
        config(
            host,
            port,
            &[],
            env(ENV_USERNAME),
            env(ENV_PASSWORD),
            env(ENV_SECRET),
        ),
    )
}

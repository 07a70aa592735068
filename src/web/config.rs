//! [`WebConfig`]: where the server listens, who may log in, and its limits.

use std::time::Duration;

/// Default listening address: loopback only.
pub(crate) const DEFAULT_HOST: &str = "127.0.0.1";
/// Default port (upstream's).
pub(crate) const DEFAULT_PORT: u16 = 8000;
/// Username when none is configured.
pub(crate) const DEFAULT_USERNAME: &str = "admin";
/// Handler threads running requests that read the database.
pub(crate) const DEFAULT_HANDLER_THREADS: usize = 4;
/// Open connections served at once; more are answered 503 and closed at once.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Largest request body (1 MiB); a larger declared or sent body is answered 413.
pub(crate) const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Time a client has to send the whole request head (line and headers) after connecting.
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send the whole request body once its head arrived.
pub(crate) const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a request may take from its head to the last byte of the reply (body, handler
/// and writing the reply to a slow reader included).
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Requests that may wait per handler thread when all are busy; more are answered 503.
pub(crate) const HANDLER_QUEUE_PER_THREAD: usize = 16;
/// Websocket clients of `/api/v1/ws` served at once.
pub(crate) const DEFAULT_MAX_WEBSOCKETS: usize = 32;
/// How long a session token is valid (upstream: 7 days).
pub(crate) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Failed logins allowed per client within [`DEFAULT_LOGIN_WINDOW`] before 429.
pub(crate) const DEFAULT_LOGIN_ATTEMPTS: u32 = 5;
/// The window over which failed logins are counted.
pub(crate) const DEFAULT_LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Environment variable read by `chancy web` for the username.
pub const ENV_USERNAME: &str = "CHANCY_WEB_USERNAME";
/// Environment variable read by `chancy web` for the password.
pub const ENV_PASSWORD: &str = "CHANCY_WEB_PASSWORD";
/// Environment variable read by `chancy web` for the token-signing secret.
pub const ENV_SECRET: &str = "CHANCY_WEB_SECRET";
/// Name of the session cookie set by `POST /api/v1/login`.
pub(crate) const SESSION_COOKIE: &str = "chancy_session";

/// Settings of a [`WebServer`](super::WebServer): a consuming builder.
///
/// ```
/// use std::time::Duration;
/// use chancy::web::WebConfig;
/// let config = WebConfig::new()
///     .host("127.0.0.1")
///     .port(0) // any free port
///     .allow_origin("https://ops.example.com")
///     .username("ops")
///     .password("correct horse battery staple")
///     .token_lifetime(Duration::from_secs(3600));
/// assert_eq!(config.get_port(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) allow_origins: Vec<String>,
    pub(crate) username: String,
    pub(crate) password: Option<String>,
    pub(crate) secret: Option<Vec<u8>>,
    pub(crate) threads: usize,
    pub(crate) token_lifetime: Duration,
    pub(crate) login_attempts: u32,
    pub(crate) login_window: Duration,
    pub(crate) max_connections: usize,
    pub(crate) body_limit: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_websockets: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            allow_origins: Vec::new(),
            username: DEFAULT_USERNAME.to_string(),
            password: None,
            secret: None,
            threads: DEFAULT_HANDLER_THREADS,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            login_attempts: DEFAULT_LOGIN_ATTEMPTS,
            login_window: DEFAULT_LOGIN_WINDOW,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            body_limit: DEFAULT_BODY_LIMIT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_websockets: DEFAULT_MAX_WEBSOCKETS,
        }
    }
}

impl WebConfig {
    /// The defaults: `127.0.0.1:8000`, user `admin`, a random password and secret.
    pub fn new() -> WebConfig {
        WebConfig::default()
    }

    /// The address to bind (default `127.0.0.1`, loopback only). Put a TLS-terminating
    /// proxy in front before binding a public address.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The port (default 8000, upstream's); `0` picks a free one (see
    /// [`WebServer::local_addr`](super::WebServer::local_addr)).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Adds an origin (e.g. `https://ops.example.com`) allowed to call the API from a
    /// browser page it serves (CORS). None by default: same-origin only.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.allow_origins.push(origin.into());
        self
    }

    /// The login name (default `admin`).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = username.into();
        self
    }

    /// The password. Without one, a random password is generated at start (read it with
    /// [`WebServer::generated_password`](super::WebServer::generated_password)).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The secret that signs session tokens. Without one, a random secret is generated at
    /// start, so tokens do not survive a restart; set one to keep sessions across restarts
    /// or to share them between several servers.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Handler threads (default 4, at least 1): the requests that
    /// read the database run on these. Clients never hold them while sending: a request
    /// reaches a handler only once its whole body has arrived. When every thread is busy
    /// and 16 requests per thread
    /// wait, further ones are answered 503.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// How long a token from login stays valid (default 7 days, as upstream).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Failed logins allowed per client address within `window` before the server answers
    /// 429 (default 5 per 60 s; `attempts` at least 1).
    pub fn login_rate_limit(mut self, attempts: u32, window: Duration) -> Self {
        self.login_attempts = attempts.max(1);
        self.login_window = window;
        self
    }

    /// Open connections served at once (default 256, at least 1). A connection over the
    /// limit takes the slot of the oldest connection still waiting for its request head
    /// (closed unanswered), so idle clients cannot keep a probe from `/health`; when every
    /// connection is past its head it is answered 503 and closed without being read.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Largest request body in bytes (default 1 MiB). A larger
    /// `Content-Length` is answered 413 before any byte of the body is read, and a chunked
    /// body is cut off with 413 as soon as it passes the limit; the connection is closed.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Time allowed to send the request head after connecting (default
    /// 10 s); a client that has not sent it by then is disconnected.
    /// Connections are not kept alive between requests, so this is also the idle timeout.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Time allowed to send the whole body (default 30 s); then 408.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Longest time from the request head to the end of the reply (default
    /// 120 s); past it the connection is closed.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Websocket clients served at once on `/api/v1/ws` (default
    /// 32); one more is answered 503.
    pub fn max_websockets(mut self, clients: usize) -> Self {
        self.max_websockets = clients;
        self
    }

    /// The configured port.
    pub fn get_port(&self) -> u16 {
        self.port
    }
}

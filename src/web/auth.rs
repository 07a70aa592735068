//! Authentication: password check, signed session tokens and the login rate limit.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(secret, "chancy.api.token." +
//! base64url(payload)))` with payload `{"u": username, "exp": unix seconds}`. Verification
//! recomputes the MAC and compares in constant time (`Mac::verify_slice`) before reading
//! the payload. Credentials are compared the same way: both sides are MACed under the
//! secret first, so the comparison takes the same time whatever the lengths.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

const TOKEN_SALT: &[u8] = b"chancy.api.token.";
const CREDENTIAL_SALT: &[u8] = b"chancy.api.credential.";
/// Clients tracked by the rate limiter before stale entries are swept.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Who may log in and how sessions are signed.
pub(crate) struct Auth {
    username: String,
    password: String,
    secret: Vec<u8>,
    lifetime: Duration,
    limiter: LoginLimiter,
}

impl Auth {
    pub fn new(
        username: String,
        password: String,
        secret: Vec<u8>,
        lifetime: Duration,
        limiter: LoginLimiter,
    ) -> Auth {
        Auth {
            username,
            password,
            secret,
            lifetime,
            limiter,
        }
    }

    /// The login rate limiter.
    pub fn limiter(&self) -> &LoginLimiter {
        &self.limiter
    }

    /// How long tokens last.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Whether `username`/`password` are the configured ones (constant time).
    pub fn check_credentials(&self, username: &str, password: &str) -> bool {
        let user_ok = self.same(username, &self.username);
        let pass_ok = self.same(password, &self.password);
        user_ok & pass_ok
    }

    fn same(&self, given: &str, expected: &str) -> bool {
        let expected_mac = self.mac(CREDENTIAL_SALT, expected.as_bytes());
        let mut mac = self.hmac();
        mac.update(CREDENTIAL_SALT);
        mac.update(given.as_bytes());
        mac.verify_slice(&expected_mac).is_ok()
    }

    /// A fresh token for the configured user.
    pub fn issue(&self) -> String {
        let exp = unix_now().saturating_add(self.lifetime.as_secs());
        let payload = json!({ "u": self.username, "exp": exp }).to_string();
        let encoded = URL_SAFE_NO_PAD.encode(payload.as_bytes());
        let sig = self.mac(TOKEN_SALT, encoded.as_bytes());
        format!("{encoded}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// The user a valid, unexpired token names.
    pub fn verify(&self, token: &str) -> Option<String> {
        let (encoded, sig) = token.trim().split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut mac = self.hmac();
        mac.update(TOKEN_SALT);
        mac.update(encoded.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?;
        let exp = payload.get("exp")?.as_u64()?;
        if exp <= unix_now() {
            return None;
        }
        let user = payload.get("u")?.as_str()?;
        (user == self.username).then(|| user.to_string())
    }

    fn hmac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.secret).expect("HMAC accepts any key length")
    }

    fn mac(&self, salt: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac = self.hmac();
        mac.update(salt);
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
}

/// Counts failed logins per client address over a sliding window.
pub(crate) struct LoginLimiter {
    attempts: u32,
    window: Duration,
    failures: Mutex<HashMap<Option<IpAddr>, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new(attempts: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            attempts: attempts.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` when `client` has used up its failures for now.
    pub fn blocked(&self, client: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock();
        let list = map.get_mut(&client)?;
        self.expire(list, now);
        if list.len() < self.attempts as usize {
            return None;
        }
        let oldest = *list.front()?;
        Some(self.window.saturating_sub(now.duration_since(oldest)))
    }

    /// Records a failed login of `client`.
    pub fn failed(&self, client: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock();
        if map.len() >= MAX_TRACKED_CLIENTS {
            map.retain(|_, list| {
                list.back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        let list = map.entry(client).or_default();
        self.expire(list, now);
        list.push_back(now);
    }

    /// Forgets the failures of `client` (after a successful login).
    pub fn succeeded(&self, client: Option<IpAddr>) {
        self.failures.lock().remove(&client);
    }

    fn expire(&self, list: &mut VecDeque<Instant>, now: Instant) {
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            list.pop_front();
        }
    }
}

/// `n` random bytes from the operating system.
pub(crate) fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf)
        .map_err(|e| Error::config(format!("cannot read random bytes for the web secret: {e}")))?;
    Ok(buf)
}

/// A random password of 24 URL-safe characters.
pub(crate) fn random_password() -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes(18)?))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(lifetime: Duration) -> Auth {
        Auth::new(
            "admin".into(),
            "pw".into(),
            b"secret".to_vec(),
            lifetime,
            LoginLimiter::new(2, Duration::from_secs(60)),
        )
    }

    #[test]
    fn issued_tokens_verify_and_tampered_ones_do_not() {
        let a = auth(Duration::from_secs(60));
        let token = a.issue();
        assert_eq!(a.verify(&token).as_deref(), Some("admin"));
        let (payload, sig) = token.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"u":"admin","exp":99999999999}"#);
        assert_eq!(a.verify(&format!("{forged}.{sig}")), None);
        assert_eq!(a.verify(&format!("{payload}.AAAA")), None);
        assert_eq!(a.verify("garbage"), None);
        let other = Auth::new(
            "admin".into(),
            "pw".into(),
            b"other".to_vec(),
            Duration::from_secs(60),
            LoginLimiter::new(2, Duration::from_secs(60)),
        );
        assert_eq!(other.verify(&token), None);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let a = auth(Duration::ZERO);
        assert_eq!(a.verify(&a.issue()), None);
    }

    #[test]
    fn credentials_must_both_match() {
        let a = auth(Duration::from_secs(60));
        assert!(a.check_credentials("admin", "pw"));
        assert!(!a.check_credentials("admin", "pw2"));
        assert!(!a.check_credentials("root", "pw"));
        assert!(!a.check_credentials("", ""));
    }

    #[test]
    fn the_limiter_blocks_after_the_allowed_failures() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        assert!(l.blocked(ip).is_none());
        l.failed(ip);
        assert!(l.blocked(ip).is_none());
        l.failed(ip);
        let wait = l.blocked(ip).expect("blocked");
        assert!(wait <= Duration::from_secs(60));
        assert!(l.blocked(Some("10.0.0.2".parse().unwrap())).is_none());
        l.succeeded(ip);
        assert!(l.blocked(ip).is_none());
    }
}

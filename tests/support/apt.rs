//! Debian packages a test needs (Chromium, PgBouncer, faketime): installed by the test when
//! it runs as root on a machine with apt, like `.ci/run` on a fresh box; otherwise the test
//! fails afterwards with install instructions (it never skips).

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Installs Debian `package` with apt when `present()` is false and we may (root, apt-get
/// exists). One install at a time per test binary. The caller checks `present()` again and
/// fails with its own instructions when it is still missing.
pub fn provision(package: &str, present: impl Fn() -> bool) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if present() || !is_root() || !Path::new("/usr/bin/apt-get").exists() {
        return;
    }
    eprintln!("installing Debian's {package} (apt-get install {package})");
    let _ = Command::new("sh")
        .args([
            "-c",
            &format!("apt-get update -qq && apt-get install -y -qq {package} >/dev/null"),
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
}

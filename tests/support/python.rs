//! Python virtualenvs under `target/` for the tests that run real Python (Chancy 0.26.0 from
//! PyPI for interop and the upstream UI, `prometheus_client` for the metrics parser).

use std::path::PathBuf;
use std::process::Command;

/// The `python` of the venv `target/<name>` in which `check` (a `python -c` snippet) passes;
/// on first use the venv is created and `requirement` installed with pip. Fails (never
/// skips) saying what is needed. One setup at a time per process.
pub fn venv_python(name: &str, check: &str, requirement: &str) -> PathBuf {
    static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name);
    let python = venv.join("bin/python");
    let ready = || {
        python.exists()
            && Command::new(&python)
                .args(["-c", check])
                .status()
                .is_ok_and(|s| s.success())
    };
    if ready() {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "python3 -m venv failed: Python 3.11+ with the venv module is needed"
    );
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", requirement])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "pip install {requirement} failed: PyPI must be reachable"
    );
    python
}

/// Python Chancy 0.26.0 (with cron) in `target/py026`.
pub fn chancy_026() -> PathBuf {
    venv_python(
        "py026",
        "import chancy, importlib.metadata as m; assert m.version('chancy') == '0.26.0'",
        "chancy[cron]==0.26.0",
    )
}

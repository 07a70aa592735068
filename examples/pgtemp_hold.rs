//! Starts a private PostgreSQL server (see `chancy::pgtemp`), prints
//! `ready <pid> <url> <dir>` and waits for a signal. The tests send it SIGINT or SIGKILL and
//! check that neither the server nor its directory outlives it.
//!
//! ```sh
//! cargo run --example pgtemp_hold     # then Ctrl-C
//! ```

use std::io::Write;
use std::time::Duration;

fn main() {
    let server = match chancy::pgtemp::TempPostgres::start() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "ready {} {} {} {:.3}",
        server.pid(),
        server.url(),
        server.dir().display(),
        server.startup_time().as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

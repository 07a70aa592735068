//! `Error::kind()` and `Error::db_code()`: what a caller can branch on.

use chancy::{Chancy, ErrorKind, Job};

use crate::common::{database_url, TestApp};

#[test]
fn a_server_error_carries_its_kind_and_sqlstate() {
    let app = TestApp::unmigrated(|b| b);
    let err = app.chancy.push(&Job::new("t.noop")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MigrationsNeeded, "{err}");
    assert!(err.is_migrations_needed());
    assert_eq!(err.db_code(), Some("42P01"), "undefined_table: {err}");
}

#[test]
fn errors_raised_before_the_server_have_no_sqlstate() {
    let err = Chancy::builder(database_url())
        .prefix("no spaces allowed")
        .build()
        .unwrap_err();
    assert_eq!((err.kind(), err.db_code()), (ErrorKind::Config, None));

    let app = TestApp::new();
    let err = app
        .chancy
        .push(&Job::new("t.noop").max_attempts(0))
        .unwrap_err();
    assert_eq!((err.kind(), err.db_code()), (ErrorKind::InvalidInput, None));

    let unreachable = Chancy::builder("postgresql://postgres@127.0.0.1:1/postgres")
        .connection_timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    let err = unreachable.push(&Job::new("t.noop")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_transient());
}

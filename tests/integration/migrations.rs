//! Migrations: bookkeeping, up/down, prefixes, and schema equality with Python 0.26.0.

use std::process::Command;

use chancy::{migrate, Chancy};

use crate::common::{client, TestApp, TestDatabase};

const REFERENCE_SCHEMA: &str = include_str!("../data/python-0.26.0-schema.sql");
const REFERENCE_VERSIONS: &str = include_str!("../data/python-0.26.0-schema-versions.txt");

fn versions(app: &TestApp) -> Vec<(String, i32)> {
    app.client()
        .query(
            &app.sql("SELECT version_of, version FROM {schema_version} ORDER BY 1"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn migrate_is_recorded_like_python_and_idempotent() {
    let app = TestApp::unmigrated(|b| b);
    assert!(!app.chancy.is_up_to_date().unwrap());
    assert!(app
        .chancy
        .ensure_migrated()
        .unwrap_err()
        .is_migrations_needed());
    assert!(app.chancy.migrate().unwrap());
    assert!(!app.chancy.migrate().unwrap(), "second run changes nothing");
    assert!(app.chancy.is_up_to_date().unwrap());
    assert_eq!(
        versions(&app),
        vec![
            ("chancy".into(), 8),
            ("chancy_rs".into(), 2),
            ("metrics".into(), 2),
            ("workflow".into(), 3)
        ]
    );
    let status = app.chancy.check_migrations().unwrap();
    assert!(status
        .iter()
        .all(|s| s.current == s.latest && s.is_up_to_date()));
    assert_eq!(status[0].steps.len(), 8);
}

#[test]
fn migrate_down_and_up_again() {
    let app = TestApp::unmigrated(|b| b.no_default_plugins());
    app.chancy.migrate().unwrap();
    assert_eq!(app.tables().len(), 6, "{:?}", app.tables());
    app.chancy.migrate_to(7).unwrap();
    let has_claim = |app: &TestApp| -> bool {
        let table = format!("{}jobs", app.prefix);
        app.client()
            .query_opt(
                "SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = 'claim_id'",
                &[&table],
            )
            .unwrap()
            .is_some()
    };
    assert!(!has_claim(&app));
    assert!(!app.chancy.is_up_to_date().unwrap());
    app.chancy.migrate_to(0).unwrap();
    assert_eq!(app.tables(), vec![format!("{}schema_version", app.prefix)]);
    app.chancy.migrate().unwrap();
    assert!(has_claim(&app));
    assert_eq!(
        versions(&app),
        vec![("chancy".into(), 8), ("chancy_rs".into(), 2)]
    );
}

#[test]
fn unknown_versions_and_keys_are_clear_errors() {
    let app = TestApp::new();
    let err = app.chancy.migrate_to(9).unwrap_err();
    assert!(
        err.is_migration() && err.to_string().contains("does not exist"),
        "{err}"
    );
    assert!(app
        .chancy
        .migrate_key("nope", None)
        .unwrap_err()
        .is_migration());
    app.client()
        .execute(
            &app.sql("UPDATE {schema_version} SET version = 9 WHERE version_of = 'chancy'"),
            &[],
        )
        .unwrap();
    assert!(
        app.chancy.is_up_to_date().unwrap(),
        "ahead counts as up to date, like Python"
    );
    let err = app.chancy.migrate().unwrap_err();
    assert!(err.to_string().contains("newer than this build"), "{err}");
}

#[test]
fn two_prefixes_live_side_by_side() {
    let a = TestApp::new();
    let b = TestApp::new();
    let constraint = |app: &TestApp| -> i64 {
        let name = format!("{}leader_worker_id_unique", app.prefix);
        client()
            .query_one(
                "SELECT count(*) FROM pg_constraint WHERE conname = $1",
                &[&name],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!((constraint(&a), constraint(&b)), (1, 1));
    let ra = a.chancy.push(&chancy::Job::new("f")).unwrap();
    assert!(b.chancy.get_job(&ra).unwrap().is_none());
}

#[test]
fn v7_renames_an_unprefixed_leader_constraint() {
    let app = TestApp::unmigrated(|b| b.no_default_plugins());
    app.chancy.migrate_to(6).unwrap();
    let leader = app.table("leader");
    let prefixed = format!("{}leader_worker_id_unique", app.prefix);
    app.client()
        .batch_execute(&format!(
            "ALTER TABLE {leader} RENAME CONSTRAINT \"{prefixed}\" TO leader_worker_id_unique"
        ))
        .unwrap();
    app.chancy.migrate().unwrap();
    let n: i64 = client()
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname = $1",
            &[&prefixed],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

fn dump_schema(db: &TestDatabase) -> String {
    let out = Command::new("pg_dump")
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--dbname",
            &db.url(),
        ])
        .output()
        .expect("pg_dump must be installed to compare schemas");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    normalize(&String::from_utf8(out.stdout).unwrap())
}

fn normalize(dump: &str) -> String {
    dump.lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .filter(|l| !l.starts_with("-- Dumped from") && !l.starts_with("-- Dumped by"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_rust_only_key_adds_exactly_the_fetch_order_index_and_the_fill_factor() {
    let db = TestDatabase::new();
    let chancy = migrate_everything(&db.url());
    let python = dump_schema(&db);
    chancy.migrate_key(migrate::RUST, None).unwrap();
    let ours = dump_schema(&db);
    let added: Vec<&str> = ours
        .lines()
        .filter(|l| !python.lines().any(|p| p == *l))
        .filter(|l| !l.trim().is_empty() && !l.starts_with("--"))
        .collect();
    assert_eq!(
        added,
        vec![
            // The jobs table's `);` becomes `)` + its storage parameter.
            ")",
            "WITH (fillfactor='50');",
            "CREATE INDEX chancy_jobs_fetch_order ON public.chancy_jobs USING btree (queue, priority DESC, id) WHERE ((state)::text = ANY ((ARRAY['pending'::character varying, 'retrying'::character varying])::text[]));"
        ]
    );
    chancy.migrate_key(migrate::RUST, Some(0)).unwrap();
    assert_eq!(
        dump_schema(&db),
        python,
        "down leaves Python's schema exactly"
    );
}

fn migrate_everything(url: &str) -> Chancy {
    let chancy = Chancy::builder(url).build().unwrap();
    // Python 0.26.0's keys: every shipped one but the Rust-only index.
    let python_keys = chancy::plugins::SHIPPED_MIGRATIONS
        .iter()
        .map(|m| m.key())
        .filter(|k| *k != migrate::RUST);
    for key in python_keys {
        chancy.migrate_key(key, None).unwrap();
    }
    chancy
}

#[test]
fn schema_matches_python_0_26_0_object_for_object() {
    let db = TestDatabase::new();
    migrate_everything(&db.url());
    let ours = dump_schema(&db);
    let reference = normalize(REFERENCE_SCHEMA);
    if ours != reference {
        let diff: Vec<String> = ours
            .lines()
            .zip(reference.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(10)
            .map(|(i, (a, b))| format!("line {}:\n  ours:   {a}\n  python: {b}", i + 1))
            .collect();
        panic!("schema differs from Python 0.26.0's:\n{}", diff.join("\n"));
    }
}

#[test]
fn schema_versions_match_python_and_python_databases_are_up_to_date() {
    let db = TestDatabase::new();
    let chancy = migrate_everything(&db.url());
    let mut c = postgres::Client::connect(&db.url(), postgres::NoTls).unwrap();
    let ours: Vec<String> = c
        .query(
            "SELECT version_of || ' ' || version FROM chancy_schema_version ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let python: Vec<&str> = REFERENCE_VERSIONS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(ours, python);
    drop(chancy);

    // A database built from Python's own DDL and bookkeeping rows is up to date for us.
    let py = TestDatabase::new();
    let mut pc = postgres::Client::connect(&py.url(), postgres::NoTls).unwrap();
    pc.batch_execute(&restorable(REFERENCE_SCHEMA)).unwrap();
    pc.batch_execute("SET search_path = public").unwrap();
    for line in &python {
        let (key, version) = line.split_once(' ').unwrap();
        pc.execute(
            "INSERT INTO chancy_schema_version (version_of, version) VALUES ($1, $2)",
            &[&key, &version.parse::<i32>().unwrap()],
        )
        .unwrap();
    }
    let chancy = Chancy::builder(py.url()).build().unwrap();
    assert!(chancy.is_up_to_date().unwrap());
    chancy.ensure_migrated().unwrap();
    let status = chancy.check_migrations().unwrap();
    let behind: Vec<&str> = status
        .iter()
        .filter(|s| !s.is_up_to_date())
        .map(|s| s.key.as_str())
        .collect();
    assert_eq!(
        behind,
        vec!["chancy_rs"],
        "only the optional Rust-only key is missing"
    );
    assert!(chancy.migrate().unwrap());
    assert!(!chancy.migrate().unwrap());
}

/// The reference dump minus psql meta-commands, runnable with batch_execute.
fn restorable(dump: &str) -> String {
    dump.lines()
        .filter(|l| !l.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Python's teardown (`migrate(to_version=0)`) drops the core tables and records 0 for the
/// keys it knows, but not for the Rust-only `chancy_rs`. Migrating again then creates the
/// fetch-order index and the fill factor again instead of trusting the stale record.
#[test]
fn after_a_core_teardown_that_left_chancy_rs_recorded_migrate_creates_its_objects_again() {
    let app = TestApp::unmigrated(|b| b);
    app.chancy.migrate().unwrap();
    // What Python's teardown leaves: the core gone, chancy_rs still recorded at 2.
    for key in ["workflow", "metrics", "chancy"] {
        app.chancy.migrate_key(key, Some(0)).unwrap();
    }
    assert!(versions(&app).contains(&("chancy_rs".into(), 2)));
    assert!(app.chancy.migrate().unwrap());
    assert!(versions(&app).contains(&("chancy_rs".into(), 2)));
    let row = app
        .client()
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL, \
                    (SELECT reloptions FROM pg_class WHERE oid = to_regclass($2))::text[]",
            &[&app.table("jobs_fetch_order"), &app.table("jobs")],
        )
        .unwrap();
    let (index, options): (bool, Option<Vec<String>>) = (row.get(0), row.get(1));
    assert!(index, "the fetch-order index is there again");
    assert_eq!(options, Some(vec!["fillfactor=50".to_string()]));
}

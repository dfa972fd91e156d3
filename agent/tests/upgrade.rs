//! Upgrades keep the outbox: this build opens an outbox written by schema
//! version 1 (the committed fixture, made by `examples/make_outbox_v1.rs`),
//! migrates it in place and keeps every event, its seq and its identity.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use agent::outbox::{Outbox, SCHEMA_VERSION};
use contract::config::OutboxConfig;
use contract::mqtt::SeqRange;
use contract::{EventBody, UtcMillis};
use testkit::temp_dir;

fn fixture_copy() -> (std::path::PathBuf, OutboxConfig) {
    let dir = temp_dir("upgrade");
    let path = dir.join("outbox.db");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/outbox_v1.db"),
        &path,
    )
    .unwrap();
    let cfg = OutboxConfig {
        path: path.display().to_string(),
        ..OutboxConfig::default()
    };
    (path, cfg)
}

fn user_version(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn an_outbox_of_schema_version_1_is_migrated_and_keeps_every_event() {
    let (path, cfg) = fixture_copy();
    assert_eq!(user_version(&path), 1, "the fixture is a version-1 outbox");

    let mut outbox = Outbox::open(&cfg, "site-v1", "kiosk-v1").unwrap();
    assert_eq!(user_version(&path), SCHEMA_VERSION);

    // Events 6..=25 are still there, in order, with their identity.
    let events = outbox.read_from(1, 100).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.identity.seq).collect();
    assert_eq!(seqs, (6..=25).collect::<Vec<_>>());
    assert!(events
        .iter()
        .all(|e| e.identity.site_id == "site-v1" && e.identity.kiosk_id == "kiosk-v1"));
    assert!(matches!(
        events[0].body,
        EventBody::Arrival(_) | EventBody::StatusChange(_)
    ));
    let stats = outbox.stats().unwrap();
    assert_eq!(
        (stats.backlog, stats.next_seq, stats.last_acked_seq),
        (20, 26, 5)
    );

    // The upgraded outbox goes on: new seqs continue, acks delete, and the
    // table version 2 added records drops.
    let appended = outbox
        .append(&[(UtcMillis::now(), events[0].body.clone())])
        .unwrap();
    assert_eq!(appended.seqs, vec![Some(26)]);
    assert_eq!(outbox.delete_acked(&[SeqRange::new(6, 26)]).unwrap(), 21);
    assert!(outbox.all_dropped_ranges().unwrap().is_empty());
    drop(outbox);

    // Opening it again is a no-op.
    let again = Outbox::open(&cfg, "site-v1", "kiosk-v1").unwrap();
    assert_eq!(again.stats().unwrap().next_seq, 27);
    assert_eq!(user_version(&path), SCHEMA_VERSION);
}

#[test]
fn a_version_1_outbox_is_still_refused_under_another_identity() {
    let (_path, cfg) = fixture_copy();
    assert!(Outbox::open(&cfg, "site-v1", "kiosk-other").is_err());
}

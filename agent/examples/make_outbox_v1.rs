//! Writes `agent/tests/fixtures/outbox_v1.db`: an outbox in schema version 1
//! (the first release: `events` and `meta`, no `drops` table), holding
//! events 6..=25 of kiosk `kiosk-v1` at site `site-v1` (1..=5 acknowledged).
//!
//! Version 2 only added the `drops` table, so a version-1 file is this
//! build's outbox with that table removed and the version set back to 1.
//! Run once; the file is committed and `agent/tests/upgrade.rs` opens it.
//!
//! ```text
//! cargo run -p agent --example make_outbox_v1
//! ```

use std::path::Path;

use agent::outbox::Outbox;
use agent::sim::Reception;
use anyhow::{Context, Result};
use contract::config::{OutboxConfig, SimulationConfig};
use contract::mqtt::SeqRange;
use contract::UtcMillis;

fn main() -> Result<()> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/outbox_v1.db");
    let _ = std::fs::remove_file(&out);
    let cfg = OutboxConfig {
        path: out.display().to_string(),
        ..OutboxConfig::default()
    };
    let start = UtcMillis::from_parts(2026, 12, 1, 8, 0, 0, 0);
    let mut sim = Reception::new(&SimulationConfig::default(), 42, start);
    let mut items = Vec::new();
    for _ in 0..25 {
        let (at, body) = sim.next_event().context("the simulation ended")?;
        items.push((at, body));
    }
    {
        let mut outbox = Outbox::open(&cfg, "site-v1", "kiosk-v1")?;
        outbox.append(&items)?;
        outbox.delete_acked(&[SeqRange::new(1, 5)])?;
    }
    let conn = rusqlite::Connection::open(&out)?;
    conn.execute_batch(
        "DROP TABLE drops; PRAGMA user_version = 1; PRAGMA journal_mode = DELETE; VACUUM;",
    )?;
    println!("wrote {}", out.display());
    Ok(())
}

//! `agent export`: unacknowledged events as JSON lines, for manual replay
//! after a long outage (`gateway import FILE` produces them to Kafka).
//!
//! Each line is exactly the Kafka record value of the contract
//! (`contract::record::to_json`), so identity (`site_id`, `kiosk_id`, `seq`,
//! `event_id`) travels with every event and the importer can check it.

use std::io::Write;
use std::time::Instant;

use crate::outbox::{ExportError, Outbox};

/// Write every stored event to `out`, oldest first, logging progress about
/// once a second. Returns the number of events written.
pub fn export(outbox: &Outbox, out: &mut impl Write) -> Result<u64, ExportError> {
    let total = outbox.backlog().get();
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut written = 0u64;
    let n = outbox.for_each_stored(10_000, |event| {
        out.write_all(&contract::record::to_json(event))?;
        out.write_all(b"\n")?;
        written += 1;
        if last_report.elapsed().as_secs() >= 1 {
            last_report = Instant::now();
            log::info!(
                "export: {written} of {total} events ({:.0}%)",
                100.0 * written as f64 / total.max(1) as f64
            );
        }
        Ok(())
    })?;
    out.flush()?;
    log::info!(
        "exported {n} unacknowledged events in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(n)
}

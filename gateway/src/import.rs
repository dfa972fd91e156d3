//! `gateway import FILE`: produce an `agent export` file (JSON lines, one
//! contract record per line) to Kafka with the events' original identity.
//!
//! Every line is parsed and validated with the contract; a malformed line
//! is refused with its line number and the rest still go. The events are
//! produced exactly like the bridge does (same key, headers, idempotent
//! producer, acks=all), so the processor removes any duplicates.

use std::io::BufRead;
use std::time::{Duration, Instant};

use contract::config::KafkaConfig;
use crossbeam_channel::unbounded;

use crate::kafka::{self, PreparedRecord, Token};
use crate::GatewayError;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Lines read.
    pub lines: u64,
    /// Events Kafka confirmed.
    pub sent: u64,
    /// Malformed lines, with their numbers and reasons (the first 100).
    pub refused: Vec<(u64, String)>,
    /// Malformed lines in all.
    pub refused_count: u64,
    /// Records Kafka did not confirm.
    pub failed: u64,
}

/// Produce every valid line of `input` to the events topic.
pub fn import(k: &KafkaConfig, input: impl BufRead) -> Result<ImportReport, GatewayError> {
    kafka::ensure_topics(k)?;
    let (tx, rx) = unbounded();
    let producer = kafka::reporting_producer(k, tx)?;
    let mut report = ImportReport::default();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut handed = 0u64;
    for (i, line) in input.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(|e| GatewayError::Io(format!("reading line {line_no}: {e}")))?;
        report.lines = line_no;
        if line.trim().is_empty() {
            continue;
        }
        match contract::record::from_json(line.as_bytes()) {
            Ok(event) => {
                let token = Token {
                    batch: 0,
                    attempt: 1,
                    sent_at: Instant::now(),
                };
                kafka::send_record(&producer, &PreparedRecord::event(&k.topic, &event), token)
                    .map_err(|e| GatewayError::Kafka(format!("line {line_no}: {e}")))?;
                handed += 1;
            }
            Err(e) => {
                report.refused_count += 1;
                if report.refused.len() < 100 {
                    log::error!("line {line_no} refused: {e}");
                    report.refused.push((line_no, e.to_string()));
                }
            }
        }
        for d in rx.try_iter() {
            tally(&mut report, d.error);
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            log::info!(
                "import: {} lines read, {} confirmed by Kafka, {} refused",
                report.lines,
                report.sent,
                report.refused_count
            );
        }
    }
    kafka::flush(
        &producer,
        Duration::from_millis(k.delivery_timeout_ms + 5000),
    )?;
    drop(producer);
    for d in rx.try_iter() {
        tally(&mut report, d.error);
    }
    if report.sent + report.failed != handed {
        return Err(GatewayError::Kafka(format!(
            "{} of {handed} records have no delivery report",
            handed - report.sent - report.failed
        )));
    }
    log::info!(
        "import done in {:.1}s: {} lines, {} sent, {} refused, {} failed",
        started.elapsed().as_secs_f64(),
        report.lines,
        report.sent,
        report.refused_count,
        report.failed
    );
    Ok(report)
}

fn tally(report: &mut ImportReport, error: Option<String>) {
    match error {
        None => report.sent += 1,
        Some(e) => {
            if report.failed == 0 {
                log::error!("kafka delivery failed: {e}");
            }
            report.failed += 1;
        }
    }
}

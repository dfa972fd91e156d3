//! Training data from the same simulation and the same queue-state and
//! feature code the processor uses: no second implementation anywhere.
//!
//! Several simulated departments (different seeds and loads) run for many
//! days; their event streams go through [`QueueBook`] exactly as Kafka
//! records would, [`features`] is taken at each arrival, and a row is
//! written when the patient is called in (`WITH_DOCTOR`) with the true wait.
//! Patients who leave have no wait and are not written.

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use agent::sim::Reception;
use contract::config::SimulationConfig;
use contract::{EventBody, Status, UtcMillis};

use crate::features::{features, Row, FEATURE_NAMES, FEATURE_VERSION};
use crate::queue::QueueBook;

/// Loads (mean arrivals per hour) cycled over the simulated departments.
pub const LOADS: [f64; 4] = [4.0, 4.5, 5.0, 5.5];

/// What a generation run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainingSummary {
    /// Rows written.
    pub rows: u64,
    /// Patients who left before being called (no row).
    pub left: u64,
    /// Events simulated.
    pub events: u64,
}

/// Simulate `departments` departments for `days` days each from `seed`,
/// writing `# feature_version=N`, a header, then CSV rows
/// `day,department,<features...>,wait_minutes` to `out`.
pub fn generate(
    days: u32,
    departments: u32,
    seed: u64,
    out: &mut impl Write,
) -> std::io::Result<TrainingSummary> {
    let start = UtcMillis::from_parts(2026, 1, 5, 0, 0, 0, 0); // a Monday
    let end = start.plus_ms(i64::from(days) * 86_400_000);
    writeln!(out, "# feature_version={FEATURE_VERSION}")?;
    writeln!(
        out,
        "day,department,{},wait_minutes",
        FEATURE_NAMES.join(",")
    )?;
    let mut summary = TrainingSummary::default();
    let started = Instant::now();
    for d in 0..departments {
        let cfg = SimulationConfig {
            arrivals_per_hour: LOADS[d as usize % LOADS.len()],
            ..SimulationConfig::default()
        };
        let rooms = [cfg.rooms_consultation, cfg.rooms_mri, cfg.rooms_ct];
        let site = format!("dept-{d}");
        let mut book = QueueBook::new(rooms);
        let mut reception = Reception::new(&cfg, seed.wrapping_mul(1000) + u64::from(d), start);
        let mut open: HashMap<String, (i64, UtcMillis, Row)> = HashMap::new();
        while let Some((at, body)) = reception.next_event() {
            if at >= end {
                break;
            }
            summary.events += 1;
            match &body {
                EventBody::Arrival(a) => {
                    let snapshot = book.arrive(&site, a);
                    let row = features(a, &snapshot);
                    let day = (at.0 - start.0) / 86_400_000;
                    open.insert(a.patient_id.clone(), (day, a.arrival_time, row));
                }
                EventBody::StatusChange(s) => {
                    book.status(&site, s);
                    match s.status {
                        Status::WithDoctor => {
                            if let Some((day, arrived, row)) = open.remove(&s.patient_id) {
                                let wait = s.changed_at.minutes_since(arrived);
                                write!(out, "{day},{d}")?;
                                for v in row {
                                    write!(out, ",{v}")?;
                                }
                                writeln!(out, ",{wait:.3}")?;
                                summary.rows += 1;
                            }
                        }
                        Status::Left => {
                            if open.remove(&s.patient_id).is_some() {
                                summary.left += 1;
                            }
                        }
                        Status::Completed => {}
                    }
                }
            }
        }
        log::info!(
            "training data: department {}/{departments} done, {} rows so far ({:.1}s)",
            d + 1,
            summary.rows,
            started.elapsed().as_secs_f64()
        );
    }
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_every_feature_and_a_plausible_wait() {
        let mut buf = Vec::new();
        let s = generate(3, 2, 1, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("# feature_version=1"));
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header.len(), FEATURE_NAMES.len() + 3);
        let rows: Vec<Vec<f64>> = lines
            .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
            .collect();
        assert_eq!(rows.len() as u64, s.rows);
        assert!(s.rows > 100, "{s:?}");
        assert!(rows.iter().all(|r| r.len() == header.len()));
        assert!(rows.iter().all(|r| (0.0..600.0).contains(&r[r.len() - 1])));
        // Same seed, same data.
        let mut again = Vec::new();
        generate(3, 2, 1, &mut again).unwrap();
        assert_eq!(text.as_bytes(), &again[..]);
    }
}

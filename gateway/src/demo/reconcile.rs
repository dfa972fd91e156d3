//! The demo's verdict: what each kiosk generated (from its own outbox's
//! sequence) against what the database holds (counted from the rows).

use std::fmt::Write as _;
use std::time::Duration;

use crate::store::KioskRows;

/// One kiosk's reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KioskLine {
    /// Kiosk id.
    pub kiosk_id: String,
    /// Events the kiosk generated: seqs 1..=generated.
    pub generated: u64,
    /// Rows stored (patients + status events).
    pub stored: u64,
    /// Rows beyond one per event.
    pub duplicates: u64,
    /// Generated seqs with no row.
    pub missing: u64,
    /// Rows with a seq the kiosk never generated.
    pub unexpected: bool,
}

/// The whole reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// Per kiosk, in the order given.
    pub kiosks: Vec<KioskLine>,
    /// How long the outage's backlog took to drain, if there was one.
    pub drained_in: Option<Duration>,
    /// Whether an outage happened and never drained.
    pub outage_undrained: bool,
}

impl Reconciliation {
    /// Compare `generated` (kiosk, events) with the database's `rows`.
    pub fn new(generated: &[(String, u64)], rows: &[KioskRows]) -> Reconciliation {
        let kiosks = generated
            .iter()
            .map(|(kiosk, n)| {
                let r = rows
                    .iter()
                    .find(|r| &r.kiosk_id == kiosk)
                    .cloned()
                    .unwrap_or_default();
                KioskLine {
                    kiosk_id: kiosk.clone(),
                    generated: *n,
                    stored: r.rows,
                    duplicates: r.rows.saturating_sub(r.distinct_events)
                        + r.distinct_events.saturating_sub(r.distinct_seqs),
                    missing: n.saturating_sub(r.distinct_seqs.min(*n)),
                    unexpected: r.max_seq > *n,
                }
            })
            .collect();
        Reconciliation {
            kiosks,
            drained_in: None,
            outage_undrained: false,
        }
    }

    /// Events generated in all.
    pub fn generated(&self) -> u64 {
        self.kiosks.iter().map(|k| k.generated).sum()
    }

    /// Rows stored in all.
    pub fn stored(&self) -> u64 {
        self.kiosks.iter().map(|k| k.stored).sum()
    }

    /// Duplicates in all.
    pub fn duplicates(&self) -> u64 {
        self.kiosks.iter().map(|k| k.duplicates).sum()
    }

    /// Missing in all.
    pub fn missing(&self) -> u64 {
        self.kiosks.iter().map(|k| k.missing).sum()
    }

    /// Every event stored exactly once, and nothing else.
    pub fn is_exact(&self) -> bool {
        self.kiosks
            .iter()
            .all(|k| k.duplicates == 0 && k.missing == 0 && !k.unexpected)
    }

    /// The printed report.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "reconciliation (counted from the database rows):");
        let _ = writeln!(
            o,
            "{:<24} {:>10} {:>10} {:>10} {:>8}",
            "kiosk", "generated", "stored", "duplicate", "missing"
        );
        for k in &self.kiosks {
            let _ = writeln!(
                o,
                "{:<24} {:>10} {:>10} {:>10} {:>8}{}",
                k.kiosk_id,
                k.generated,
                k.stored,
                k.duplicates,
                k.missing,
                if k.unexpected {
                    "  rows with seqs the kiosk never generated"
                } else {
                    ""
                }
            );
        }
        let _ = writeln!(
            o,
            "{:<24} {:>10} {:>10} {:>10} {:>8}",
            "total",
            self.generated(),
            self.stored(),
            self.duplicates(),
            self.missing()
        );
        match (self.drained_in, self.outage_undrained) {
            (Some(d), _) => {
                let _ = writeln!(
                    o,
                    "outage: the kiosks' backlog drained {:.1}s after the link returned",
                    d.as_secs_f64()
                );
            }
            (None, true) => {
                let _ = writeln!(o, "outage: the backlog did not drain");
            }
            (None, false) => {}
        }
        let _ = writeln!(
            o,
            "{}",
            if self.is_exact() {
                "OK: every check-in is in the database exactly once"
            } else {
                "FAILED: check-ins are missing or doubled"
            }
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(kiosk: &str, rows: u64, distinct: u64, max_seq: u64) -> KioskRows {
        KioskRows {
            kiosk_id: kiosk.into(),
            rows,
            distinct_events: distinct,
            distinct_seqs: distinct,
            max_seq,
        }
    }

    #[test]
    fn exact_when_every_seq_has_one_row() {
        let r = Reconciliation::new(
            &[("a".into(), 10), ("b".into(), 0)],
            &[rows("a", 10, 10, 10)],
        );
        assert!(r.is_exact());
        assert_eq!((r.generated(), r.stored(), r.missing()), (10, 10, 0));
        assert!(r.render().contains("OK: every check-in"));
    }

    #[test]
    fn counts_missing_doubled_and_foreign_rows() {
        let r = Reconciliation::new(
            &[("a".into(), 10), ("b".into(), 5), ("c".into(), 3)],
            &[rows("a", 9, 8, 10), rows("c", 4, 4, 4)],
        );
        assert!(!r.is_exact());
        assert_eq!(r.kiosks[0].missing, 2);
        assert_eq!(r.kiosks[0].duplicates, 1);
        assert_eq!(r.kiosks[1].missing, 5);
        assert!(r.kiosks[2].unexpected);
        let text = r.render();
        assert!(text.contains("FAILED"), "{text}");
        assert!(text.contains("never generated"), "{text}");
    }
}

//! Stranded-partition watch: notices partitions that no member of the
//! group consumes, so this member can force a fresh rebalance. Pure; the
//! processor feeds it what it sees every few seconds.
//!
//! Why: Tansu 0.6's group coordinator, when a member dies while the group
//! is stable, drops the member but keeps the old assignment, and a survivor
//! that rejoins with unchanged metadata is handed its old share again. The
//! dead member's partitions are then consumed by nobody, for good. (Its
//! DescribeGroups cannot tell us: on the sqlite engine it fails and closes
//! the connection.) A real Kafka never does this, and the watch then never
//! fires.
//!
//! The test: a partition assigned to another member (or to none), with
//! records behind its high watermark, whose committed offset has not moved
//! for `patience` while this member itself is healthy. Every member commits
//! within a second of each batch, so a live owner moves it within seconds;
//! an owner that is merely slow costs one harmless rebalance. After a
//! rejoin the watch rests for another `patience`.
//!
//! A member that owns no partition is left alone for `patience` (joining
//! takes seconds, and the coordinator is busy forming the group); owning
//! nothing for longer means it may have been left out of its group (seen
//! once with Tansu under saturating load, after a lost session), and the
//! watch then looks at every partition.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One partition this member does not own, as seen at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unowned {
    /// Partition number.
    pub partition: i32,
    /// The group's committed offset (-1 if none).
    pub committed: i64,
    /// The partition's high watermark.
    pub high_watermark: i64,
}

/// The watch: since when each lagging partition's offset has stood still.
#[derive(Debug, Clone)]
pub struct StrandedWatch {
    patience: Duration,
    still: BTreeMap<i32, (i64, Instant)>,
    rested_from: Option<Instant>,
    owned_nothing_since: Option<Instant>,
}

impl StrandedWatch {
    /// A watch that asks for a rejoin after `patience` without progress.
    pub fn new(patience: Duration) -> StrandedWatch {
        StrandedWatch {
            patience,
            still: BTreeMap::new(),
            rested_from: None,
            owned_nothing_since: None,
        }
    }

    /// Whether to look at the group now (and send the broker the requests
    /// that takes), given whether this member owns any partition.
    pub fn should_look(&mut self, now: Instant, owns_any: bool) -> bool {
        if owns_any {
            self.owned_nothing_since = None;
            return true;
        }
        let since = *self.owned_nothing_since.get_or_insert(now);
        now.duration_since(since) >= self.patience
    }

    /// Record one observation of the partitions this member does not own
    /// (`None`: they could not be read; `healthy`: this member's own
    /// writes succeed). Returns the stranded partitions when the member
    /// should leave and rejoin the group.
    pub fn observe(
        &mut self,
        now: Instant,
        unowned: Option<&[Unowned]>,
        healthy: bool,
    ) -> Option<Vec<i32>> {
        let Some(unowned) = unowned.filter(|_| healthy) else {
            // No judgement without a view, or while this member is itself
            // stuck (then the whole group likely is: a database outage).
            self.still.clear();
            return None;
        };
        let mut seen = BTreeMap::new();
        for u in unowned
            .iter()
            .filter(|u| u.high_watermark > u.committed.max(0))
        {
            let since = match self.still.get(&u.partition) {
                Some((committed, since)) if *committed == u.committed => *since,
                _ => now,
            };
            seen.insert(u.partition, (u.committed, since));
        }
        self.still = seen;
        let stranded: Vec<i32> = self
            .still
            .iter()
            .filter(|(_, (_, since))| now.duration_since(*since) >= self.patience)
            .map(|(p, _)| *p)
            .collect();
        let rested = self
            .rested_from
            .is_none_or(|t| now.duration_since(t) >= self.patience);
        if stranded.is_empty() || !rested {
            return None;
        }
        self.rested_from = Some(now);
        self.still.clear();
        Some(stranded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(p: i32, committed: i64, high: i64) -> Unowned {
        Unowned {
            partition: p,
            committed,
            high_watermark: high,
        }
    }

    #[test]
    fn a_partition_behind_and_still_for_the_patience_is_stranded() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut w = StrandedWatch::new(Duration::from_secs(30));
        let view = [at(2, 100, 500), at(3, 80, 80)];
        assert_eq!(w.observe(s(0), Some(&view), true), None);
        assert_eq!(w.observe(s(20), Some(&view), true), None);
        assert_eq!(
            w.observe(s(30), Some(&view), true),
            Some(vec![2]),
            "3 has no lag"
        );
        // Rests a full patience after a rejoin.
        assert_eq!(w.observe(s(45), Some(&view), true), None);
        assert_eq!(w.observe(s(59), Some(&view), true), None);
        assert_eq!(
            w.observe(s(61), Some(&view), true),
            None,
            "the count restarted after the rejoin"
        );
        assert_eq!(w.observe(s(75), Some(&view), true), Some(vec![2]));
    }

    #[test]
    fn progress_or_a_break_starts_the_count_again() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut w = StrandedWatch::new(Duration::from_secs(30));
        assert_eq!(w.observe(s(0), Some(&[at(1, 10, 90)]), true), None);
        assert_eq!(
            w.observe(s(25), Some(&[at(1, 50, 90)]), true),
            None,
            "its owner commits"
        );
        assert_eq!(w.observe(s(50), Some(&[at(1, 50, 90)]), true), None);
        assert_eq!(
            w.observe(s(54), Some(&[at(1, 50, 90)]), false),
            None,
            "we are unhealthy"
        );
        assert_eq!(w.observe(s(60), None, true), None, "no view");
        assert_eq!(w.observe(s(70), Some(&[at(1, 50, 90)]), true), None);
        assert_eq!(
            w.observe(s(100), Some(&[at(1, 50, 90)]), true),
            Some(vec![1])
        );
    }

    #[test]
    fn a_member_owning_nothing_is_left_alone_while_it_joins_then_watched() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut w = StrandedWatch::new(Duration::from_secs(30));
        assert!(w.should_look(s(0), true));
        assert!(!w.should_look(s(5), false), "joining");
        assert!(!w.should_look(s(34), false), "29 s without partitions");
        assert!(w.should_look(s(35), true));
        assert!(!w.should_look(s(40), false), "a new spell starts over");
        assert!(!w.should_look(s(65), false));
        // Left out for good: every partition is someone else's, and none moves.
        let all = [at(0, 10, 90), at(1, 20, 90), at(2, 30, 90), at(3, 40, 40)];
        assert!(w.should_look(s(70), false));
        assert_eq!(w.observe(s(70), Some(&all), true), None);
        assert!(w.should_look(s(95), false));
        assert_eq!(w.observe(s(95), Some(&all), true), None);
        assert!(w.should_look(s(100), false));
        assert_eq!(
            w.observe(s(100), Some(&all), true),
            Some(vec![0, 1, 2]),
            "rejoin ~60 s after losing the partitions"
        );
    }

    #[test]
    fn a_partition_never_committed_counts_from_zero() {
        let t0 = Instant::now();
        let mut w = StrandedWatch::new(Duration::from_secs(5));
        let never = [at(0, -1, 40), at(1, -1, 0)];
        assert_eq!(w.observe(t0, Some(&never), true), None);
        assert_eq!(
            w.observe(t0 + Duration::from_secs(5), Some(&never), true),
            Some(vec![0]),
            "an empty partition is not stranded"
        );
    }
}

//! Per-kiosk delivery progress: the highest seq up to which every event is
//! stored, the count of seqs missing above it, and the first gaps. Pure;
//! the stores feed it the seqs a batch adds and, when needed, a window of
//! the stored seqs above the contiguous prefix.
//!
//! Advancing costs O(batch), not O(backlog): `missing` is kept exact from
//! the newly stored seqs alone (a new seq above `max_seq` opens the gap
//! below it, one below fills a gap), and the ledger is read only when the
//! batch holds the seq right after the prefix while gaps remain, a window
//! of at most [`WINDOW`] seqs at a time.

use contract::mqtt::SeqRange;

/// Most gap ranges listed per kiosk (the count of missing seqs is exact).
pub const MAX_GAPS: usize = 100;

/// Stored seqs read per window when advancing the prefix or listing gaps.
pub const WINDOW: usize = 512;

/// A kiosk's progress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Every seq in `1..=contiguous` is stored.
    pub contiguous: u64,
    /// The highest seq stored.
    pub max_seq: u64,
    /// The first missing ranges above `contiguous` (at most [`MAX_GAPS`],
    /// found among the first [`WINDOW`] stored seqs above it).
    pub gaps: Vec<SeqRange>,
    /// Missing seqs between `contiguous` and `max_seq`, exact.
    pub missing: u64,
}

/// What the store must do after [`Progress::add`] or [`Progress::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The progress is up to date.
    Done,
    /// Read up to [`WINDOW`] stored seqs above `contiguous` and pass them
    /// to [`Progress::scan`].
    ReadWindow,
}

impl Progress {
    /// Account for `new_seqs`: seqs stored by this batch and never before,
    /// each above `contiguous`, in any order.
    pub fn add(&mut self, new_seqs: &[u64]) -> Next {
        let mut sorted: Vec<u64> = new_seqs
            .iter()
            .copied()
            .filter(|&s| s > self.contiguous)
            .collect();
        sorted.sort_unstable();
        sorted.dedup();
        let fills_next = sorted.first() == Some(&(self.contiguous + 1));
        for s in &sorted {
            if *s > self.max_seq {
                self.missing += s - self.max_seq - 1;
                self.max_seq = *s;
            } else {
                // Below the highest seq and never stored: it fills a gap.
                self.missing = self.missing.saturating_sub(1);
            }
        }
        if self.missing == 0 {
            self.contiguous = self.max_seq;
            self.gaps.clear();
            Next::Done
        } else if fills_next || !sorted.is_empty() {
            // The prefix may grow, or the listed gaps changed.
            Next::ReadWindow
        } else {
            Next::Done
        }
    }

    /// Advance over `window`: the first stored seqs above `contiguous`,
    /// ascending, as many as the store found up to [`WINDOW`]. Lists the
    /// gaps the window shows; asks for another window when the whole
    /// window was part of the prefix and more may follow.
    pub fn scan(&mut self, window: &[u64]) -> Next {
        let start = self.contiguous;
        let mut rest = window
            .iter()
            .copied()
            .skip_while(|&s| s <= start)
            .peekable();
        while rest.peek() == Some(&(self.contiguous + 1)) {
            self.contiguous += 1;
            rest.next();
        }
        if rest.peek().is_none() && window.len() >= WINDOW && self.contiguous < self.max_seq {
            return Next::ReadWindow;
        }
        self.gaps.clear();
        let mut expected = self.contiguous + 1;
        for s in rest {
            if s > expected && self.gaps.len() < MAX_GAPS {
                self.gaps.push(SeqRange::new(expected, s - 1));
            }
            expected = expected.max(s + 1);
        }
        if window.len() < WINDOW && expected <= self.max_seq && self.gaps.len() < MAX_GAPS {
            // The window held every stored seq: the rest up to max_seq is
            // missing (only if the row and the ledger disagree).
            self.gaps.push(SeqRange::new(expected, self.max_seq));
        }
        Next::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed batches through `add` and `scan` against a ledger, as a store does.
    fn run(batches: &[&[u64]]) -> Progress {
        let mut ledger = std::collections::BTreeSet::new();
        let mut p = Progress::default();
        for batch in batches {
            let new: Vec<u64> = batch
                .iter()
                .copied()
                .filter(|s| *s > p.contiguous && ledger.insert(*s))
                .collect();
            let mut next = p.add(&new);
            while next == Next::ReadWindow {
                let window: Vec<u64> = ledger
                    .range(p.contiguous + 1..)
                    .take(WINDOW)
                    .copied()
                    .collect();
                next = p.scan(&window);
            }
        }
        p
    }

    /// The same from first principles.
    fn expected(batches: &[&[u64]]) -> (u64, u64, u64) {
        let all: std::collections::BTreeSet<u64> =
            batches.iter().flat_map(|b| b.iter().copied()).collect();
        let max = all.iter().max().copied().unwrap_or(0);
        let contiguous = (1..).take_while(|s| all.contains(s)).last().unwrap_or(0);
        let missing = (contiguous + 1..=max).filter(|s| !all.contains(s)).count() as u64;
        (contiguous, max, missing)
    }

    #[test]
    fn contiguous_prefix_and_gaps() {
        let p = run(&[&[1, 2, 3], &[4, 5, 8, 9, 12]]);
        assert_eq!((p.contiguous, p.max_seq, p.missing), (5, 12, 4));
        assert_eq!(p.gaps, vec![SeqRange::new(6, 7), SeqRange::new(10, 11)]);
        let p = run(&[&[2]]);
        assert_eq!((p.contiguous, p.missing), (0, 1));
        assert_eq!(p.gaps, vec![SeqRange::new(1, 1)]);
        let p = run(&[&[2], &[1]]);
        assert_eq!(
            (p.contiguous, p.max_seq, p.missing, p.gaps.len()),
            (2, 2, 0, 0)
        );
    }

    #[test]
    fn replays_and_duplicates_change_nothing() {
        let once = run(&[&[1, 2, 4, 7]]);
        let twice = run(&[&[1, 2, 4, 7], &[4, 7, 2, 1, 1], &[7]]);
        assert_eq!(once, twice);
        assert_eq!((once.contiguous, once.missing), (2, 3));
    }

    #[test]
    fn interleaved_partitions_agree_with_a_full_recount() {
        // A kiosk's seqs split over three partitions, consumed with skew.
        let n = 5_000u64;
        let parts: Vec<Vec<u64>> = (0..3)
            .map(|p| (1..=n).filter(|s| s % 3 == p).collect())
            .collect();
        let mut batches: Vec<Vec<u64>> = Vec::new();
        for chunk in parts[0].chunks(700) {
            batches.push(chunk.to_vec());
        }
        for (a, b) in parts[1].chunks(300).zip(parts[2].chunks(300)) {
            batches.push(a.to_vec());
            batches.push(b.to_vec());
        }
        let refs: Vec<&[u64]> = batches.iter().map(Vec::as_slice).collect();
        for k in 1..=refs.len() {
            let p = run(&refs[..k]);
            assert_eq!(
                (p.contiguous, p.max_seq, p.missing),
                expected(&refs[..k]),
                "after {k} batches"
            );
            assert!(p.gaps.len() <= MAX_GAPS);
            if p.missing > 0 {
                assert_eq!(
                    p.gaps[0].first,
                    p.contiguous + 1,
                    "the first gap starts after the prefix"
                );
            }
        }
        assert_eq!(run(&refs).contiguous, n);
    }

    #[test]
    fn a_long_prefix_is_read_window_by_window() {
        // Everything but seq 1 first, then seq 1: the prefix jumps to the end.
        let rest: Vec<u64> = (2..=3 * WINDOW as u64 + 17).collect();
        let p = run(&[&rest, &[1]]);
        assert_eq!(
            (p.contiguous, p.missing, p.gaps.len()),
            (3 * WINDOW as u64 + 17, 0, 0)
        );
    }
}

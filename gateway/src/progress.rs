//! Per-kiosk delivery progress: the highest seq up to which every event is
//! stored, and the gaps above it. Pure; the store feeds it the seqs it finds.

use contract::mqtt::SeqRange;

/// Most gap ranges kept per kiosk (the count of missing seqs is exact).
pub const MAX_GAPS: usize = 100;

/// A kiosk's progress.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Every seq in `1..=contiguous` is stored.
    pub contiguous: u64,
    /// The highest seq stored.
    pub max_seq: u64,
    /// Missing ranges between `contiguous` and `max_seq` (at most [`MAX_GAPS`]).
    pub gaps: Vec<SeqRange>,
    /// Missing seqs between `contiguous` and `max_seq`.
    pub missing: u64,
}

/// Advance `contiguous` over `seqs_above` (sorted, all greater than
/// `contiguous`) and describe what is missing above it.
pub fn advance(contiguous: u64, seqs_above: &[u64]) -> Progress {
    let mut p = Progress {
        contiguous,
        max_seq: contiguous,
        ..Progress::default()
    };
    let mut expected = contiguous + 1;
    let mut in_prefix = true;
    for &s in seqs_above {
        if s < expected {
            continue; // duplicate
        }
        if s > expected {
            in_prefix = false;
            p.missing += s - expected;
            if p.gaps.len() < MAX_GAPS {
                p.gaps.push(SeqRange::new(expected, s - 1));
            }
        }
        if in_prefix {
            p.contiguous = s;
        }
        p.max_seq = s;
        expected = s + 1;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_prefix_and_gaps() {
        assert_eq!(advance(0, &[1, 2, 3]).contiguous, 3);
        let p = advance(3, &[4, 5, 8, 9, 12]);
        assert_eq!((p.contiguous, p.max_seq, p.missing), (5, 12, 4));
        assert_eq!(p.gaps, vec![SeqRange::new(6, 7), SeqRange::new(10, 11)]);
        let p = advance(0, &[2]);
        assert_eq!(
            (p.contiguous, p.gaps.clone()),
            (0, vec![SeqRange::new(1, 1)])
        );
        assert_eq!(
            advance(7, &[]),
            Progress {
                contiguous: 7,
                max_seq: 7,
                ..Default::default()
            }
        );
    }
}

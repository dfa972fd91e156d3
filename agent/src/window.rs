//! The forwarder's send window: which seq ranges are in flight, which have
//! timed out, and where the next read from the outbox starts. Pure state,
//! driven by the forwarder's event loop (like rumqttc's `MqttState`).
//!
//! The outbox itself is the truth about what is unacknowledged: an ack
//! deletes rows there, so after a reconnect the window simply restarts from
//! the oldest stored seq. The window only avoids sending the same rows twice
//! while a connection lasts, and bounds how much is outstanding.

use std::collections::BTreeMap;

use contract::mqtt::SeqRange;

/// One published batch awaiting its end-to-end ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flight {
    /// Last seq of the batch (the map key is the first).
    pub last: u64,
    /// When it was (re)sent, milliseconds on the caller's monotonic clock.
    pub sent_at_ms: u64,
    /// How many times it was sent on this connection.
    pub attempts: u32,
}

/// The in-flight window of one connection.
#[derive(Debug, Clone)]
pub struct Window {
    max_batches: usize,
    ack_timeout_ms: u64,
    connected: bool,
    next_from: u64,
    in_flight: BTreeMap<u64, Flight>,
}

impl Window {
    /// A window of at most `max_batches` batches, resent after `ack_timeout_ms`.
    pub fn new(max_batches: usize, ack_timeout_ms: u64) -> Window {
        Window {
            max_batches: max_batches.max(1),
            ack_timeout_ms,
            connected: false,
            next_from: 0,
            in_flight: BTreeMap::new(),
        }
    }

    /// The link is up: everything unacknowledged will be sent again, oldest first.
    pub fn on_connected(&mut self) {
        self.connected = true;
        self.next_from = 0;
        self.in_flight.clear();
    }

    /// The link is down: stop sending until it is up again.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
    }

    /// Whether the link is up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether another batch may be sent now.
    pub fn has_room(&self) -> bool {
        self.connected && self.in_flight.len() < self.max_batches
    }

    /// The smallest seq not yet sent on this connection.
    pub fn next_from(&self) -> u64 {
        self.next_from
    }

    /// Batches outstanding.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Record that the rows `first..=last` were published as one batch.
    pub fn on_sent(&mut self, first: u64, last: u64, now_ms: u64) {
        let attempts = self.in_flight.get(&first).map_or(0, |f| f.attempts);
        self.in_flight.insert(
            first,
            Flight {
                last,
                sent_at_ms: now_ms,
                attempts: attempts + 1,
            },
        );
        self.next_from = self.next_from.max(last + 1);
    }

    /// Nothing was found to send at or after `next_from` up to `upto`:
    /// move the read position so empty stretches are not read again.
    pub fn skip_to(&mut self, seq: u64) {
        self.next_from = self.next_from.max(seq);
    }

    /// An end-to-end ack arrived. Removes the acknowledged seqs from the
    /// batches in flight (splitting a batch that is only partly covered);
    /// returns how many batches it completed. The caller deletes the ranges
    /// from the outbox whether or not they were in flight: an ack is a fact
    /// about Kafka, valid whoever sent the batch.
    pub fn on_ack(&mut self, ranges: &[SeqRange]) -> usize {
        let mut completed = 0;
        for r in ranges {
            let overlapping: Vec<(u64, Flight)> = self
                .in_flight
                .range(..=r.last)
                .filter(|(_, f)| f.last >= r.first)
                .map(|(k, f)| (*k, *f))
                .collect();
            for (first, flight) in overlapping {
                self.in_flight.remove(&first);
                let mut remains = false;
                if first < r.first {
                    self.in_flight.insert(
                        first,
                        Flight {
                            last: r.first - 1,
                            ..flight
                        },
                    );
                    remains = true;
                }
                if flight.last > r.last {
                    self.in_flight.insert(r.last + 1, flight);
                    remains = true;
                }
                if !remains {
                    completed += 1;
                }
            }
        }
        completed
    }

    /// Batches whose ack is overdue at `now_ms`, oldest first. They stay in
    /// the window; the caller resends each and calls [`Window::on_sent`].
    pub fn overdue(&self, now_ms: u64) -> Vec<SeqRange> {
        if !self.connected {
            return Vec::new();
        }
        self.in_flight
            .iter()
            .filter(|(_, f)| now_ms.saturating_sub(f.sent_at_ms) >= self.ack_timeout_ms)
            .map(|(first, f)| SeqRange::new(*first, f.last))
            .collect()
    }

    /// Forget a batch whose rows are all gone from the outbox (acked or dropped).
    pub fn forget(&mut self, first: u64) {
        self.in_flight.remove(&first);
    }
}

/// Token bucket pacing replay to at most `rate` events per second.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: u64,
    tokens: f64,
    last_ms: u64,
}

impl Pacer {
    /// `rate` events/s; 0 means unlimited.
    pub fn new(rate: u64) -> Pacer {
        Pacer {
            rate,
            tokens: rate as f64,
            last_ms: 0,
        }
    }

    /// Whether `n` events may be sent at `now_ms`; takes the tokens if so.
    pub fn try_take(&mut self, n: u64, now_ms: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = now_ms;
        let cap = (self.rate as f64).max(n as f64);
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(cap);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u64, b: u64) -> SeqRange {
        SeqRange::new(a, b)
    }

    #[test]
    fn sends_are_bounded_and_only_when_connected() {
        let mut w = Window::new(2, 1000);
        assert!(!w.has_room());
        w.on_connected();
        assert!(w.has_room());
        w.on_sent(1, 10, 0);
        w.on_sent(11, 20, 0);
        assert!(!w.has_room());
        assert_eq!(w.next_from(), 21);
        assert_eq!(w.on_ack(&[r(1, 10)]), 1);
        assert!(w.has_room());
        w.on_disconnected();
        assert!(!w.has_room());
    }

    #[test]
    fn out_of_order_acks_release_exactly_their_ranges() {
        let mut w = Window::new(10, 1000);
        w.on_connected();
        w.on_sent(1, 10, 0);
        w.on_sent(11, 20, 0);
        w.on_sent(21, 30, 0);
        assert_eq!(w.on_ack(&[r(11, 20)]), 1);
        assert_eq!(w.overdue(1000), vec![r(1, 10), r(21, 30)]);
        // A duplicate or stale ack is harmless.
        assert_eq!(w.on_ack(&[r(11, 20)]), 0);
        assert_eq!(w.on_ack(&[r(500, 600)]), 0);
        assert_eq!(w.in_flight(), 2);
    }

    #[test]
    fn partial_acks_split_batches() {
        let mut w = Window::new(10, 1000);
        w.on_connected();
        w.on_sent(1, 100, 0);
        assert_eq!(w.on_ack(&[r(40, 60)]), 0);
        assert_eq!(w.overdue(5000), vec![r(1, 39), r(61, 100)]);
        assert_eq!(w.on_ack(&[r(1, 39), r(61, 100)]), 2);
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn overdue_batches_are_resent_and_reconnect_restarts_from_oldest() {
        let mut w = Window::new(10, 1000);
        w.on_connected();
        w.on_sent(1, 10, 0);
        w.on_sent(11, 20, 500);
        assert_eq!(w.overdue(999), vec![]);
        assert_eq!(w.overdue(1000), vec![r(1, 10)]);
        w.on_sent(1, 10, 1000);
        assert_eq!(w.overdue(1600), vec![r(11, 20)]);
        w.on_disconnected();
        assert_eq!(w.overdue(10_000), vec![]);
        w.on_connected();
        assert_eq!(w.next_from(), 0);
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn pacer_limits_rate() {
        let mut p = Pacer::new(1000);
        assert!(p.try_take(500, 0));
        assert!(p.try_take(500, 0));
        assert!(!p.try_take(500, 0));
        assert!(p.try_take(500, 500));
        let mut unlimited = Pacer::new(0);
        assert!(unlimited.try_take(1_000_000, 0));
    }
}

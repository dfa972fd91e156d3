//! MQTT PUBACKs in the order their PUBLISHes arrived.
//!
//! The bridge acknowledges an MQTT message only once Kafka holds all of its
//! records, and batches finish in any order. MQTT 3.1.1 (section 4.6) asks
//! a receiver to send QoS 1 PUBACKs in the order the PUBLISHes came, and
//! some brokers (rumqttd) drop a client that does not. This queue holds a
//! finished message's PUBACK until every message received before it is
//! finished too. Pure state, no I/O.

use std::collections::VecDeque;

/// Messages received and not yet released, oldest first.
#[derive(Debug)]
pub struct PubackOrder<T> {
    /// (message id, `Some(Some(puback))` when finished with a PUBACK to send,
    /// `Some(None)` when finished without one).
    pending: VecDeque<(u64, Option<Option<T>>)>,
}

impl<T> Default for PubackOrder<T> {
    fn default() -> Self {
        PubackOrder {
            pending: VecDeque::new(),
        }
    }
}

impl<T> PubackOrder<T> {
    /// A message arrived; `id`s must increase.
    pub fn received(&mut self, id: u64) {
        self.pending.push_back((id, None));
    }

    /// Message `id` is finished; `puback` is what to send for it (None: send
    /// nothing, e.g. when its end-to-end ack could not be published).
    /// Returns the PUBACKs now due, in arrival order. Unknown ids (from
    /// before [`PubackOrder::forget_all`]) release nothing.
    pub fn done(&mut self, id: u64, puback: Option<T>) -> Vec<T> {
        if let Ok(i) = self.pending.binary_search_by_key(&id, |(k, _)| *k) {
            self.pending[i].1 = Some(puback);
        }
        let mut due = Vec::new();
        while self.pending.front().is_some_and(|(_, p)| p.is_some()) {
            if let Some((_, Some(Some(p)))) = self.pending.pop_front() {
                due.push(p);
            }
        }
        due
    }

    /// The connection is gone: PUBACKs for its messages can no longer be
    /// sent (the broker redelivers them on the next session). Returns how
    /// many messages were waiting.
    pub fn forget_all(&mut self) -> usize {
        let n = self.pending.len();
        self.pending.clear();
        n
    }

    /// Messages received and not yet released.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_message_waits_for_every_earlier_one() {
        let mut q = PubackOrder::default();
        for id in 1..=4 {
            q.received(id);
        }
        assert_eq!(q.done(3, Some("c")), Vec::<&str>::new());
        assert_eq!(q.done(2, Some("b")), Vec::<&str>::new());
        assert_eq!(q.done(1, Some("a")), vec!["a", "b", "c"]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.done(4, Some("d")), vec!["d"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_message_finished_without_a_puback_does_not_block_the_rest() {
        let mut q = PubackOrder::default();
        q.received(7);
        q.received(8);
        assert_eq!(q.done(8, Some("h")), Vec::<&str>::new());
        assert_eq!(q.done(7, None), vec!["h"]);
    }

    #[test]
    fn after_the_connection_is_lost_old_messages_release_nothing() {
        let mut q = PubackOrder::default();
        q.received(1);
        q.received(2);
        assert_eq!(q.forget_all(), 2);
        q.received(3);
        assert_eq!(q.done(1, Some("a")), Vec::<&str>::new());
        assert_eq!(q.done(3, Some("c")), vec!["c"]);
    }
}

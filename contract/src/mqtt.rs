//! MQTT topics and the small JSON messages beside the event batches.
//!
//! ```text
//! hospital/{site_id}/kiosk/{kiosk_id}/events   kiosk -> bridges   postcard batch (see wire)
//! hospital/{site_id}/kiosk/{kiosk_id}/ack      bridge -> kiosk    Ack JSON, QoS 1
//! hospital/{site_id}/kiosk/{kiosk_id}/status   kiosk -> anyone    KioskStatus JSON, retained
//! $share/{group}/hospital/+/kiosk/+/events     what bridges subscribe to
//! ```
//!
//! An [`Ack`] names the seq ranges of one batch that Kafka now holds durably;
//! a kiosk deletes exactly those from its outbox and nothing else.

use serde::{Deserialize, Serialize};

use crate::event::is_valid_id;

/// Topic a kiosk publishes its event batches to.
pub fn events_topic(site_id: &str, kiosk_id: &str) -> String {
    format!("hospital/{site_id}/kiosk/{kiosk_id}/events")
}

/// Topic a bridge publishes a kiosk's acknowledgements to.
pub fn ack_topic(site_id: &str, kiosk_id: &str) -> String {
    format!("hospital/{site_id}/kiosk/{kiosk_id}/ack")
}

/// Topic of a kiosk's retained status message.
pub fn status_topic(site_id: &str, kiosk_id: &str) -> String {
    format!("hospital/{site_id}/kiosk/{kiosk_id}/status")
}

/// The shared-subscription filter the bridges of one group use.
pub fn shared_events_filter(group: &str) -> String {
    format!("$share/{group}/hospital/+/kiosk/+/events")
}

/// Filter matching every kiosk's status topic.
pub const ALL_STATUS_FILTER: &str = "hospital/+/kiosk/+/status";

/// `(site_id, kiosk_id)` of an events topic, or `None` if it is not one.
pub fn parse_events_topic(topic: &str) -> Option<(&str, &str)> {
    let mut parts = topic.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("hospital"), Some(site), Some("kiosk"), Some(kiosk), Some("events"), None)
            if is_valid_id(site) && is_valid_id(kiosk) =>
        {
            Some((site, kiosk))
        }
        _ => None,
    }
}

/// An inclusive range of seqs, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "(u64, u64)", into = "(u64, u64)")]
pub struct SeqRange {
    /// First seq in the range.
    pub first: u64,
    /// Last seq in the range (inclusive).
    pub last: u64,
}

impl SeqRange {
    /// `first..=last`; the bounds are put in order.
    pub fn new(first: u64, last: u64) -> Self {
        SeqRange {
            first: first.min(last),
            last: first.max(last),
        }
    }

    /// How many seqs the range holds.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a range holds at least one seq.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `seq` lies in the range.
    pub fn contains(&self, seq: u64) -> bool {
        (self.first..=self.last).contains(&seq)
    }
}

impl From<(u64, u64)> for SeqRange {
    fn from((a, b): (u64, u64)) -> Self {
        SeqRange::new(a, b)
    }
}

impl From<SeqRange> for (u64, u64) {
    fn from(r: SeqRange) -> Self {
        (r.first, r.last)
    }
}

/// Collapse sorted-or-not seqs into the fewest inclusive ranges.
pub fn ranges_of(seqs: impl IntoIterator<Item = u64>) -> Vec<SeqRange> {
    let mut seqs: Vec<u64> = seqs.into_iter().collect();
    seqs.sort_unstable();
    seqs.dedup();
    let mut out: Vec<SeqRange> = Vec::new();
    for s in seqs {
        match out.last_mut() {
            Some(r) if r.last + 1 == s => r.last = s,
            _ => out.push(SeqRange::new(s, s)),
        }
    }
    out
}

/// Version of the ack and status JSON layouts.
pub const MESSAGE_VERSION: u32 = 1;

/// End-to-end acknowledgement: these seqs of this kiosk are durable in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Layout version, [`MESSAGE_VERSION`].
    pub version: u32,
    /// Acknowledged seqs, as inclusive `[first, last]` pairs.
    pub ranges: Vec<SeqRange>,
}

impl Ack {
    /// An ack for these ranges.
    pub fn new(ranges: Vec<SeqRange>) -> Self {
        Ack {
            version: MESSAGE_VERSION,
            ranges,
        }
    }

    /// JSON bytes, e.g. `{"version":1,"ranges":[[1,500]]}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("acks serialize to JSON infallibly")
    }

    /// Parse an ack; unknown versions are refused.
    pub fn from_json(bytes: &[u8]) -> Result<Ack, String> {
        let ack: Ack = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if ack.version != MESSAGE_VERSION {
            return Err(format!("unknown ack version {}", ack.version));
        }
        Ok(ack)
    }
}

/// A kiosk's retained health message (also what `agent status` prints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct KioskStatus {
    /// Layout version, [`MESSAGE_VERSION`].
    pub version: u32,
    /// The kiosk's site.
    pub site_id: String,
    /// The kiosk.
    pub kiosk_id: String,
    /// The agent's build version.
    pub agent_version: String,
    /// Whether the agent is connected to the broker (always false in `agent status`).
    pub online: bool,
    /// Events committed to the outbox and not yet acknowledged.
    pub backlog_events: u64,
    /// Age of the oldest unacknowledged event, milliseconds (0 when none).
    pub oldest_unacked_age_ms: u64,
    /// Highest seq acknowledged so far (0 when none).
    pub last_acked_seq: u64,
    /// The seq the next event will get.
    pub next_seq: u64,
    /// Events dropped or refused by the outbox cap since the outbox was created.
    pub dropped_events: u64,
    /// Dropped seq ranges (the most recent ones).
    pub dropped_ranges: Vec<SeqRange>,
    /// Check-ins refused because the outbox was full (reject-new policy).
    pub rejected_checkins: u64,
    /// When this status was made, ISO 8601.
    pub updated_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert_eq!(events_topic("s", "k"), "hospital/s/kiosk/k/events");
        assert_eq!(
            parse_events_topic("hospital/site-a/kiosk/kiosk-01/events"),
            Some(("site-a", "kiosk-01"))
        );
        assert_eq!(parse_events_topic("hospital/site-a/kiosk/k1/ack"), None);
        assert_eq!(parse_events_topic("hospital/a/kiosk/k1/events/x"), None);
        assert_eq!(parse_events_topic("hospital//kiosk/k1/events"), None);
        assert_eq!(
            shared_events_filter("bridges"),
            "$share/bridges/hospital/+/kiosk/+/events"
        );
    }

    #[test]
    fn ranges_collapse() {
        assert_eq!(
            ranges_of([5, 1, 2, 3, 7, 8, 2]),
            vec![
                SeqRange::new(1, 3),
                SeqRange::new(5, 5),
                SeqRange::new(7, 8)
            ]
        );
        assert_eq!(ranges_of([]), vec![]);
    }

    #[test]
    fn ack_json() {
        let ack = Ack::new(vec![SeqRange::new(1, 500), SeqRange::new(600, 600)]);
        let json = ack.to_json();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"version":1,"ranges":[[1,500],[600,600]]}"#
        );
        assert_eq!(Ack::from_json(&json), Ok(ack));
        assert!(Ack::from_json(br#"{"version":9,"ranges":[]}"#).is_err());
        assert!(Ack::from_json(b"nope").is_err());
    }
}

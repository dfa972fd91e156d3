//! The kiosk's status: built from the outbox alone, so `agent status` can
//! print it without a network and the forwarder can publish it retained.

use contract::config::AgentConfig;
use contract::mqtt::{KioskStatus, MESSAGE_VERSION};
use contract::UtcMillis;

use crate::outbox::OutboxStats;

/// The status message for these outbox stats.
pub fn kiosk_status(agent: &AgentConfig, stats: &OutboxStats, online: bool) -> KioskStatus {
    let now = UtcMillis::now();
    KioskStatus {
        version: MESSAGE_VERSION,
        site_id: agent.site_id.clone(),
        kiosk_id: agent.kiosk_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        online,
        backlog_events: stats.backlog,
        oldest_unacked_age_ms: stats
            .oldest_created_at
            .map_or(0, |t| (now.0 - t.0).max(0) as u64),
        last_acked_seq: stats.last_acked_seq,
        next_seq: stats.next_seq,
        dropped_events: stats.dropped_events,
        dropped_ranges: stats.dropped_ranges.clone(),
        rejected_checkins: stats.rejected_checkins,
        updated_at: now.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_of_oldest_and_counts() {
        let stats = OutboxStats {
            backlog: 3,
            oldest_created_at: Some(UtcMillis::now().plus_ms(-5000)),
            next_seq: 10,
            last_acked_seq: 6,
            ..OutboxStats::default()
        };
        let s = kiosk_status(&AgentConfig::default(), &stats, false);
        assert_eq!((s.backlog_events, s.next_seq, s.last_acked_seq), (3, 10, 6));
        assert!((5000..6000).contains(&s.oldest_unacked_age_ms));
        assert!(!s.online);
    }
}

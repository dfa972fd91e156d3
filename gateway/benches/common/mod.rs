//! What the gateway benchmarks share: the simulated events of a site with
//! several kiosks.
#![allow(dead_code, clippy::unwrap_used)]

use agent::sim::Reception;
use contract::config::SimulationConfig;
use contract::{Event, Identity, UtcMillis};

/// Kiosks in the benchmarks' site.
pub const KIOSKS: u64 = 8;

/// Simulated events of `KIOSKS` kiosks at site `site-b`, interleaved.
pub fn events(n: u64) -> Vec<Event> {
    let cfg = SimulationConfig {
        arrivals_per_hour: 60.0,
        ..SimulationConfig::default()
    };
    let mut sims: Vec<Reception> = (0..KIOSKS)
        .map(|k| Reception::new(&cfg, k + 1, UtcMillis::from_parts(2026, 12, 7, 0, 0, 0, 0)))
        .collect();
    (0..n)
        .map(|i| {
            let k = i % KIOSKS;
            let (_, body) = sims[k as usize].next_event().unwrap();
            Event {
                identity: Identity {
                    site_id: "site-b".into(),
                    kiosk_id: format!("kiosk-{k}"),
                    seq: i / KIOSKS + 1,
                    created_at: UtcMillis::now(),
                },
                body,
            }
        })
        .collect()
}

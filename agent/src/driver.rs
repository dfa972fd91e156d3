//! Drives the reception simulation on a clock: real time, N times faster,
//! or as fast as possible, submitting every event to the outbox writer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use contract::config::SimulationConfig;
use contract::UtcMillis;

use crate::sim::Reception;
use crate::writer::{Submission, WriterHandle};

/// Seed used when the config says 0.
pub fn effective_seed(cfg: &SimulationConfig) -> u64 {
    if cfg.seed != 0 {
        cfg.seed
    } else {
        UtcMillis::now().0 as u64 ^ u64::from(std::process::id()) << 32
    }
}

/// Simulated start time: the configured one, or now.
pub fn start_time(cfg: &SimulationConfig) -> UtcMillis {
    cfg.start_time.parse().unwrap_or_else(|_| UtcMillis::now())
}

/// Run the simulation, submitting events until `stop` is set, `max_events`
/// have been submitted, or the writer stops. Returns the number submitted.
pub fn drive(
    cfg: &SimulationConfig,
    writer: &WriterHandle,
    stop: &AtomicBool,
    max_events: Option<u64>,
) -> u64 {
    let seed = effective_seed(cfg);
    let sim_start = start_time(cfg);
    log::info!(
        "simulation: seed {seed}, start {sim_start}, {} arrivals/h, clock x{}",
        cfg.arrivals_per_hour,
        if cfg.clock_speed == 0.0 {
            "max".to_string()
        } else {
            cfg.clock_speed.to_string()
        }
    );
    let mut reception = Reception::new(cfg, seed, sim_start);
    let real_start = Instant::now();
    let mut submitted = 0u64;
    while !stop.load(Ordering::Relaxed) && max_events.is_none_or(|m| submitted < m) {
        let Some((at, body)) = reception.next_event() else {
            break;
        };
        if cfg.clock_speed > 0.0 {
            let sim_ms = (at.0 - sim_start.0).max(0) as f64 / cfg.clock_speed;
            let due = real_start + Duration::from_secs_f64(sim_ms / 1000.0);
            while Instant::now() < due {
                if stop.load(Ordering::Relaxed) {
                    return submitted;
                }
                std::thread::sleep((due - Instant::now()).min(Duration::from_millis(100)));
            }
        }
        let submission = Submission {
            created_at: UtcMillis::now(),
            body,
            reply: None,
        };
        if writer.submit_with(submission).is_err() {
            log::error!("outbox writer stopped; simulation ends");
            break;
        }
        submitted += 1;
    }
    submitted
}

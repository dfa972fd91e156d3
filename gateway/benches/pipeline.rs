//! End-to-end pipeline benchmark (`cargo bench -p gateway --bench pipeline`):
//! the real programs as separate processes (4 agents at 2 sites, Mosquitto,
//! a bridge, Tansu with durable sqlite storage, a processor, MariaDB), as in
//! the fault suite. Per run it reports:
//!
//! 1. the raw limits in the same run: the broker's produce limit (a plain
//!    idempotent acks=all producer) and MariaDB's multi-row insert limit;
//! 2. sustained end-to-end events/s (kiosks unpaced, 100,000 events), with
//!    per-stage rates and every process's peak resident memory;
//! 3. check-in-to-row latency (MySQL `ingested_at` - kiosk `created_at`) at
//!    about 100, 1,000 and 10,000 events/s: p50 / p99 / max;
//! 4. time to drain a backlog after a 10 s broker outage at ~1,000 events/s.
//!
//! `KTK_BENCH_EVENTS` sets the sustained run's events (default 100,000).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/mod.rs"]
mod limits;
#[path = "../tests/pipeline/mod.rs"]
mod pipeline;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pipeline::{Options, Pipeline, KIOSKS};

/// Simulated events per second of simulated time, per kiosk, with the
/// default department (6 arrivals/h, ~3 events per patient): measured by
/// [`calibrate`] rather than assumed.
fn calibrate() -> f64 {
    let cfg = contract::config::SimulationConfig::default();
    let start = contract::UtcMillis::from_parts(2026, 12, 7, 0, 0, 0, 0);
    let mut sim = agent::sim::Reception::new(&cfg, 1, start);
    let n = 20_000;
    let mut last = start;
    for _ in 0..n {
        last = sim.next_event().unwrap().0;
    }
    n as f64 / ((last.0 - start.0) as f64 / 1000.0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Kiosks at `rate` events/s in all for `secs` seconds; latency percentiles.
fn latency_at(rate: f64, secs: f64, per_sim_second: f64) -> (u64, f64, [f64; 3]) {
    let per_kiosk = rate / KIOSKS.len() as f64;
    let opts = Options {
        clock_speed: per_kiosk / per_sim_second,
        ..Options::default()
    };
    let mut p = Pipeline::start(&format!("bench-lat-{}", rate as u64), &opts);
    p.wait_flowing_after_warmup();
    let started = Instant::now();
    p.start_kiosks((per_kiosk * secs) as u64);
    p.wait_kiosks_drained(Duration::from_secs(600));
    p.wait_stored(Duration::from_secs(600));
    let took = started.elapsed().as_secs_f64();
    let l = p.latencies_ms();
    let n = l.len() as u64;
    (
        n,
        n as f64 / took,
        [pct(&l, 0.5), pct(&l, 0.99), pct(&l, 1.0)],
    )
}

fn main() {
    let Some(total) = limits::bench_events(100_000) else {
        return;
    };
    let per_kiosk = total / KIOSKS.len() as u64;

    // 2. Sustained, unpaced; raw limits measured on this pipeline's own
    // broker and database right after.
    let opts = Options {
        clock_speed: 0.0,
        ..Options::default()
    };
    let mut p = Pipeline::start("bench-sustained", &opts);
    p.wait_flowing_after_warmup();
    let started = Instant::now();
    p.start_kiosks(per_kiosk);
    let mut peak: BTreeMap<String, u64> = BTreeMap::new();
    let mut stored_at: Vec<(f64, u64)> = Vec::new();
    loop {
        for (name, pid) in p.pids() {
            let e = peak.entry(name).or_insert(0);
            *e = (*e).max(rss_kib(pid));
        }
        let stored = p.stored();
        stored_at.push((started.elapsed().as_secs_f64(), stored));
        if stored >= total || started.elapsed() > Duration::from_secs(900) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let secs = started.elapsed().as_secs_f64();
    p.wait_kiosks_drained(Duration::from_secs(60));
    let reconciled = p.reconcile();
    reconciled.assert_exactly_once("bench-sustained");
    // Per stage: when each kiosk had committed everything (outbox seqs
    // with their created_at), and the database's ingest rate.
    let mut db = p.db();
    let (first_created, last_created, first_in, last_in): (f64, f64, f64, f64) = {
        use mysql::prelude::Queryable;
        db.query_first(
            "SELECT UNIX_TIMESTAMP(MIN(created_at)), UNIX_TIMESTAMP(MAX(created_at)),
                    UNIX_TIMESTAMP(MIN(ingested_at)), UNIX_TIMESTAMP(MAX(ingested_at)) FROM event_ledger",
        )
        .unwrap()
        .unwrap()
    };
    let events = limits::events(50_000);
    let mut lc = p.config.clone();
    lc.kafka.topic = "bench_limit".into();
    lc.kafka.dlq_topic = "bench_limit.dlq".into();
    let broker_limit = limits::producer_limit(&lc, &events);
    let db_limit = limits::mariadb_limit(&p.config.mysql, &events);
    drop(p);

    println!("pipeline: 4 agents (2 sites) -> Mosquitto -> 1 bridge -> Tansu (sqlite) -> 1 processor -> MariaDB");
    println!("raw limits (same run): broker produce {broker_limit:.0} events/s; MariaDB multi-row insert {db_limit:.0} rows/s");
    println!(
        "sustained, kiosks unpaced: {total} events stored exactly once in {secs:.1} s = {:.0} events/s ({:.0}% of the broker's produce limit)",
        total as f64 / secs,
        100.0 * total as f64 / secs / broker_limit
    );
    println!(
        "  stages: kiosks committed at {:.0} events/s (outbox); MySQL stored at {:.0} events/s (first to last row)",
        total as f64 / (last_created - first_created).max(0.001),
        total as f64 / (last_in - first_in).max(0.001)
    );
    println!("  peak resident memory:");
    for (name, kib) in &peak {
        println!("    {name:<18} {:>7.1} MB", *kib as f64 / 1024.0);
    }

    // 3. Latency at fixed rates.
    let per_sim_second = calibrate();
    for (rate, secs) in [(100.0, 20.0), (1000.0, 20.0), (10_000.0, 10.0)] {
        let (n, achieved, [p50, p99, max]) = latency_at(rate, secs, per_sim_second);
        println!(
            "latency at ~{rate:.0} events/s ({n} events, {achieved:.0} events/s achieved end to end): p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms"
        );
    }

    // 4. Drain after a 10 s broker outage at ~1,000 events/s.
    let opts = Options {
        clock_speed: 250.0 / per_sim_second,
        ..Options::default()
    };
    let mut p = Pipeline::start("bench-drain", &opts);
    p.wait_flowing_after_warmup();
    p.start_kiosks(250 * 30);
    std::thread::sleep(Duration::from_secs(5));
    p.mosquitto.kill();
    std::thread::sleep(Duration::from_secs(10));
    let backlog: u64 = (0..KIOSKS.len()).map(|k| p.committed(k).2).sum();
    p.mosquitto.restart();
    let back = Instant::now();
    // Drained: every event committed so far is in MySQL.
    let committed_now: u64 = (0..KIOSKS.len()).map(|k| p.committed(k).0).sum();
    while p.stored() < committed_now {
        std::thread::sleep(Duration::from_millis(100));
        assert!(back.elapsed() < Duration::from_secs(600), "did not drain");
    }
    let drain = back.elapsed().as_secs_f64();
    p.wait_kiosks_drained(Duration::from_secs(600));
    p.wait_stored(Duration::from_secs(600));
    p.reconcile().assert_exactly_once("bench-drain");
    println!(
        "drain after a 10 s MQTT broker outage at ~1,000 events/s: backlog {backlog} events at the restart, all in MySQL {drain:.1} s after it"
    );
}

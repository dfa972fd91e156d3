//! Agent benchmarks (`cargo bench -p agent`):
//!
//! 1. durable ingest: simulated check-ins through the group-commit writer
//!    into the SQLite outbox with `synchronous=FULL`, events/s;
//! 2. replay: a 1,000,000-event backlog forwarded by the real `agent` binary
//!    to a private Mosquitto, acknowledged by a stand-in gateway, events/s,
//!    with the agent's resident memory sampled throughout.
//!
//! 3. idle: resident memory of a connected agent with nothing to do.
//!
//! `KTK_BENCH_REPLAY_EVENTS` changes the backlog size; `KTK_BENCH_ONLY`
//! picks parts (`ingest`, `idle`, `replay`); `KTK_AGENT_BIN` and
//! `KTK_TARGET_RUNNER` run another build of the agent, e.g. the aarch64 one
//! under qemu.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use agent::outbox::Outbox;
use agent::sim::Reception;
use agent::writer::{self, Submission};
use contract::config::{OutboxConfig, SimulationConfig, Synchronous};
use contract::{EventBody, UtcMillis};
use testkit::{temp_dir, wait_until, Mosquitto, Responder};

fn simulated(n: usize) -> Vec<EventBody> {
    let cfg = SimulationConfig {
        arrivals_per_hour: 60.0,
        ..SimulationConfig::default()
    };
    let mut sim = Reception::new(&cfg, 7, UtcMillis::from_parts(2026, 12, 7, 0, 0, 0, 0));
    (0..n).map(|_| sim.next_event().unwrap().1).collect()
}

fn ingest(n: usize, sync: Synchronous) -> f64 {
    let dir = temp_dir("bench-ingest");
    let cfg = OutboxConfig {
        path: dir.join("outbox.db").display().to_string(),
        synchronous: sync,
        max_events: u64::MAX / 2,
        max_bytes: u64::MAX / 2,
        ..OutboxConfig::default()
    };
    let bodies = simulated(n);
    let outbox = Outbox::open(&cfg, "site-b", "kiosk-bench").unwrap();
    let (handle, thread) = writer::spawn(outbox, &cfg, 8192, |_| {});
    let start = Instant::now();
    for body in bodies {
        handle
            .submit_with(Submission {
                created_at: UtcMillis::now(),
                body,
                reply: None,
            })
            .unwrap();
    }
    drop(handle);
    let outbox = thread.join().unwrap().unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(outbox.stats().unwrap().next_seq, n as u64 + 1);
    let _ = std::fs::remove_dir_all(dir);
    n as f64 / secs
}

/// The agent program (or the build `KTK_AGENT_BIN` names) forwarding its
/// outbox without simulating check-ins.
fn spawn_forwarder(config: &std::path::Path, extra: &[&str]) -> std::process::Child {
    testkit::program(env!("CARGO_BIN_EXE_agent"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "run",
            "--no-simulation",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn replay(n: u64) {
    let dir = temp_dir("bench-replay");
    let broker = Mosquitto::start(&dir);
    let outbox_path = dir.join("outbox.db").display().to_string();
    let cfg = OutboxConfig {
        path: outbox_path.clone(),
        max_events: u64::MAX / 2,
        max_bytes: u64::MAX / 2,
        ..OutboxConfig::default()
    };
    {
        let mut outbox = Outbox::open(&cfg, "site-b", "kiosk-replay").unwrap();
        let bodies = simulated(10_000);
        let now = UtcMillis::now();
        let chunk: Vec<(UtcMillis, EventBody)> = bodies.into_iter().map(|b| (now, b)).collect();
        for _ in 0..n / 10_000 {
            outbox.append(&chunk).unwrap();
        }
    }
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nsite_id = \"site-b\"\nkiosk_id = \"kiosk-replay\"\n\
             [agent.outbox]\npath = \"{outbox_path}\"\nmax_events = 100000000\nmax_bytes = 100000000000\n\
             [mqtt]\nport = {}\n",
            broker.port
        ),
    )
    .unwrap();
    let responder = Responder::ack_only(broker.port, "site-b", "kiosk-replay");
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let mut child = spawn_forwarder(&config, &["--drain"]);
    let pid = child.id();
    let mut peak_rss = 0;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if let Some(rss) = rss_kib(pid) {
            peak_rss = peak_rss.max(rss);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let secs = start.elapsed().as_secs_f64();
    assert!(status.success());
    wait_until(Duration::from_secs(5), "responder saw every event", || {
        responder
            .received
            .load(std::sync::atomic::Ordering::Relaxed)
            >= n
    });
    let stats = Outbox::open(&cfg, "site-b", "kiosk-replay")
        .unwrap()
        .stats()
        .unwrap();
    assert_eq!(stats.backlog, 0);
    println!(
        "replay {n} events, acked end to end: {:.0} events/s ({secs:.1} s); agent peak RSS {peak_rss} KiB; {} events received (duplicates included)",
        n as f64 / secs,
        responder.received.load(std::sync::atomic::Ordering::Relaxed)
    );
    drop(responder);
    let _ = std::fs::remove_dir_all(dir);
}

/// Resident memory of an agent with an empty outbox, connected and idle
/// (simulation off), sampled for 10 s after a 3 s warm-up.
fn idle() {
    let dir = temp_dir("bench-idle");
    let broker = Mosquitto::start(&dir);
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nsite_id = \"site-b\"\nkiosk_id = \"kiosk-idle\"\n\
             [agent.outbox]\npath = \"{}\"\n[mqtt]\nport = {}\n",
            dir.join("outbox.db").display(),
            broker.port
        ),
    )
    .unwrap();
    let mut child = spawn_forwarder(&config, &[]);
    std::thread::sleep(Duration::from_secs(3));
    let mut peak = 0;
    for _ in 0..100 {
        if let Some(rss) = rss_kib(child.id()) {
            peak = peak.max(rss);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    println!("idle agent (connected, empty outbox): peak RSS {peak} KiB");
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    // `cargo test` runs benches with --test-ish arguments only when asked; a
    // plain `cargo bench` passes `--bench`.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // KTK_BENCH_ONLY=idle,replay runs only those parts (e.g. for a cross
    // build under qemu: KTK_AGENT_BIN + KTK_TARGET_RUNNER, see BENCHMARKS.md).
    let only = std::env::var("KTK_BENCH_ONLY").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    if wanted("ingest") {
        for (label, sync) in [("FULL", Synchronous::Full), ("NORMAL", Synchronous::Normal)] {
            let n = 500_000;
            let rate = ingest(n, sync);
            println!("durable ingest, synchronous={label}: {n} events, {rate:.0} events/s");
        }
    }
    if wanted("idle") {
        idle();
    }
    if !wanted("replay") {
        return;
    }
    let n: u64 = std::env::var("KTK_BENCH_REPLAY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    replay(n);
}

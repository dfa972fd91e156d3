//! The agent against a real Mosquitto, with an ack responder standing in
//! for the gateway: outages, withheld acks, kill -9, the outbox cap.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agent::kiosk::Kiosk;
use agent::outbox::Outbox;
use agent::writer::Outcome;
use contract::config::FullPolicy;
use contract::event::examples;
use contract::mqtt::{Ack, SeqRange};
use contract::UtcMillis;
use testkit::*;

fn submit_n(kiosk: &Kiosk, n: u64) {
    let w = kiosk.writer().unwrap();
    for _ in 0..n {
        let outcome = w
            .submit(UtcMillis::now(), examples::arrival().body)
            .unwrap();
        assert!(matches!(outcome, Outcome::Accepted(_)));
    }
}

#[test]
fn broker_outage_mid_run_loses_nothing_and_keeps_order() {
    let dir = temp_dir("outage");
    // Persistent broker and subscriber, as in production: otherwise the
    // stand-in gateway misses what the kiosk sends while it resubscribes
    // after the restart, and sees those events late (resent), out of order.
    let mut broker = Mosquitto::start_persistent(&dir);
    let kiosk_id = unique_kiosk("k-outage");
    let config = kiosk_config(&dir, broker.port, &kiosk_id);
    let responder = Responder::start_persistent(broker.port, "site-t", &kiosk_id);
    let kiosk = Kiosk::start(&config).unwrap();
    let writer = kiosk.writer().unwrap();

    // Steady ingest from a producer thread while the broker goes away.
    let producer = std::thread::spawn(move || {
        for i in 0..6000u64 {
            writer
                .submit_with(agent::writer::Submission {
                    created_at: UtcMillis::now(),
                    body: examples::arrival().body,
                    reply: None,
                })
                .unwrap();
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    wait_until(Duration::from_secs(30), "first events delivered", || {
        responder.distinct() > 500
    });
    broker.kill();
    std::thread::sleep(Duration::from_secs(4));
    let backlog_during_outage = kiosk.backlog();
    broker.restart();
    producer.join().unwrap();
    wait_until(Duration::from_secs(60), "outbox empty after outage", || {
        kiosk.backlog() == 0 && responder.distinct() == 6000
    });

    let seen = responder.seen.lock().unwrap();
    assert_eq!(
        seen.events.keys().copied().collect::<Vec<_>>(),
        (1..=6000).collect::<Vec<_>>()
    );
    assert!(seen.conflicts.is_empty());
    assert!(
        seen.first_seen_order.windows(2).all(|w| w[0] < w[1]),
        "events first arrived out of seq order"
    );
    assert!(
        backlog_during_outage > 0,
        "the outage should have built a backlog"
    );
    assert!(kiosk.forwarder.connects.load(Ordering::Relaxed) >= 2);
    drop(seen);
    kiosk.shutdown().unwrap();
    let outbox = Outbox::open(&config.agent.outbox, "site-t", &kiosk_id).unwrap();
    let stats = outbox.stats().unwrap();
    assert_eq!(
        (stats.backlog, stats.next_seq, stats.acked_events),
        (0, 6001, 6000)
    );
}

#[test]
fn withheld_acks_keep_events_and_resend_then_exact_ranges_release() {
    let dir = temp_dir("acks");
    let kiosk_id = unique_kiosk("k-acks");
    require_service(1883, "Mosquitto");
    let mut config = kiosk_config(&dir, 1883, &kiosk_id);
    // One-event commits make one-event batches: let them all be in flight.
    config.agent.forwarder.window_batches = 1000;
    let responder = Responder::start(1883, "site-t", &kiosk_id);
    responder.acking.store(false, Ordering::Relaxed);
    let kiosk = Kiosk::start(&config).unwrap();
    submit_n(&kiosk, 1000);
    wait_until(Duration::from_secs(20), "all 1000 received", || {
        responder.distinct() == 1000
    });
    // No ack: nothing is deleted, and the batches come again after the timeout.
    wait_until(Duration::from_secs(20), "a resend", || {
        kiosk.forwarder.batches_resent.load(Ordering::Relaxed) > 0
    });
    assert_eq!(kiosk.backlog(), 1000);
    assert!(responder.seen.lock().unwrap().duplicates > 0);

    // An ack for a later range releases exactly that range.
    responder.ack(
        "site-t",
        &kiosk_id,
        &Ack::new(vec![SeqRange::new(401, 600)]),
    );
    wait_until(Duration::from_secs(10), "range 401-600 released", || {
        kiosk.backlog() == 800
    });
    // Duplicate and stale acks change nothing.
    responder.ack(
        "site-t",
        &kiosk_id,
        &Ack::new(vec![SeqRange::new(401, 600)]),
    );
    responder.ack(
        "site-t",
        &kiosk_id,
        &Ack::new(vec![SeqRange::new(5000, 9000)]),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(kiosk.backlog(), 800);
    kiosk.shutdown().unwrap();

    let outbox = Outbox::open(&config.agent.outbox, "site-t", &kiosk_id).unwrap();
    let left: Vec<u64> = outbox
        .read_from(0, 2000)
        .unwrap()
        .iter()
        .map(|e| e.identity.seq)
        .collect();
    let expected: Vec<u64> = (1..=400).chain(601..=1000).collect();
    assert_eq!(left, expected);
    assert_eq!(outbox.stats().unwrap().last_acked_seq, 600);
}

#[test]
fn cap_policies_count_and_record_exactly() {
    let dir = temp_dir("cap");
    // No broker at this port: the kiosk is offline throughout.
    let port = free_port();
    for policy in [FullPolicy::RejectNew, FullPolicy::DropOldest] {
        let kiosk_id = unique_kiosk("k-cap");
        let mut config = kiosk_config(&dir, port, &kiosk_id);
        config.agent.outbox.max_events = 1000;
        config.agent.outbox.full_policy = policy;
        config.agent.outbox.commit_max_events = 100;
        let kiosk = Kiosk::start(&config).unwrap();
        let w = kiosk.writer().unwrap();
        let mut outcomes = Vec::new();
        for _ in 0..1250 {
            outcomes.push(
                w.submit(UtcMillis::now(), examples::arrival().body)
                    .unwrap(),
            );
        }
        drop(w);
        kiosk.shutdown().unwrap();
        let outbox = Outbox::open(&config.agent.outbox, "site-t", &kiosk_id).unwrap();
        let s = outbox.stats().unwrap();
        let accepted = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Accepted(_)))
            .count();
        match policy {
            FullPolicy::RejectNew => {
                assert_eq!(accepted, 1000);
                assert_eq!(
                    (s.rejected_checkins, s.dropped_events, s.next_seq),
                    (250, 0, 1001)
                );
                assert_eq!(s.backlog, 1000);
            }
            FullPolicy::DropOldest => {
                assert_eq!(accepted, 1250);
                assert_eq!(
                    (s.rejected_checkins, s.dropped_events, s.next_seq),
                    (0, 250, 1251)
                );
                let dropped = outbox.all_dropped_ranges().unwrap();
                let seqs = dropped.iter().flat_map(|r| r.first..=r.last);
                assert_eq!(contract::mqtt::ranges_of(seqs), vec![SeqRange::new(1, 250)]);
                let covered: u64 = outbox
                    .all_dropped_ranges()
                    .unwrap()
                    .iter()
                    .map(|r| r.len())
                    .sum();
                assert_eq!(covered, 250);
                assert!(outbox
                    .all_dropped_ranges()
                    .unwrap()
                    .iter()
                    .all(|r| r.last <= 250));
                assert_eq!(s.backlog, 1000);
                assert_eq!(outbox.read_from(0, 1).unwrap()[0].identity.seq, 251);
            }
        }
    }
}

#[test]
fn kill_9_during_ingest_then_restart_continues_seq_and_delivers_everything() {
    let dir = temp_dir("kill9");
    let kiosk_id = unique_kiosk("k-kill");
    let config_path = dir.join("agent.toml");
    std::fs::write(
        &config_path,
        format!(
            "[agent]\nsite_id = \"site-t\"\nkiosk_id = \"{kiosk_id}\"\nstatus_interval_ms = 500\n\
             [agent.outbox]\npath = \"{}\"\n\
             [agent.forwarder]\nack_timeout_ms = 2000\nreconnect_min_ms = 50\n\
             [agent.simulation]\nseed = 9\nclock_speed = 0.0\narrivals_per_hour = 500.0\n",
            dir.join("outbox.db").display()
        ),
    )
    .unwrap();
    require_service(1883, "Mosquitto");
    let agent_bin = env!("CARGO_BIN_EXE_agent");
    let spawn = |extra: &[&str]| {
        ChildGuard(
            program(agent_bin)
                .arg("--config")
                .arg(&config_path)
                .arg("run")
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    // Heavy ingest with nobody acking; kill -9 in the middle of it.
    let mut child = spawn(&[]);
    let outbox_cfg = contract::config::OutboxConfig {
        path: dir.join("outbox.db").display().to_string(),
        ..Default::default()
    };
    wait_until(Duration::from_secs(30), "ingest under way", || {
        Outbox::open(&outbox_cfg, "site-t", &kiosk_id)
            .and_then(|o| o.stats())
            .map(|s| s.next_seq > 20_000)
            .unwrap_or(false)
    });
    child.kill(); // SIGKILL
    let committed = Outbox::open(&outbox_cfg, "site-t", &kiosk_id)
        .unwrap()
        .stats()
        .unwrap()
        .next_seq
        - 1;
    assert!(committed > 20_000);

    // Restart with a gateway stand-in: 5000 more events, then drain.
    let responder = Responder::start(1883, "site-t", &kiosk_id);
    let mut child = spawn(&["--events", "5000", "--drain"]);
    let status = loop {
        if let Some(s) = child.try_wait() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let seen = responder.seen.lock().unwrap();
    let total = committed + 5000;
    assert!(
        seen.conflicts.is_empty(),
        "a seq was reused: {:?}",
        &seen.conflicts[..5.min(seen.conflicts.len())]
    );
    assert_eq!(seen.events.len() as u64, total);
    assert_eq!(seen.events.keys().next_back(), Some(&total));
    let stats = Outbox::open(&outbox_cfg, "site-t", &kiosk_id)
        .unwrap()
        .stats()
        .unwrap();
    assert_eq!((stats.backlog, stats.next_seq), (0, total + 1));
}

/// The scripted kiosk check (also run on the cross-compiled agent under
/// qemu by `scripts/cross-build.sh TARGET --test`): the `agent` program
/// itself keeps checking patients in while its broker is down, then
/// delivers the whole backlog once the broker is back, and exits drained.
#[test]
fn the_agent_program_buffers_while_the_broker_is_down_and_delivers_after_it_returns() {
    let dir = temp_dir("bin-outage");
    let mut broker = Mosquitto::start(&dir);
    broker.kill();
    let kiosk = unique_kiosk("bin");
    let outbox_path = dir.join("outbox.db");
    let config_path = dir.join("agent.toml");
    std::fs::write(
        &config_path,
        format!(
            "[agent]\nsite_id = \"site-t\"\nkiosk_id = \"{kiosk}\"\nstatus_interval_ms = 500\n\
             [agent.outbox]\npath = \"{}\"\n\
             [agent.forwarder]\nack_timeout_ms = 2000\nreconnect_min_ms = 50\nreconnect_max_ms = 500\n\
             [agent.simulation]\nseed = 11\nclock_speed = 0.0\narrivals_per_hour = 500.0\n\
             [mqtt]\nport = {}\n",
            outbox_path.display(),
            broker.port
        ),
    )
    .unwrap();
    let n = 3000u64;
    let mut agent = ChildGuard(
        program(env!("CARGO_BIN_EXE_agent"))
            .arg("--config")
            .arg(&config_path)
            .args(["run", "--events", &n.to_string(), "--drain"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Broker down: every check-in is kept.
    let outbox_cfg = contract::config::OutboxConfig {
        path: outbox_path.display().to_string(),
        ..Default::default()
    };
    wait_until(Duration::from_secs(120), "all check-ins buffered", || {
        Outbox::open(&outbox_cfg, "site-t", &kiosk)
            .ok()
            .and_then(|o| o.stats().ok())
            .is_some_and(|s| s.backlog == n)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(agent.try_wait().is_none(), "still waiting to drain");
    // Broker back, gateway acknowledging: the backlog drains and the agent exits.
    broker.restart();
    let gateway = Responder::start(broker.port, "site-t", &kiosk);
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = agent.try_wait() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not drain within 180 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "agent exit status {status}");
    assert_eq!(gateway.distinct() as u64, n, "every check-in delivered");
    let stats = Outbox::open(&outbox_cfg, "site-t", &kiosk)
        .unwrap()
        .stats()
        .unwrap();
    assert_eq!(stats.backlog, 0);
    assert_eq!(stats.next_seq, n + 1);
}

//! The bridge against a real Mosquitto (a private one per test, so shared
//! subscriptions never see another test's kiosks) and the Kafka-compatible
//! broker (the shared one, or a private one for the outage test).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use agent::kiosk::Kiosk;
use agent::writer::Submission;
use common::*;
use contract::event::examples;
use contract::mqtt::{ack_topic, events_topic, Ack, SeqRange};
use contract::record::from_json;
use contract::wire::encode_batch;
use contract::{Event, UtcMillis};
use rumqttc::{Client, MqttOptions, QoS};
use testkit::*;

/// Submit `n` simulated events to a kiosk without waiting for each commit.
fn feed(kiosk: &Kiosk, n: u64, seed: u64) {
    let cfg = contract::config::SimulationConfig {
        seed,
        clock_speed: 0.0,
        arrivals_per_hour: 60.0,
        ..Default::default()
    };
    let mut sim =
        agent::sim::Reception::new(&cfg, seed, UtcMillis::from_parts(2026, 12, 7, 8, 0, 0, 0));
    let w = kiosk.writer().unwrap();
    for _ in 0..n {
        let (_, body) = sim.next_event().unwrap();
        w.submit_with(Submission {
            created_at: UtcMillis::now(),
            body,
            reply: None,
        })
        .unwrap();
    }
}

/// Wait until the kiosk has committed `n` events and Kafka holds them all
/// (its backlog is empty only after end-to-end acks).
fn wait_acked(kiosk: &Kiosk, n: u64, secs: u64) {
    wait_until(
        Duration::from_secs(secs),
        &format!("all {n} acknowledged"),
        || kiosk.writer_stats.accepted.load(Ordering::Relaxed) == n && kiosk.backlog() == 0,
    );
}

fn event_ids(recs: &[Rec]) -> BTreeSet<String> {
    recs.iter().map(|r| r.headers["event_id"].clone()).collect()
}

/// Assert that `recs` hold exactly `{kiosk}-1 ..= {kiosk}-{n}`, reporting
/// counts and the first missing ids rather than whole sets.
fn assert_exactly(recs: &[Rec], kiosk: &str, n: u64) {
    let ids = event_ids(recs);
    let missing: Vec<String> = (1..=n)
        .map(|s| format!("{kiosk}-{s}"))
        .filter(|id| !ids.contains(id))
        .collect();
    assert!(
        missing.is_empty() && ids.len() as u64 == n,
        "{} distinct ids read ({} records), {} missing, e.g. {:?}",
        ids.len(),
        recs.len(),
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

#[test]
fn records_carry_the_contract_key_headers_and_fields() {
    let dir = temp_dir("bridge-contract");
    let mosquitto = Mosquitto::start(&dir);
    let mut config = test_config(&dir, mosquitto.port, &shared_kafka());
    config.bridge.metrics_addr = "127.0.0.1:0".into();
    let bridge = start_bridge(&config);
    let kiosk = Kiosk::start(&config).unwrap();
    feed(&kiosk, 300, 1);
    wait_acked(&kiosk, 300, 60);
    let recs = read_distinct(
        &config.kafka.bootstrap_servers,
        &config.kafka.topic,
        300,
        Duration::from_secs(30),
    );
    assert_exactly(&recs, &config.agent.kiosk_id, 300);
    let mut partitions_of_key: HashMap<String, BTreeSet<i32>> = HashMap::new();
    for r in &recs {
        let event: Event = from_json(&r.value).unwrap();
        assert_eq!(r.key, format!("site-t/{}", event.body.modality()));
        assert_eq!(r.headers["event_id"], event.event_id());
        assert_eq!(r.headers["schema_version"], "1");
        assert_eq!(r.headers["event_type"], event.body.event_type());
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.value, contract::record::to_json(&event));
        partitions_of_key
            .entry(r.key.clone())
            .or_default()
            .insert(r.partition);
    }
    // One queue, one partition.
    assert!(partitions_of_key.values().all(|p| p.len() == 1));
    assert_eq!(bridge.metrics.records_produced.get(), 300);
    assert!(bridge.metrics.acks_sent.get() > 0);
    kiosk.shutdown().unwrap();
    bridge.stop();
}

#[test]
fn bad_input_lands_in_the_dead_letter_topic_and_valid_events_go_through() {
    let dir = temp_dir("bridge-dlq");
    let mosquitto = Mosquitto::start(&dir);
    let mut config = test_config(&dir, mosquitto.port, &shared_kafka());
    config.bridge.max_payload_bytes = 4096;
    let bridge = start_bridge(&config);

    let mut o = MqttOptions::new("injector", "127.0.0.1", mosquitto.port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = Client::new(o, 100);
    let acks_seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Ack>::new()));
    {
        let acks_seen = acks_seen.clone();
        let client = client.clone();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        client
                            .subscribe(ack_topic("site-a", "kiosk-01"), QoS::AtLeastOnce)
                            .unwrap();
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        acks_seen
                            .lock()
                            .unwrap()
                            .push(Ack::from_json(&p.payload).unwrap());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    _ => {}
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let topic = events_topic("site-a", "kiosk-01");
    let mut future_version = encode_batch(&[examples::arrival()]);
    future_version[0] = 9;
    let mut oversize_batch = Vec::new();
    for seq in 100..200 {
        let mut e = examples::arrival();
        e.identity.seq = seq;
        oversize_batch.push(e);
    }
    let oversize = encode_batch(&oversize_batch);
    assert!(oversize.len() > 4096);
    // A valid batch with an impostor in the middle.
    let good1 = examples::arrival();
    let mut impostor = examples::arrival();
    impostor.identity.kiosk_id = "kiosk-02".into();
    impostor.identity.seq = 2;
    let mut good2 = examples::status_change();
    good2.identity.seq = 3;
    let mixed = encode_batch(&[good1, impostor, good2]);
    for payload in [
        b"\x01\xff\xfe garbage".to_vec(),
        future_version,
        oversize,
        mixed,
    ] {
        client
            .publish(&topic, QoS::AtLeastOnce, false, payload)
            .unwrap();
    }

    let dlq = read_topic(
        &config.kafka.bootstrap_servers,
        &config.kafka.dlq_topic,
        4,
        Duration::from_secs(30),
    );
    let mut reasons: Vec<&str> = dlq
        .iter()
        .map(|r| r.headers["dlq.reason"].as_str())
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        [
            "identity_mismatch",
            "malformed",
            "oversize",
            "unknown_version"
        ]
    );
    for r in &dlq {
        assert_eq!(r.headers["dlq.source"], topic);
        assert_eq!(r.headers["dlq.stage"], "bridge");
        assert!(!r.headers["dlq.detail"].is_empty());
    }
    let garbage = dlq
        .iter()
        .find(|r| r.headers["dlq.reason"] == "malformed")
        .unwrap();
    assert_eq!(garbage.value, b"\x01\xff\xfe garbage");
    let impostor = dlq
        .iter()
        .find(|r| r.headers["dlq.reason"] == "identity_mismatch")
        .unwrap();
    assert_eq!(impostor.headers["event_id"], "kiosk-02-2");

    let good = read_topic(
        &config.kafka.bootstrap_servers,
        &config.kafka.topic,
        2,
        Duration::from_secs(30),
    );
    assert_eq!(
        event_ids(&good),
        ["kiosk-01-1", "kiosk-01-3"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    wait_until(Duration::from_secs(10), "ack of the mixed batch", || {
        !acks_seen.lock().unwrap().is_empty()
    });
    assert_eq!(
        acks_seen.lock().unwrap()[0].ranges,
        vec![SeqRange::new(1, 1), SeqRange::new(3, 3)]
    );
    assert_eq!(bridge.metrics.dead_letters.total(), 4);
    assert_eq!(bridge.metrics.dead_letters.get("oversize"), 1);
    bridge.stop();
}

#[test]
fn kafka_outage_withholds_acks_then_everything_arrives() {
    let dir = temp_dir("bridge-kafka-outage");
    let _ = env_logger::builder().is_test(true).try_init();
    let mosquitto = Mosquitto::start(&dir);
    let mut tansu = Tansu::start(&dir);
    let config = test_config(&dir, mosquitto.port, &tansu.bootstrap());
    let bridge = start_bridge(&config);
    let kiosk = Kiosk::start(&config).unwrap();
    feed(&kiosk, 500, 2);
    wait_acked(&kiosk, 500, 60);

    tansu.kill();
    feed(&kiosk, 1500, 3);
    std::thread::sleep(Duration::from_secs(2));
    let acks_at_outage = bridge.metrics.acks_sent.get();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        bridge.metrics.acks_sent.get(),
        acks_at_outage,
        "no ack while Kafka is down"
    );
    assert_eq!(
        kiosk.backlog(),
        1500,
        "the kiosk keeps everything meanwhile"
    );
    assert!(bridge.metrics.in_flight.get() > 0, "batches wait for Kafka");

    tansu.restart();
    wait_until(
        Duration::from_secs(120),
        "backlog drained after Kafka returns",
        || kiosk.backlog() == 0,
    );
    let recs = read_distinct(
        &config.kafka.bootstrap_servers,
        &config.kafka.topic,
        2000,
        Duration::from_secs(60),
    );
    assert_exactly(&recs, &config.agent.kiosk_id, 2000);
    kiosk.shutdown().unwrap();
    bridge.stop();
}

fn spawn_bridge(config_path: &std::path::Path) -> ChildGuard {
    ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("--config")
            .arg(config_path)
            .arg("bridge")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn kill_9_of_a_bridge_mid_stream_loses_nothing() {
    let dir = temp_dir("bridge-kill");
    let mosquitto = Mosquitto::start(&dir);
    let config = test_config(&dir, mosquitto.port, &shared_kafka());
    let path = write_config(&dir, "bridge.toml", &config);
    let mut bridge = spawn_bridge(&path);
    let kiosk = Kiosk::start(&config).unwrap();
    for round in 0..4 {
        feed(&kiosk, 1000, 10 + round);
        std::thread::sleep(Duration::from_millis(300));
        if round == 1 {
            bridge.kill(); // SIGKILL
            std::thread::sleep(Duration::from_millis(500));
            bridge = spawn_bridge(&path);
        }
    }
    wait_acked(&kiosk, 4000, 120);
    let recs = read_distinct(
        &config.kafka.bootstrap_servers,
        &config.kafka.topic,
        4000,
        Duration::from_secs(60),
    );
    assert_exactly(&recs, &config.agent.kiosk_id, 4000);
    kiosk.shutdown().unwrap();
    bridge.kill();
}

#[test]
fn two_bridges_split_the_load_and_losing_one_loses_nothing() {
    let dir = temp_dir("bridge-share");
    let mosquitto = Mosquitto::start(&dir);
    let base = test_config(&dir, mosquitto.port, &shared_kafka());
    let mut a = base.clone();
    a.bridge.client_id = format!("{}-a", base.bridge.client_id);
    a.bridge.metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut b = base.clone();
    b.bridge.client_id = format!("{}-b", base.bridge.client_id);
    b.bridge.metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut bridge_a = spawn_bridge(&write_config(&dir, "a.toml", &a));
    let mut bridge_b = spawn_bridge(&write_config(&dir, "b.toml", &b));
    let batches = |cfg: &contract::config::Config| -> u64 {
        let addr = cfg.bridge.metrics_addr.parse().unwrap();
        gateway::http::get(addr, "/metrics")
            .ok()
            .and_then(|(_, body)| {
                body.lines().find_map(|l| {
                    l.strip_prefix("bridge_batches_received_total ")
                        .map(|v| v.parse().unwrap())
                })
            })
            .unwrap_or(0)
    };
    wait_until(Duration::from_secs(30), "both bridges serving", || {
        gateway::http::get(a.bridge.metrics_addr.parse().unwrap(), "/health")
            .is_ok_and(|r| r.0 == 200)
            && gateway::http::get(b.bridge.metrics_addr.parse().unwrap(), "/health")
                .is_ok_and(|r| r.0 == 200)
    });
    // Several kiosks, so the share group has many batches to split.
    let mut kiosks = Vec::new();
    for i in 0..4 {
        let mut k = base.clone();
        k.agent.kiosk_id = format!("{}-{i}", base.agent.kiosk_id);
        k.agent.outbox.path = dir.join(format!("k{i}.db")).display().to_string();
        k.agent.forwarder.batch_max_events = 50;
        let kiosk = Kiosk::start(&k).unwrap();
        feed(&kiosk, 1000, 20 + i);
        kiosks.push((k, kiosk));
    }
    wait_until(Duration::from_secs(60), "both bridges got batches", || {
        batches(&a) > 0 && batches(&b) > 0
    });
    bridge_a.kill();
    for (i, (_, kiosk)) in kiosks.iter().enumerate() {
        feed(kiosk, 500, 40 + i as u64);
    }
    wait_until(
        Duration::from_secs(120),
        "every kiosk drained through the surviving bridge",
        || {
            kiosks.iter().all(|(_, k)| {
                k.writer_stats.accepted.load(Ordering::Relaxed) == 1500 && k.backlog() == 0
            })
        },
    );
    let recs = read_distinct(
        &base.kafka.bootstrap_servers,
        &base.kafka.topic,
        6000,
        Duration::from_secs(60),
    );
    let ids = event_ids(&recs);
    for (k, _) in &kiosks {
        for seq in 1..=1500 {
            assert!(
                ids.contains(&format!("{}-{seq}", k.agent.kiosk_id)),
                "missing {}-{seq}",
                k.agent.kiosk_id
            );
        }
    }
    assert_eq!(ids.len(), 6000);
    for (_, kiosk) in kiosks {
        kiosk.shutdown().unwrap();
    }
    bridge_b.kill();
}

#[test]
fn a_bridge_stops_when_asked_even_with_its_broker_gone() {
    let dir = temp_dir("bridge-stop-broker-gone");
    let mut mosquitto = Mosquitto::start(&dir);
    let config = test_config(&dir, mosquitto.port, &shared_kafka());
    let bridge = start_bridge(&config);
    wait_until(Duration::from_secs(30), "the bridge connected", || {
        bridge.metrics.mqtt_connected.get() == 1
    });
    mosquitto.kill();
    wait_until(
        Duration::from_secs(30),
        "the bridge saw the broker go",
        || bridge.metrics.mqtt_connected.get() == 0,
    );
    // Its DISCONNECT cannot go out; stopping must still end the bridge
    // (it used to wait forever for its MQTT link thread).
    let (done_tx, done) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        bridge.stop();
        let _ = done_tx.send(());
    });
    assert!(
        done.recv_timeout(Duration::from_secs(60)).is_ok(),
        "the bridge did not stop within 60 s of being asked"
    );
}

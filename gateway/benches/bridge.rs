//! Bridge benchmark (`cargo bench -p gateway --bench bridge`): MQTT -> Kafka
//! events/s through the real bridge, beside the broker's own limit measured
//! in the same run by a plain producer writing the same records with the same
//! settings (idempotent, acks=all). Private Mosquitto and Tansu instances;
//! once with durable sqlite storage, once with memory storage.
//!
//! `KTK_BENCH_EVENTS` sets the events per run (default 200,000).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use contract::config::Config;
use contract::mqtt::events_topic;
use contract::wire::encode_batch;
use contract::Event;
use gateway::bridge::{self, BridgeMetrics};
use rumqttc::{Client, MqttOptions, QoS};
use testkit::{temp_dir, wait_until, Mosquitto, Tansu};

mod common;
use common::{events, producer_limit, KIOSKS};

const BATCH: usize = 500;

fn config(dir: &std::path::Path, mqtt: u16, kafka: &str, tag: &str) -> Config {
    let mut c = Config::default();
    c.mqtt.port = mqtt;
    c.kafka.bootstrap_servers = kafka.into();
    c.kafka.topic = format!("bench_{tag}");
    c.kafka.dlq_topic = format!("bench_{tag}.dlq");
    c.bridge.client_id = format!("bench-bridge-{tag}");
    c.bridge.metrics_addr = String::new();
    c.agent.outbox.path = dir.join("unused.db").display().to_string();
    c
}

/// Kiosk batches published to MQTT, carried by the bridge, confirmed by Kafka.
fn bridge_rate(c: &Config, events: &[Event]) -> f64 {
    let metrics = Arc::new(BridgeMetrics::default());
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (c, metrics, stop) = (c.clone(), metrics.clone(), stop.clone());
        std::thread::spawn(move || bridge::run(&c, stop, metrics))
    };
    wait_until(Duration::from_secs(30), "bridge connected", || {
        metrics.mqtt_connected.get() == 1
    });
    std::thread::sleep(Duration::from_millis(500));
    let payloads: Vec<(String, Vec<u8>)> = (0..KIOSKS)
        .flat_map(|k| {
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| e.identity.kiosk_id == format!("kiosk-{k}"))
                .cloned()
                .collect();
            mine.chunks(BATCH)
                .map(|b| {
                    (
                        events_topic("site-b", &format!("kiosk-{k}")),
                        encode_batch(b),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut o = MqttOptions::new("bench-publisher", "127.0.0.1", c.mqtt.port);
    o.set_max_packet_size(16 << 20, 16 << 20).set_inflight(200);
    let (client, mut conn) = Client::new(o, 1000);
    let pump = std::thread::spawn(move || for _ in conn.iter().take_while(|e| e.is_ok()) {});
    let start = Instant::now();
    for (topic, payload) in payloads {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .unwrap();
    }
    let n = events.len() as u64;
    wait_until(
        Duration::from_secs(600),
        "bridge produced everything",
        || metrics.records_produced.get() >= n,
    );
    let secs = start.elapsed().as_secs_f64();
    println!(
        "    bridge p50/p99 Kafka delivery latency: {:.3}/{:.3} s, retries {}",
        metrics.delivery_latency.quantile(0.5),
        metrics.delivery_latency.quantile(0.99),
        metrics.batch_retries.get()
    );
    stop.store(true, Ordering::Relaxed);
    let _ = client.disconnect();
    thread.join().unwrap().unwrap();
    let _ = pump.join();
    n as f64 / secs
}

fn main() {
    let Some(n) = common::bench_events(200_000) else {
        return;
    };
    let events = events(n);
    for (label, engine) in [
        ("sqlite (durable)", "sqlite://tansu.db"),
        ("memory", "memory://tansu/"),
    ] {
        let dir = temp_dir("bench-bridge");
        let mosquitto = Mosquitto::start(&dir);
        let tansu = Tansu::start_with(&dir, engine);
        let limit = producer_limit(
            &config(&dir, mosquitto.port, &tansu.bootstrap(), "limit"),
            &events,
        );
        let rate = bridge_rate(
            &config(&dir, mosquitto.port, &tansu.bootstrap(), "bridge"),
            &events,
        );
        println!(
            "Tansu {label}: {n} events; plain producer {limit:.0} events/s; MQTT->bridge->Kafka {rate:.0} events/s = {:.0}% of the limit",
            100.0 * rate / limit
        );
        drop(tansu);
        drop(mosquitto);
        let _ = std::fs::remove_dir_all(dir);
    }
}

//! What the gateway benchmarks share: the simulated events of a site with
//! several kiosks.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use agent::sim::Reception;
use contract::config::{Config, MysqlConfig, SimulationConfig};
use contract::{Event, EventBody, Identity, UtcMillis};
use crossbeam_channel::unbounded;
use gateway::kafka::{self, PreparedRecord, Token};
use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts, Value};

/// Events per run: `KTK_BENCH_EVENTS` or `default`; `None` when cargo only
/// lists the benchmarks (`--list`).
pub fn bench_events(default: u64) -> Option<u64> {
    if std::env::args().any(|a| a == "--list") {
        return None;
    }
    Some(env_number("KTK_BENCH_EVENTS", default))
}

/// The number in environment variable `name`, or `default`.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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

/// The broker's own limit: a plain producer, same settings, same records.
pub fn producer_limit(c: &Config, events: &[Event]) -> f64 {
    kafka::ensure_topics(&c.kafka).unwrap();
    let records: Vec<PreparedRecord> = events
        .iter()
        .map(|e| PreparedRecord::event(&c.kafka.topic, e))
        .collect();
    let (tx, rx) = unbounded();
    let producer = kafka::reporting_producer(&c.kafka, tx).unwrap();
    let start = Instant::now();
    for r in &records {
        let token = Token {
            batch: 0,
            attempt: 1,
            sent_at: Instant::now(),
        };
        kafka::send_record(&producer, r, token).unwrap();
    }
    kafka::flush(&producer, Duration::from_secs(600)).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let failed = rx.try_iter().filter(|d| d.error.is_some()).count();
    assert_eq!(failed, 0);
    events.len() as f64 / secs
}

/// MariaDB's multi-row insert limit for rows like `patients`.
pub fn mariadb_limit(cfg: &MysqlConfig, events: &[Event]) -> f64 {
    let mut conn = Conn::new(gateway::store::mysql::opts(cfg, true)).unwrap();
    conn.query_drop("DROP TABLE IF EXISTS raw_limit").unwrap();
    conn.query_drop(
        "CREATE TABLE raw_limit (
            id INT AUTO_INCREMENT PRIMARY KEY,
            event_id VARCHAR(80) NOT NULL, patient_id VARCHAR(50), patient_name VARCHAR(100),
            arrival_time DATETIME(3), modality VARCHAR(20), site_id VARCHAR(32) NOT NULL,
            kiosk_id VARCHAR(32) NOT NULL, seq BIGINT UNSIGNED NOT NULL, predicted_wait_minutes FLOAT,
            ingested_at DATETIME(3) NOT NULL,
            UNIQUE KEY uq_raw_event (event_id)
         ) ENGINE=InnoDB",
    )
    .unwrap();
    let row = "(?, ?, ?, UTC_TIMESTAMP(3), ?, ?, ?, ?, ?, UTC_TIMESTAMP(3))";
    let start = Instant::now();
    for batch in events.chunks(2000) {
        let mut tx = conn.start_transaction(TxOpts::default()).unwrap();
        for chunk in batch.chunks(1000) {
            let mut params = Vec::with_capacity(chunk.len() * 8);
            for e in chunk {
                let (patient, modality) = match &e.body {
                    EventBody::Arrival(a) => (a.patient_id.clone(), a.modality.as_str()),
                    EventBody::StatusChange(s) => (s.patient_id.clone(), s.modality.as_str()),
                };
                params.extend([
                    Value::from(e.event_id()),
                    Value::from(patient),
                    Value::from("Bench Patient"),
                    Value::from(modality),
                    Value::from(&e.identity.site_id),
                    Value::from(&e.identity.kiosk_id),
                    Value::from(e.identity.seq),
                    Value::from(30.0f32),
                ]);
            }
            let values = vec![row; chunk.len()].join(", ");
            tx.exec_drop(
                format!(
                    "INSERT INTO raw_limit (event_id, patient_id, patient_name, arrival_time, modality,
                        site_id, kiosk_id, seq, predicted_wait_minutes, ingested_at)
                     VALUES {values} ON DUPLICATE KEY UPDATE seq = VALUES(seq)"
                ),
                params,
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    events.len() as f64 / start.elapsed().as_secs_f64()
}

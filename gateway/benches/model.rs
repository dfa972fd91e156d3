//! Model benchmark (`cargo bench -p gateway --bench model`): tract
//! predictions/s one row at a time and in batches of 256, and the cost per
//! event of queue-state update + feature extraction + batched prediction on
//! the simulation's event stream.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::time::Instant;

use agent::sim::Reception;
use contract::config::SimulationConfig;
use contract::{EventBody, UtcMillis};
use gateway::features::{features, Row};
use gateway::predictor::Predictor;
use gateway::queue::QueueBook;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/wait_time.onnx");
    let p = Predictor::load(&model, 0.0, 480.0).unwrap();
    let cfg = SimulationConfig::default();
    let mut sim = Reception::new(&cfg, 3, UtcMillis::from_parts(2026, 12, 7, 0, 0, 0, 0));
    let mut book = QueueBook::new([cfg.rooms_consultation, cfg.rooms_mri, cfg.rooms_ct]);
    let mut rows: Vec<Row> = Vec::new();
    let mut events = Vec::new();
    while rows.len() < 100_000 {
        let (_, body) = sim.next_event().unwrap();
        if let EventBody::Arrival(a) = &body {
            let snap = book.arrive("s", a);
            rows.push(features(a, &snap));
        } else if let EventBody::StatusChange(s) = &body {
            book.status("s", s);
        }
        events.push(body);
    }

    let n = 20_000;
    let t = Instant::now();
    for r in rows.iter().take(n) {
        std::hint::black_box(p.predict(std::slice::from_ref(r)).unwrap());
    }
    let one = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for chunk in rows.chunks(256) {
        std::hint::black_box(p.predict(chunk).unwrap());
    }
    let batched = rows.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "tract predictions: one row per call {one:.0} rows/s; batches of 256 {batched:.0} rows/s"
    );

    // Queue state + features + batched prediction, per event of the stream.
    let t = Instant::now();
    let mut book = QueueBook::new([cfg.rooms_consultation, cfg.rooms_mri, cfg.rooms_ct]);
    let mut pending: Vec<Row> = Vec::with_capacity(256);
    for body in &events {
        match body {
            EventBody::Arrival(a) => {
                let snap = book.arrive("s", a);
                pending.push(features(a, &snap));
                if pending.len() == 256 {
                    std::hint::black_box(p.predict(&pending).unwrap());
                    pending.clear();
                }
            }
            EventBody::StatusChange(s) => book.status("s", s),
        }
    }
    std::hint::black_box(p.predict(&pending).unwrap());
    let per_event = t.elapsed().as_secs_f64() / events.len() as f64;
    println!(
        "queue state + features + prediction: {:.2} µs per event ({} events, {:.0} events/s)",
        per_event * 1e6,
        events.len(),
        1.0 / per_event
    );
}

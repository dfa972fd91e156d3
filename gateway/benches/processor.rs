//! Processor benchmark (`cargo bench -p gateway --bench processor`): Kafka ->
//! MySQL events/s through the real processor (queue state, features, one
//! prediction call and one transaction per batch, offsets committed after
//! the database), beside two limits measured in the same run:
//!
//! 1. MariaDB's own multi-row insert limit: rows shaped like `patients`,
//!    1,000-row `INSERT ... ON DUPLICATE KEY UPDATE` statements with bound
//!    parameters, one transaction per 2,000 rows (the processor's batch);
//! 2. the broker's read limit: a plain consumer reading the same topic.
//!
//! A private Tansu with durable sqlite storage; the machine's MariaDB
//! (database `ktk_bench_processor`, dropped first). `KTK_BENCH_EVENTS` sets
//! the events per run (default 200,000). `KTK_BENCH_MARIADB=private` runs
//! both the limit and the processor against a private MariaDB sized like a
//! database server (`KTK_BENCH_MARIADB_ARGS`, default a 2 GB buffer pool and
//! a 1 GB redo log) instead of the machine's (128 MB buffer pool).
//! `KTK_BENCH_TANSU=memory` uses Tansu's memory engine (not durable, cheap
//! reads) to show the processor without the durable broker's CPU.
//! `KTK_BENCH_PROCESSORS=N` runs N processors in one consumer group (each
//! its own member, consumer and connection), as N `gateway process` would,
//! started 3 s apart (the group rebalances under load).
//! The processor's time ends when the ledger holds every event, so records
//! replayed after a rebalance are not counted twice.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use contract::config::Config;
use gateway::processor::{self, ProcessorMetrics};
use mysql::prelude::Queryable;
use mysql::Conn;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use testkit::{temp_dir, wait_until, MariaDb, Tansu};

mod common;
use common::{events, mariadb_limit, producer_limit};

const DB: &str = "ktk_bench_processor";

/// The defaults, with `KTK__SECTION__KEY` environment overrides (e.g.
/// `KTK__PROCESSOR__BATCH_MAX_RECORDS=5000`), then the bench's own names.
fn config(kafka: &str) -> Config {
    let mut c =
        Config::from_sources("", "environment", std::env::vars()).unwrap_or_else(|e| panic!("{e}"));
    c.kafka.bootstrap_servers = kafka.into();
    c.kafka.topic = "bench_processor".into();
    c.kafka.dlq_topic = "bench_processor.dlq".into();
    c.processor.group_id = "bench-processors".into();
    c.processor.metrics_addr = String::new();
    c.mysql.database = DB.into();
    c.model.path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/wait_time.onnx").into();
    c
}

/// A plain consumer reading the whole topic: the broker's read limit.
fn consumer_limit(c: &Config, n: usize) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &c.kafka.bootstrap_servers)
        .set("group.id", "bench-plain-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&c.kafka.topic]).unwrap();
    let mut seen = 0;
    let mut start = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < n && Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            start.get_or_insert_with(Instant::now);
            seen += 1;
        }
    }
    assert_eq!(seen, n, "the plain consumer read the whole topic");
    n as f64 / start.unwrap().elapsed().as_secs_f64()
}

/// The real processor, from the first record consumed to the last event
/// stored (counted in the ledger, so a batch replayed after a rebalance is
/// not counted twice). Returns the rate, the metrics and the ledger's rows
/// once the processors have stopped.
fn processor_rate(c: &Config, n: u64, processes: usize) -> (f64, Arc<ProcessorMetrics>, u64) {
    let metrics = Arc::new(ProcessorMetrics::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Started 3 s apart: the group rebalances while the first is busy, as
    // when a processor is added under load.
    let threads: Vec<_> = (0..processes)
        .map(|i| {
            let (c, metrics, stop) = (c.clone(), metrics.clone(), stop.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(3 * i as u64));
                processor::run(&c, stop, metrics)
            })
        })
        .collect();
    wait_until(Duration::from_secs(120), "first record consumed", || {
        metrics.records_consumed.get() > 0
    });
    let start = Instant::now();
    // The counter first: counting the ledger all along would load MariaDB.
    wait_until(Duration::from_secs(900), "every event written", || {
        metrics.events_written.get() >= n
    });
    let mut conn = Conn::new(gateway::store::mysql::opts(&c.mysql, true)).unwrap();
    wait_until(Duration::from_secs(900), "every event stored", || {
        ledger_rows(&mut conn) >= n
    });
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap().unwrap();
    }
    (rate, metrics, ledger_rows(&mut conn))
}

fn ledger_rows(conn: &mut Conn) -> u64 {
    conn.query_first("SELECT COUNT(*) FROM event_ledger")
        .unwrap()
        .unwrap()
}

fn main() {
    let Some(n) = common::bench_events(200_000) else {
        return;
    };
    // RUST_LOG=gateway::store=debug shows each transaction's phases.
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let events = events(n);
    let dir = temp_dir("bench-processor");
    // KTK_BENCH_TANSU=memory: a broker whose reads cost little CPU, to see
    // the processor and MariaDB without the durable broker on the same cores.
    let memory_broker = std::env::var("KTK_BENCH_TANSU").as_deref() == Ok("memory");
    let processes: usize = common::env_number("KTK_BENCH_PROCESSORS", 1);
    assert!(
        !(memory_broker && processes > 1),
        "KTK_BENCH_TANSU=memory with several processors loses records: Tansu 0.6's memory \
         engine answers a fetch that starts inside a record batch from the next batch, and \
         after a rebalance a member resumes at a committed offset inside one"
    );
    let tansu = if memory_broker {
        Tansu::start_with(&dir, "memory://tansu/")
    } else {
        Tansu::start(&dir)
    };
    let mut c = config(&tansu.bootstrap());
    let private = std::env::var("KTK_BENCH_MARIADB").as_deref() == Ok("private");
    let server_args = std::env::var("KTK_BENCH_MARIADB_ARGS")
        .unwrap_or_else(|_| "--innodb-buffer-pool-size=2G --innodb-log-file-size=1G".into());
    let mariadb = private.then(|| {
        let args: Vec<&str> = server_args.split_whitespace().collect();
        let m = MariaDb::start_with(&dir, &args);
        c.mysql.port = m.port;
        m
    });
    let mariadb_kind = if private {
        format!("private MariaDB, {server_args}")
    } else {
        "the machine's MariaDB".to_string()
    };
    {
        let mut admin = Conn::new(gateway::store::mysql::opts(&c.mysql, false)).unwrap();
        admin
            .query_drop(format!("DROP DATABASE IF EXISTS {DB}"))
            .unwrap();
        admin.query_drop(format!("CREATE DATABASE {DB}")).unwrap();
    }
    let produced = producer_limit(&c, &events);
    let read = consumer_limit(&c, events.len());
    let db_limit = mariadb_limit(&c.mysql, &events);
    let (rate, m, stored) = processor_rate(&c, n, processes);
    assert_eq!(stored, n, "every event stored once");
    println!(
        "{n} events from {} kiosks (Tansu {}, {mariadb_kind})",
        common::KIOSKS,
        if memory_broker { "memory" } else { "sqlite" }
    );
    println!("  produce (setup)                 {produced:>9.0} events/s");
    println!("  broker read limit (plain consumer) {read:>6.0} events/s");
    println!("  MariaDB multi-row insert limit  {db_limit:>9.0} rows/s");
    println!(
        "  processor Kafka -> MySQL        {rate:>9.0} events/s = {:.0}% of the MariaDB limit, {:.0}% of the read limit",
        100.0 * rate / db_limit,
        100.0 * rate / read
    );
    println!(
        "  {processes} processor(s) in the group; batches of up to {} records; records consumed {} for {n} events; batches discarded by rebalances {}",
        c.processor.batch_max_records,
        m.records_consumed.get(),
        m.rebalances.get()
    );
    println!(
        "  transactions {}, p50/p99 {:.1}/{:.1} ms, mean batch {:.0} events",
        m.batches.get(),
        1000.0 * m.transaction_latency.quantile(0.5),
        1000.0 * m.transaction_latency.quantile(0.99),
        n as f64 / m.batches.get().max(1) as f64
    );
    drop(tansu);
    drop(mariadb);
    let _ = std::fs::remove_dir_all(dir);
}

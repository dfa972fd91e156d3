//! `gateway demo`, run as a program for a short, bounded time with an
//! outage: on its embedded defaults (no service at all), then against the
//! real Mosquitto, Kafka-compatible broker and MariaDB. Each run must exit 0
//! with every check-in stored exactly once, and leave no file or port
//! behind.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use contract::config::ServiceMode;
use mysql::prelude::Queryable;
use testkit::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Run the demo with its temporary files under `tmp`.
fn demo(tmp: &Path, config: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.current_dir(workspace()).env("TMPDIR", tmp).arg("demo");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.args(args).arg("--plain").output().unwrap();
    eprintln!(
        "--- demo stdout\n{}\n--- demo stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The reconciliation's total line: (generated, stored, duplicates, missing).
fn totals(stdout: &str) -> (u64, u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("total "))
        .expect("a total line");
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    (n[0], n[1], n[2], n[3])
}

fn ports_in(line: &str) -> Vec<u16> {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .filter_map(|w| w.strip_prefix("127.0.0.1:"))
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn the_demo_on_embedded_services_stores_every_check_in_once_through_an_outage() {
    let tmp = temp_dir("demo-embedded");
    let out = demo(
        &tmp,
        None,
        &["--duration", "14", "--outage-at", "4", "--outage-for", "5"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}", out.status);
    let (generated, stored, duplicates, missing) = totals(&stdout);
    assert!(generated > 50, "only {generated} check-ins in 14 s");
    assert_eq!((stored, duplicates, missing), (generated, 0, 0));
    assert!(stdout.contains("OK: every check-in"), "{stdout}");
    assert!(
        stdout.contains("backlog drained"),
        "no drain time after the outage:\n{stdout}"
    );
    assert!(
        stdout.contains("OUTAGE"),
        "the outage never showed:\n{stdout}"
    );
    // Embedded services: rumqttd and the mock cluster on loopback ports,
    // released when the demo ends; its temporary directory is gone.
    let mut ports = Vec::new();
    for l in stdout
        .lines()
        .filter(|l| l.starts_with("MQTT") || l.starts_with("Kafka"))
    {
        ports.extend(ports_in(l));
    }
    assert!(ports.len() >= 4, "service ports not shown:\n{stdout}");
    for p in ports {
        assert!(
            TcpListener::bind(("127.0.0.1", p)).is_ok(),
            "port {p} still in use after the demo"
        );
    }
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn the_demo_on_the_real_services_stores_every_check_in_once_through_an_outage() {
    require_service(1883, "Mosquitto");
    require_service(3306, "MariaDB");
    let bootstrap = shared_kafka();
    let tmp = temp_dir("demo-real");
    let mut config = test_config(&tmp, 1883, &bootstrap);
    config.kafka.partitions = 2;
    config.processor.group_id = format!("{}-processors", config.bridge.share_group);
    config.processor.metrics_addr = String::new();
    config.mysql.database = format!("ktk_demo_{}", config.bridge.share_group);
    config.demo.mqtt = ServiceMode::External;
    config.demo.kafka = ServiceMode::External;
    config.demo.database = ServiceMode::External;
    let file = write_config(&tmp, "demo.toml", &config);
    let out = demo(
        &tmp,
        Some(&file),
        &[
            "--duration",
            "12",
            "--outage-at",
            "3",
            "--outage-for",
            "4",
            "--kiosks",
            "3",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}", out.status);
    let (generated, stored, duplicates, missing) = totals(&stdout);
    assert!(generated > 30, "only {generated} check-ins in 12 s");
    assert_eq!((stored, duplicates, missing), (generated, 0, 0));
    assert!(stdout.contains("backlog drained"), "{stdout}");
    // An independent count in MariaDB: the fresh database holds exactly the
    // demo's rows, each event once.
    let mut c = db(&config);
    let rows: u64 = c
        .query_first(
            "SELECT (SELECT COUNT(*) FROM patients) + (SELECT COUNT(*) FROM status_events)",
        )
        .unwrap()
        .unwrap();
    let ledger: u64 = c
        .query_first("SELECT COUNT(*) FROM event_ledger")
        .unwrap()
        .unwrap();
    assert_eq!((rows, ledger), (generated, generated));
    c.query_drop(format!("DROP DATABASE `{}`", config.mysql.database))
        .unwrap();
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("ktk-demo-"))
        .collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

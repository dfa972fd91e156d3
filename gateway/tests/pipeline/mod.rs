//! The whole pipeline as separate processes, for the end-to-end fault suite
//! (`tests/e2e.rs`) and the pipeline benchmark (`benches/pipeline.rs`):
//!
//! ```text
//! agent x K (kiosks of two sites)  -> Mosquitto (private)  -> gateway bridge x B
//!   -> Tansu (private, durable sqlite) -> gateway process x P -> MariaDB
//! ```
//!
//! Every server is the test's own instance on its own port (MariaDB: a
//! private server when the scenario stops it, else a database of its own on
//! the machine's server), so faults never touch shared services. Agents,
//! bridges and processors are the real programs; each can be killed with
//! SIGKILL and started again.
//!
//! [`Pipeline::reconcile`] reads the truth from both ends: what each kiosk's
//! outbox committed (every seq below `next_seq`, minus the ranges its cap
//! dropped) against what MySQL holds.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::toml_of;
use agent::outbox::Outbox;
use contract::config::{Config, FullPolicy, OutboxConfig};
use contract::mqtt::SeqRange;
use mysql::prelude::Queryable;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use testkit::{program, temp_dir, wait_until, ChildGuard, MariaDb, Mosquitto, Tansu};

/// The kiosks: two sites.
pub const KIOSKS: [(&str, &str); 4] = [
    ("site-a", "kiosk-a1"),
    ("site-a", "kiosk-a2"),
    ("site-b", "kiosk-b1"),
    ("site-b", "kiosk-b2"),
];

/// How a pipeline is set up.
#[derive(Clone)]
pub struct Options {
    pub bridges: usize,
    pub processors: usize,
    /// A private MariaDB (for scenarios that stop it).
    pub private_mariadb: bool,
    /// Simulated time per real second; with the default department,
    /// ~0.005 events per simulated second per kiosk.
    pub clock_speed: f64,
    /// An outbox cap for one kiosk: (kiosk, max_events, policy).
    pub cap: Option<(&'static str, u64, FullPolicy)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bridges: 1,
            processors: 1,
            private_mariadb: false,
            clock_speed: 20_000.0,
            cap: None,
        }
    }
}

/// One kiosk: its config, its outbox and its running program, if any.
pub struct Kiosk {
    pub site: &'static str,
    pub kiosk: &'static str,
    pub config_path: PathBuf,
    pub outbox: OutboxConfig,
    pub child: Option<ChildGuard>,
    /// Events asked of the current run.
    pub events: u64,
}

/// The pipeline of one scenario.
pub struct Pipeline {
    pub dir: PathBuf,
    pub config: Config,
    pub mosquitto: Mosquitto,
    pub tansu: Tansu,
    pub mariadb: Option<MariaDb>,
    pub kiosks: Vec<Kiosk>,
    gateway_config: PathBuf,
    bridges: Vec<Option<ChildGuard>>,
    processors: Vec<Option<ChildGuard>>,
    started: Instant,
}

/// The path of a workspace program next to the gateway's (the test command
/// builds the whole workspace, so the agent is there).
fn bin(name: &str) -> PathBuf {
    let gateway = PathBuf::from(env!("CARGO_BIN_EXE_gateway"));
    let p = gateway.with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: build it first (`cargo build -p agent`; the test command builds the workspace)",
        p.display()
    );
    p
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .unwrap()
}

impl Pipeline {
    /// Start the services, the bridges and the processors (no kiosk yet).
    pub fn start(tag: &str, opts: &Options) -> Pipeline {
        let dir = temp_dir(&format!("e2e-{tag}"));
        let mosquitto = Mosquitto::start(&dir);
        let tansu = Tansu::start(&dir);
        let mariadb = opts.private_mariadb.then(|| MariaDb::start(&dir));
        let mut config = Config::default();
        config.mqtt.port = mosquitto.port;
        config.kafka.bootstrap_servers = tansu.bootstrap();
        config.bridge.metrics_addr = String::new();
        config.bridge.max_payload_bytes = 256 * 1024;
        config.processor.metrics_addr = String::new();
        config.mysql.database = format!("ktk_e2e_{}", tag.replace('-', "_"));
        if let Some(m) = &mariadb {
            config.mysql.port = m.port;
        } else {
            testkit::require_service(3306, "MariaDB");
            let mut c =
                mysql::Conn::new(gateway::store::mysql::opts(&config.mysql, false)).unwrap();
            c.query_drop(format!("DROP DATABASE IF EXISTS {}", config.mysql.database))
                .unwrap();
        }
        config.model.path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/wait_time.onnx").into();
        config.agent.status_interval_ms = 1000;
        config.agent.forwarder.ack_timeout_ms = 3000;
        config.agent.forwarder.reconnect_min_ms = 50;
        config.agent.forwarder.reconnect_max_ms = 1000;
        config.agent.simulation.clock_speed = opts.clock_speed;
        config.agent.simulation.seed = 0; // each run of an agent draws new patients
        let gateway_config = dir.join("gateway.toml");
        std::fs::write(&gateway_config, toml_of(&config)).unwrap();
        let kiosks = KIOSKS
            .iter()
            .map(|&(site, kiosk)| {
                let mut c = config.clone();
                c.agent.site_id = site.into();
                c.agent.kiosk_id = kiosk.into();
                c.agent.outbox.path = dir.join(format!("{kiosk}.db")).display().to_string();
                if let Some((k, max, policy)) = opts.cap {
                    if k == kiosk {
                        c.agent.outbox.max_events = max;
                        c.agent.outbox.full_policy = policy;
                    }
                }
                let config_path = dir.join(format!("{kiosk}.toml"));
                std::fs::write(&config_path, toml_of(&c)).unwrap();
                Kiosk {
                    site,
                    kiosk,
                    config_path,
                    outbox: c.agent.outbox.clone(),
                    child: None,
                    events: 0,
                }
            })
            .collect();
        let mut p = Pipeline {
            dir,
            config,
            mosquitto,
            tansu,
            mariadb,
            kiosks,
            gateway_config,
            bridges: (0..opts.bridges).map(|_| None).collect(),
            processors: (0..opts.processors).map(|_| None).collect(),
            started: Instant::now(),
        };
        for i in 0..opts.bridges {
            p.start_bridge(i);
        }
        for i in 0..opts.processors {
            p.start_processor(i);
        }
        p
    }

    fn gateway(&self, role: &str, i: usize) -> ChildGuard {
        let mut c = Command::new(bin("gateway"));
        c.arg("--config").arg(&self.gateway_config).arg(role);
        c.env("KTK__BRIDGE__CLIENT_ID", format!("e2e-bridge-{i}"));
        c.env("RUST_LOG", "info");
        let log = log_file(&self.dir, &format!("{role}-{i}"));
        ChildGuard(c.stdout(Stdio::null()).stderr(log).spawn().unwrap())
    }

    pub fn start_bridge(&mut self, i: usize) {
        self.bridges[i] = Some(self.gateway("bridge", i));
    }

    pub fn kill_bridge(&mut self, i: usize) {
        self.bridges[i].take();
    }

    pub fn start_processor(&mut self, i: usize) {
        self.processors[i] = Some(self.gateway("process", i));
    }

    pub fn kill_processor(&mut self, i: usize) {
        self.processors[i].take();
    }

    /// Start (or restart) kiosk `k`: `agent run --events N --drain`.
    pub fn start_kiosk(&mut self, k: usize, events: u64) {
        let kiosk = &mut self.kiosks[k];
        let log = log_file(&self.dir, kiosk.kiosk);
        let child = program(bin("agent").to_str().unwrap())
            .arg("--config")
            .arg(&kiosk.config_path)
            .args(["run", "--events", &events.to_string(), "--drain"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        kiosk.child = Some(ChildGuard(child));
        kiosk.events = events;
    }

    pub fn start_kiosks(&mut self, events: u64) {
        for k in 0..self.kiosks.len() {
            self.start_kiosk(k, events);
        }
    }

    pub fn kill_kiosk(&mut self, k: usize) {
        self.kiosks[k].child.take();
    }

    /// Wait until every kiosk program has generated its events, drained its
    /// outbox and exited successfully.
    pub fn wait_kiosks_drained(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for k in &mut self.kiosks {
            let Some(child) = k.child.as_mut() else {
                continue;
            };
            let status = loop {
                if let Some(s) = child.try_wait() {
                    break s;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not drain within {timeout:?} (logs in {})",
                    k.kiosk,
                    self.dir.display()
                );
                std::thread::sleep(Duration::from_millis(100));
            };
            assert!(status.success(), "{} exited with {status}", k.kiosk);
            k.child = None;
        }
    }

    /// Committed events of one kiosk's outbox (all seqs below `next_seq`)
    /// and the ranges its cap dropped.
    pub fn committed(&self, k: usize) -> (u64, Vec<SeqRange>, u64) {
        let kiosk = &self.kiosks[k];
        let outbox = Outbox::open(&kiosk.outbox, kiosk.site, kiosk.kiosk).unwrap();
        let stats = outbox.stats().unwrap();
        (
            stats.next_seq - 1,
            outbox.all_dropped_ranges().unwrap(),
            stats.backlog,
        )
    }

    pub fn db(&self) -> mysql::Conn {
        mysql::Conn::new(gateway::store::mysql::opts(&self.config.mysql, true)).unwrap()
    }

    fn ledger_count(&self) -> Option<u64> {
        let mut c = mysql::Conn::new(gateway::store::mysql::opts(&self.config.mysql, true)).ok()?;
        c.query_first("SELECT COUNT(*) FROM event_ledger")
            .ok()
            .flatten()
    }

    /// Give the bridge and the processor time to connect, subscribe and
    /// join their group before a measurement starts.
    pub fn wait_flowing_after_warmup(&self) {
        std::thread::sleep(Duration::from_secs(4));
    }

    /// Wait until events flow end to end (the bridge is subscribed).
    pub fn wait_flowing(&self, timeout: Duration) {
        wait_until(timeout, "the first events in MySQL", || {
            self.ledger_count().is_some_and(|n| n > 0)
        });
    }

    /// Wait until MySQL holds as many events as the outboxes committed
    /// (minus known drops).
    pub fn wait_stored(&self, timeout: Duration) {
        let expected: u64 = (0..self.kiosks.len())
            .map(|k| {
                let (last, drops, _) = self.committed(k);
                last - drops.iter().map(|r| r.last - r.first + 1).sum::<u64>()
            })
            .sum();
        wait_until(timeout, "every committed event in MySQL", || {
            self.ledger_count().is_some_and(|n| n >= expected)
        });
        // Dropped seqs that were in flight may still arrive: let them settle.
        std::thread::sleep(Duration::from_secs(1));
    }

    /// Dead letters by (stage, reason).
    pub fn dead_letters(&self, want: usize) -> BTreeMap<(String, String), usize> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.tansu.bootstrap())
            .set("group.id", format!("e2e-dlq-{:08x}", rand::random::<u32>()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[&self.config.kafka.dlq_topic]).unwrap();
        let mut out = BTreeMap::new();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(if want == 0 { 3 } else { 30 });
        while Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let mut h = BTreeMap::new();
                if let Some(headers) = m.headers() {
                    for x in headers.iter() {
                        h.insert(
                            x.key.to_string(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).to_string(),
                        );
                    }
                }
                let key = (
                    h.get("dlq.stage").cloned().unwrap_or_default(),
                    h.get("dlq.reason").cloned().unwrap_or_default(),
                );
                *out.entry(key).or_insert(0) += 1;
                seen += 1;
            }
            // Keep reading a little past `want`: extra dead letters are a failure too.
            if seen >= want && want > 0 && Instant::now() + Duration::from_secs(27) > deadline {
                break;
            }
        }
        out
    }

    /// Compare every kiosk's outbox with MySQL.
    pub fn reconcile(&self) -> Reconciliation {
        let mut db = self.db();
        let mut kiosks = Vec::new();
        for (k, kiosk) in self.kiosks.iter().enumerate() {
            let (last, drops, backlog) = self.committed(k);
            let dropped: BTreeSet<u64> = drops.iter().flat_map(|r| r.first..=r.last).collect();
            let expected: BTreeSet<u64> = (1..=last).filter(|s| !dropped.contains(s)).collect();
            let stored: Vec<u64> = db
                .exec(
                    "SELECT seq FROM event_ledger WHERE kiosk_id = ? AND site_id = ?",
                    (kiosk.kiosk, kiosk.site),
                )
                .unwrap();
            let stored_set: BTreeSet<u64> = stored.iter().copied().collect();
            // A dropped seq may still have been delivered (it was in flight
            // when the cap dropped it): allowed, never required.
            let committed_set: BTreeSet<u64> = (1..=last).collect();
            let dropped_and_stored = dropped.intersection(&stored_set).count() as u64;
            let arrivals: u64 = db
                .exec_first(
                    "SELECT COUNT(*) FROM event_ledger WHERE kiosk_id = ? AND event_type = 'arrival'",
                    (kiosk.kiosk,),
                )
                .unwrap()
                .unwrap_or(0);
            let (rows, distinct): (u64, u64) = db
                .exec_first(
                    "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM patients WHERE kiosk_id = ?",
                    (kiosk.kiosk,),
                )
                .unwrap()
                .unwrap_or((0, 0));
            let statuses: u64 = db
                .exec_first(
                    "SELECT COUNT(*) FROM status_events WHERE kiosk_id = ?",
                    (kiosk.kiosk,),
                )
                .unwrap()
                .unwrap_or(0);
            // Statuses and true waits agree with the status events.
            let inconsistent: u64 = db
                .exec_first(
                    "SELECT COUNT(*) FROM patients WHERE kiosk_id = ? AND (
                        (status IN ('WITH_DOCTOR', 'COMPLETED') AND (called_at IS NULL
                            OR actual_wait_minutes IS NULL OR actual_wait_minutes < 0
                            OR ABS(actual_wait_minutes - TIMESTAMPDIFF(MICROSECOND, arrival_time, called_at) / 60000000) > 0.01))
                        OR (status = 'COMPLETED' AND (completed_at IS NULL OR completed_at < called_at))
                        OR (status = 'WAITING' AND (called_at IS NOT NULL OR actual_wait_minutes IS NOT NULL))
                        OR predicted_wait_minutes IS NULL)",
                    (kiosk.kiosk,),
                )
                .unwrap()
                .unwrap_or(0);
            let progress: Option<(u64, u64, u64, String)> = db
                .exec_first(
                    "SELECT contiguous_seq, max_seq, missing, gaps FROM kiosk_progress WHERE site_id = ? AND kiosk_id = ?",
                    (kiosk.site, kiosk.kiosk),
                )
                .unwrap();
            let gaps: Vec<SeqRange> = progress
                .as_ref()
                .map(|p| serde_json::from_str(&p.3).unwrap())
                .unwrap_or_default();
            let gap_seqs: BTreeSet<u64> = gaps.iter().flat_map(|r| r.first..=r.last).collect();
            kiosks.push(KioskReport {
                kiosk: kiosk.kiosk,
                committed: last,
                dropped: dropped.len() as u64,
                backlog,
                stored: stored.len() as u64,
                missing: expected.difference(&stored_set).count() as u64,
                unexpected: stored_set.difference(&committed_set).count() as u64,
                dropped_and_stored,
                duplicate_rows: rows - distinct,
                rows_vs_arrivals: rows as i64 - arrivals as i64,
                statuses_vs_ledger: statuses as i64 - (stored.len() as u64 - arrivals) as i64,
                inconsistent,
                progress_max: progress.as_ref().map_or(0, |p| p.1),
                unexplained_gaps: gap_seqs.difference(&dropped).count() as u64,
                drops_not_in_gaps: dropped
                    .iter()
                    .filter(|s| !gap_seqs.contains(s) && !stored_set.contains(s))
                    .count() as u64,
            });
        }
        Reconciliation { kiosks }
    }

    /// Every running process of the pipeline: (name, pid).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for k in &self.kiosks {
            if let Some(c) = &k.child {
                out.push((format!("agent {}", k.kiosk), c.0.id()));
            }
        }
        for (i, b) in self.bridges.iter().enumerate() {
            if let Some(c) = b {
                out.push((format!("bridge {i}"), c.0.id()));
            }
        }
        for (i, p) in self.processors.iter().enumerate() {
            if let Some(c) = p {
                out.push((format!("processor {i}"), c.0.id()));
            }
        }
        out.extend(self.mosquitto.pid().map(|p| ("mosquitto".to_string(), p)));
        out.extend(self.tansu.pid().map(|p| ("tansu".to_string(), p)));
        out
    }

    /// Check-in-to-row latencies (ms) of every stored event: MySQL's
    /// `ingested_at` minus the kiosk's `created_at` (one machine, one clock).
    pub fn latencies_ms(&self) -> Vec<f64> {
        let mut db = self.db();
        let mut v: Vec<f64> = db
            .query(
                "SELECT TIMESTAMPDIFF(MICROSECOND, created_at, ingested_at) / 1e3 FROM event_ledger",
            )
            .unwrap()
            .into_iter()
            .map(|x: Option<f64>| x.unwrap_or(f64::NAN))
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// Events in MySQL now.
    pub fn stored(&self) -> u64 {
        self.ledger_count().unwrap_or(0)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// One kiosk's line of the reconciliation.
#[derive(Debug, Clone)]
pub struct KioskReport {
    pub kiosk: &'static str,
    /// Seqs the outbox committed (1..=committed).
    pub committed: u64,
    /// Of those, dropped by the cap (recorded in the outbox).
    pub dropped: u64,
    /// Left in the outbox.
    pub backlog: u64,
    /// Events in `event_ledger`.
    pub stored: u64,
    /// Committed, not dropped, not stored.
    pub missing: u64,
    /// Stored but never committed.
    pub unexpected: u64,
    /// Dropped by the cap while in flight, and delivered anyway.
    pub dropped_and_stored: u64,
    /// `patients` rows sharing an `event_id`.
    pub duplicate_rows: u64,
    /// `patients` rows minus arrivals in the ledger (0).
    pub rows_vs_arrivals: i64,
    /// `status_events` rows minus status events in the ledger (0).
    pub statuses_vs_ledger: i64,
    /// Patients whose status, times or true wait disagree.
    pub inconsistent: u64,
    /// `kiosk_progress.max_seq`.
    pub progress_max: u64,
    /// Seqs `kiosk_progress` reports missing that the outbox did not drop.
    pub unexplained_gaps: u64,
    /// Dropped seqs neither stored nor reported as gaps by `kiosk_progress`.
    pub drops_not_in_gaps: u64,
}

/// The end of a scenario: outboxes against MySQL.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    pub kiosks: Vec<KioskReport>,
}

impl Reconciliation {
    /// Assert the invariant: every committed check-in is in MySQL exactly
    /// once, consistent, with no unexplained gap.
    pub fn assert_exactly_once(&self, scenario: &str) {
        eprintln!("[{scenario}] reconciliation:");
        for k in &self.kiosks {
            eprintln!("  {k:?}");
        }
        for k in &self.kiosks {
            assert!(
                k.committed > 0,
                "[{scenario}] {} committed nothing",
                k.kiosk
            );
            assert_eq!(k.backlog, 0, "[{scenario}] {} not drained", k.kiosk);
            assert_eq!(
                (k.missing, k.unexpected, k.duplicate_rows),
                (0, 0, 0),
                "[{scenario}] {}: missing, unexpected, duplicate",
                k.kiosk
            );
            assert_eq!(
                k.stored,
                k.committed - k.dropped + k.dropped_and_stored,
                "[{scenario}] {}",
                k.kiosk
            );
            assert_eq!(
                (k.rows_vs_arrivals, k.statuses_vs_ledger, k.inconsistent),
                (0, 0, 0),
                "[{scenario}] {}: rows vs arrivals, statuses vs ledger, inconsistent patients",
                k.kiosk
            );
            assert_eq!(
                (k.progress_max, k.unexplained_gaps, k.drops_not_in_gaps),
                (k.committed, 0, 0),
                "[{scenario}] {}: kiosk_progress",
                k.kiosk
            );
        }
    }

    pub fn total_stored(&self) -> u64 {
        self.kiosks.iter().map(|k| k.stored).sum()
    }
}

//! # testkit: helpers for the integration and fault tests
//!
//! Tests that stop a service start a private instance of it on a port of
//! their own ([`Mosquitto`], [`Tansu`]) and never touch the machine's shared
//! services. Tests that only need a service use the shared one and fail
//! loudly, never skip, when it is missing ([`require_service`]).
//! [`Responder`] stands in for the gateway in agent tests: it acknowledges
//! batches as if Kafka held them.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use contract::config::Config;
use contract::mqtt::{ack_topic, ranges_of, Ack};
use contract::wire::decode_batch;
use contract::Event;
use rumqttc::{Client, Event as MqttEvent, MqttOptions, Packet, QoS};

/// A fresh directory under the system temp dir (also sets up test logging).
pub fn temp_dir(tag: &str) -> PathBuf {
    let _ = env_logger::builder().is_test(true).try_init();
    let d = std::env::temp_dir().join(format!(
        "ktk-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command running one of the workspace's own programs. Under a cross
/// test run the program is built for the kiosk target, so it runs through
/// the emulator named in `KTK_TARGET_RUNNER` (for example
/// `qemu-aarch64 -L /usr/aarch64-linux-gnu`); `KTK_AGENT_BIN` replaces an
/// `agent` binary by another build of it (benchmarks of a cross build).
pub fn program(bin: &str) -> Command {
    let bin = match std::env::var("KTK_AGENT_BIN") {
        Ok(b) if Path::new(bin).file_name().is_some_and(|f| f == "agent") => b,
        _ => bin.to_string(),
    };
    match std::env::var("KTK_TARGET_RUNNER") {
        Ok(r) if !r.trim().is_empty() => {
            let mut words = r.split_whitespace();
            let mut c = Command::new(words.next().unwrap_or_default());
            c.args(words).arg(bin);
            c
        }
        _ => Command::new(bin),
    }
}

/// A unique kiosk id, so tests sharing a broker never see each other.
pub fn unique_kiosk(tag: &str) -> String {
    format!("{tag}-{:08x}", rand::random::<u32>())
}

/// A Mosquitto of the test's own, on its own port.
pub struct Mosquitto {
    pub port: u16,
    conf: PathBuf,
    child: Option<ChildGuard>,
}

impl Mosquitto {
    pub fn start(dir: &Path) -> Mosquitto {
        Self::start_with(dir, "persistence false\n".into())
    }

    /// One that saves sessions and subscriptions to disk on every change,
    /// so a persistent subscriber's session survives a SIGKILL and restart
    /// (messages published while it reconnects are queued, not discarded).
    pub fn start_persistent(dir: &Path) -> Mosquitto {
        Self::start_with(
            dir,
            format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\nautosave_on_changes true\n",
                dir.display()
            ),
        )
    }

    fn start_with(dir: &Path, persistence: String) -> Mosquitto {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}max_queued_messages 100000\n"
            ),
        )
        .unwrap();
        let mut m = Mosquitto {
            port,
            conf,
            child: None,
        };
        m.restart();
        m
    }

    pub fn restart(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed for the agent's integration tests");
        self.child = Some(ChildGuard(child));
        wait_port(self.port, Duration::from_secs(10));
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }

    /// Stop it hard (SIGKILL): no goodbye to clients.
    pub fn kill(&mut self) {
        self.child.take(); // the guard kills and reaps
    }
}

/// The Tansu binary: `$KTK_TANSU`, the cache scripts/services-up.sh installs
/// into (`$KTK_TOOLS_DIR`, default `~/.cache/kiosk-to-kafka`), or `PATH`.
pub fn tansu_binary() -> PathBuf {
    if let Ok(p) = std::env::var("KTK_TANSU") {
        return PathBuf::from(p);
    }
    let tools = std::env::var("KTK_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/kiosk-to-kafka")
        });
    let cached = tools.join("bin/tansu");
    if cached.exists() {
        return cached;
    }
    PathBuf::from("tansu")
}

/// A Kafka-compatible broker (Tansu) of the test's own, with durable sqlite
/// storage in `dir`, on its own port.
pub struct Tansu {
    pub port: u16,
    dir: PathBuf,
    engine: String,
    child: Option<ChildGuard>,
}

impl Tansu {
    /// Durable: sqlite storage in `dir`, survives kill -9.
    pub fn start(dir: &Path) -> Tansu {
        Self::start_with(dir, "sqlite://tansu.db")
    }

    /// With another storage engine, e.g. `memory://tansu/`.
    pub fn start_with(dir: &Path, engine: &str) -> Tansu {
        let dir = dir.join("tansu");
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = Tansu {
            port: free_port(),
            dir,
            engine: engine.to_string(),
            child: None,
        };
        t.restart();
        t
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.0.id())
    }

    /// `127.0.0.1:PORT`, for `kafka.bootstrap_servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = append_log(&self.dir.join("tansu.log"));
        let child = Command::new(tansu_binary())
            .current_dir(&self.dir)
            .env(
                "RUST_LOG",
                std::env::var("KTK_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.engine])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tansu must be installed: run scripts/services-up.sh (it installs it)");
        self.child = Some(ChildGuard(child));
        wait_port(self.port, Duration::from_secs(30));
        if let Some(db) = self.engine.strip_prefix("sqlite://") {
            index_tansu_headers(&self.dir.join(db));
        }
    }

    /// Stop it hard (SIGKILL).
    pub fn kill(&mut self) {
        self.child.take(); // the guard kills and reaps
    }
}

/// Tansu 0.6's sqlite schema has no index on its `header` table, and a fetch
/// looks up each record's headers with a full scan of that table: reading
/// N records that carry headers costs O(N x all headers stored). The same
/// index `scripts/services-up.sh` adds makes it a lookup.
pub fn index_tansu_headers(db: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = rusqlite::Connection::open(db).and_then(|c| {
            c.busy_timeout(Duration::from_secs(5))?;
            let has_table: bool = c.query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'header'",
                [],
                |r| r.get(0),
            )?;
            if has_table {
                c.execute_batch(TANSU_HEADER_INDEX)?;
            }
            Ok(has_table)
        });
        match done {
            Ok(true) => return,
            Ok(false) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => panic!(
                "cannot index Tansu's header table in {}: {other:?}",
                db.display()
            ),
        }
    }
}

/// The index [`index_tansu_headers`] creates.
pub const TANSU_HEADER_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS ktk_header_record ON header (topition, offset_id)";

/// A MariaDB server of the test's own (data in `dir`), on its own port, with
/// passwordless root, for tests that stop the database.
pub struct MariaDb {
    pub port: u16,
    dir: PathBuf,
    server_args: Vec<String>,
    child: Option<ChildGuard>,
}

impl MariaDb {
    pub fn start(dir: &Path) -> MariaDb {
        MariaDb::start_with(dir, &[])
    }

    /// Start one with extra server options (e.g. a larger buffer pool).
    pub fn start_with(dir: &Path, server_args: &[&str]) -> MariaDb {
        let dir = dir.join("mariadb");
        std::fs::create_dir_all(&dir).unwrap();
        // --no-defaults: the machine's my.cnf points at its own directories.
        let status = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args(["--user=root", "--auth-root-authentication-method=normal"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db must be installed for database fault tests");
        assert!(status.success(), "mariadb-install-db failed");
        let mut m = MariaDb {
            port: free_port(),
            dir,
            server_args: server_args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        m.restart();
        m
    }

    pub fn restart(&mut self) {
        let log = append_log(&self.dir.join("mariadb.log"));
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .args(["--bind-address=127.0.0.1", "--user=root", "--skip-log-bin"])
            .args(&self.server_args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mariadbd must be installed for database fault tests");
        self.child = Some(ChildGuard(child));
        wait_port(self.port, Duration::from_secs(60));
    }

    /// Stop it hard (SIGKILL).
    pub fn kill(&mut self) {
        self.child.take(); // the guard kills and reaps
    }
}

/// Open `path` for appending a server's output.
fn append_log(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// A child process that is killed (SIGKILL) when the guard is dropped, so a
/// failing test never leaves processes behind.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// SIGKILL now and reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Wait for it to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.0.wait().unwrap()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Panic with a clear message unless something listens on `port`.
pub fn require_service(port: u16, name: &str) {
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        panic!(
            "{name} is not reachable on 127.0.0.1:{port}: start the services with \
             scripts/services-up.sh (the test command does this)"
        );
    }
}

/// The shared Kafka-compatible broker's bootstrap address (fails loudly if down).
pub fn shared_kafka() -> String {
    let port: u16 = std::env::var("KTK_KAFKA_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9092);
    require_service(port, "the Kafka-compatible broker (Tansu)");
    format!("127.0.0.1:{port}")
}

pub fn wait_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `cond` until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A config for one kiosk: own outbox, broker on `port`, fast timeouts.
pub fn kiosk_config(dir: &Path, port: u16, kiosk_id: &str) -> Config {
    let mut c = Config::default();
    c.agent.site_id = "site-t".into();
    c.agent.kiosk_id = kiosk_id.into();
    c.agent.outbox.path = dir.join(format!("{kiosk_id}.db")).display().to_string();
    c.agent.status_interval_ms = 500;
    c.mqtt.port = port;
    c.agent.forwarder.ack_timeout_ms = 1500;
    c.agent.forwarder.reconnect_min_ms = 50;
    c.agent.forwarder.reconnect_max_ms = 500;
    c.agent.forwarder.batch_max_events = 200;
    c.agent.simulation.seed = 42;
    c.agent.simulation.clock_speed = 0.0;
    c
}

/// What the responder has seen.
#[derive(Default)]
pub struct Seen {
    /// First copy of each seq received.
    pub events: BTreeMap<u64, Event>,
    /// Seqs in the order they were first received.
    pub first_seen_order: Vec<u64>,
    /// Copies received again.
    pub duplicates: u64,
    /// A seq received twice with different content (a reused seq).
    pub conflicts: Vec<u64>,
    /// Batches received.
    pub batches: u64,
}

/// Stands in for the gateway: receives batches and acks them (or not).
pub struct Responder {
    pub seen: Arc<Mutex<Seen>>,
    /// Events received, duplicates included.
    pub received: Arc<AtomicU64>,
    pub acking: Arc<AtomicBool>,
    pub acks_sent: Arc<AtomicU64>,
    client: Client,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    /// A responder that records every event it sees (for assertions).
    pub fn start(port: u16, site: &str, kiosk: &str) -> Responder {
        Self::start_with(port, site, kiosk, true, true)
    }

    /// A responder that only counts and acks (for benchmarks).
    pub fn ack_only(port: u16, site: &str, kiosk: &str) -> Responder {
        Self::start_with(port, site, kiosk, false, true)
    }

    /// A recording responder with a persistent session (with
    /// [`Mosquitto::start_persistent`], it misses nothing across a broker
    /// restart, as the bridge would not).
    pub fn start_persistent(port: u16, site: &str, kiosk: &str) -> Responder {
        Self::start_with(port, site, kiosk, true, false)
    }

    fn start_with(port: u16, site: &str, kiosk: &str, record: bool, clean: bool) -> Responder {
        let id = format!("responder-{:08x}", rand::random::<u32>());
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_max_packet_size(16 << 20, 16 << 20)
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(clean);
        let (client, mut connection) = Client::new(o, 1000);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let acking = Arc::new(AtomicBool::new(true));
        let acks_sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let filter = format!("hospital/{site}/kiosk/{kiosk}/events");
        let thread = {
            let (seen, acking, acks_sent, stop, client, received) = (
                seen.clone(),
                acking.clone(),
                acks_sent.clone(),
                stop.clone(),
                client.clone(),
                received.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match connection.recv() {
                        Ok(Ok(MqttEvent::Incoming(Packet::ConnAck(_)))) => {
                            client.subscribe(filter.clone(), QoS::AtLeastOnce).unwrap();
                        }
                        Ok(Ok(MqttEvent::Incoming(Packet::Publish(p)))) => {
                            let events =
                                decode_batch(&p.payload).expect("kiosk sent a valid batch");
                            received.fetch_add(events.len() as u64, Ordering::Relaxed);
                            let mut s = seen.lock().unwrap();
                            s.batches += 1;
                            for e in events.iter().filter(|_| record) {
                                match s.events.get(&e.identity.seq) {
                                    Some(prev) if prev.body != e.body => {
                                        s.conflicts.push(e.identity.seq)
                                    }
                                    Some(_) => s.duplicates += 1,
                                    None => {
                                        s.first_seen_order.push(e.identity.seq);
                                        s.events.insert(e.identity.seq, e.clone());
                                    }
                                }
                            }
                            drop(s);
                            if acking.load(Ordering::Relaxed) {
                                let (site, kiosk) = (
                                    events[0].identity.site_id.clone(),
                                    events[0].identity.kiosk_id.clone(),
                                );
                                let ack =
                                    Ack::new(ranges_of(events.iter().map(|e| e.identity.seq)));
                                let _ = client.try_publish(
                                    ack_topic(&site, &kiosk),
                                    QoS::AtLeastOnce,
                                    false,
                                    ack.to_json(),
                                );
                                acks_sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect))) | Err(_) => {
                            return
                        }
                        Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                        Ok(Ok(_)) => {}
                    }
                }
            })
        };
        Responder {
            seen,
            received,
            acking,
            acks_sent,
            client,
            stop,
            thread: Some(thread),
        }
    }

    /// Publish an ack for `ranges` as a bridge would.
    pub fn ack(&self, site: &str, kiosk: &str, ack: &Ack) {
        self.client
            .publish(
                ack_topic(site, kiosk),
                QoS::AtLeastOnce,
                false,
                ack.to_json(),
            )
            .unwrap();
    }

    pub fn distinct(&self) -> usize {
        self.seen.lock().unwrap().events.len()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

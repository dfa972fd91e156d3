//! `gateway demo`: the whole pipeline in one process.
//!
//! ```text
//! kiosk threads (agent library, one SQLite outbox each, accelerated clock)
//!      | MQTT, through a relay that an outage cuts       [link]
//!      v
//! MQTT broker: embedded rumqttd, or [mqtt]              [embedded]
//!      v
//! bridge (the production bridge::run)
//!      v
//! Kafka: embedded librdkafka mock cluster, or [kafka]   [embedded]
//!      v
//! processor (the production processor::run_on)
//!      v
//! database: SQLite file in the demo directory, or [mysql]   [crate::store]
//! ```
//!
//! Every second the demo gathers a [`view::Snapshot`] (kiosk outboxes,
//! stage counters, the database's queues and waits) and prints it. At the
//! end it stops the check-ins, waits for every event to reach the database,
//! stops everything and prints a [`reconcile::Reconciliation`] counted from
//! the database rows.
//!
//! | module        | job | I/O |
//! |---------------|-----|-----|
//! | [`link`]      | the kiosks' cuttable TCP link to the broker | TCP |
//! | [`embedded`]  | rumqttd and the mock Kafka cluster in this process | threads |
//! | [`view`]      | a frame of the live view from a snapshot | none |
//! | [`reconcile`] | generated vs stored per kiosk; the verdict | none |

pub mod embedded;
pub mod link;
pub mod reconcile;
pub mod view;

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent::forwarder::ForwarderStats;
use agent::kiosk::Kiosk;
use contract::config::{Config, DemoConfig, ServiceMode};
use contract::UtcMillis;
use crossbeam_channel::Receiver;

use crate::bridge::{self, BridgeMetrics};
use crate::processor::{self, ProcessorMetrics};
use crate::store::{Database, Storage, StoreError};
use crate::GatewayError;
use reconcile::Reconciliation;
use view::{KioskLine, Phase, Snapshot, Totals};

/// Failures that stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file, thread or socket failed.
    #[error("I/O: {0}")]
    Io(String),
    /// The MQTT broker could not be started or reached.
    #[error("MQTT: {0}")]
    Mqtt(String),
    /// The Kafka cluster could not be started.
    #[error("Kafka: {0}")]
    Kafka(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A kiosk failed.
    #[error("kiosk: {0}")]
    Agent(#[from] agent::AgentError),
    /// A pipeline component stopped on its own.
    #[error("the {0} stopped: {1}")]
    Component(&'static str, String),
}

/// Site names the kiosks are spread over.
const SITES: [&str; 8] = [
    "north", "south", "east", "west", "central", "harbour", "hill", "river",
];

/// The name of site `i`.
fn site_name(i: u32) -> String {
    SITES
        .get(i as usize)
        .map_or_else(|| format!("site{}", i + 1), |s| s.to_string())
}

/// How the demo runs (the `[demo]` section, with command-line overrides).
#[derive(Debug, Clone)]
pub struct Options {
    /// How long kiosks check in; None = until stopped.
    pub duration: Option<Duration>,
    /// Scheduled outage: (from start, length).
    pub outage: Option<(Duration, Duration)>,
    /// Kiosks.
    pub kiosks: u32,
    /// Sites.
    pub sites: u32,
    /// Simulated seconds per real second.
    pub clock_speed: f64,
    /// Longest wait for the backlog at the end.
    pub drain_timeout: Duration,
    /// Working directory; None = temporary, removed at the end.
    pub dir: Option<PathBuf>,
    /// Redraw a full frame each second (a terminal) or print summary lines.
    pub live: bool,
}

impl Options {
    /// Options from the configuration.
    pub fn from_config(d: &DemoConfig) -> Options {
        Options {
            duration: (d.duration_s > 0).then(|| Duration::from_secs(d.duration_s)),
            outage: (d.outage_for_s > 0).then(|| {
                (
                    Duration::from_secs(d.outage_at_s),
                    Duration::from_secs(d.outage_for_s),
                )
            }),
            kiosks: d.kiosks,
            sites: d.sites,
            clock_speed: d.clock_speed,
            drain_timeout: Duration::from_secs(d.drain_timeout_s),
            dir: (!d.dir.is_empty()).then(|| PathBuf::from(&d.dir)),
            live: false,
        }
    }
}

/// The working directory; a temporary one is removed when dropped.
struct WorkDir {
    path: PathBuf,
    temporary: bool,
}

impl WorkDir {
    fn new(dir: Option<&Path>) -> Result<WorkDir, DemoError> {
        let (path, temporary) = match dir {
            Some(d) => (d.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "ktk-demo-{}-{}",
                    std::process::id(),
                    UtcMillis::now().0
                )),
                true,
            ),
        };
        std::fs::create_dir_all(&path)
            .map_err(|e| DemoError::Io(format!("creating {}: {e}", path.display())))?;
        Ok(WorkDir { path, temporary })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.temporary {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                log::warn!("removing {}: {e}", self.path.display());
            }
        }
    }
}

/// A pipeline component on its own thread.
struct Component {
    name: &'static str,
    thread: Option<JoinHandle<Result<(), GatewayError>>>,
}

impl Component {
    fn spawn(
        name: &'static str,
        run: impl FnOnce() -> Result<(), GatewayError> + Send + 'static,
    ) -> Result<Component, DemoError> {
        let thread = std::thread::Builder::new()
            .name(format!("demo-{name}"))
            .spawn(run)
            .map_err(|e| DemoError::Io(format!("starting the {name}: {e}")))?;
        Ok(Component {
            name,
            thread: Some(thread),
        })
    }

    /// An error if the component has stopped on its own.
    fn check(&mut self) -> Result<(), DemoError> {
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            return self.join();
        }
        Ok(())
    }

    fn join(&mut self) -> Result<(), DemoError> {
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(DemoError::Component(self.name, e.to_string())),
            Some(Err(_)) => Err(DemoError::Component(self.name, "panicked".into())),
        }
    }
}

/// One simulated kiosk: the agent library plus the simulation driver.
struct DemoKiosk {
    kiosk_id: String,
    kiosk: Option<Kiosk>,
    driver: Option<JoinHandle<u64>>,
    /// Ends the simulation (shared by every kiosk of the demo).
    stop: Arc<AtomicBool>,
    submitted: Option<u64>,
}

impl DemoKiosk {
    fn start(config: &Config, stop: &Arc<AtomicBool>) -> Result<DemoKiosk, DemoError> {
        let kiosk = Kiosk::start(config)?;
        let writer = kiosk
            .writer()
            .ok_or_else(|| DemoError::Io("the kiosk's writer is gone".into()))?;
        let sim = config.agent.simulation.clone();
        let driver_stop = Arc::clone(stop);
        let driver = std::thread::Builder::new()
            .name(format!("demo-sim-{}", config.agent.kiosk_id))
            .spawn(move || agent::driver::drive(&sim, &writer, &driver_stop, None))
            .map_err(|e| DemoError::Io(format!("starting a simulation: {e}")))?;
        Ok(DemoKiosk {
            kiosk_id: config.agent.kiosk_id.clone(),
            kiosk: Some(kiosk),
            driver: Some(driver),
            stop: Arc::clone(stop),
            submitted: None,
        })
    }

    /// Stop the simulation and wait for it.
    fn stop_checking_in(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(d) = self.driver.take() {
            self.submitted = Some(d.join().unwrap_or(0));
        }
    }

    /// Check-ins committed, and whether the writer has committed everything submitted.
    fn committed(&self) -> (u64, bool) {
        let Some(k) = &self.kiosk else {
            return (0, true);
        };
        let w = &k.writer_stats;
        let done = w.accepted.load(Ordering::Relaxed) + w.refused.load(Ordering::Relaxed);
        (
            w.accepted.load(Ordering::Relaxed),
            self.submitted.is_some_and(|s| done >= s),
        )
    }

    fn line(&self, now: UtcMillis) -> (KioskLine, Option<UtcMillis>) {
        let mut line = KioskLine {
            kiosk_id: self.kiosk_id.clone(),
            ..KioskLine::default()
        };
        let Some(k) = &self.kiosk else {
            return (line, None);
        };
        line.connected = k.forwarder.connected.load(Ordering::Relaxed);
        let mut oldest = None;
        match k.outbox_stats() {
            Ok(s) => {
                line.generated = s.next_seq.saturating_sub(1);
                line.backlog = s.backlog;
                oldest = s.oldest_created_at;
                line.oldest_age =
                    oldest.map(|t| Duration::from_millis(now.0.saturating_sub(t.0).max(0) as u64));
            }
            Err(e) => log::warn!("kiosk {}: reading its outbox: {e}", self.kiosk_id),
        }
        (line, oldest)
    }

    fn shutdown(&mut self) -> Result<(), DemoError> {
        self.stop_checking_in();
        match self.kiosk.take() {
            Some(k) => Ok(k.shutdown()?),
            None => Ok(()),
        }
    }
}

/// The demo's running parts, torn down in order when dropped.
struct Pipeline {
    kiosks: Vec<DemoKiosk>,
    bridge: Component,
    processor: Component,
    pipeline_stop: Arc<AtomicBool>,
    link: link::Link,
    bridge_metrics: Arc<BridgeMetrics>,
    processor_metrics: Arc<ProcessorMetrics>,
}

impl Pipeline {
    /// A forwarder counter summed over the running kiosks.
    fn forwarded(&self, counter: impl Fn(&ForwarderStats) -> &AtomicU64) -> u64 {
        self.kiosks
            .iter()
            .filter_map(|k| k.kiosk.as_ref())
            .map(|k| counter(&k.forwarder).load(Ordering::Relaxed))
            .sum()
    }

    fn check(&mut self) -> Result<(), DemoError> {
        self.bridge.check()?;
        self.processor.check()
    }

    fn stop(&mut self) -> Result<(), DemoError> {
        let mut first: Result<(), DemoError> = Ok(());
        for k in &mut self.kiosks {
            if let Err(e) = k.shutdown() {
                log::error!("kiosk {}: {e}", k.kiosk_id);
                first = first.and(Err(e));
            }
        }
        self.pipeline_stop.store(true, Ordering::SeqCst);
        let bridge = self.bridge.join();
        let processor = self.processor.join();
        first.and(bridge).and(processor)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            log::error!("demo shutdown: {e}");
        }
    }
}

/// What the loop tracks about the outage.
#[derive(Default)]
struct OutageClock {
    /// The scheduled outage has begun.
    scheduled_started: bool,
    /// When the link came back (instant, wall clock), until drained.
    restored: Option<(Instant, UtcMillis)>,
    /// How long the last outage's backlog took to drain.
    drained_in: Option<Duration>,
    /// An outage happened.
    happened: bool,
}

/// Run the demo. `stop` ends the check-ins early (Ctrl-C); each message on
/// `toggles` cuts or restores the link. Frames go to `out`.
pub fn run(
    config: &Config,
    options: &Options,
    stop: &AtomicBool,
    toggles: &Receiver<()>,
    out: &mut dyn Write,
) -> Result<Reconciliation, DemoError> {
    let demo = &config.demo;
    let work = WorkDir::new(options.dir.as_deref())?;
    let mut services = Vec::new();

    // MQTT broker.
    let broker: SocketAddr = match demo.mqtt {
        ServiceMode::Embedded => {
            let a = embedded::start_mqtt(config.bridge.max_payload_bytes)?;
            services.push(format!("MQTT   embedded rumqttd on {a}"));
            a
        }
        ServiceMode::External => {
            let a = (config.mqtt.host.as_str(), config.mqtt.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| {
                    DemoError::Mqtt(format!(
                        "cannot resolve mqtt.host {}:{}",
                        config.mqtt.host, config.mqtt.port
                    ))
                })?;
            services.push(format!("MQTT   {a} (mqtt.host)"));
            a
        }
    };
    // Kafka.
    let mut pipeline_config = config.clone();
    pipeline_config.bridge.metrics_addr.clear();
    pipeline_config.processor.metrics_addr.clear();
    pipeline_config.mqtt.host = broker.ip().to_string();
    pipeline_config.mqtt.port = broker.port();
    let kafka = match demo.kafka {
        ServiceMode::Embedded => {
            let k = embedded::Kafka::start(&config.kafka)?;
            pipeline_config.kafka.bootstrap_servers = k.bootstrap_servers();
            services.push(format!(
                "Kafka  embedded mock cluster, {} brokers, {}",
                embedded::KAFKA_BROKERS,
                k.bootstrap_servers()
            ));
            Some(k)
        }
        ServiceMode::External => {
            services.push(format!(
                "Kafka  {} (kafka.bootstrap_servers)",
                config.kafka.bootstrap_servers
            ));
            None
        }
    };
    // Database.
    let database = match demo.database {
        ServiceMode::Embedded => Database::Sqlite(work.path.join("hospital.db")),
        ServiceMode::External => Database::Mysql(config.mysql.clone()),
    };
    services.push(format!("DB     {database}"));
    services.push(format!("files  {}", work.path.display()));
    // Ids: with any real service, tag them so runs never mix.
    let all_embedded = [demo.mqtt, demo.kafka, demo.database]
        .iter()
        .all(|m| *m == ServiceMode::Embedded);
    let tag = if all_embedded {
        String::new()
    } else {
        format!(
            "d{:06x}-",
            (UtcMillis::now().0 as u64 ^ u64::from(std::process::id())) & 0xff_ffff
        )
    };

    let link = link::Link::start(broker)
        .map_err(|e| DemoError::Io(format!("starting the kiosks' link: {e}")))?;
    let pipeline_stop = Arc::new(AtomicBool::new(false));
    let bridge_metrics = Arc::new(BridgeMetrics::default());
    let processor_metrics = Arc::new(ProcessorMetrics::default());
    let bridge = {
        let (cfg, stop, m) = (
            pipeline_config.clone(),
            Arc::clone(&pipeline_stop),
            Arc::clone(&bridge_metrics),
        );
        Component::spawn("bridge", move || bridge::run(&cfg, stop, m))?
    };
    let processor = {
        let (cfg, db, stop, m) = (
            pipeline_config.clone(),
            database.clone(),
            Arc::clone(&pipeline_stop),
            Arc::clone(&processor_metrics),
        );
        Component::spawn("processor", move || processor::run_on(&cfg, db, stop, m))?
    };
    let mut pipeline = Pipeline {
        kiosks: Vec::new(),
        bridge,
        processor,
        pipeline_stop,
        link,
        bridge_metrics,
        processor_metrics,
    };

    // A broker drops messages nobody subscribes to yet: let the bridge
    // subscribe before the first check-in (otherwise the first batches wait
    // for the kiosks' ack timeout to be sent again).
    let subscribed_by = Instant::now() + Duration::from_secs(10);
    while pipeline.bridge_metrics.mqtt_connected.get() == 0 && Instant::now() < subscribed_by {
        pipeline.check()?;
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));

    // Kiosks, through the link.
    let stop_checkins = Arc::new(AtomicBool::new(false));
    let start_time = simulated_start(&config.agent.simulation.start_time);
    for i in 0..options.kiosks {
        let site = site_name(i % options.sites);
        let mut k = pipeline_config.clone();
        k.mqtt.host = "127.0.0.1".into();
        k.mqtt.port = pipeline.link.addr().port();
        k.agent.site_id = format!("{tag}{site}");
        k.agent.kiosk_id = format!("{tag}{site}-{}", i / options.sites + 1);
        k.agent.outbox.path = work
            .path
            .join(format!("{}.db", k.agent.kiosk_id))
            .display()
            .to_string();
        // A demo wants to see the backlog drain soon after the link returns,
        // not after a production-length reconnect backoff.
        let f = &mut k.agent.forwarder;
        f.reconnect_max_ms = f.reconnect_max_ms.min(2_000);
        f.reconnect_min_ms = f.reconnect_min_ms.min(f.reconnect_max_ms);
        let sim = &mut k.agent.simulation;
        sim.clock_speed = options.clock_speed;
        sim.start_time = start_time.to_string();
        sim.seed = if sim.seed == 0 {
            u64::from(i) + 1
        } else {
            sim.seed + u64::from(i)
        };
        pipeline.kiosks.push(DemoKiosk::start(&k, &stop_checkins)?);
    }
    let kiosk_ids: Vec<String> = pipeline.kiosks.iter().map(|k| k.kiosk_id.clone()).collect();

    if !options.live {
        for line in &services {
            writeln!(out, "{line}").map_err(|e| DemoError::Io(format!("writing the view: {e}")))?;
        }
    }
    let started = Instant::now();
    let mut outage = OutageClock::default();
    let mut reader: Option<Box<dyn Storage>> = None;
    let mut prev = (Instant::now(), Totals::default());
    let mut last_frame = Instant::now() - Duration::from_secs(1);
    let mut last_phase = None;
    let mut drain_started: Option<Instant> = None;

    loop {
        std::thread::sleep(Duration::from_millis(100));
        pipeline.check()?;
        let elapsed = started.elapsed();
        let ending = stop.load(Ordering::Relaxed) || options.duration.is_some_and(|d| elapsed >= d);

        // The outage: on schedule, or toggled by a key.
        if drain_started.is_none() {
            if let Some((at, length)) = options.outage {
                if !outage.scheduled_started && elapsed >= at {
                    outage.scheduled_started = true;
                    cut(&pipeline.link, &mut outage);
                } else if outage.scheduled_started
                    && !pipeline.link.is_up()
                    && elapsed >= at + length
                    && outage.restored.is_none()
                {
                    restore(&pipeline.link, &mut outage);
                }
            }
            while toggles.try_recv().is_ok() {
                if pipeline.link.is_up() {
                    cut(&pipeline.link, &mut outage);
                } else {
                    restore(&pipeline.link, &mut outage);
                }
            }
        }
        if ending && drain_started.is_none() {
            for k in &mut pipeline.kiosks {
                k.stop_checking_in();
            }
            if !pipeline.link.is_up() {
                restore(&pipeline.link, &mut outage);
            }
            drain_started = Some(Instant::now());
        }

        // Kiosks and the outage's drain.
        let now = UtcMillis::now();
        let mut lines = Vec::with_capacity(pipeline.kiosks.len());
        let mut all_drained_since = true;
        for k in &pipeline.kiosks {
            let (line, oldest) = k.line(now);
            if let (Some((_, since)), Some(o)) = (outage.restored, oldest) {
                all_drained_since &= o.0 >= since.0;
            }
            lines.push(line);
        }
        if let Some((at, _)) = outage.restored {
            if all_drained_since && pipeline.link.is_up() {
                outage.drained_in = Some(at.elapsed());
                outage.restored = None;
            }
        }

        let frame_due = last_frame.elapsed() >= Duration::from_secs(1);
        let draining = drain_started.is_some();
        let mut finished = false;
        if frame_due || draining {
            let totals = Totals {
                generated: lines.iter().map(|l| l.generated).sum(),
                published: pipeline.forwarded(|f| &f.events_sent),
                produced: pipeline.bridge_metrics.records_produced.get(),
                acked: pipeline.forwarded(|f| &f.events_acked),
                stored: pipeline.processor_metrics.events_written.get(),
            };
            if draining {
                finished = drained(&pipeline, &lines, &mut reader, &database, &kiosk_ids)
                    || drain_started.is_some_and(|d| d.elapsed() >= options.drain_timeout);
            }
            if frame_due || finished {
                let (dashboard, db_note) = match read_dashboard(&mut reader, &database, &kiosk_ids)
                {
                    Ok(d) => (d, None),
                    Err(e) => (Default::default(), Some(e.to_string())),
                };
                let phase = if draining {
                    Phase::Draining
                } else if pipeline.link.is_up() {
                    Phase::Running
                } else {
                    Phase::Outage(options.outage.and_then(|(at, len)| {
                        (outage.scheduled_started && elapsed < at + len).then(|| at + len - elapsed)
                    }))
                };
                let snapshot = Snapshot {
                    elapsed,
                    duration: options.duration,
                    phase,
                    kiosks: lines,
                    rates: totals.rates(&prev.1, prev.0.elapsed()),
                    totals,
                    dashboard,
                    drained_in: outage.drained_in,
                    services: services.clone(),
                    db_note,
                };
                prev = (Instant::now(), totals);
                last_frame = Instant::now();
                let phase_changed = last_phase != Some(std::mem::discriminant(&phase));
                last_phase = Some(std::mem::discriminant(&phase));
                let written = if options.live {
                    write!(out, "\x1b[2J\x1b[H{}", view::render(&snapshot))
                } else if phase_changed || elapsed.as_secs() % 5 == 0 || finished {
                    writeln!(out, "{}", view::summary_line(&snapshot))
                } else {
                    Ok(())
                };
                written
                    .and_then(|_| out.flush())
                    .map_err(|e| DemoError::Io(format!("writing the view: {e}")))?;
            }
        }
        if finished {
            break;
        }
    }

    // Stop everything, then count from the database.
    let generated: Vec<(String, u64)> = pipeline
        .kiosks
        .iter()
        .map(|k| (k.kiosk_id.clone(), k.committed().0))
        .collect();
    drop(reader);
    let stopped = pipeline.stop();
    drop(pipeline);
    drop(kafka);
    stopped?;
    let mut store = database.open()?;
    let rows = store.kiosk_rows(&kiosk_ids)?;
    drop(store);
    if demo.mqtt == ServiceMode::Embedded && embedded::broker_panics() > 0 {
        writeln!(
            out,
            "embedded MQTT broker: {} connection task(s) panicked (rumqttd 0.20, clients reconnecting); the clients reconnected",
            embedded::broker_panics()
        )
        .map_err(|e| DemoError::Io(format!("writing the view: {e}")))?;
    }
    let mut verdict = Reconciliation::new(&generated, &rows);
    verdict.drained_in = outage.drained_in;
    verdict.outage_undrained = outage.happened && outage.drained_in.is_none();
    drop(work);
    Ok(verdict)
}

fn cut(link: &link::Link, outage: &mut OutageClock) {
    log::warn!("demo: cutting the kiosks' link to the broker");
    link.cut();
    outage.happened = true;
    outage.restored = None;
    outage.drained_in = None;
}

fn restore(link: &link::Link, outage: &mut OutageClock) {
    log::warn!("demo: restoring the kiosks' link to the broker");
    link.restore();
    outage.restored = Some((Instant::now(), UtcMillis::now()));
}

/// Every kiosk has committed all it was given and holds no backlog, and the
/// database has a row for every generated event.
fn drained(
    pipeline: &Pipeline,
    lines: &[KioskLine],
    reader: &mut Option<Box<dyn Storage>>,
    database: &Database,
    kiosks: &[String],
) -> bool {
    let committed = pipeline.kiosks.iter().all(|k| k.committed().1);
    if !committed || lines.iter().any(|l| l.backlog > 0) {
        return false;
    }
    let rows = match open_reader(reader, database).and_then(|r| r.kiosk_rows(kiosks)) {
        Ok(rows) => rows,
        Err(e) => {
            log::warn!("demo: reading the database: {e}");
            *reader = None;
            return false;
        }
    };
    lines.iter().all(|l| {
        rows.iter()
            .find(|r| r.kiosk_id == l.kiosk_id)
            .map_or(l.generated == 0, |r| r.distinct_seqs >= l.generated)
    })
}

fn open_reader<'a>(
    reader: &'a mut Option<Box<dyn Storage>>,
    database: &Database,
) -> Result<&'a mut Box<dyn Storage>, StoreError> {
    match reader {
        Some(r) => Ok(r),
        None => Ok(reader.insert(database.open()?)),
    }
}

fn read_dashboard(
    reader: &mut Option<Box<dyn Storage>>,
    database: &Database,
    kiosks: &[String],
) -> Result<crate::store::Dashboard, StoreError> {
    let r = open_reader(reader, database).and_then(|r| r.dashboard(kiosks, 6));
    if r.is_err() {
        *reader = None;
    }
    r
}

/// The configured simulated start, or 07:00 UTC today (a reception's
/// morning, so an accelerated run goes through the busy hours).
fn simulated_start(configured: &str) -> UtcMillis {
    configured.parse().unwrap_or_else(|_| {
        const DAY: i64 = 86_400_000;
        let now = UtcMillis::now().0;
        UtcMillis(now - now.rem_euclid(DAY) + 7 * 3_600_000)
    })
}

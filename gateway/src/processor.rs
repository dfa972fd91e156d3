//! The processor: Kafka consumer group -> queue state -> predictor -> MySQL.
//!
//! One loop, batches strictly in order, one in the database while the
//! next is polled and planned:
//!
//! 1. poll up to `processor.batch_max_records` records or
//!    `processor.batch_max_wait_ms` (a rebalance during the poll discards the
//!    batch and rewinds the partitions still assigned to its first records);
//! 2. parse records (unparseable ones become dead letters), update the queue
//!    state in partition order, compute every arrival's features and predict
//!    the whole batch in one call;
//! 3. write the batch to MySQL in **one transaction** (idempotent writes, see
//!    [`crate::store`]) on the database thread ([`crate::store_worker`]), so
//!    a slow or absent database never stops the polling that keeps this
//!    member in its group; while MySQL fails, pause the partitions and retry
//!    with backoff;
//! 4. make dead letters durable, then commit the offsets (at most once a
//!    second while batches keep coming; at once when idle, on a rebalance
//!    and on stop).
//!
//! Steps 1-2 of batch N+1 run while the database thread does step 3 of
//! batch N; N+1 goes to the database only after N is committed, and its
//! offsets after its own commit. If N has to be given up (a rebalance while
//! the database is down), both are put back and the state is rebuilt.
//!
//! Every few seconds the loop also runs the stranded-partition watch
//! ([`crate::stranded`]): a partition no live member consumes (a broker
//! coordinator fault seen on Tansu 0.6) makes this member rejoin its group.
//!
//! A crash between 3 and 4 replays the batch; the writes make that a no-op.
//! On every assignment the queue state is rebuilt from MySQL before any
//! record is processed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use contract::config::Config;
use contract::record::from_json;
use contract::{Event, EventBody, Status};
use crossbeam_channel::{unbounded, RecvTimeoutError};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::features::{features, Row};
use crate::http::Observable;
use crate::kafka::{self, PreparedRecord, Token};
use crate::metrics::{Counter, Exposition, Gauge, Histogram, LabelledCounter, LATENCY_BUCKETS};
use crate::predictor::Predictor;
use crate::queue::{QueueBook, Rooms};
use crate::store::{ArrivalRow, Database, StoreError, WritePlan};
use crate::store_worker::{Job, Outcome, StoreWorker};
use crate::stranded::{StrandedWatch, Unowned};
use crate::validate::DeadLetter;
use crate::GatewayError;

/// Longest a completed batch's offsets wait to be committed while batches
/// keep coming (an idle loop, a rebalance and a stop commit at once).
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// How often the stranded-partition watch looks at the group.
const STRANDED_CHECK_EVERY: Duration = Duration::from_secs(5);

/// How long another member's lagging partition may stand still before
/// this member rejoins its group: twice the session timeout, so a member
/// that died is long gone from the group and a live one has had many
/// chances to commit.
const STRANDED_PATIENCE: Duration = Duration::from_secs(30);

/// Fault injection for tests: when this variable is set, the processor
/// aborts right after its first database commit, before committing offsets.
pub const CRASH_AFTER_DB_COMMIT: &str = "KTK_FAULT_CRASH_AFTER_DB_COMMIT";

/// The processor's counters, served on `/metrics`.
pub struct ProcessorMetrics {
    /// Records polled from Kafka.
    pub records_consumed: Counter,
    /// Events written (arrivals and status changes; replays included).
    pub events_written: Counter,
    /// Database transactions committed.
    pub batches: Counter,
    /// Records in the last batch.
    pub last_batch_size: Gauge,
    /// Time of each database transaction.
    pub transaction_latency: Histogram,
    /// Records behind the partitions' high watermarks.
    pub consumer_lag: Gauge,
    /// Database write attempts that failed and were retried.
    pub retries: Counter,
    /// Dead letters, by reason.
    pub dead_letters: LabelledCounter,
    /// Batches discarded by a rebalance.
    pub rebalances: Counter,
    /// Times this member left and rejoined its group to free stranded partitions.
    pub group_rejoins: Counter,
    /// Partitions assigned now.
    pub assigned_partitions: Gauge,
    /// 1 while the last database operation succeeded.
    pub db_ok: Gauge,
    /// Absolute prediction errors (minutes x 1000), summed, and their count.
    abs_error_milli: Counter,
    /// Predictions checked against a true wait.
    pub predictions_checked: Counter,
}

impl Default for ProcessorMetrics {
    fn default() -> Self {
        ProcessorMetrics {
            records_consumed: Counter::default(),
            events_written: Counter::default(),
            batches: Counter::default(),
            last_batch_size: Gauge::default(),
            transaction_latency: Histogram::new(&LATENCY_BUCKETS),
            consumer_lag: Gauge::default(),
            retries: Counter::default(),
            dead_letters: LabelledCounter::default(),
            rebalances: Counter::default(),
            group_rejoins: Counter::default(),
            assigned_partitions: Gauge::default(),
            db_ok: Gauge::default(),
            abs_error_milli: Counter::default(),
            predictions_checked: Counter::default(),
        }
    }
}

impl ProcessorMetrics {
    /// Mean absolute error of predictions against true waits so far, minutes.
    pub fn mean_abs_error(&self) -> f64 {
        let n = self.predictions_checked.get();
        if n == 0 {
            0.0
        } else {
            self.abs_error_milli.get() as f64 / 1000.0 / n as f64
        }
    }
}

impl Observable for ProcessorMetrics {
    fn health(&self) -> (bool, String) {
        let ok = self.db_ok.get() == 1;
        let detail = serde_json::json!({
            "database_ok": ok,
            "assigned_partitions": self.assigned_partitions.get(),
            "consumer_lag": self.consumer_lag.get(),
        });
        (ok, detail.to_string())
    }

    fn metrics(&self) -> String {
        let mut e = Exposition::default();
        e.counter(
            "processor_records_consumed_total",
            "Records polled from Kafka",
            self.records_consumed.get(),
        )
        .counter(
            "processor_events_written_total",
            "Events written to MySQL (replays included)",
            self.events_written.get(),
        )
        .counter(
            "processor_batches_total",
            "Database transactions committed",
            self.batches.get(),
        )
        .gauge(
            "processor_last_batch_size",
            "Records in the last batch",
            self.last_batch_size.get() as f64,
        )
        .histogram(
            "processor_transaction_seconds",
            "Time of each database transaction",
            &self.transaction_latency,
        )
        .gauge(
            "processor_consumer_lag",
            "Records behind the high watermarks",
            self.consumer_lag.get() as f64,
        )
        .counter(
            "processor_retries_total",
            "Database writes retried",
            self.retries.get(),
        )
        .labelled(
            "processor_dead_letters_total",
            "Records sent to the dead-letter topic",
            "reason",
            &self.dead_letters,
        )
        .counter(
            "processor_rebalances_total",
            "Batches discarded by a rebalance",
            self.rebalances.get(),
        )
        .counter(
            "processor_group_rejoins_total",
            "Times this member rejoined its group to free stranded partitions",
            self.group_rejoins.get(),
        )
        .gauge(
            "processor_assigned_partitions",
            "Partitions assigned",
            self.assigned_partitions.get() as f64,
        )
        .gauge(
            "processor_database_ok",
            "1 while the database answers",
            self.db_ok.get() as f64,
        )
        .gauge(
            "processor_prediction_mae_minutes",
            "Mean absolute error of predicted against true waits",
            self.mean_abs_error(),
        )
        .counter(
            "processor_predictions_checked_total",
            "Predictions compared with a true wait",
            self.predictions_checked.get(),
        );
        e.finish()
    }
}

/// Marks rebalances so the loop can discard its batch and rebuild, and
/// takes the consumer lag from librdkafka's statistics (no request to the
/// broker from the poll loop).
struct RebalanceFlag(Arc<AtomicBool>, Arc<ProcessorMetrics>);

impl ClientContext for RebalanceFlag {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
            .map(|p| p.consumer_lag)
            .sum();
        self.1.consumer_lag.set(lag);
    }
}

impl ConsumerContext for RebalanceFlag {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        self.0.store(true, Ordering::SeqCst);
        if let Rebalance::Revoke(tpl) = r {
            log::info!("partitions revoked: {}", tpl.count());
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            log::warn!(
                "offset commit failed (the batch is stored and will be replayed harmlessly): {e}"
            );
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        self.0.store(true, Ordering::SeqCst);
        if let Rebalance::Assign(tpl) = r {
            log::info!("partitions assigned: {}", tpl.count());
        }
    }
}

type GroupConsumer = BaseConsumer<RebalanceFlag>;

/// One polled record, parsed or not.
struct Polled {
    partition: i32,
    offset: i64,
    parsed: Result<Event, DeadLetter>,
}

/// Run the processor on the configured MySQL until `stop` is set.
pub fn run(
    config: &Config,
    stop: Arc<AtomicBool>,
    metrics: Arc<ProcessorMetrics>,
) -> Result<(), GatewayError> {
    run_on(config, Database::Mysql(config.mysql.clone()), stop, metrics)
}

/// Run the processor on `database` until `stop` is set.
pub fn run_on(
    config: &Config,
    database: Database,
    stop: Arc<AtomicBool>,
    metrics: Arc<ProcessorMetrics>,
) -> Result<(), GatewayError> {
    let m = &config.model;
    let predictor = Predictor::load(
        std::path::Path::new(&m.path),
        m.min_wait_minutes,
        m.max_wait_minutes,
    )
    .map_err(|e| GatewayError::Model(e.to_string()))?;
    log::info!("model {} loaded from {}", predictor.model_version(), m.path);
    kafka::ensure_topics(&config.kafka)?;
    let s = &config.agent.simulation;
    let rooms: Rooms = [s.rooms_consultation, s.rooms_mri, s.rooms_ct];
    let rebalanced = Arc::new(AtomicBool::new(true));
    let consumer: GroupConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("group.id", &config.processor.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "15000")
        .set("heartbeat.interval.ms", "3000")
        .set("max.poll.interval.ms", "30000")
        .set("statistics.interval.ms", "5000")
        // Fewer, larger fetches: Tansu 0.6's sqlite engine sums record sizes
        // over the whole backlog of a partition on every fetch, so a fetch
        // costs as much as the backlog whatever it returns.
        .set("max.partition.fetch.bytes", "16777216")
        // Tansu answers an empty fetch only after the full wait (it checks
        // for new records every 250 ms), so the default 500 ms wait is
        // latency every idle partition adds to a new check-in.
        .set("fetch.wait.max.ms", "50")
        .create_with_context(RebalanceFlag(Arc::clone(&rebalanced), Arc::clone(&metrics)))
        .map_err(|e| GatewayError::Kafka(format!("creating consumer: {e}")))?;
    consumer
        .subscribe(&[&config.kafka.topic])
        .map_err(|e| GatewayError::Kafka(format!("subscribing to {}: {e}", config.kafka.topic)))?;
    let (dlq_tx, dlq_rx) = unbounded();
    let dlq = kafka::reporting_producer(&config.kafka, dlq_tx)?;
    let db = StoreWorker::start(database.clone())
        .map_err(|e| GatewayError::Io(format!("starting the database thread: {e}")))?;
    let mut book = QueueBook::new(rooms);
    let mut predicted: HashMap<(String, String), (f32, contract::UtcMillis)> = HashMap::new();
    let mut need_rebuild = true;
    let crash_after_commit = std::env::var_os(CRASH_AFTER_DB_COMMIT).is_some();
    let group = Group {
        consumer: &consumer,
        topic: &config.kafka.topic,
        rebalanced: &rebalanced,
        stop: &stop,
    };
    log::info!(
        "processor in group {} consuming {} at {}, writing {database}",
        config.processor.group_id,
        config.kafka.topic,
        config.kafka.bootstrap_servers
    );

    let completer = Completer {
        pending: std::cell::RefCell::new(BTreeMap::new()),
        last_commit: std::cell::Cell::new(Instant::now()),
        consumer: &consumer,
        config,
        dlq: &dlq,
        dlq_rx: &dlq_rx,
        metrics: &metrics,
        crash_after_commit,
    };
    // While the database thread writes one batch, the loop polls and plans
    // the next: at most one batch in flight, committed strictly in order.
    let mut in_flight: Option<InFlight> = None;
    let mut stranded = StrandedWatch::new(STRANDED_PATIENCE);
    let mut watched = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if watched.elapsed() >= STRANDED_CHECK_EVERY {
            watched = Instant::now();
            let healthy = metrics.db_ok.get() == 1;
            let view = if stranded.should_look(watched, group.owns_any()) {
                group.unowned()
            } else {
                None
            };
            if let Some(parts) = stranded.observe(watched, view.as_deref(), healthy) {
                log::warn!(
                    "partitions {parts:?} of {} are behind and their committed offsets have not moved \
                     for {} s: no live member consumes them (a broker group-coordinator fault); \
                     leaving and rejoining the group",
                    config.kafka.topic,
                    STRANDED_PATIENCE.as_secs()
                );
                metrics.group_rejoins.inc();
                group.rejoin();
            }
        }
        let batch = poll_batch(&consumer, config, &metrics, &stop);
        if rebalanced.swap(false, Ordering::SeqCst) {
            need_rebuild = true;
            let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
            metrics.assigned_partitions.set(assigned as i64);
            // The batch in flight was planned on the old assignment's
            // state, but its rows are right whoever owns the partitions:
            // let it finish (or give it up) before rebuilding.
            if let Some(f) = in_flight.take() {
                if group.finish(&db, &f, &metrics) {
                    completer.complete(f)?;
                } else {
                    group.rewind(&f.batch);
                }
            }
            completer.commit(true)?;
            if !batch.is_empty() {
                // The batch may mix records of the old and the new
                // assignment: put back what is still ours and start again
                // from the rebuilt state.
                metrics.rebalances.inc();
                group.rewind(&batch);
                continue;
            }
        }
        if need_rebuild {
            match group.run_db(&db, Job::Rebuild(rooms), &metrics) {
                Some(Outcome::Rebuilt(b, preds)) => {
                    book = *b;
                    predicted = preds.into_iter().collect();
                    need_rebuild = false;
                    log::info!(
                        "queue state rebuilt from MySQL: {} patients waiting",
                        predicted.len()
                    );
                }
                Some(Outcome::Failed(e)) => {
                    db_failed(&metrics, &e);
                    group.rewind(&batch);
                    group.keep_alive(Duration::from_secs(1));
                    continue;
                }
                Some(Outcome::Written(_)) | None => {
                    group.rewind(&batch);
                    continue;
                }
            }
        }
        if batch.is_empty() {
            // Idle: settle what is in flight so its offsets are committed.
            if let Some(f) = in_flight.take() {
                if !completer.settle(&group, &db, f)? {
                    need_rebuild = true;
                }
            }
            completer.commit(true)?;
            continue;
        }
        metrics.last_batch_size.set(batch.len() as i64);
        let (plan, dead) = plan_batch(&batch, &predictor, &mut book, &mut predicted, &metrics)?;
        let next = InFlight {
            batch,
            dead,
            plan: Arc::new(plan),
        };
        if let Some(f) = in_flight.take() {
            if !group.finish(&db, &f, &metrics) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // The state both plans were built on is gone: rebuild and
                // re-consume from the older batch.
                need_rebuild = true;
                group.rewind_all(&[&f.batch, &next.batch]);
                continue;
            }
            completer.complete(f)?;
        }
        if next.plan.is_empty() {
            // Only dead letters: nothing for the database.
            completer.complete(next)?;
        } else if db.submit(Job::Write(Arc::clone(&next.plan))) {
            in_flight = Some(next);
        } else {
            return Err(GatewayError::Io("the database thread is gone".into()));
        }
    }
    completer.commit(true)?;
    Ok(())
}

/// A batch whose write has been handed to the database thread.
struct InFlight {
    batch: Vec<Polled>,
    dead: Vec<(usize, DeadLetter)>,
    plan: Arc<WritePlan>,
}

/// Parse results to queue state, features and one prediction call: the
/// batch's write plan and its dead letters (by index in the batch).
fn plan_batch(
    batch: &[Polled],
    predictor: &Predictor,
    book: &mut QueueBook,
    predicted: &mut HashMap<(String, String), (f32, contract::UtcMillis)>,
    metrics: &ProcessorMetrics,
) -> Result<(WritePlan, Vec<(usize, DeadLetter)>), GatewayError> {
    let mut plan = WritePlan {
        model_version: predictor.model_version().to_string(),
        ..WritePlan::default()
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut dead = Vec::new();
    for (i, p) in batch.iter().enumerate() {
        match &p.parsed {
            Ok(event) => match &event.body {
                EventBody::Arrival(a) => {
                    let snapshot = book.arrive(&event.identity.site_id, a);
                    rows.push(features(a, &snapshot));
                    plan.arrivals.push(ArrivalRow {
                        event: event.clone(),
                        predicted_wait_minutes: 0.0,
                    });
                }
                EventBody::StatusChange(s) => {
                    book.status(&event.identity.site_id, s);
                    if s.status == Status::WithDoctor {
                        let key = (event.identity.site_id.clone(), s.patient_id.clone());
                        if let Some((pred, arrived)) = predicted.remove(&key) {
                            let actual = s.changed_at.minutes_since(arrived).max(0.0);
                            metrics
                                .abs_error_milli
                                .add(((f64::from(pred) - actual).abs() * 1000.0) as u64);
                            metrics.predictions_checked.inc();
                        }
                    } else if s.status == Status::Left {
                        predicted.remove(&(event.identity.site_id.clone(), s.patient_id.clone()));
                    }
                    plan.statuses.push(event.clone());
                }
            },
            Err(d) => dead.push((i, d.clone())),
        }
    }
    let predictions = predictor
        .predict(&rows)
        .map_err(|e| GatewayError::Model(e.to_string()))?;
    for (row, pred) in plan.arrivals.iter_mut().zip(predictions) {
        row.predicted_wait_minutes = pred;
        if let EventBody::Arrival(a) = &row.event.body {
            predicted.insert(
                (row.event.identity.site_id.clone(), a.patient_id.clone()),
                (pred, a.arrival_time),
            );
        }
    }
    Ok((plan, dead))
}

/// What completing a batch needs once its rows are committed: the
/// dead-letter producer and the consumer whose offsets it commits.
struct Completer<'a> {
    /// Offsets of completed batches not yet committed, by partition.
    pending: std::cell::RefCell<BTreeMap<i32, i64>>,
    last_commit: std::cell::Cell<Instant>,
    consumer: &'a GroupConsumer,
    config: &'a Config,
    dlq: &'a kafka::ReportingProducer,
    dlq_rx: &'a crossbeam_channel::Receiver<kafka::Delivered>,
    metrics: &'a ProcessorMetrics,
    crash_after_commit: bool,
}

impl Completer<'_> {
    /// Wait for the batch in flight and complete it. Returns false if it
    /// was abandoned (its records are put back; the caller rebuilds).
    fn settle(
        &self,
        group: &Group<'_>,
        db: &StoreWorker,
        f: InFlight,
    ) -> Result<bool, GatewayError> {
        if group.finish(db, &f, self.metrics) {
            self.complete(f)?;
            Ok(true)
        } else {
            group.rewind(&f.batch);
            Ok(false)
        }
    }

    /// After the batch's rows are committed: make its dead letters
    /// durable, then commit its offsets.
    fn complete(&self, f: InFlight) -> Result<(), GatewayError> {
        if self.crash_after_commit && !f.plan.is_empty() {
            log::error!("{CRASH_AFTER_DB_COMMIT} is set: aborting after the database commit");
            std::process::abort();
        }
        let topic = &self.config.kafka.topic;
        if !f.dead.is_empty() {
            for (i, d) in &f.dead {
                let p = &f.batch[*i];
                let source = format!("{topic}/{}/{}", p.partition, p.offset);
                log::warn!("dead letter at {source}: {} ({})", d.reason, d.detail);
                let record = PreparedRecord::dead_letter(
                    &self.config.kafka.dlq_topic,
                    d,
                    &source,
                    "processor",
                );
                let token = Token {
                    batch: 0,
                    attempt: 1,
                    sent_at: Instant::now(),
                };
                kafka::send_record(self.dlq, &record, token)
                    .map_err(|e| GatewayError::Kafka(format!("dead letter: {e}")))?;
            }
            kafka::flush(self.dlq, Duration::from_secs(300))?;
            let failed = self.dlq_rx.try_iter().filter(|d| d.error.is_some()).count();
            if failed > 0 {
                return Err(GatewayError::Kafka(format!(
                    "{failed} dead letters were not delivered"
                )));
            }
            for (_, d) in &f.dead {
                self.metrics.dead_letters.add(d.reason, 1);
            }
        }
        {
            let mut pending = self.pending.borrow_mut();
            for p in &f.batch {
                let e = pending.entry(p.partition).or_insert(p.offset + 1);
                *e = (*e).max(p.offset + 1);
            }
        }
        self.commit(false)
    }

    /// Commit the completed batches' offsets: at most once per
    /// [`COMMIT_EVERY`] unless `now`. Every commit is a coordinator request,
    /// and a durable broker under load answers them slowly enough to hold
    /// back the heartbeats queued behind them; an offset committed late
    /// only means a longer (harmless) replay after a crash.
    fn commit(&self, now: bool) -> Result<(), GatewayError> {
        if self.pending.borrow().is_empty()
            || (!now && self.last_commit.get().elapsed() < COMMIT_EVERY)
        {
            return Ok(());
        }
        let offsets = std::mem::take(&mut *self.pending.borrow_mut());
        self.last_commit.set(Instant::now());
        commit_offsets(self.consumer, &self.config.kafka.topic, &offsets)
    }
}

/// The consumer as the loop uses it between polls: staying in the group
/// while the database thread works, and putting records back.
struct Group<'a> {
    consumer: &'a GroupConsumer,
    topic: &'a str,
    rebalanced: &'a AtomicBool,
    stop: &'a AtomicBool,
}

impl Group<'_> {
    /// Wait for the write of `f` (already submitted), resubmitting it with
    /// backoff while the database fails. Returns false if the batch must be
    /// abandoned (stop, or the assignment changed).
    fn finish(&self, db: &StoreWorker, f: &InFlight, metrics: &ProcessorMetrics) -> bool {
        let mut backoff = Duration::from_millis(200);
        let len = f.plan.len() as u64;
        loop {
            match self.outcome(db, metrics) {
                Some(Outcome::Written(took)) => {
                    metrics.transaction_latency.observe(took);
                    metrics.events_written.add(len);
                    metrics.batches.inc();
                    if metrics.db_ok.get() == 0 {
                        log::info!("database writes succeed again");
                    }
                    metrics.db_ok.set(1);
                    return true;
                }
                Some(Outcome::Failed(e)) => {
                    metrics.retries.inc();
                    log::debug!(
                        "database write failed (attempt {}): {e}",
                        metrics.retries.get()
                    );
                    db_failed(metrics, &e);
                    // A refusal will not heal by itself: retry slowly.
                    let wait = if e.is_transient() {
                        backoff
                    } else {
                        Duration::from_secs(30)
                    };
                    if !self.keep_alive(wait) || self.rebalanced.load(Ordering::SeqCst) {
                        return false;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    if !db.submit(Job::Write(Arc::clone(&f.plan))) {
                        log::error!("the database thread is gone");
                        return false;
                    }
                }
                Some(Outcome::Rebuilt(..)) | None => return false,
            }
        }
    }

    /// Run one database job and wait for its outcome, keeping the group
    /// membership alive if it takes long. `None` if asked to stop.
    fn run_db(&self, db: &StoreWorker, job: Job, metrics: &ProcessorMetrics) -> Option<Outcome> {
        if !db.submit(job) {
            log::error!("the database thread is gone");
            return None;
        }
        self.outcome(db, metrics)
    }

    /// Wait for the outcome of the job submitted last, keeping the group
    /// membership alive if it takes long. `None` if asked to stop.
    fn outcome(&self, db: &StoreWorker, metrics: &ProcessorMetrics) -> Option<Outcome> {
        let started = Instant::now();
        let mut paused: Option<TopicPartitionList> = None;
        let outcome = loop {
            match db.outcomes().recv_timeout(Duration::from_millis(50)) {
                Ok(o) => break Some(o),
                Err(RecvTimeoutError::Disconnected) => break None,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.stop.load(Ordering::Relaxed) {
                break None;
            }
            // Most transactions take milliseconds; a slow one (a database
            // coming back) must not cost the group membership.
            if started.elapsed() > Duration::from_secs(2) {
                if paused.is_none() {
                    metrics.db_ok.set(0);
                    paused = self.pause();
                }
                self.poll_paused(Duration::from_millis(50));
            }
        };
        if let Some(a) = paused {
            let _ = self.consumer.resume(&a);
        }
        outcome
    }

    fn pause(&self) -> Option<TopicPartitionList> {
        let a = self.consumer.assignment().ok()?;
        let _ = self.consumer.pause(&a);
        Some(a)
    }

    /// Pause the assignment, wait while polling (to stay in the group),
    /// resume. Returns false if asked to stop.
    fn keep_alive(&self, wait: Duration) -> bool {
        let paused = self.pause();
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            self.poll_paused(Duration::from_millis(100));
        }
        if let Some(a) = paused {
            let _ = self.consumer.resume(&a);
        }
        true
    }

    /// Poll a paused consumer: it serves callbacks and rebalances. A record
    /// fetched before the pause must not be skipped: rewind to it.
    fn poll_paused(&self, wait: Duration) {
        if let Some(Ok(msg)) = self.consumer.poll(wait) {
            let (partition, offset) = (msg.partition(), msg.offset());
            drop(msg);
            self.seek(partition, offset);
        }
    }

    /// Put back the records of `batch` whose partitions are still assigned:
    /// the next poll returns them again.
    fn rewind(&self, batch: &[Polled]) {
        self.rewind_all(&[batch]);
    }

    /// [`Group::rewind`] over several batches: each partition goes back to
    /// its first record in any of them.
    fn rewind_all(&self, batches: &[&[Polled]]) {
        let mut first: BTreeMap<i32, i64> = BTreeMap::new();
        for p in batches.iter().flat_map(|b| b.iter()) {
            let e = first.entry(p.partition).or_insert(p.offset);
            *e = (*e).min(p.offset);
        }
        let assigned = self.consumer.assignment().ok();
        for (partition, offset) in first {
            let ours = assigned
                .as_ref()
                .is_some_and(|a| a.find_partition(self.topic, partition).is_some());
            if ours {
                self.seek(partition, offset);
            }
        }
    }

    /// Seek one assigned partition. If that fails the position is unknown,
    /// so leave and rejoin the group: a fresh assignment starts from the
    /// committed offsets, which never skip a record.
    fn seek(&self, partition: i32, offset: i64) {
        if let Err(e) = self.consumer.seek(
            self.topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(5),
        ) {
            log::warn!(
                "cannot rewind {}/{partition} to {offset}: {e}; rejoining the group",
                self.topic
            );
            self.rejoin();
        }
    }

    /// Leave the group and join again as a new member: the next
    /// assignment starts from the committed offsets, which never skip a
    /// record.
    fn rejoin(&self) {
        self.consumer.unsubscribe();
        if let Err(e) = self.consumer.subscribe(&[self.topic]) {
            log::error!("resubscribing to {}: {e}", self.topic);
        }
        self.rebalanced.store(true, Ordering::SeqCst);
    }

    /// Whether this member owns any partition (true if it cannot tell).
    fn owns_any(&self) -> bool {
        self.consumer.assignment().map_or(true, |a| a.count() > 0)
    }

    /// The partitions of the topic this member does not own, with the
    /// group's committed offsets and their high watermarks; `None` if the
    /// broker does not answer promptly.
    fn unowned(&self) -> Option<Vec<Unowned>> {
        let wait = Duration::from_secs(1);
        let mine = self.consumer.assignment().ok()?;
        let metadata = self.consumer.fetch_metadata(Some(self.topic), wait).ok()?;
        let mut others = TopicPartitionList::new();
        for p in metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)?
            .partitions()
        {
            if mine.find_partition(self.topic, p.id()).is_none() {
                others.add_partition(self.topic, p.id());
            }
        }
        if others.count() == 0 {
            return Some(Vec::new());
        }
        let committed = self.consumer.committed_offsets(others, wait).ok()?;
        committed
            .elements()
            .iter()
            .map(|e| {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(self.topic, e.partition(), wait)
                    .ok()?;
                Some(Unowned {
                    partition: e.partition(),
                    committed: e.offset().to_raw().unwrap_or(-1),
                    high_watermark: high,
                })
            })
            .collect()
    }
}

/// Poll records until the batch is full, the wait is over, or a rebalance.
fn poll_batch(
    consumer: &GroupConsumer,
    config: &Config,
    metrics: &ProcessorMetrics,
    stop: &AtomicBool,
) -> Vec<Polled> {
    let max = config.processor.batch_max_records;
    let deadline = Instant::now() + Duration::from_millis(config.processor.batch_max_wait_ms);
    let mut batch = Vec::new();
    while batch.len() < max && !stop.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if batch.is_empty() {
            Duration::from_millis(100)
        } else {
            left
        };
        match consumer.poll(wait) {
            Some(Ok(msg)) => {
                metrics.records_consumed.inc();
                let payload = msg.payload().unwrap_or_default();
                let parsed = from_json(payload).map_err(|e| DeadLetter {
                    reason: e.reason(),
                    detail: e.to_string(),
                    value: payload.to_vec(),
                    event_id: None,
                });
                batch.push(Polled {
                    partition: msg.partition(),
                    offset: msg.offset(),
                    parsed,
                });
            }
            Some(Err(e)) => {
                log::warn!("kafka consumer: {e}");
                break;
            }
            None if batch.is_empty() => return batch,
            None => {}
        }
        if !batch.is_empty() && Instant::now() >= deadline {
            break;
        }
    }
    batch
}

fn commit_offsets(
    consumer: &GroupConsumer,
    topic: &str,
    next: &BTreeMap<i32, i64>,
) -> Result<(), GatewayError> {
    let mut tpl = TopicPartitionList::new();
    for (&partition, &offset) in next {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(|e| GatewayError::Kafka(e.to_string()))?;
    }
    // Asynchronous: the broker's answer must never hold up the poll loop
    // (a slow coordinator would otherwise cost the group membership). A
    // commit that fails only means a harmless replay; the result is logged
    // by the context's commit callback.
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        // Not fatal: the batch is stored; a later commit or a replay covers it.
        log::warn!(
            "offset commit failed (the batch is stored and will be replayed harmlessly): {e}"
        );
    }
    Ok(())
}

fn db_failed(metrics: &ProcessorMetrics, e: &StoreError) {
    if metrics.db_ok.get() != 0 || !e.is_transient() {
        if e.is_transient() {
            log::warn!("{e}; pausing consumption and retrying with backoff");
        } else {
            log::error!(
                "{e}; this will not heal by itself: fix the database, the processor retries every 30 s"
            );
        }
    }
    metrics.db_ok.set(0);
}

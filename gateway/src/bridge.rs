//! The bridge: kiosk batches from MQTT into Kafka, acknowledged end to end.
//!
//! ```text
//! [mqtt-link thread] --Publish--> [bridge loop] --records--> librdkafka (idempotent, acks=all)
//!        ^                            |   ^                         |
//!        |  ack to kiosk, then PUBACK |   +---- delivery reports ---+
//!        +----------------------------+
//! ```
//!
//! For each MQTT message the loop validates (see [`crate::validate`]),
//! produces every valid event and every dead letter, and waits for Kafka to
//! confirm **all** of them. Only then does it publish the batch's seq ranges
//! on the kiosk's ack topic and send the MQTT PUBACK (manual acks). A batch
//! with any failed delivery is produced again after a backoff; nothing is
//! acknowledged meanwhile, and at most `bridge.max_in_flight_batches` batches
//! are outstanding, so a Kafka outage stops intake instead of growing memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use contract::config::Config;
use contract::mqtt::{ack_topic, shared_events_filter, Ack};
use crossbeam_channel::{never, select, unbounded, Receiver, Sender};
use rumqttc::{Client, Connection, Event as MqttEvent, MqttOptions, Packet, Publish, QoS};

use crate::http::Observable;
use crate::kafka::{self, Delivered, PreparedRecord, ReportingProducer, Token};
use crate::metrics::{Counter, Exposition, Gauge, Histogram, LabelledCounter, LATENCY_BUCKETS};
use crate::puback::PubackOrder;
use crate::validate::check_message;
use crate::GatewayError;

/// The bridge's counters, served on `/metrics`.
pub struct BridgeMetrics {
    /// MQTT messages received.
    pub batches_in: Counter,
    /// Events decoded from them.
    pub events_in: Counter,
    /// Event records confirmed by Kafka.
    pub records_produced: Counter,
    /// Dead letters confirmed by Kafka, by reason.
    pub dead_letters: LabelledCounter,
    /// Batches awaiting Kafka.
    pub in_flight: Gauge,
    /// Time from handing a record to librdkafka to its confirmation.
    pub delivery_latency: Histogram,
    /// Ack messages published to kiosks.
    pub acks_sent: Counter,
    /// Record deliveries that failed (the batch is retried).
    pub delivery_failures: Counter,
    /// Batches produced again after a failure.
    pub batch_retries: Counter,
    /// 1 while the MQTT link is up.
    pub mqtt_connected: Gauge,
}

impl Default for BridgeMetrics {
    fn default() -> Self {
        BridgeMetrics {
            batches_in: Counter::default(),
            events_in: Counter::default(),
            records_produced: Counter::default(),
            dead_letters: LabelledCounter::default(),
            in_flight: Gauge::default(),
            delivery_latency: Histogram::new(&LATENCY_BUCKETS),
            acks_sent: Counter::default(),
            delivery_failures: Counter::default(),
            batch_retries: Counter::default(),
            mqtt_connected: Gauge::default(),
        }
    }
}

impl Observable for BridgeMetrics {
    fn health(&self) -> (bool, String) {
        let mqtt = self.mqtt_connected.get() == 1;
        let detail = serde_json::json!({
            "mqtt_connected": mqtt,
            "in_flight_batches": self.in_flight.get(),
            "delivery_failures": self.delivery_failures.get(),
        });
        (mqtt, detail.to_string())
    }

    fn metrics(&self) -> String {
        let mut e = Exposition::default();
        e.counter(
            "bridge_batches_received_total",
            "MQTT messages received from kiosks",
            self.batches_in.get(),
        )
        .counter(
            "bridge_events_received_total",
            "Events decoded from kiosk messages",
            self.events_in.get(),
        )
        .counter(
            "bridge_records_produced_total",
            "Event records confirmed by Kafka",
            self.records_produced.get(),
        )
        .labelled(
            "bridge_dead_letters_total",
            "Inputs sent to the dead-letter topic",
            "reason",
            &self.dead_letters,
        )
        .gauge(
            "bridge_in_flight_batches",
            "Batches awaiting Kafka confirmation",
            self.in_flight.get() as f64,
        )
        .histogram(
            "bridge_kafka_delivery_seconds",
            "Time from produce to Kafka confirmation",
            &self.delivery_latency,
        )
        .counter(
            "bridge_acks_sent_total",
            "End-to-end acks published to kiosks",
            self.acks_sent.get(),
        )
        .counter(
            "bridge_delivery_failures_total",
            "Record deliveries that failed",
            self.delivery_failures.get(),
        )
        .counter(
            "bridge_batch_retries_total",
            "Batches produced again after a failure",
            self.batch_retries.get(),
        )
        .gauge(
            "bridge_mqtt_connected",
            "1 while the MQTT link is up",
            self.mqtt_connected.get() as f64,
        );
        e.finish()
    }
}

enum Link {
    Up,
    Down,
    Message(Publish),
}

/// One MQTT message being carried into Kafka.
struct Batch {
    publish: Publish,
    ack_to: Option<(String, String)>,
    ack: Ack,
    records: Vec<PreparedRecord>,
    dead_reasons: Vec<&'static str>,
    events: usize,
    attempt: u32,
    remaining: usize,
    failed: bool,
    retry_at: Option<Instant>,
}

/// MQTT options of a bridge: persistent session, manual acks, large packets.
pub fn mqtt_options(config: &Config) -> MqttOptions {
    let m = &config.mqtt;
    let mut o = MqttOptions::new(config.bridge.client_id.clone(), m.host.clone(), m.port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(m.keep_alive_secs))
        // Never refuse a packet at the client: an oversize payload must reach
        // validation and the dead-letter topic, not kill the connection.
        .set_max_packet_size(268_435_455, 16 << 20)
        .set_inflight(1000);
    if !m.username.is_empty() {
        o.set_credentials(m.username.clone(), m.password.get().unwrap_or(""));
    }
    o
}

fn spawn_link(
    mut connection: Connection,
    client: Client,
    filter: String,
    tx: Sender<Link>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("mqtt-link".into())
        .spawn(move || {
            let mut down_logged = false;
            let mut delay = Duration::from_millis(100);
            loop {
                match connection.recv() {
                    Err(_) => return,
                    Ok(Ok(MqttEvent::Incoming(Packet::ConnAck(_)))) => {
                        delay = Duration::from_millis(100);
                        if down_logged {
                            log::info!("MQTT link up again");
                        }
                        down_logged = false;
                        if client
                            .try_subscribe(filter.clone(), QoS::AtLeastOnce)
                            .is_err()
                            || tx.send(Link::Up).is_err()
                        {
                            return;
                        }
                    }
                    Ok(Ok(MqttEvent::Incoming(Packet::Publish(p)))) => {
                        if tx.send(Link::Message(p)).is_err() {
                            return;
                        }
                    }
                    Ok(Ok(MqttEvent::Outgoing(rumqttc::Outgoing::Disconnect))) => return,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        if !down_logged {
                            log::warn!("MQTT link down: {e}; reconnecting");
                            down_logged = true;
                        }
                        if tx.send(Link::Down).is_err() {
                            return;
                        }
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        })
        .expect("spawning the MQTT link thread")
}

/// Run the bridge until `stop` is set.
pub fn run(
    config: &Config,
    stop: Arc<AtomicBool>,
    metrics: Arc<BridgeMetrics>,
) -> Result<(), GatewayError> {
    kafka::ensure_topics(&config.kafka)?;
    let (delivered_tx, delivered_rx) = unbounded::<Delivered>();
    let producer = kafka::reporting_producer(&config.kafka, delivered_tx)?;
    let (client, connection) = Client::new(mqtt_options(config), 4096);
    let (link_tx, link_rx) = unbounded::<Link>();
    let filter = shared_events_filter(&config.bridge.share_group);
    let link = spawn_link(connection, client.clone(), filter.clone(), link_tx);
    log::info!(
        "bridge {} subscribing to {filter} on {}:{}, producing to {} at {}",
        config.bridge.client_id,
        config.mqtt.host,
        config.mqtt.port,
        config.kafka.topic,
        config.kafka.bootstrap_servers
    );
    let mut state = BridgeLoop {
        config,
        client: &client,
        producer: &producer,
        metrics: &metrics,
        batches: HashMap::new(),
        pubacks: PubackOrder::default(),
        next_id: 0,
        kafka_down_logged: false,
    };
    let result = state.run(&link_rx, &delivered_rx, &stop);
    let _ = client.try_disconnect();
    let _ = kafka::flush(&producer, Duration::from_secs(5));
    drop(client);
    // With the broker unreachable the DISCONNECT never goes out; the link
    // thread then ends on its next failed reconnect, when it finds nobody
    // listening.
    drop(link_rx);
    let _ = link.join();
    result
}

struct BridgeLoop<'a> {
    config: &'a Config,
    client: &'a Client,
    producer: &'a ReportingProducer,
    metrics: &'a BridgeMetrics,
    batches: HashMap<u64, Batch>,
    /// PUBACKs held until every earlier message is finished.
    pubacks: PubackOrder<Publish>,
    next_id: u64,
    kafka_down_logged: bool,
}

impl BridgeLoop<'_> {
    fn run(
        &mut self,
        link_rx: &Receiver<Link>,
        delivered_rx: &Receiver<Delivered>,
        stop: &AtomicBool,
    ) -> Result<(), GatewayError> {
        let max = self.config.bridge.max_in_flight_batches;
        while !stop.load(Ordering::Relaxed) {
            let intake = if self.batches.len() < max {
                link_rx.clone()
            } else {
                never()
            };
            select! {
                recv(intake) -> msg => match msg {
                    Ok(Link::Message(p)) => self.on_message(p),
                    Ok(Link::Up) => self.metrics.mqtt_connected.set(1),
                    Ok(Link::Down) => {
                        self.metrics.mqtt_connected.set(0);
                        // The broker redelivers what this session did not PUBACK.
                        self.pubacks.forget_all();
                    }
                    Err(_) => return Err(GatewayError::Mqtt("MQTT link thread ended".into())),
                },
                recv(delivered_rx) -> d => {
                    if let Ok(d) = d {
                        self.on_delivered(d);
                    }
                }
                default(Duration::from_millis(100)) => {}
            }
            self.retry_due();
            self.metrics.in_flight.set(self.batches.len() as i64);
        }
        Ok(())
    }

    fn on_message(&mut self, publish: Publish) {
        let m = self.metrics;
        m.batches_in.inc();
        let verdict = check_message(
            &publish.topic,
            &publish.payload,
            self.config.bridge.max_payload_bytes,
        );
        m.events_in.add(verdict.decoded as u64);
        let k = &self.config.kafka;
        let mut records: Vec<PreparedRecord> = verdict
            .events
            .iter()
            .map(|e| PreparedRecord::event(&k.topic, e))
            .collect();
        let mut dead_reasons = Vec::new();
        for d in &verdict.dead {
            log::warn!(
                "dead letter from {}: {} ({})",
                publish.topic,
                d.reason,
                d.detail
            );
            dead_reasons.push(d.reason);
            records.push(PreparedRecord::dead_letter(
                &k.dlq_topic,
                d,
                &publish.topic,
                "bridge",
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        let batch = Batch {
            publish,
            ack_to: verdict.kiosk,
            ack: Ack::new(verdict.ack),
            events: verdict.events.len(),
            records,
            dead_reasons,
            attempt: 0,
            remaining: 0,
            failed: false,
            retry_at: None,
        };
        self.batches.insert(id, batch);
        self.pubacks.received(id);
        self.produce(id);
    }

    /// Hand every record of a batch to librdkafka (again, on a retry).
    fn produce(&mut self, id: u64) {
        let Some(batch) = self.batches.get_mut(&id) else {
            return;
        };
        batch.attempt += 1;
        batch.failed = false;
        batch.retry_at = None;
        batch.remaining = batch.records.len();
        let now = Instant::now();
        let token = Token {
            batch: id,
            attempt: batch.attempt,
            sent_at: now,
        };
        let mut refused = 0;
        for record in &batch.records {
            if let Err(e) = kafka::send_record(self.producer, record, token) {
                log::error!("kafka refused a record of {}: {e}", batch.publish.topic);
                refused += 1;
            }
        }
        if refused > 0 {
            self.metrics.delivery_failures.add(refused as u64);
            batch.remaining -= refused;
            batch.failed = true;
        }
        if batch.remaining == 0 {
            self.complete(id);
        }
    }

    fn on_delivered(&mut self, d: Delivered) {
        let Some(batch) = self.batches.get_mut(&d.token.batch) else {
            return;
        };
        if batch.attempt != d.token.attempt {
            return; // a report from an earlier attempt
        }
        match &d.error {
            None => self
                .metrics
                .delivery_latency
                .observe(d.token.sent_at.elapsed()),
            Some(e) => {
                self.metrics.delivery_failures.inc();
                if !self.kafka_down_logged {
                    log::warn!("kafka delivery failed: {e}; batches will be retried and not acknowledged until Kafka confirms them");
                    self.kafka_down_logged = true;
                }
                batch.failed = true;
            }
        }
        batch.remaining = batch.remaining.saturating_sub(1);
        if batch.remaining == 0 {
            self.complete(d.token.batch);
        }
    }

    /// Every record of the batch has a delivery outcome.
    fn complete(&mut self, id: u64) {
        let Some(batch) = self.batches.get_mut(&id) else {
            return;
        };
        if batch.failed {
            let backoff = Duration::from_millis(200 * u64::from(batch.attempt.min(25)));
            batch.retry_at = Some(Instant::now() + backoff);
            return;
        }
        let Some(batch) = self.batches.remove(&id) else {
            return;
        };
        if self.kafka_down_logged {
            log::info!("kafka deliveries succeed again");
            self.kafka_down_logged = false;
        }
        let m = self.metrics;
        m.records_produced.add(batch.events as u64);
        for r in &batch.dead_reasons {
            m.dead_letters.add(r, 1);
        }
        if let Some((site, kiosk)) = &batch.ack_to {
            if !batch.ack.ranges.is_empty() {
                // Blocking is safe: the link thread never waits on this loop.
                if let Err(e) = self.client.publish(
                    ack_topic(site, kiosk),
                    QoS::AtLeastOnce,
                    false,
                    batch.ack.to_json(),
                ) {
                    log::error!("cannot publish ack to {site}/{kiosk}: {e}");
                    // No PUBACK: the broker or the kiosk will resend.
                    self.send_pubacks(id, None);
                    return;
                }
                m.acks_sent.inc();
            }
        }
        self.send_pubacks(id, Some(batch.publish));
    }

    /// Message `id` is finished: send the PUBACKs now due, in arrival order.
    fn send_pubacks(&mut self, id: u64, puback: Option<Publish>) {
        for p in self.pubacks.done(id, puback) {
            if let Err(e) = self.client.ack(&p) {
                log::error!("cannot PUBACK {}: {e}", p.topic);
            }
        }
    }

    fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .batches
            .iter()
            .filter(|(_, b)| b.retry_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.metrics.batch_retries.inc();
            self.produce(id);
        }
    }
}

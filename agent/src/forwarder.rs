//! The forwarder: publishes outbox events to MQTT in batches and deletes
//! them only when the gateway's end-to-end ack says Kafka holds them.
//!
//! Two threads:
//! * the **link** thread drives rumqttc's connection (reconnecting with
//!   exponential backoff and jitter) and passes what matters — link up,
//!   link down, ack messages — over a channel;
//! * the **forwarder** loop owns the outbox connection and the pure
//!   [`Window`]: it sends new batches while the window has room, resends
//!   overdue ones, applies acks, and publishes the retained status.
//!
//! On every (re)connect the window restarts from the oldest stored event, so
//! everything unacknowledged is resent, oldest first. rumqttc's own replay
//! of unacknowledged publishes is cleared for the same reason.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use contract::config::{Config, MqttConfig};
use contract::mqtt::{ack_topic, events_topic, status_topic, Ack};
use contract::wire::encode_batch;
use crossbeam_channel::{bounded, select, Receiver, Sender};
use rand::RngExt;
use rumqttc::{Client, Connection, Event, MqttOptions, Packet, QoS, Transport};

use crate::outbox::{Outbox, OutboxError};
use crate::status::kiosk_status;
use crate::window::{Pacer, Window};
use crate::AgentError;

/// Counters of the forwarder, readable while it runs.
#[derive(Debug, Default)]
pub struct ForwarderStats {
    /// Whether the MQTT link is up.
    pub connected: AtomicBool,
    /// Successful connections so far.
    pub connects: AtomicU64,
    /// Batches published (including resends).
    pub batches_sent: AtomicU64,
    /// Events published (including resends).
    pub events_sent: AtomicU64,
    /// Batches resent after their ack timed out.
    pub batches_resent: AtomicU64,
    /// Ack messages received.
    pub acks: AtomicU64,
    /// Events deleted from the outbox by acks.
    pub events_acked: AtomicU64,
    /// Ack messages that did not parse.
    pub bad_acks: AtomicU64,
}

enum Link {
    Up,
    Down,
    Ack(Vec<u8>),
}

/// Build rumqttc options from the config: persistent session, client id =
/// kiosk id, large packets, optional TLS and credentials.
pub fn mqtt_options(mqtt: &MqttConfig, client_id: &str) -> Result<MqttOptions, AgentError> {
    let mut o = MqttOptions::new(client_id, mqtt.host.clone(), mqtt.port);
    o.set_clean_session(false)
        .set_keep_alive(Duration::from_secs(mqtt.keep_alive_secs))
        .set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024)
        .set_inflight(100);
    if !mqtt.username.is_empty() {
        o.set_credentials(mqtt.username.clone(), mqtt.password.get().unwrap_or(""));
    }
    if mqtt.tls {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = std::fs::read(&mqtt.ca_file)
            .map_err(|e| AgentError::Config(format!("mqtt.ca_file {}: {e}", mqtt.ca_file)))?;
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            },
        ));
    }
    Ok(o)
}

/// Exponential backoff with full jitter between `min` and `max` milliseconds.
#[derive(Debug, Clone)]
pub struct Backoff {
    min_ms: u64,
    max_ms: u64,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `min_ms`, capped at `max_ms`.
    pub fn new(min_ms: u64, max_ms: u64) -> Backoff {
        Backoff {
            min_ms,
            max_ms,
            attempt: 0,
        }
    }

    /// The next delay: uniform in `[ceiling/2, ceiling]`, ceiling doubling per attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min_ms
            .saturating_mul(1u64 << self.attempt.min(20))
            .min(self.max_ms);
        self.attempt += 1;
        let ms = rand::rng().random_range(ceiling / 2..=ceiling.max(1));
        Duration::from_millis(ms)
    }

    /// Connected: start again from the minimum.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn spawn_link(
    mut connection: Connection,
    ack_topic: String,
    tx: Sender<Link>,
    stop: Arc<AtomicBool>,
    mut backoff: Backoff,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("mqtt-link".into())
        .spawn(move || {
            let mut down_logged = false;
            while !stop.load(Ordering::Relaxed) {
                // Blocking recv: a timed-out poll would cancel rumqttc's
                // future mid-write. Shutdown arrives as our Disconnect.
                match connection.recv() {
                    Err(_) => return, // the client is gone
                    Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        backoff.reset();
                        down_logged = false;
                        if tx.send(Link::Up).is_err() {
                            return;
                        }
                    }
                    Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == ack_topic => {
                        if tx.send(Link::Ack(p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) => return,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        // Everything unacknowledged is resent from the outbox on
                        // reconnect; drop rumqttc's own copies to avoid doubles.
                        connection.eventloop.pending.clear();
                        let delay = backoff.next_delay();
                        if !down_logged {
                            log::warn!("MQTT link down: {e}; retrying with backoff");
                            down_logged = true;
                        }
                        if tx.send(Link::Down).is_err() {
                            return;
                        }
                        let until = Instant::now() + delay;
                        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            }
        })
        .expect("spawning the MQTT link thread")
}

/// Forward the outbox until `stop` is set. `new_data` is signalled by the
/// writer after each commit.
pub fn run(
    config: &Config,
    mut outbox: Outbox,
    new_data: Receiver<()>,
    stop: Arc<AtomicBool>,
    stats: Arc<ForwarderStats>,
) -> Result<(), AgentError> {
    let agent = &config.agent;
    let fwd = &agent.forwarder;
    let options = mqtt_options(&config.mqtt, &agent.kiosk_id)?;
    let (client, connection) = Client::new(options, fwd.window_batches + 64);
    let topic = events_topic(&agent.site_id, &agent.kiosk_id);
    let acks = ack_topic(&agent.site_id, &agent.kiosk_id);
    let status = status_topic(&agent.site_id, &agent.kiosk_id);
    let (link_tx, link_rx) = bounded::<Link>(1024);
    let link = spawn_link(
        connection,
        acks.clone(),
        link_tx,
        Arc::clone(&stop),
        Backoff::new(fwd.reconnect_min_ms, fwd.reconnect_max_ms),
    );
    let mut window = Window::new(fwd.window_batches, fwd.ack_timeout_ms);
    let mut pacer = Pacer::new(fwd.replay_max_events_per_sec);
    let started = Instant::now();
    let now_ms = || started.elapsed().as_millis() as u64;
    let status_every = Duration::from_millis(agent.status_interval_ms);
    let mut next_status = Instant::now();
    let tick = Duration::from_millis(fwd.ack_timeout_ms.clamp(20, 250));

    let result = (|| -> Result<(), AgentError> {
        while !stop.load(Ordering::Relaxed) {
            select! {
                recv(link_rx) -> msg => match msg {
                    Ok(Link::Up) => {
                        stats.connected.store(true, Ordering::Relaxed);
                        stats.connects.fetch_add(1, Ordering::Relaxed);
                        log::info!("MQTT link up; resending everything unacknowledged ({} events)", outbox.backlog().get());
                        client.try_subscribe(acks.clone(), QoS::AtLeastOnce).map_err(mqtt_err)?;
                        window.on_connected();
                        next_status = Instant::now();
                    }
                    Ok(Link::Down) => {
                        stats.connected.store(false, Ordering::Relaxed);
                        window.on_disconnected();
                    }
                    Ok(Link::Ack(bytes)) => {
                        stats.acks.fetch_add(1, Ordering::Relaxed);
                        match Ack::from_json(&bytes) {
                            Ok(ack) => {
                                let deleted = outbox.delete_acked(&ack.ranges)?;
                                stats.events_acked.fetch_add(deleted, Ordering::Relaxed);
                                window.on_ack(&ack.ranges);
                            }
                            Err(e) => {
                                if stats.bad_acks.fetch_add(1, Ordering::Relaxed) == 0 {
                                    log::warn!("ignoring malformed ack on {acks}: {e} (counted as bad_acks)");
                                }
                            }
                        }
                    }
                    Err(_) if stop.load(Ordering::Relaxed) => break,
                    Err(_) => return Err(AgentError::Mqtt("MQTT link thread ended".into())),
                },
                recv(new_data) -> _ => {}
                default(tick) => {}
            }
            pump(
                &client,
                &topic,
                &mut outbox,
                &mut window,
                &mut pacer,
                fwd.batch_max_events,
                now_ms(),
                &stats,
            )?;
            if window.is_connected() && Instant::now() >= next_status {
                next_status = Instant::now() + status_every;
                let s = kiosk_status(agent, &outbox.stats()?, true);
                let payload = serde_json::to_vec(&s).unwrap_or_default();
                // Best effort: a full request queue skips one status.
                let _ = client.try_publish(status.clone(), QoS::AtLeastOnce, true, payload);
            }
        }
        Ok(())
    })();
    let _ = client.try_disconnect();
    stop.store(true, Ordering::Relaxed);
    let _ = link.join();
    result
}

fn mqtt_err(e: rumqttc::ClientError) -> AgentError {
    AgentError::Mqtt(e.to_string())
}

/// Resend overdue batches, then send new ones while the window has room.
#[allow(clippy::too_many_arguments)]
fn pump(
    client: &Client,
    topic: &str,
    outbox: &mut Outbox,
    window: &mut Window,
    pacer: &mut Pacer,
    batch_max: usize,
    now_ms: u64,
    stats: &ForwarderStats,
) -> Result<(), OutboxError> {
    for range in window.overdue(now_ms) {
        let events = outbox.read_range(range)?;
        if events.is_empty() {
            window.forget(range.first);
            continue;
        }
        if client
            .try_publish(topic, QoS::AtLeastOnce, false, encode_batch(&events))
            .is_err()
        {
            return Ok(()); // request queue full: try again next round
        }
        window.on_sent(range.first, range.last, now_ms);
        stats.batches_resent.fetch_add(1, Ordering::Relaxed);
        stats.batches_sent.fetch_add(1, Ordering::Relaxed);
        stats
            .events_sent
            .fetch_add(events.len() as u64, Ordering::Relaxed);
    }
    while window.has_room() {
        let events = outbox.read_from(window.next_from(), batch_max)?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let (first, last) = (first.identity.seq, last.identity.seq);
        if !pacer.try_take(events.len() as u64, now_ms) {
            return Ok(());
        }
        if client
            .try_publish(topic, QoS::AtLeastOnce, false, encode_batch(&events))
            .is_err()
        {
            return Ok(());
        }
        window.on_sent(first, last, now_ms);
        stats.batches_sent.fetch_add(1, Ordering::Relaxed);
        stats
            .events_sent
            .fetch_add(events.len() as u64, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::new(100, 1000);
        let d: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        assert!((50..=100).contains(&d[0]), "{d:?}");
        assert!((100..=200).contains(&d[1]), "{d:?}");
        assert!((500..=1000).contains(&d[5]), "{d:?}");
        b.reset();
        assert!(b.next_delay().as_millis() <= 100);
    }
}

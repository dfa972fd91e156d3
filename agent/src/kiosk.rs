//! A running kiosk: the outbox writer and the forwarder, wired together.
//!
//! ```text
//! check-ins ──> WriterHandle ──> [outbox-writer thread] ──commit──> SQLite outbox
//!                                        │ new data                   │
//!                                        v                            v
//!                                 [forwarder thread] <──acks── MQTT ──> bridges
//! ```
//!
//! Anything that produces check-ins (the simulation driver, a real kiosk UI,
//! a test) holds a [`WriterHandle`]. [`Kiosk::shutdown`] stops forwarding,
//! lets the writer commit what it holds, and closes the outbox.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use contract::config::Config;
use crossbeam_channel::bounded;

use crate::forwarder::{self, ForwarderStats};
use crate::outbox::{Backlog, Outbox, OutboxError, OutboxStats};
use crate::writer::{self, WriterHandle};
use crate::AgentError;

/// Counters of the writer side.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Events committed.
    pub accepted: AtomicU64,
    /// Check-ins refused by the cap.
    pub refused: AtomicU64,
    /// Events dropped by the cap.
    pub dropped: AtomicU64,
    /// Group commits.
    pub commits: AtomicU64,
}

/// A running kiosk agent.
pub struct Kiosk {
    writer: Option<WriterHandle>,
    writer_thread: Option<JoinHandle<Result<Outbox, OutboxError>>>,
    forwarder_thread: Option<JoinHandle<Result<(), AgentError>>>,
    stop: Arc<AtomicBool>,
    backlog: Arc<Backlog>,
    /// A read connection for [`Kiosk::outbox_stats`].
    stats_outbox: Mutex<Outbox>,
    /// Forwarder counters.
    pub forwarder: Arc<ForwarderStats>,
    /// Writer counters.
    pub writer_stats: Arc<WriterStats>,
}

impl Kiosk {
    /// Open the outbox and start the writer and the forwarder.
    pub fn start(config: &Config) -> Result<Kiosk, AgentError> {
        let agent = &config.agent;
        let outbox = Outbox::open(&agent.outbox, &agent.site_id, &agent.kiosk_id)?;
        let forwarder_outbox = outbox.another_connection()?;
        let stats_outbox = Mutex::new(outbox.another_connection()?);
        let backlog = outbox.backlog();
        let stats = Arc::new(WriterStats::default());
        let (notify_tx, notify_rx) = bounded::<()>(1);
        let commit_stats = Arc::clone(&stats);
        let (writer, writer_thread) = writer::spawn(
            outbox,
            &agent.outbox,
            agent.outbox.commit_max_events * 4,
            move |report| {
                commit_stats.commits.fetch_add(1, Ordering::Relaxed);
                commit_stats
                    .accepted
                    .fetch_add(report.accepted as u64, Ordering::Relaxed);
                commit_stats
                    .refused
                    .fetch_add(report.refused as u64, Ordering::Relaxed);
                let dropped: u64 = report.dropped.iter().map(|r| r.len()).sum();
                commit_stats.dropped.fetch_add(dropped, Ordering::Relaxed);
                let _ = notify_tx.try_send(());
            },
        );
        let stop = Arc::new(AtomicBool::new(false));
        let fstats = Arc::new(ForwarderStats::default());
        let forwarder_thread = {
            let config = config.clone();
            let stop = Arc::clone(&stop);
            let fstats = Arc::clone(&fstats);
            std::thread::Builder::new()
                .name("forwarder".into())
                .spawn(move || {
                    let r = forwarder::run(&config, forwarder_outbox, notify_rx, stop, fstats);
                    if let Err(e) = &r {
                        log::error!("forwarder stopped: {e}");
                    }
                    r
                })
                .map_err(AgentError::Io)?
        };
        Ok(Kiosk {
            writer: Some(writer),
            writer_thread: Some(writer_thread),
            forwarder_thread: Some(forwarder_thread),
            stop,
            backlog,
            stats_outbox,
            forwarder: fstats,
            writer_stats: stats,
        })
    }

    /// A handle to submit check-ins.
    pub fn writer(&self) -> Option<WriterHandle> {
        self.writer.clone()
    }

    /// Events stored and not yet acknowledged.
    pub fn backlog(&self) -> u64 {
        self.backlog.get()
    }

    /// The outbox's counters, backlog and oldest unacknowledged event.
    pub fn outbox_stats(&self) -> Result<OutboxStats, AgentError> {
        let outbox = self
            .stats_outbox
            .lock()
            .map_err(|_| AgentError::Panic("outbox stats"))?;
        Ok(outbox.stats()?)
    }

    /// Whether the forwarder has stopped on its own (an error).
    pub fn forwarder_failed(&self) -> bool {
        self.forwarder_thread
            .as_ref()
            .is_some_and(|t| t.is_finished())
    }

    /// Stop forwarding, commit what the writer holds, close the outbox.
    /// Producers must have dropped their `WriterHandle` clones.
    pub fn shutdown(mut self) -> Result<(), AgentError> {
        self.stop.store(true, Ordering::Relaxed);
        let forwarded = self
            .forwarder_thread
            .take()
            .map(|t| t.join().unwrap_or(Err(AgentError::Panic("forwarder"))))
            .unwrap_or(Ok(()));
        drop(self.writer.take());
        let written = self
            .writer_thread
            .take()
            .map(|t| match t.join() {
                Ok(r) => r.map(drop).map_err(AgentError::from),
                Err(_) => Err(AgentError::Panic("outbox writer")),
            })
            .unwrap_or(Ok(()));
        written.and(forwarded)
    }
}

impl Drop for Kiosk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

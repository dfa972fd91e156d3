//! The group-commit writer: one thread that owns the outbox's write
//! connection, collects check-ins from any number of producers and commits
//! them many per transaction. A check-in counts as accepted only when its
//! transaction has committed; the reply then carries its seq.

use std::time::{Duration, Instant};

use contract::config::OutboxConfig;
use contract::mqtt::SeqRange;
use contract::{EventBody, UtcMillis};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::outbox::{Outbox, OutboxError};

/// What happened to one check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Durable in the outbox with this seq.
    Accepted(u64),
    /// Refused: the outbox is full and the policy is `reject_new`.
    Refused,
}

/// One event handed to the writer.
pub struct Submission {
    /// When the kiosk created it.
    pub created_at: UtcMillis,
    /// What happened.
    pub body: EventBody,
    /// Where to report the outcome, if anyone waits for it.
    pub reply: Option<Sender<Outcome>>,
}

/// The producers' side of the writer.
#[derive(Clone)]
pub struct WriterHandle {
    tx: Sender<Submission>,
}

/// The writer has stopped (its outbox failed); nothing more is accepted.
#[derive(Debug, thiserror::Error)]
#[error("the outbox writer has stopped")]
pub struct WriterStopped;

impl WriterHandle {
    /// Submit and wait until the event is committed (or refused).
    pub fn submit(&self, created_at: UtcMillis, body: EventBody) -> Result<Outcome, WriterStopped> {
        let (reply, rx) = bounded(1);
        self.submit_with(Submission {
            created_at,
            body,
            reply: Some(reply),
        })?;
        rx.recv().map_err(|_| WriterStopped)
    }

    /// Submit without waiting; the outcome goes to `submission.reply`.
    pub fn submit_with(&self, submission: Submission) -> Result<(), WriterStopped> {
        self.tx.send(submission).map_err(|_| WriterStopped)
    }
}

/// Counters the writer reports after each commit.
#[derive(Debug, Clone, Default)]
pub struct CommitReport {
    /// Events committed in this transaction.
    pub accepted: usize,
    /// Events refused by the cap.
    pub refused: usize,
    /// Seqs dropped to make room.
    pub dropped: Vec<SeqRange>,
}

/// Start the writer thread. It runs until every [`WriterHandle`] is dropped,
/// commits what it holds, and returns the outbox connection (or the error
/// that stopped it). `on_commit` observes every commit.
pub fn spawn(
    mut outbox: Outbox,
    cfg: &OutboxConfig,
    queue: usize,
    mut on_commit: impl FnMut(&CommitReport) + Send + 'static,
) -> (
    WriterHandle,
    std::thread::JoinHandle<Result<Outbox, OutboxError>>,
) {
    let (tx, rx) = bounded::<Submission>(queue.max(1));
    let max_events = cfg.commit_max_events.max(1);
    let max_wait = Duration::from_millis(cfg.commit_max_wait_ms);
    let handle = std::thread::Builder::new()
        .name("outbox-writer".into())
        .spawn(move || {
            let mut pending: Vec<Submission> = Vec::with_capacity(max_events);
            let mut items: Vec<(UtcMillis, EventBody)> = Vec::with_capacity(max_events);
            let mut full_episode = false;
            while collect(&rx, &mut pending, max_events, max_wait) {
                items.clear();
                items.extend(pending.iter().map(|s| (s.created_at, s.body.clone())));
                let appended = outbox.append(&items)?;
                let mut report = CommitReport {
                    dropped: appended.dropped,
                    ..CommitReport::default()
                };
                for (sub, seq) in pending.drain(..).zip(appended.seqs) {
                    let outcome = match seq {
                        Some(s) => {
                            report.accepted += 1;
                            Outcome::Accepted(s)
                        }
                        None => {
                            report.refused += 1;
                            Outcome::Refused
                        }
                    };
                    if let Some(reply) = sub.reply {
                        let _ = reply.send(outcome);
                    }
                }
                let full_now = report.refused > 0 || !report.dropped.is_empty();
                if full_now && !full_episode {
                    log::warn!(
                        "outbox full: applying the cap policy (refused {}, dropped {:?}); \
                         logged once until space frees up",
                        report.refused,
                        report.dropped
                    );
                } else if !full_now && full_episode {
                    log::info!("outbox has room again");
                }
                full_episode = full_now;
                on_commit(&report);
            }
            Ok(outbox)
        })
        .expect("spawning the outbox writer thread");
    (WriterHandle { tx }, handle)
}

/// Wait for the first submission, then gather more until `max` or `wait`
/// elapses. Returns false when all producers are gone and nothing is left.
fn collect(
    rx: &Receiver<Submission>,
    pending: &mut Vec<Submission>,
    max: usize,
    wait: Duration,
) -> bool {
    match rx.recv() {
        Ok(s) => pending.push(s),
        Err(_) => return false,
    }
    let deadline = Instant::now() + wait;
    while pending.len() < max {
        // Take what is already queued without waiting.
        match rx.try_recv() {
            Ok(s) => {
                pending.push(s);
                continue;
            }
            Err(_) if wait.is_zero() => break,
            Err(_) => {}
        }
        match rx.recv_deadline(deadline) {
            Ok(s) => pending.push(s),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    true
}

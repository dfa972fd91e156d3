//! The processor's database thread.
//!
//! Database work (connecting, migrating, rebuilding the queue state, writing a
//! batch) can block for as long as the server takes to come back. The
//! consumer must keep polling meanwhile, or the group evicts it after
//! `max.poll.interval.ms` and every batch it was writing is replayed by
//! someone else. So the store lives on its own thread: the poll loop hands
//! it one [`Job`] at a time and keeps the group membership alive while it
//! waits for the [`Outcome`].
//!
//! The thread owns the connection: it connects on first use and drops the
//! connection after any error, so the next job reconnects. The retry policy
//! (backoff, giving up on a rebalance) stays with the poll loop, which is
//! the one that knows about the group.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::queue::{QueueBook, Rooms};
use crate::store::{Database, Storage, StoreError, WaitingPredictions, WritePlan};

/// Work for the database thread.
pub enum Job {
    /// Read the queue state and the waiting patients' predictions.
    Rebuild(Rooms),
    /// Write one batch in one transaction.
    Write(Arc<WritePlan>),
}

/// The answer to one [`Job`].
pub enum Outcome {
    /// The state read by [`Job::Rebuild`].
    Rebuilt(Box<QueueBook>, WaitingPredictions),
    /// The batch of [`Job::Write`] is committed; how long its transaction took.
    Written(std::time::Duration),
    /// The job failed; the connection was dropped.
    Failed(StoreError),
}

/// A handle on the database thread; dropping it stops the thread.
pub struct StoreWorker {
    jobs: Option<Sender<Job>>,
    outcomes: Receiver<Outcome>,
    thread: Option<JoinHandle<()>>,
}

impl StoreWorker {
    /// Start the thread; it connects on its first job.
    pub fn start(database: Database) -> std::io::Result<StoreWorker> {
        let (jobs, job_rx) = bounded::<Job>(1);
        let (outcome_tx, outcomes) = bounded::<Outcome>(1);
        let thread = std::thread::Builder::new()
            .name("processor-db".into())
            .spawn(move || serve(&database, &job_rx, &outcome_tx))?;
        Ok(StoreWorker {
            jobs: Some(jobs),
            outcomes,
            thread: Some(thread),
        })
    }

    /// Hand over one job; its outcome comes on [`StoreWorker::outcomes`].
    /// Returns false if the thread is gone.
    pub fn submit(&self, job: Job) -> bool {
        self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok())
    }

    /// Where outcomes arrive, one per submitted job, in order.
    pub fn outcomes(&self) -> &Receiver<Outcome> {
        &self.outcomes
    }
}

impl Drop for StoreWorker {
    fn drop(&mut self) {
        self.jobs.take();
        // A job in progress finishes (or fails) first; the thread then sees
        // the closed channel. Blocking on a dead server is bounded by the
        // connection's read/write timeouts.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(database: &Database, jobs: &Receiver<Job>, outcomes: &Sender<Outcome>) {
    let mut store: Option<Box<dyn Storage>> = None;
    for job in jobs {
        let outcome = match run(database, &mut store, job) {
            Ok(o) => o,
            Err(e) => {
                store = None;
                Outcome::Failed(e)
            }
        };
        if outcomes.send(outcome).is_err() {
            return;
        }
    }
}

fn run(
    database: &Database,
    store: &mut Option<Box<dyn Storage>>,
    job: Job,
) -> Result<Outcome, StoreError> {
    let st = match store {
        Some(s) => s,
        None => store.insert(database.open()?),
    };
    match job {
        Job::Rebuild(rooms) => {
            let book = st.rebuild(rooms)?;
            let waiting = st.waiting_predictions()?;
            Ok(Outcome::Rebuilt(Box::new(book), waiting))
        }
        Job::Write(plan) => {
            let started = std::time::Instant::now();
            st.write(&plan)?;
            Ok(Outcome::Written(started.elapsed()))
        }
    }
}

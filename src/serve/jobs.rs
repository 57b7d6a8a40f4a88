//! The playground's runs: a bounded queue of checked requests, each claimed by one event
//! stream, computed by a worker step by step (all variants of a comparison in lockstep) and
//! streamed as it goes. A run stops at the next step once its stream's client is gone.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use super::error::ApiError;
use super::run::{run_job, Outcome};
use super::spec::{json_event, JobSpec};
use super::{AppState, Limits};

/// Counts of runs, for `GET /api/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueStatus {
    /// Accepted, stream not opened yet.
    pub unclaimed: usize,
    /// Stream open, waiting for a worker.
    pub queued: usize,
    pub running: usize,
    pub finished: u64,
    /// Stopped because the client went away.
    pub cancelled: u64,
    pub failed: u64,
    /// Accepted, but their stream was not opened in time.
    pub expired: u64,
    /// Refused with 429.
    pub refused: u64,
    /// The most runs accepted and not finished.
    pub capacity: usize,
}

/// The queue: unclaimed runs by id, and counters.
pub struct Queue {
    limits: Limits,
    /// Set when the server shuts down: every run stops at its next step.
    stopping: std::sync::atomic::AtomicBool,
    inner: Mutex<Inner>,
    workers: Arc<Semaphore>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    unclaimed: HashMap<u64, (Instant, JobSpec)>,
    status: QueueStatus,
}

impl Queue {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            stopping: std::sync::atomic::AtomicBool::new(false),
            inner: Mutex::new(Inner {
                next_id: 1,
                status: QueueStatus {
                    capacity: limits.queue,
                    ..QueueStatus::default()
                },
                ..Inner::default()
            }),
            workers: Arc::new(Semaphore::new(limits.workers)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a handler panicked mid-update; the counts stay usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepts a run and returns its id, or 429 when the queue is full. Runs whose stream was
    /// not opened within `claim_seconds` are dropped first.
    pub fn submit(&self, spec: JobSpec) -> std::result::Result<u64, ApiError> {
        let mut q = self.lock();
        self.expire(&mut q);
        let busy = q.unclaimed.len() + q.status.queued + q.status.running;
        if busy >= self.limits.queue {
            q.status.refused += 1;
            return Err(ApiError::status(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the queue is full ({busy} runs waiting or running); try again when one finishes"
                ),
            ));
        }
        let id = q.next_id;
        q.next_id += 1;
        q.unclaimed.insert(id, (Instant::now(), spec));
        q.status.unclaimed = q.unclaimed.len();
        Ok(id)
    }

    /// Takes run `id` for its stream (once).
    fn claim(&self, id: &str) -> std::result::Result<JobSpec, ApiError> {
        let mut q = self.lock();
        let spec = id.parse::<u64>().ok().and_then(|n| q.unclaimed.remove(&n));
        let Some((_, spec)) = spec else {
            return Err(ApiError::status(
                StatusCode::NOT_FOUND,
                format!("no run '{id}' is waiting for its stream (unknown, expired or already streamed)"),
            ));
        };
        q.status.unclaimed = q.unclaimed.len();
        q.status.queued += 1;
        Ok(spec)
    }

    /// Stops every run at its next step (the server is shutting down).
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn status(&self) -> QueueStatus {
        let mut q = self.lock();
        self.expire(&mut q);
        q.status.clone()
    }

    /// Drops the runs whose stream was not opened within `claim_seconds`, counting them.
    fn expire(&self, q: &mut Inner) {
        let ttl = Duration::from_secs(self.limits.claim_seconds);
        let before = q.unclaimed.len();
        q.unclaimed.retain(|_, (at, _)| at.elapsed() < ttl);
        q.status.expired += (before - q.unclaimed.len()) as u64;
        q.status.unclaimed = q.unclaimed.len();
    }

    fn update(&self, f: impl FnOnce(&mut QueueStatus)) {
        f(&mut self.lock().status)
    }
}

/// `GET /api/jobs/{id}/events`: the run's Server-Sent Events: `queued`, `start`, one `step`
/// per step, then `done` (or `error`).
pub async fn events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> std::result::Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>, ApiError>
{
    let spec = state.jobs.claim(&id)?;
    let (tx, rx) = mpsc::channel::<Event>(2);
    tokio::spawn(run_streamed(state, spec, tx));
    let stream = ReceiverStream::new(rx).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Waits for a worker (giving up if the client leaves), runs the job on a blocking thread and
/// keeps the counters.
async fn run_streamed(state: Arc<AppState>, spec: JobSpec, tx: mpsc::Sender<Event>) {
    let _ = tx.send(json_event("queued", &spec)).await;
    let workers = state.jobs.workers.clone();
    let permit = tokio::select! {
        p = workers.acquire_owned() => p.ok(),
        _ = tx.closed() => None,
    };
    state.jobs.update(|s| s.queued -= 1);
    let Some(permit) = permit else {
        state.jobs.update(|s| s.cancelled += 1);
        return;
    };
    state.jobs.update(|s| s.running += 1);
    let st = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let emit = |e: Event| !st.jobs.stopping() && tx.blocking_send(e).is_ok();
        let r = run_job(&st.model, &spec, emit);
        if let Err(e) = &r {
            let _ = tx.blocking_send(json_event(
                "error",
                &serde_json::json!({"error": e.to_string()}),
            ));
        }
        r
    })
    .await;
    state.jobs.update(|s| {
        s.running -= 1;
        match outcome {
            Ok(Ok(Outcome::Finished)) => s.finished += 1,
            Ok(Ok(Outcome::Cancelled)) => s.cancelled += 1,
            _ => s.failed += 1,
        }
    });
}

//! `diffuse serve`: a local web playground. An axum server on tokio that streams every
//! denoising step as Server-Sent Events (x_t, the x0 guess and the predicted noise as PNGs),
//! noises a picture at any t, and serves its page from the binary.
//!
//! - [`api`]: the JSON endpoints and their request checks.
//! - [`spec`]: a checked generate request and its run's request.
//! - [`jobs`]: the bounded job queue, its event streams and counters.
//! - [`run`]: one queued run driven step by step through the library's [`crate::run::Run`],
//!   every step's pictures sent as events.
//! - [`forward`]: `/api/noise`, forward diffusion of a picture.
//! - [`nearest`]: `/api/nearest`, "Is it new?" over an index of the training stream built at
//!   start-up.
//! - [`page`]: the page, script and styles, compiled in.
//!
//! The tensor math is the library's ([`crate::run`], [`crate::schedule`]); this module only
//! parses requests, queues work and encodes pictures.

pub mod api;
pub mod error;
pub mod forward;
pub mod jobs;
pub mod nearest;
pub mod page;
pub mod run;
pub mod spec;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::error::{Error, Result};
use crate::model::LoadedModel;

/// The port `diffuse serve` listens on by default (the usual port of local ML demos).
pub const DEFAULT_PORT: u16 = 7860;
/// The address it binds to by default: loopback only.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// Caps on what one request may ask for.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Limits {
    /// Denoising steps per run.
    pub max_steps: usize,
    /// Images per run.
    pub max_images: usize,
    /// Side-by-side variants of a comparison.
    pub max_variants: usize,
    /// Bytes of a request body (an uploaded picture is sent inside one).
    pub max_body_bytes: usize,
    /// Width or height of an uploaded picture.
    pub max_upload_side: u32,
    /// Uploaded pictures are shrunk to at most this side before noising.
    pub noise_side: u32,
    /// Runs accepted and not yet finished (waiting for their stream, queued or running);
    /// more are refused with 429.
    pub queue: usize,
    /// Runs computed at once (each uses every core through the tensor math).
    pub workers: usize,
    /// Seconds a run waits for its event stream to be opened before it is dropped.
    pub claim_seconds: u64,
}

impl Limits {
    /// The default [`Limits::max_body_bytes`]: 8 MiB.
    pub const DEFAULT_BODY_BYTES: usize = 8 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 1000,
            max_images: 4,
            max_variants: 4,
            max_body_bytes: Self::DEFAULT_BODY_BYTES,
            max_upload_side: 4096,
            noise_side: 256,
            queue: 8,
            workers: 1,
            claim_seconds: 60,
        }
    }
}

/// What `diffuse serve` needs.
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    pub limits: Limits,
    /// Index the training stream at start-up for `/api/nearest`.
    pub nearest_index: bool,
}

/// Everything a request handler can reach.
pub struct AppState {
    pub model: LoadedModel,
    pub limits: Limits,
    pub jobs: jobs::Queue,
    /// The host names a request may be for: loopback's and `--host`.
    pub hosts: Vec<String>,
    /// The index of the model's training stream, for "Is it new?" (None without a stream).
    pub nearest: Option<Arc<nearest::NearestIndex>>,
}

/// The host names of loopback, which the server answers for whatever `--host` is.
pub const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// The playground's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.limits.max_body_bytes;
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/run.js", get(page::run_script))
        .route("/style.css", get(page::styles))
        .route("/api/model", get(api::model))
        .route("/api/schedule", get(api::schedule))
        .route("/api/status", get(api::status))
        .route("/api/noise", post(forward::noise))
        .route("/api/nearest", post(nearest::nearest))
        .route("/api/generate", post(api::generate))
        .route("/api/jobs/{id}/events", get(jobs::events))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::guard,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Binds `opts.host:opts.port` (port 0 picks a free one) and serves until `shutdown`
/// resolves, then stops every run at its next step and closes; `on_ready` gets the bound
/// address before the first request is taken.
pub async fn serve(
    model: LoadedModel,
    opts: &ServeOptions,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = format!("{}:{}", opts.host, opts.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        // A taken or privileged port is the port's fault; anything else the address's.
        let (flag, value) = match e.kind() {
            std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied => {
                ("port", opts.port.to_string())
            }
            _ => ("host", opts.host.clone()),
        };
        Error::option(flag, value, format!("cannot listen on {addr}: {e}"))
    })?;
    let bound = listener.local_addr().map_err(|e| Error::Process {
        what: "server".into(),
        reason: e.to_string(),
    })?;
    let mut hosts: Vec<String> = LOOPBACK_HOSTS.map(String::from).to_vec();
    hosts.push(match opts.host.contains(':') {
        true => format!("[{}]", opts.host.trim_matches(['[', ']'])),
        false => opts.host.to_lowercase(),
    });
    let state = Arc::new(AppState {
        nearest: (model.meta.data)
            .filter(|_| opts.nearest_index)
            .map(nearest::NearestIndex::start),
        jobs: jobs::Queue::new(opts.limits),
        limits: opts.limits,
        hosts,
        model,
    });
    on_ready(bound);
    let stopping = state.clone();
    let shutdown = async move {
        shutdown.await;
        // Runs stop at their next step, so their streams end and the server can close.
        stopping.jobs.stop();
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Process {
            what: "server".into(),
            reason: e.to_string(),
        })
}

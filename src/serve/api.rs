//! The playground's JSON endpoints: the model's vocabulary and defaults, the schedule
//! curves, forward noising of a picture, and accepting generate runs. Every request is
//! checked here; a bad one gets a 4xx naming the field.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::jobs::QueueStatus;
use super::spec::check_generate;
use super::AppState;
use crate::data::emoji;
use crate::sampler::SamplerKind;
use crate::schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig};

type ApiResult<T> = std::result::Result<T, ApiError>;

/// The largest guidance scale a request may ask for.
pub use crate::defaults::MAX_GUIDANCE;
/// The pictures `POST /api/noise` offers without an upload.
pub const BUILTIN_PICTURES: [&str; 2] = ["scene", "emoji"];

/// Refuses, before reading the body: requests for another host name than the server's own
/// (a page whose DNS name was rebound to 127.0.0.1 sends its own name), requests sent by a
/// page of another origin (no CORS: a browser names the page's origin in `Origin`, and it
/// must be this server's own), bodies that are not `application/json`, and requests whose
/// declared body is over the limit.
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(host) = foreign_host(req.headers(), &state.hosts) {
        let allowed = state.hosts.join(", ");
        return ApiError::status(
            StatusCode::FORBIDDEN,
            format!("requests for host '{host}' are refused; this server answers for {allowed}"),
        )
        .into_response();
    }
    if req.method() == axum::http::Method::POST && !json_body(req.headers()) {
        return ApiError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent as Content-Type: application/json",
        )
        .into_response();
    }
    if let Some(origin) = foreign_origin(req.headers()) {
        return ApiError::status(
            StatusCode::FORBIDDEN,
            format!("requests from another origin ({origin}) are refused"),
        )
        .into_response();
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max = state.limits.max_body_bytes;
    if declared.is_some_and(|n| n > max as u64) {
        return too_large(max).into_response();
    }
    next.run(req).await
}

fn too_large(max: usize) -> ApiError {
    ApiError::status(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than the limit of {max} bytes"),
    )
}

/// The `Host` of a request when its name (without the port) is not one of `hosts`.
fn foreign_host(headers: &axum::http::HeaderMap, hosts: &[String]) -> Option<String> {
    let host = headers.get(header::HOST)?;
    let Ok(host) = host.to_str() else {
        return Some("?".into());
    };
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let known = hosts.iter().any(|h| h.eq_ignore_ascii_case(name));
    (!known).then(|| crate::error::clip(host))
}

/// Whether the request declares a JSON body.
fn json_body(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// The `Origin` of a request when it is not `http://<Host>`.
fn foreign_origin(headers: &axum::http::HeaderMap) -> Option<String> {
    let get = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("?");
    let host = get(header::HOST).unwrap_or("");
    (origin != format!("http://{host}")).then(|| origin.to_string())
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::status(StatusCode::NOT_FOUND, "no such page or endpoint")
}

/// A known path with another method (`GET /api/generate`).
pub async fn method_not_allowed(req: Request) -> ApiError {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let how = match path.as_str() {
        "/api/generate" | "/api/noise" => "POST",
        _ => "GET",
    };
    ApiError::status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} {path} is not served; use {how}"),
    )
}

/// `GET /api/model`.
#[derive(Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub resolution: usize,
    /// "text" (a caption) or "slots" (one word per slot).
    pub prompts: &'static str,
    pub vocabulary: Vec<(String, Vec<String>)>,
    pub example: &'static str,
    pub samplers: Vec<String>,
    pub defaults: Defaults,
    pub limits: super::Limits,
    pub max_guidance: f64,
    /// Noun pairs never shown together in training (the emoji model).
    pub held_out: Vec<(&'static str, &'static str)>,
    pub schedules: Vec<&'static str>,
    pub schedule: &'static str,
    pub train_timesteps: usize,
    pub pictures: [&'static str; 2],
    /// Attention maps per word are available.
    pub attention: bool,
    /// A latent model: each step also shows z_t, the latent it denoises.
    pub latent: bool,
    /// The model records its training stream: "Is it new?" (`/api/nearest`) works.
    pub nearest: bool,
}

#[derive(Serialize)]
pub struct Defaults {
    pub sampler: String,
    pub steps: usize,
    pub guidance: f64,
    pub num_images: usize,
}

pub async fn model(State(state): State<Arc<AppState>>) -> Json<ModelInfo> {
    let m = &state.model;
    let unet = &m.meta.unet;
    let text = unet.text.as_ref();
    let (prompts, vocabulary) = crate::model::prompt_words(unet);
    let emoji_words = text.is_some_and(|t| t.vocab.iter().any(|w| w == "computer"));
    let held_out = if emoji_words {
        emoji::held_out_pairs()
            .into_iter()
            .map(|(a, b)| (emoji::NOUNS[a].name, emoji::NOUNS[b].name))
            .collect()
    } else {
        Vec::new()
    };
    Json(ModelInfo {
        name: m.name.clone(),
        resolution: m.picture_size(),
        prompts,
        vocabulary,
        example: if emoji_words {
            "a cat with a computer"
        } else {
            "a red circle"
        },
        samplers: SamplerKind::ALL.iter().map(|k| k.to_string()).collect(),
        defaults: Defaults {
            sampler: m.defaults().sampler.to_string(),
            steps: m.defaults().steps,
            guidance: m.defaults().guidance,
            num_images: m.defaults().playground_images,
        },
        limits: state.limits,
        max_guidance: MAX_GUIDANCE,
        held_out,
        schedules: BetaSchedule::ALL.iter().map(|b| b.name()).collect(),
        schedule: m.schedule.config.beta_schedule.name(),
        train_timesteps: m.schedule.len(),
        pictures: BUILTIN_PICTURES,
        attention: text.is_some(),
        latent: m.vae.is_some(),
        nearest: state.nearest.is_some(),
    })
}

/// `GET /api/status`: the queue's counts.
/// `GET /api/status`: the queue's counters and the "Is it new?" index's progress.
#[derive(Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub queue: QueueStatus,
    /// None for a model without a recorded training stream.
    pub nearest_index: Option<super::nearest::IndexStatus>,
}

pub async fn status(State(state): State<Arc<AppState>>) -> Json<Status> {
    Json(Status {
        queue: state.jobs.status(),
        nearest_index: super::nearest::status(&state),
    })
}

#[derive(Deserialize)]
pub struct ScheduleQuery {
    schedule: Option<String>,
}

/// `GET /api/schedule`: ᾱ_t and SNR(t) = ᾱ_t / (1 − ᾱ_t) for every training timestep.
#[derive(Serialize)]
pub struct ScheduleCurves {
    pub schedule: &'static str,
    pub alphas_cumprod: Vec<f64>,
    pub snr: Vec<f64>,
}

/// The model's schedule, or the same settings with another β schedule.
pub(super) fn schedule_named(state: &AppState, name: Option<&str>) -> ApiResult<NoiseSchedule> {
    let mut config: ScheduleConfig = state.model.schedule.config;
    if let Some(n) = name {
        config.beta_schedule = n.parse().map_err(|e| ApiError::from_lib("schedule", e))?;
    }
    NoiseSchedule::new(config).map_err(|e| ApiError::from_lib("schedule", e))
}

pub async fn schedule(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ScheduleQuery>,
) -> ApiResult<Json<ScheduleCurves>> {
    let s = schedule_named(&state, q.schedule.as_deref())?;
    Ok(Json(ScheduleCurves {
        schedule: s.config.beta_schedule.name(),
        snr: (0..s.len()).map(|t| s.snr(t)).collect(),
        alphas_cumprod: s.alphas_cumprod,
    }))
}

/// A request body as the handler gets it: too large a body becomes a JSON 413.
pub(super) type Body = std::result::Result<Bytes, axum::extract::rejection::BytesRejection>;

/// Parses a JSON body of at most `max` bytes, naming the field serde names (or `body`).
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: Body, max: usize) -> ApiResult<T> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(max),
        status => ApiError::status(status, e.body_text()),
    })?;
    let de = &mut serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let msg = e.inner().to_string();
        // The path names the field whose value is wrong; serde names unknown and missing
        // fields between backticks.
        let path = e.path().to_string();
        let named = msg.split('`').nth(1).filter(|_| msg.contains("field"));
        let field = match (path.as_str(), named) {
            ("." | "" | "?", Some(n)) => n.to_string(),
            ("." | "" | "?", None) => "body".to_string(),
            (p, _) => p.to_string(),
        };
        ApiError::field(
            &field,
            format!("invalid JSON: {}", crate::error::clip(&msg)),
        )
    })
}

#[derive(Serialize)]
pub struct Accepted {
    pub id: u64,
    pub events: String,
}

/// `POST /api/generate`: checks the request and queues it; the events follow at
/// `GET /api/jobs/{id}/events`.
pub async fn generate(State(state): State<Arc<AppState>>, body: Body) -> ApiResult<Json<Accepted>> {
    let spec = check_generate(&state, parse_body(body, state.limits.max_body_bytes)?)?;
    let id = state.jobs.submit(spec)?;
    Ok(Json(Accepted {
        id,
        events: format!("/api/jobs/{id}/events"),
    }))
}

//! `POST /api/noise`: forward diffusion of one picture to one timestep, x_t = √ᾱ_t·x0 +
//! √(1−ᾱ_t)·ε, with ε from the request's seed (the same seed at every t, so a slider over t
//! shows one noise growing). Uploads are decoded in memory and never written to disk.

use std::io::Cursor;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use base64::Engine as _;
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use super::api::{parse_body, schedule_named, Body, BUILTIN_PICTURES};
use super::error::ApiError;
use super::run::data_url;
use super::{AppState, Limits};
use crate::io::image::{flatten_over_white, to_model_space};

type ApiResult<T> = std::result::Result<T, ApiError>;

/// The request: a picture (uploaded as a data URL or base64, or a built-in one by name), the
/// timestep, and optionally the β schedule and the noise seed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseRequest {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub picture: Option<String>,
    pub t: usize,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Serialize)]
pub struct Noised {
    pub t: usize,
    pub schedule: &'static str,
    pub alpha_cumprod: f64,
    pub snr: f64,
    /// √ᾱ_t and √(1−ᾱ_t): how much of the picture and of the noise x_t holds.
    pub signal: f64,
    pub noise: f64,
    pub width: u32,
    pub height: u32,
    pub x0: String,
    pub x_t: String,
}

/// The built-in pictures: the README's scene, and a dataset scene of the emoji model.
fn builtin(name: &str) -> ApiResult<DynamicImage> {
    match name {
        "scene" => image::load_from_memory(include_bytes!("../../assets/scene.png"))
            .map_err(|e| ApiError::field("picture", e.to_string())),
        "emoji" => {
            let (_, img) = crate::data::emoji::render_range(3, 0, 1)
                .pop()
                .ok_or_else(|| ApiError::field("picture", "no scene"))?;
            Ok(DynamicImage::ImageRgb8(img))
        }
        other => Err(ApiError::field(
            "picture",
            format!(
                "unknown picture '{other}' (expected one of: {})",
                BUILTIN_PICTURES.join(", ")
            ),
        )),
    }
}

/// Decodes an uploaded picture (a data URL or plain base64) within the size limits.
pub(super) fn decode_upload(data: &str, limits: &Limits) -> ApiResult<DynamicImage> {
    let b64 = data.split_once(";base64,").map_or(data, |(_, d)| d);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| ApiError::field("image", format!("not base64: {e}")))?;
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ApiError::field("image", e.to_string()))?;
    let mut caps = image::Limits::default();
    caps.max_image_width = Some(limits.max_upload_side);
    caps.max_image_height = Some(limits.max_upload_side);
    caps.max_alloc = Some(512 << 20);
    reader.limits(caps);
    reader.decode().map_err(|e| {
        ApiError::field(
            "image",
            format!(
                "cannot decode the picture (at most {} px a side): {e}",
                limits.max_upload_side
            ),
        )
    })
}

pub async fn noise(State(state): State<Arc<AppState>>, body: Body) -> ApiResult<Json<Noised>> {
    let r: NoiseRequest = parse_body(body, state.limits.max_body_bytes)?;
    let schedule = schedule_named(&state, r.schedule.as_deref())?;
    if r.t >= schedule.len() {
        let msg = format!("t {} is outside 0..={}", r.t, schedule.len() - 1);
        return Err(ApiError::field("t", msg));
    }
    let limits = state.limits;
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let img = match (&r.image, &r.picture) {
            (Some(_), Some(_)) => {
                return Err(ApiError::field(
                    "image",
                    "send an image or a picture name, not both",
                ))
            }
            (Some(data), None) => decode_upload(data, &limits)?,
            (None, name) => builtin(name.as_deref().unwrap_or(BUILTIN_PICTURES[0]))?,
        };
        let img = flatten_over_white(img);
        let side = limits.noise_side;
        let img = if img.width().max(img.height()) > side {
            img.resize(side, side, image::imageops::FilterType::Triangle)
        } else {
            img
        };
        let lib = |e: crate::Error| ApiError::from_lib("image", e);
        let device = st.model.device();
        let x0 = to_model_space(&img, device)
            .map_err(lib)?
            .unsqueeze(0)
            .map_err(|e| lib(e.into()))?; // [1, 3, H, W]
        let mut rng = crate::rng::rng(r.seed);
        let eps = crate::rng::randn(&mut rng, x0.shape().clone(), device).map_err(lib)?;
        let x_t = schedule.q_sample(&x0, &[r.t], &eps).map_err(lib)?; // [1, 3, H, W]
        let picture = |x: &candle_core::Tensor| {
            let rgb = crate::render::to_rgb8(&x.get(0)?)?;
            data_url(&rgb)
        };
        let a = schedule.alphas_cumprod[r.t];
        Ok(Json(Noised {
            t: r.t,
            schedule: schedule.config.beta_schedule.name(),
            alpha_cumprod: a,
            snr: schedule.snr(r.t),
            signal: a.sqrt(),
            noise: (1.0 - a).sqrt(),
            width: img.width(),
            height: img.height(),
            x0: picture(&x0).map_err(lib)?,
            x_t: picture(&x_t).map_err(lib)?,
        }))
    })
    .await
    .map_err(|e| ApiError::status(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

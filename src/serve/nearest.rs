//! `POST /api/nearest`: the playground's "Is it new?" button. The server builds the index of
//! its model's training stream once, in the background at start-up ([`crate::nearest::index`]),
//! with its progress in `/api/status`; then a picture's nearest training scenes come back in
//! about a second, each with its caption, distance and picture.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::api::{parse_body, Body};
use super::error::ApiError;
use super::forward::decode_upload;
use super::run::data_url;
use super::AppState;
use crate::nearest::index::Index;
use crate::nearest::{DataStream, MAX_TOP};

type ApiResult<T> = std::result::Result<T, ApiError>;

/// The index of the model's training stream, built in the background.
pub struct NearestIndex {
    pub stream: DataStream,
    pub built: AtomicU64,
    pub index: OnceLock<Index>,
}

impl NearestIndex {
    /// Starts building the index of `stream` on a thread of its own.
    pub fn start(stream: DataStream) -> Arc<Self> {
        let me = Arc::new(Self {
            stream,
            built: AtomicU64::new(0),
            index: OnceLock::new(),
        });
        let building = me.clone();
        std::thread::spawn(move || {
            let index = Index::build(building.stream, &building.built);
            let _ = building.index.set(index);
        });
        me
    }
}

/// The index's state in `/api/status`.
#[derive(Debug, Clone, Serialize)]
pub struct IndexStatus {
    pub ready: bool,
    pub built: u64,
    pub total: u64,
    /// Bytes it holds once built.
    pub bytes: usize,
}

/// Where the index is, or None for a model without a recorded training stream.
pub fn status(state: &AppState) -> Option<IndexStatus> {
    let n = state.nearest.as_ref()?;
    let index = n.index.get();
    Some(IndexStatus {
        ready: index.is_some(),
        built: n.built.load(Ordering::Relaxed),
        total: n.stream.len(),
        bytes: index.map_or(0, Index::bytes),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearestRequest {
    /// The picture, a PNG data URL (or base64).
    image: String,
    /// Neighbours to return (default 4).
    top: Option<usize>,
}

#[derive(Serialize)]
pub struct Found {
    index: u64,
    step: Option<u64>,
    distance: f64,
    caption: String,
    picture: String,
}

#[derive(Serialize)]
pub struct NearestAnswer {
    searched: u64,
    neighbours: Vec<Found>,
    ms: f64,
}

/// Finds the picture's nearest training scenes; 503 while the index is still being built.
pub async fn nearest(
    State(state): State<Arc<AppState>>,
    body: Body,
) -> ApiResult<Json<NearestAnswer>> {
    let r: NearestRequest = parse_body(body, state.limits.max_body_bytes)?;
    let top = r.top.unwrap_or(4);
    if top == 0 || top > MAX_TOP {
        return Err(ApiError::field(
            "top",
            format!("{top} is outside 1..={MAX_TOP}"),
        ));
    }
    let Some(n) = state.nearest.clone() else {
        let why = match state.model.meta.data {
            Some(_) => "the server was started with --no-nearest-index",
            None => "this model records no training stream, so there is no training set to search",
        };
        return Err(ApiError::status(StatusCode::NOT_IMPLEMENTED, why));
    };
    let Some(s) = status(&state).filter(|s| s.ready) else {
        let s = status(&state);
        let (built, total) = s.map_or((0, 0), |s| (s.built, s.total));
        let why = format!(
            "the training scenes are still being indexed ({built} of {total}); try again shortly"
        );
        return Err(ApiError::status(StatusCode::SERVICE_UNAVAILABLE, why));
    };
    let limits = state.limits;
    tokio::task::spawn_blocking(move || {
        let began = std::time::Instant::now();
        let img = crate::io::image::flatten_over_white(decode_upload(&r.image, &limits)?);
        let side = n.stream.side();
        // As img2img takes a picture: its centred square, at the model's side.
        let img = match crate::io::image::centre_square(img.width(), img.height()) {
            Some([x, y, s]) => img.crop_imm(x, y, s, s),
            None => img,
        };
        let img = match img.width() == side && img.height() == side {
            true => img,
            false => img.resize_exact(side, side, image::imageops::FilterType::Lanczos3),
        };
        let index = n.index.get().expect("ready was checked");
        let lib = |e: crate::Error| ApiError::from_lib("image", e);
        let found = index.search(&img.to_rgb8(), top).map_err(lib)?;
        let neighbours = found
            .into_iter()
            .map(|f| {
                let picture = data_url(&n.stream.scene(f.index).picture).map_err(lib)?;
                Ok(Found {
                    index: f.index,
                    step: f.step,
                    distance: f.distance,
                    caption: f.caption,
                    picture,
                })
            })
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(Json(NearestAnswer {
            searched: s.total,
            neighbours,
            ms: began.elapsed().as_secs_f64() * 1e3,
        }))
    })
    .await
    .map_err(|e| ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

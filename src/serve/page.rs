//! The playground page, its script and its styles, compiled into the binary: it works
//! offline, and no path on disk is ever served.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const RUN_SCRIPT: &str = include_str!("page/run.js");
const STYLES: &str = include_str!("page/style.css");

fn file(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

pub async fn index() -> impl IntoResponse {
    file("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> impl IntoResponse {
    file("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn run_script() -> impl IntoResponse {
    file("text/javascript; charset=utf-8", RUN_SCRIPT)
}

pub async fn styles() -> impl IntoResponse {
    file("text/css; charset=utf-8", STYLES)
}

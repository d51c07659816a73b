//! The dashboards' files, embedded in the binary (no CDN, no files at run time).

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../assets/index.html");
const STYLE: &str = include_str!("../assets/style.css");
const APP: &str = include_str!("../assets/app.js");
const CHARTS: &str = include_str!("../assets/charts.js");
const FABRIC: &str = include_str!("../assets/fabric.js");
const ICON: &str = include_str!("../assets/icon.svg");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// `/`, `/style.css`, `/app.js`, `/charts.js`, `/fabric.js`, `/icon.svg`.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/charts.js",
            get(|| async { asset("text/javascript; charset=utf-8", CHARTS) }),
        )
        .route(
            "/fabric.js",
            get(|| async { asset("text/javascript; charset=utf-8", FABRIC) }),
        )
        .route("/icon.svg", get(|| async { asset("image/svg+xml", ICON) }))
}

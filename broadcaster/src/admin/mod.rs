//! Admin HTTP server: `GET /healthz`, `GET /metrics` (Prometheus text 0.0.4,
//! or OpenMetrics when the `Accept` header asks for it), `GET /stats` (JSON),
//! served by `server.rs` (capped connections, header and request deadlines).

mod server;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Format, Metrics};

/// Serves until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(exposition))
        .route("/stats", get(stats))
        .with_state(metrics);
    server::serve(listener, app, shutdown).await;
}

async fn exposition(State(m): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    match m.render(format) {
        Ok(text) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering /metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn stats(State(m): State<Arc<Metrics>>) -> Json<serde_json::Value> {
    Json(m.to_json())
}

//! `POST /api/v1/prom/write` (and `/api/v1/write`): Prometheus remote write 1.0. The body
//! is decoded by `frontend::ingest::prom_remote_write` (bounded by `http.max_body` before
//! anything is decompressed) and ingested as millisecond line protocol: a table per metric,
//! labels as tags, the value in `greptime_value`. 204 once acknowledged; a body that does not
//! decode gets 400 (Prometheus drops a batch on a 4xx and retries on a 5xx).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use frontend::ingest::batcher::Precision;
use frontend::ingest::prom_remote_write::{DecodeError, decode, to_line_protocol};

use super::write::ingest_lines;
use super::{ApiError, AppRef, body_limit, read_raw_body, too_large};

/// `POST /api/v1/prom/write`.
pub async fn write(
    State(state): State<AppRef>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let bytes = read_raw_body(&state, &headers, body).await?;
    let limit = body_limit(&state);
    let decoded = tokio::task::spawn_blocking(move || {
        decode(&bytes, limit).map(|request| to_line_protocol(&request))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let converted = match decoded {
        Ok(c) => c,
        Err(DecodeError::TooLarge { .. }) => return Err(too_large(&state)),
        Err(e) => return Err(ApiError::bad_request(e.to_string())),
    };
    state
        .metrics
        .count_prom_samples(converted.samples, converted.skipped);
    ingest_lines(
        &state,
        converted.lines.into_bytes().into(),
        Precision::Millisecond,
        false,
    )
    .await
}

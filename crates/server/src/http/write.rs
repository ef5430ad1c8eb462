//! InfluxDB line-protocol writes: `POST /write` (1.x) and `POST /api/v2/write` (2.x).
//!
//! The body is ingested as `mito write` ingests a file: valid lines land and refused lines
//! are answered with 400 and their numbers and reasons; with `strict=true` one refused line
//! writes nothing. 204 comes only after every row is acknowledged by the engine, which
//! under the default WAL durability (`sync`) means fsynced. The `db`/`bucket` and
//! `rp`/`org` parameters are accepted and not used: a server is one database.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use frontend::ingest::batcher::Precision;
use frontend::ingest::{IngestOptions, Input, ingest};
use store_api::clock::{ClockRef, SystemClock};

use super::{ApiError, AppRef, form_pairs, read_body};

/// Refused lines listed in an answer (the rest are counted).
const REPORTED_LINES: usize = 100;

/// The parameters of a write.
#[derive(Debug, PartialEq)]
struct Params {
    precision: Precision,
    strict: bool,
}

fn params(query: &str) -> Result<Params, ApiError> {
    let mut out = Params {
        precision: Precision::Nanosecond,
        strict: false,
    };
    for (k, v) in form_pairs(query) {
        match k.as_str() {
            // 1.x spells nanoseconds and microseconds `n` and `u`.
            "precision" => {
                out.precision = match v.as_str() {
                    "n" => Precision::Nanosecond,
                    "u" => Precision::Microsecond,
                    other => Precision::parse(other).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "precision '{other}' is not one of ns, us, ms, s (or n, u)"
                        ))
                    })?,
                }
            }
            "strict" => {
                out.strict = match v.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "strict '{other}' is not true or false"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `POST /write?db=&precision=n|ns|u|us|ms|s&strict=` (1.x) and
/// `POST /api/v2/write?bucket=&org=&precision=ns|us|ms|s&strict=` (2.x): one handler, as the
/// two differ only in parameters this server does not use.
pub async fn write(
    State(state): State<AppRef>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let params = params(uri.query().unwrap_or_default())?;
    let bytes = read_body(&state, &headers, body).await?;
    ingest_lines(&state, bytes, params.precision, params.strict).await
}

/// Ingests line protocol; 204 once every row is acknowledged, 400 with the refused lines.
pub(super) async fn ingest_lines(
    state: &AppRef,
    lines: Bytes,
    precision: Precision,
    strict: bool,
) -> Result<StatusCode, ApiError> {
    let options = IngestOptions {
        precision,
        strict,
        max_reported_errors: REPORTED_LINES,
        ..IngestOptions::default()
    };
    let instance = state.instance.clone();
    let clock: ClockRef = Arc::new(SystemClock);
    // A task of its own: a client that goes away does not cancel a write half done.
    let task =
        tokio::spawn(
            async move { ingest(&instance, Input::Bytes(lines), &options, clock, None).await },
        );
    let report = task
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the write failed: {e}"),
            )
        })?
        .map_err(|e| ApiError::from_error(&e))?;
    state.metrics.count_write(&report);
    if report.aborted_strict {
        let mut e = ApiError::bad_request(format!(
            "strict: {} of {} lines refused; nothing written",
            report.refused, report.lines
        ));
        e.lines = report.errors;
        return Err(e);
    }
    if report.refused > 0 {
        let mut e = ApiError::bad_request(format!(
            "partial write: {} of {} lines refused; {} rows written",
            report.refused, report.lines, report.rows_written
        ));
        e.lines = report.errors;
        return Err(e);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_and_strict_parse_as_influxdb_spells_them() {
        assert_eq!(
            params("db=x&precision=n").unwrap(),
            Params {
                precision: Precision::Nanosecond,
                strict: false
            }
        );
        assert_eq!(
            params("precision=u").unwrap().precision,
            Precision::Microsecond
        );
        assert_eq!(
            params("precision=ms").unwrap().precision,
            Precision::Millisecond
        );
        assert_eq!(params("precision=s").unwrap().precision, Precision::Second);
        assert!(params("strict=true").unwrap().strict);
        assert!(!params("strict=false").unwrap().strict);
        assert!(params("precision=h").is_err());
        assert!(params("strict=maybe").is_err());
    }
}

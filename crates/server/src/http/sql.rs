//! `GET|POST /v1/sql?sql=&format=json|csv|ndjson|arrow`: one read-only statement, its result
//! streamed as it is computed (never held whole).
//!
//! - `json` (default): one array of objects; `ndjson`: one object per line; `csv`: a header
//!   line and the rows; `arrow`: an Arrow IPC stream (`application/vnd.apache.arrow.stream`).
//! - POST takes the statement as a form field (`sql=`, `application/x-www-form-urlencoded`)
//!   or as the whole body (any other content type).
//! - A statement that fails to plan, or fails before its first rows, gets 400 (or the status
//!   its error calls for) with the error. One that fails later ends the response early: the
//!   chunked body stops without its last chunk, which every HTTP client reports as an error.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use datafusion::arrow::ipc::writer::StreamWriter;
use frontend::query::output::{Format, Printer};
use futures::StreamExt;

use super::{ApiError, AppRef, form_pairs, read_body};

/// The result formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputFormat {
    Text(Format),
    Arrow,
}

impl OutputFormat {
    fn parse(s: &str) -> Result<Self, ApiError> {
        Ok(match s {
            "" | "json" => Self::Text(Format::Json),
            "ndjson" => Self::Text(Format::Ndjson),
            "csv" => Self::Text(Format::Csv),
            "arrow" => Self::Arrow,
            other => {
                return Err(ApiError::bad_request(format!(
                    "format '{other}' is not one of json, ndjson, csv, arrow"
                )));
            }
        })
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Text(Format::Csv) => "text/csv; charset=utf-8",
            Self::Text(Format::Ndjson) => "application/x-ndjson",
            Self::Text(_) => "application/json",
            Self::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// The statement and the format named by `k=v` pairs (later pairs win); whether `sql` was
/// among them.
fn take_params(text: &str, sql: &mut Option<String>, format: &mut String) -> bool {
    let mut found = false;
    for (k, v) in form_pairs(text) {
        match k.as_str() {
            "sql" => {
                *sql = Some(v);
                found = true;
            }
            "format" => *format = v,
            _ => {}
        }
    }
    found
}

/// `GET /v1/sql?sql=...`.
pub async fn get(State(state): State<AppRef>, uri: Uri) -> Response {
    let mut sql = None;
    let mut format = String::new();
    take_params(uri.query().unwrap_or_default(), &mut sql, &mut format);
    answer(state, sql, &format).await
}

/// `POST /v1/sql`: the statement as a form field or as the body.
pub async fn post(
    State(state): State<AppRef>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut sql = None;
    let mut format = String::new();
    take_params(uri.query().unwrap_or_default(), &mut sql, &mut format);
    let bytes = match read_body(&state, &headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return ApiError::bad_request("the body is not UTF-8").into_response();
    };
    let from_form = form && take_params(text, &mut sql, &mut format);
    // A body that is not a form with `sql=` is the statement (`curl --data 'SELECT ..'`
    // sends a form content type with a bare statement).
    if !from_form && !text.trim().is_empty() {
        sql = Some(text.to_string());
    }
    answer(state, sql, &format).await
}

async fn answer(state: AppRef, sql: Option<String>, format: &str) -> Response {
    match run(state, sql, format).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(state: AppRef, sql: Option<String>, format: &str) -> Result<Response, ApiError> {
    let format = OutputFormat::parse(format)?;
    let sql = sql
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("give the statement as `sql=...`"))?;
    let timer = state.metrics.query_seconds.start_timer();
    let instance = state.instance.clone();
    // Planned and run in a task of its own (see the module docs of `http`).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
    tokio::spawn(async move {
        let started = frontend::query::query_stream(&instance, &sql).await;
        let (schema, mut stream) = match started {
            Ok(s) => s,
            Err(e) => {
                let _ = first_tx.send(Err(ApiError::from_error(&e)));
                return;
            }
        };
        // The first batch before the headers: an error at the start gets its status.
        let first = match stream.next().await {
            Some(Err(e)) => {
                let e = frontend::Error::Sql { source: e };
                let _ = first_tx.send(Err(ApiError::from_error(&e)));
                return;
            }
            other => other,
        };
        if first_tx.send(Ok(())).is_err() {
            return;
        }
        let mut encoder = match Encoder::new(schema, format) {
            Ok(e) => e,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let mut next = first;
        while let Some(batch) = next {
            let chunk = batch
                .map_err(std::io::Error::other)
                .and_then(|b| encoder.push(&b));
            let failed = chunk.is_err();
            // A receiver gone: the client left; dropping the stream stops the query.
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
            next = stream.next().await;
        }
        let _ = tx.send(encoder.finish()).await;
        timer.observe_duration();
    });
    match first_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the query task ended without an answer".into(),
            ));
        }
    }
    let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
        .filter(|chunk| std::future::ready(!matches!(chunk, Ok(b) if b.is_empty())));
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(response)
}

/// Turns batches into bytes of the output format.
enum Encoder {
    Text(Printer, Vec<u8>),
    Arrow(Box<StreamWriter<Vec<u8>>>),
}

impl Encoder {
    fn new(schema: arrow_schema::SchemaRef, format: OutputFormat) -> Result<Self, std::io::Error> {
        Ok(match format {
            OutputFormat::Text(f) => Self::Text(Printer::new(schema, f), Vec::new()),
            OutputFormat::Arrow => Self::Arrow(Box::new(
                StreamWriter::try_new(Vec::new(), &schema).map_err(std::io::Error::other)?,
            )),
        })
    }

    fn push(
        &mut self,
        batch: &datafusion::arrow::array::RecordBatch,
    ) -> Result<Bytes, std::io::Error> {
        match self {
            Self::Text(printer, buf) => {
                printer.push(buf, batch)?;
                Ok(Bytes::from(std::mem::take(buf)))
            }
            Self::Arrow(w) => {
                w.write(batch).map_err(std::io::Error::other)?;
                Ok(Bytes::from(std::mem::take(w.get_mut())))
            }
        }
    }

    fn finish(self) -> Result<Bytes, std::io::Error> {
        match self {
            Self::Text(printer, mut buf) => {
                printer.finish(&mut buf)?;
                Ok(Bytes::from(buf))
            }
            Self::Arrow(mut w) => {
                w.finish().map_err(std::io::Error::other)?;
                Ok(Bytes::from(std::mem::take(w.get_mut())))
            }
        }
    }
}

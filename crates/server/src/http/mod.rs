//! The HTTP API (axum over hyper's HTTP/1.1 server).
//!
//! ```text
//! POST /write?db=&precision=&strict=          InfluxDB 1.x line protocol   (write.rs)
//! POST /api/v2/write?bucket=&org=&precision=  InfluxDB 2.x line protocol   (write.rs)
//! POST /api/v1/prom/write (and /api/v1/write) Prometheus remote write  (prom.rs)
//! GET|POST /v1/sql?sql=&format=               SQL, streamed               (sql.rs)
//! GET /metrics                                Prometheus text             (metrics.rs)
//! GET /health, GET|HEAD /ping                 liveness (no credentials)
//! ```
//!
//! Every connection is its own task, and every write or query runs in a task of its own, so
//! a client that disconnects cancels nothing half done and a panic ends only its request.
//! Errors are JSON: `{"error": "...", "lines": [{"line": N, "reason": "..."}]}`.

mod metrics;
mod prom;
mod sql;
mod write;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::Bytes;
use frontend::Instance;
use frontend::ingest::batcher::LineError;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use store_api::error::{ErrorExt, ErrorKind};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use metrics::ServerMetrics;

use crate::auth::Users;
use crate::config::HttpConfig;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The database.
    pub instance: Arc<Instance>,
    /// Who may connect; `None`: everyone.
    pub users: Option<Arc<Users>>,
    /// The HTTP options.
    pub config: HttpConfig,
    /// The server's own metrics.
    pub metrics: ServerMetrics,
}

type AppRef = Arc<AppState>;

/// The routes.
pub fn router(state: AppRef) -> Router {
    Router::new()
        .route("/write", post(write::write))
        .route("/api/v2/write", post(write::write))
        .route("/api/v1/prom/write", post(prom::write))
        .route("/api/v1/write", post(prom::write))
        .route("/v1/sql", get(sql::get).post(sql::post))
        .route("/metrics", get(metrics::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        // Liveness needs no credentials (load balancers, `influx ping`).
        .route("/health", get(metrics::health))
        .route("/ping", get(ping).head(ping))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {} {} (see docs/server.md)",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Counts requests by route and status, and times them.
async fn count(State(state): State<AppRef>, request: Request, next: Next) -> Response {
    let route = metrics::route_label(request.uri().path());
    let timer = state.metrics.request_seconds(route).start_timer();
    let response = next.run(request).await;
    timer.observe_duration();
    state
        .metrics
        .count_request(route, response.status().as_u16());
    response
}

/// Refuses requests without valid credentials (when the server has users): HTTP Basic,
/// `Authorization: Token user:password` or `Bearer user:password` (InfluxDB 1.8's v2 API),
/// or InfluxDB 1.x's `u=` and `p=` query parameters.
async fn authenticate(State(state): State<AppRef>, request: Request, next: Next) -> Response {
    let Some(users) = &state.users else {
        return next.run(request).await;
    };
    let credentials = credentials(request.headers(), request.uri().query());
    let Some((user, password)) = credentials else {
        return unauthorized(
            "credentials required (HTTP Basic, or `Authorization: Token user:password`)",
        );
    };
    // PBKDF2 costs milliseconds: off the runtime's threads.
    let users = users.clone();
    let ok = tokio::task::spawn_blocking(move || users.check(&user, &password))
        .await
        .unwrap_or(false);
    if !ok {
        return unauthorized("wrong user name or password");
    }
    next.run(request).await
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message.to_string()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"mito\""),
    );
    response
}

/// The user name and password a request carries.
fn credentials(headers: &HeaderMap, query: Option<&str>) -> Option<(String, String)> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = value.trim().split_once(' ')?;
        let pair = match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest.trim())
                    .ok()?;
                String::from_utf8(decoded).ok()?
            }
            "token" | "bearer" => rest.trim().to_string(),
            _ => return None,
        };
        let (user, password) = pair.split_once(':')?;
        return Some((user.to_string(), password.to_string()));
    }
    let mut user = None;
    let mut password = None;
    for (k, v) in form_pairs(query.unwrap_or_default()) {
        match k.as_str() {
            "u" => user = Some(v),
            "p" => password = Some(v),
            _ => {}
        }
    }
    Some((user?, password?))
}

/// `k=v&k=v` pairs, percent- and plus-decoded.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An error answer: a status and a JSON body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    lines: Vec<LineError>,
}

impl ApiError {
    fn new(status: StatusCode, message: String) -> Self {
        Self {
            status,
            message,
            lines: Vec::new(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message.into())
    }

    /// The answer to an error of the database: the status its kind calls for.
    fn from_error(e: &dyn ErrorExt) -> Self {
        let status = match e.kind() {
            ErrorKind::InvalidArgument | ErrorKind::Unsupported => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::AlreadyExists => StatusCode::CONFLICT,
            ErrorKind::ReadOnly => StatusCode::FORBIDDEN,
            ErrorKind::Busy | ErrorKind::Unavailable | ErrorKind::Cancelled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // Storage failures, corruption, bugs, and kinds added later.
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "error": self.message });
        if !self.lines.is_empty()
            && let Some(map) = body.as_object_mut()
        {
            map.insert(
                "lines".into(),
                self.lines
                    .iter()
                    .map(|l| serde_json::json!({ "line": l.line, "reason": l.reason }))
                    .collect(),
            );
        }
        let mut response = (self.status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// The largest body, in bytes.
fn body_limit(state: &AppState) -> usize {
    usize::try_from(state.config.max_body.as_bytes()).unwrap_or(usize::MAX)
}

fn too_large(state: &AppState) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is over the limit of {} (http.max_body)",
            state.config.max_body
        ),
    )
}

/// Reads a whole request body within the size limit and the read timeout, gunzipping it
/// when it says `Content-Encoding: gzip` (the limit holds for the decoded bytes).
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = body_limit(state);
    let too_large = || too_large(state);
    let bytes = read_raw_body(state, headers, body).await?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") | Some("") => Ok(bytes),
        Some("gzip") | Some("x-gzip") => {
            let decoded = tokio::task::spawn_blocking(move || gunzip(&bytes, limit))
                .await
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            match decoded {
                Ok(Some(b)) => Ok(b),
                Ok(None) => Err(too_large()),
                Err(e) => Err(ApiError::bad_request(format!(
                    "the body is not valid gzip: {e}"
                ))),
            }
        }
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding '{other}' is not supported (use gzip or none)"),
        )),
    }
}

/// Reads a whole request body as sent (no decoding), within the size limit and the read
/// timeout.
async fn read_raw_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    let limit = body_limit(state);
    let too_large = || too_large(state);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, limit);
    let collected = tokio::time::timeout(state.config.read_timeout, limited.collect())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {:?} (http.read_timeout)",
                    state.config.read_timeout
                ),
            )
        })?;
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!("reading the body: {e}"))),
    }
}

/// The gunzipped bytes (every member), or `None` past `limit`.
pub fn gunzip(bytes: &[u8], limit: usize) -> std::io::Result<Option<Bytes>> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes).take(limit as u64 + 1);
    decoder.read_to_end(&mut out)?;
    if out.len() > limit {
        return Ok(None);
    }
    Ok(Some(out.into()))
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets
/// in-flight requests finish for up to `grace`, and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &HttpConfig,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.read_timeout)
        .keep_alive(true);
    let service = hyper_util::service::TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        // At the connection bound, wait for one to close (or for the shutdown).
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                crate::accept_failed("HTTP", &e).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "in-flight requests still running at the shutdown timeout"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_basic_token_bearer_or_the_query() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "Basic YWxpY2U6b25lOnR3bw==".parse().unwrap(),
        );
        assert_eq!(
            credentials(&h, None),
            Some(("alice".into(), "one:two".into()))
        );
        h.insert(header::AUTHORIZATION, "Token bob:pw".parse().unwrap());
        assert_eq!(credentials(&h, None), Some(("bob".into(), "pw".into())));
        h.insert(header::AUTHORIZATION, "Bearer bob:pw".parse().unwrap());
        assert_eq!(credentials(&h, None), Some(("bob".into(), "pw".into())));
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(credentials(&h, None), None);
        let h = HeaderMap::new();
        assert_eq!(
            credentials(&h, Some("db=x&u=carol&p=a%20b%2B")),
            Some(("carol".into(), "a b+".into()))
        );
        assert_eq!(credentials(&h, Some("db=x&u=carol")), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn gunzip_is_bounded() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&[b'a'; 10_000]).unwrap();
        let gz = e.finish().unwrap();
        assert_eq!(gunzip(&gz, 10_000).unwrap().unwrap().len(), 10_000);
        assert!(gunzip(&gz, 9_999).unwrap().is_none());
        assert!(gunzip(b"not gzip", 100).is_err());
        assert!(gunzip(gz.get(..gz.len() / 2).unwrap(), 100_000).is_err());
    }
}

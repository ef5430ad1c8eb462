//! `GET /metrics` (the engine's registry and the server's, in the Prometheus text format) and
//! `GET /health`.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use frontend::ingest::IngestReport;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use super::AppRef;

/// The server's metrics (the engine keeps its own).
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    /// Seconds per SQL query over HTTP, from the request to the last byte of the result.
    pub query_seconds: Histogram,
    write_lines: IntCounterVec,
    prom_samples: IntCounterVec,
    open_regions: IntGauge,
}

fn buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0001, 2.0, 20).unwrap_or_default()
}

impl ServerMetrics {
    /// Creates and registers the metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("mito".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "http_request_seconds",
                "Seconds per HTTP request until its headers are answered",
            )
            .buckets(buckets()),
            &["route"],
        )?;
        let query_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "query_seconds",
                "Seconds per SQL query, to the end of its result",
            )
            .buckets(buckets()),
        )?;
        let write_lines = IntCounterVec::new(
            Opts::new(
                "http_write_lines_total",
                "Line-protocol lines received, by outcome",
            ),
            &["outcome"],
        )?;
        let prom_samples = IntCounterVec::new(
            Opts::new(
                "prom_remote_write_samples_total",
                "Remote-write samples, by outcome (skipped: NaN, infinities, no metric name)",
            ),
            &["outcome"],
        )?;
        let open_regions = IntGauge::new("open_regions", "Regions open in this process")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(query_seconds.clone()))?;
        registry.register(Box::new(write_lines.clone()))?;
        registry.register(Box::new(prom_samples.clone()))?;
        registry.register(Box::new(open_regions.clone()))?;
        Ok(Self {
            registry,
            requests,
            request_seconds,
            query_seconds,
            write_lines,
            prom_samples,
            open_regions,
        })
    }

    pub(super) fn request_seconds(&self, route: &str) -> Histogram {
        self.request_seconds.with_label_values(&[route])
    }

    pub(super) fn count_request(&self, route: &str, status: u16) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
    }

    pub(super) fn count_prom_samples(&self, converted: u64, skipped: u64) {
        self.prom_samples
            .with_label_values(&["converted"])
            .inc_by(converted);
        self.prom_samples
            .with_label_values(&["skipped"])
            .inc_by(skipped);
    }

    pub(super) fn count_write(&self, report: &IngestReport) {
        self.write_lines
            .with_label_values(&["written"])
            .inc_by(report.lines.saturating_sub(report.refused));
        self.write_lines
            .with_label_values(&["refused"])
            .inc_by(report.refused);
    }
}

/// The label of a request path: the known routes, and `other` (unknown paths must not
/// grow the label set without bound).
pub(super) fn route_label(path: &str) -> &'static str {
    match path {
        "/write" => "/write",
        "/api/v2/write" => "/api/v2/write",
        "/api/v1/prom/write" => "/api/v1/prom/write",
        "/api/v1/write" => "/api/v1/write",
        "/v1/sql" => "/v1/sql",
        "/metrics" => "/metrics",
        "/health" => "/health",
        "/ping" => "/ping",
        _ => "other",
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppRef>) -> Response {
    let regions: usize = state
        .instance
        .tables()
        .await
        .iter()
        .map(|t| t.region_ids().count())
        .sum();
    state
        .metrics
        .open_regions
        .set(i64::try_from(regions).unwrap_or(i64::MAX));
    let mut text = state.instance.engine().metrics_text();
    let mut out = Vec::new();
    use prometheus::Encoder;
    if let Err(e) =
        prometheus::TextEncoder::new().encode(&state.metrics.registry.gather(), &mut out)
    {
        tracing::warn!(error = %e, "rendering the server's metrics failed");
    }
    text.push_str(&String::from_utf8_lossy(&out));
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /health`: 200 while the server runs.
pub async fn health() -> Response {
    let mut response = "{\"status\":\"ok\"}".into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

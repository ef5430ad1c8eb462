//! Prometheus metrics of one engine, in a registry the engine owns (two engines in one
//! process, as in tests, keep separate counts). `MitoEngine::metrics_text` renders them.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// The engine's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry holding every metric below.
    pub registry: Registry,
    /// Rows written, by op (`put`, `delete`).
    pub write_rows: IntCounterVec,
    /// Write requests, by outcome (`ok`, `invalid`, `rejected`, `failed`).
    pub write_requests: IntCounterVec,
    /// Write requests that waited for flushes (write buffer over its limit).
    pub write_stalls: IntCounter,
    /// Seconds per WAL append (one per worker group).
    pub wal_append_seconds: Histogram,
    /// Requests per WAL append.
    pub wal_group_requests: Histogram,
    /// Flushes, by outcome (`ok`, `failed`).
    pub flushes: IntCounterVec,
    /// Seconds per flush.
    pub flush_seconds: Histogram,
    /// Bytes of SSTs written by flushes.
    pub flush_bytes: IntCounter,
    /// Compactions, by outcome (`ok`, `failed`).
    pub compactions: IntCounterVec,
    /// Seconds per compaction run (every task of one pick).
    pub compaction_seconds: Histogram,
    /// SST bytes written by compactions.
    pub compaction_bytes: IntCounter,
    /// Rows written by compactions.
    pub compaction_rows: IntCounter,
    /// Files removed whole because every row was past the TTL.
    pub expired_files: IntCounter,
    /// Unreferenced SSTs deleted when a region opened.
    pub orphan_files: IntCounter,
    /// Seconds of scan stages (`build`, `first_batch`, `total`).
    pub scan_seconds: HistogramVec,
    /// Rows returned by scans.
    pub scan_rows: IntCounter,
    /// Cache lookups, by cache (`sst_meta`, `page`) and result (`hit`, `miss`).
    pub cache_lookups: IntCounterVec,
    /// Bytes held by memtables (write buffer), refreshed by the workers.
    pub memtable_bytes: IntGauge,
    /// Replayed WAL entries at region open.
    pub replayed_entries: IntCounter,
    /// SST readers opened into the reader cache after a region opened.
    pub preloaded_readers: IntCounter,
}

fn buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0001, 2.0, 20).unwrap_or_default()
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("mito".into()), None)?;
        let write_rows =
            IntCounterVec::new(Opts::new("write_rows_total", "Rows written"), &["op"])?;
        let write_requests = IntCounterVec::new(
            Opts::new("write_requests_total", "Write requests by outcome"),
            &["outcome"],
        )?;
        let write_stalls = IntCounter::new(
            "write_stalls_total",
            "Write requests that waited for flushes",
        )?;
        let wal_append_seconds = Histogram::with_opts(
            HistogramOpts::new("wal_append_seconds", "Seconds per WAL group append")
                .buckets(buckets()),
        )?;
        let wal_group_requests = Histogram::with_opts(
            HistogramOpts::new("wal_group_requests", "Requests per WAL group append")
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 12).unwrap_or_default()),
        )?;
        let flushes = IntCounterVec::new(Opts::new("flushes_total", "Flushes"), &["outcome"])?;
        let flush_seconds = Histogram::with_opts(
            HistogramOpts::new("flush_seconds", "Seconds per flush").buckets(buckets()),
        )?;
        let flush_bytes = IntCounter::new("flush_bytes_total", "SST bytes written by flushes")?;
        let compactions =
            IntCounterVec::new(Opts::new("compactions_total", "Compactions"), &["outcome"])?;
        let compaction_seconds = Histogram::with_opts(
            HistogramOpts::new("compaction_seconds", "Seconds per compaction run")
                .buckets(buckets()),
        )?;
        let compaction_bytes =
            IntCounter::new("compaction_bytes_total", "SST bytes written by compactions")?;
        let compaction_rows =
            IntCounter::new("compaction_rows_total", "Rows written by compactions")?;
        let expired_files = IntCounter::new(
            "expired_files_total",
            "SST files removed whole because every row was past the TTL",
        )?;
        let orphan_files = IntCounter::new(
            "orphan_files_total",
            "Unreferenced SST files deleted when a region opened",
        )?;
        let scan_seconds = HistogramVec::new(
            HistogramOpts::new("scan_seconds", "Seconds of scan stages").buckets(buckets()),
            &["stage"],
        )?;
        let scan_rows = IntCounter::new("scan_rows_total", "Rows returned by scans")?;
        let cache_lookups = IntCounterVec::new(
            Opts::new("cache_lookups_total", "Cache lookups"),
            &["cache", "result"],
        )?;
        let memtable_bytes = IntGauge::new("memtable_bytes", "Bytes held by memtables")?;
        let replayed_entries =
            IntCounter::new("wal_replayed_entries_total", "WAL entries replayed at open")?;
        registry.register(Box::new(write_rows.clone()))?;
        registry.register(Box::new(write_requests.clone()))?;
        registry.register(Box::new(write_stalls.clone()))?;
        registry.register(Box::new(wal_append_seconds.clone()))?;
        registry.register(Box::new(wal_group_requests.clone()))?;
        registry.register(Box::new(flushes.clone()))?;
        registry.register(Box::new(flush_seconds.clone()))?;
        registry.register(Box::new(flush_bytes.clone()))?;
        registry.register(Box::new(compactions.clone()))?;
        registry.register(Box::new(compaction_seconds.clone()))?;
        registry.register(Box::new(compaction_bytes.clone()))?;
        registry.register(Box::new(compaction_rows.clone()))?;
        registry.register(Box::new(expired_files.clone()))?;
        registry.register(Box::new(orphan_files.clone()))?;
        registry.register(Box::new(scan_seconds.clone()))?;
        registry.register(Box::new(scan_rows.clone()))?;
        registry.register(Box::new(cache_lookups.clone()))?;
        registry.register(Box::new(memtable_bytes.clone()))?;
        let preloaded_readers = IntCounter::new(
            "sst_readers_preloaded_total",
            "SST readers opened into the reader cache after a region opened",
        )?;
        registry.register(Box::new(replayed_entries.clone()))?;
        registry.register(Box::new(preloaded_readers.clone()))?;
        Ok(Self {
            registry,
            write_rows,
            write_requests,
            write_stalls,
            wal_append_seconds,
            wal_group_requests,
            flushes,
            flush_seconds,
            flush_bytes,
            compactions,
            compaction_seconds,
            compaction_bytes,
            compaction_rows,
            expired_files,
            orphan_files,
            scan_seconds,
            scan_rows,
            cache_lookups,
            memtable_bytes,
            replayed_entries,
            preloaded_readers,
        })
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "rendering metrics failed");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

//! [`Instance`]: the embedded standalone mode. One process owns a data directory: the engine
//! (`data/`, `wal/`), the catalog file and a lock file that keeps a second process out.
//!
//! ```text
//! DIR/LOCK            held (flock) while an Instance is open
//! DIR/catalog.mito    table names -> ids (crate::catalog)
//! DIR/data/regions/.. SSTs and manifests (mito-engine)
//! DIR/wal/            the write-ahead log (log-store)
//! ```
//!
//! Creating a table writes the catalog twice: first to reserve the id (so a crash between
//! the region's creation and the table's entry never hands the same id out again), then with
//! the table. A crash in between leaves an unreferenced region directory and no table.

use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use log_store::WalConfig;
use mito_engine::{MitoConfig, MitoEngine};
use snafu::{OptionExt, ResultExt};
use store_api::RegionId;
use store_api::config::ReadableSize;
use store_api::engine::{RegionEngineRef, RegionStatistics};
use store_api::error::BoxedError;
use store_api::metadata::{ColumnMetadata, RegionMetadataRef};
use store_api::region_request::{
    AlterKind, CompactOptions, RegionAlterRequest, RegionCloseRequest, RegionCompactRequest,
    RegionCreateRequest, RegionFlushRequest, RegionOpenRequest, RegionOptionsMap, RegionPutRequest,
    RegionRequest,
};
use tokio::sync::Mutex;

use crate::catalog::{self, Catalog, TableEntry};
use crate::error::{
    CatalogSnafu, DataDirLockedSnafu, DataDirSnafu, EngineSnafu, EngineStartSnafu,
    InvalidTableSnafu, Result, TableNotFoundSnafu,
};

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// How to open an [`Instance`].
#[derive(Debug, Clone, Default)]
pub struct InstanceOptions {
    /// The engine's configuration.
    pub engine: MitoConfig,
    /// The WAL's configuration (its directory is always `DIR/wal`).
    pub wal: WalConfig,
    /// Limits on SQL queries.
    pub query: QueryOptions,
}

/// Limits on the SQL queries of an instance, so that one query cannot take the process down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOptions {
    /// Memory the running queries of the instance hold together in sorts, joins, aggregates
    /// and buffers (a fair share each); an operator that can spills to temporary files, one
    /// that cannot fails its query with "resources exhausted". Default: a quarter of RAM
    /// (at least 256 MiB).
    pub memory_limit: ReadableSize,
    /// A query still running after this long (planning included) fails with a timeout
    /// error. `None`: no limit. Default: 10 minutes.
    pub timeout: Option<std::time::Duration>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        let memory = mito_engine::config::total_memory();
        Self {
            memory_limit: ReadableSize(memory.map_or(ReadableSize::gib(1).as_bytes(), |m| {
                (m / 4).max(ReadableSize::mib(256).as_bytes())
            })),
            timeout: Some(std::time::Duration::from_secs(600)),
        }
    }
}

/// One table with its figures, as `mito tables` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    /// The table.
    pub entry: TableEntry,
    /// Figures summed over the table's regions.
    pub stats: RegionStatistics,
}

/// The embedded database over one data directory.
#[derive(Debug)]
pub struct Instance {
    dir: PathBuf,
    /// The only way to the regions: a local `MitoEngine` here, a remote one later.
    engine: RegionEngineRef,
    catalog: Mutex<Catalog>,
    /// Optimized plans of recent queries (see `query::query`).
    #[cfg(feature = "sql")]
    pub(crate) plans: crate::plan_cache::PlanCache,
    /// The held directory lock; released by [`Instance::close`] (or on drop).
    lock: std::sync::Mutex<Option<File>>,
    /// Series the line-protocol ingests checked against the tables (see `ingest`).
    pub(crate) series: Arc<crate::ingest::batcher::SeriesMemo>,
}

impl Instance {
    /// Query plans held by the plan cache (see [`crate::query::query`]).
    #[cfg(feature = "sql")]
    pub fn cached_plans(&self) -> u64 {
        self.plans.len()
    }

    /// Opens (creating if needed) the data directory `dir` and every table in it.
    ///
    /// With `options.wal.read_only` (or `options.engine.read_only`) nothing on disk changes:
    /// a missing directory is an empty database and is not created, and every request that
    /// would write is refused.
    pub async fn open(dir: &Path, options: InstanceOptions) -> Result<Self> {
        let read_only = options.wal.read_only || options.engine.read_only;
        if !read_only {
            std::fs::create_dir_all(dir).context(DataDirSnafu { dir })?;
        }
        // A read-only open of a directory that does not exist has nothing to lock.
        let lock = if read_only && !dir.exists() {
            None
        } else {
            Some(lock_dir(dir)?)
        };
        let catalog = catalog::load(dir).context(CatalogSnafu)?;
        #[cfg(feature = "sql")]
        let plans = crate::plan_cache::PlanCache::new(
            options.query.memory_limit.as_bytes(),
            options.query.timeout,
        )?;
        let engine = MitoEngine::open_local(dir, options.engine, options.wal)
            .await
            .map_err(BoxedError::new)
            .context(EngineStartSnafu { dir })?;
        let instance = Self {
            dir: dir.to_path_buf(),
            engine: Arc::new(engine),
            catalog: Mutex::new(catalog.clone()),
            #[cfg(feature = "sql")]
            plans,
            lock: std::sync::Mutex::new(lock),
            series: Arc::default(),
        };
        for table in &catalog.tables {
            for region_id in table.region_ids() {
                instance
                    .request(
                        &table.name,
                        "open",
                        region_id,
                        RegionRequest::Open(RegionOpenRequest::default()),
                    )
                    .await?;
            }
        }
        Ok(instance)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The engine under the tables.
    pub fn engine(&self) -> &RegionEngineRef {
        &self.engine
    }

    /// Every table, in creation order.
    pub async fn tables(&self) -> Vec<TableEntry> {
        self.catalog.lock().await.tables.clone()
    }

    /// The table named `name`.
    pub async fn table(&self, name: &str) -> Result<TableEntry> {
        let catalog = self.catalog.lock().await;
        catalog.table(name).cloned().with_context(|| {
            let names: Vec<&str> = catalog.tables.iter().map(|t| t.name.as_str()).collect();
            TableNotFoundSnafu {
                name,
                hint: if names.is_empty() {
                    " (the data directory holds no table)".to_string()
                } else {
                    format!(" (tables: {})", names.join(", "))
                },
            }
        })
    }

    /// The current schema of a table (its first region's metadata).
    pub async fn metadata(&self, name: &str) -> Result<RegionMetadataRef> {
        let region_id = first_region(&self.table(name).await?)?;
        self.metadata_of(name, region_id).await
    }

    async fn metadata_of(&self, name: &str, region_id: RegionId) -> Result<RegionMetadataRef> {
        self.engine.metadata(region_id).await.context(EngineSnafu {
            table: name,
            action: "metadata",
        })
    }

    /// Creates table `name` unless it exists; returns its entry and whether it was created.
    /// Column ids of `columns` are reassigned in order from 0.
    pub async fn create_table_if_absent(
        &self,
        name: &str,
        mut columns: Vec<ColumnMetadata>,
        options: RegionOptionsMap,
    ) -> Result<(TableEntry, bool)> {
        catalog::check_name(name).map_err(|reason| InvalidTableSnafu { name, reason }.build())?;
        let mut catalog = self.catalog.lock().await;
        if let Some(t) = catalog.table(name) {
            return Ok((t.clone(), false));
        }
        let table_id = catalog.next_table_id;
        let next = table_id.checked_add(1).context(InvalidTableSnafu {
            name,
            reason: "no table id is left",
        })?;
        let mut reserved = catalog.clone();
        reserved.next_table_id = next;
        catalog::store(&self.dir, &reserved).context(CatalogSnafu)?;
        *catalog = reserved;

        for (i, c) in columns.iter_mut().enumerate() {
            c.column_id = u32::try_from(i).unwrap_or(u32::MAX);
        }
        let primary_key = columns
            .iter()
            .filter(|c| c.semantic_type == store_api::metadata::SemanticType::Tag)
            .map(|c| c.column_id)
            .collect();
        let entry = TableEntry {
            name: name.to_string(),
            table_id,
            regions: vec![0],
        };
        let region_id = first_region(&entry)?;
        self.request(
            name,
            "create",
            region_id,
            RegionRequest::Create(RegionCreateRequest {
                column_metadatas: columns,
                primary_key,
                options,
            }),
        )
        .await?;
        let mut with_table = catalog.clone();
        with_table.tables.push(entry.clone());
        catalog::store(&self.dir, &with_table).context(CatalogSnafu)?;
        *catalog = with_table;
        Ok((entry, true))
    }

    /// Adds columns (nullable or with defaults) to every region of a table; their ids are
    /// assigned after the largest id in use. Returns the new schema.
    pub async fn add_columns(
        &self,
        name: &str,
        mut columns: Vec<ColumnMetadata>,
    ) -> Result<RegionMetadataRef> {
        let table = self.table(name).await?;
        let mut last = None;
        for region_id in table.region_ids() {
            let current = self.metadata_of(name, region_id).await?;
            let mut next = current.max_column_id();
            for c in &mut columns {
                next = next.checked_add(1).context(InvalidTableSnafu {
                    name,
                    reason: "no column id is left",
                })?;
                c.column_id = next;
            }
            self.request(
                name,
                "alter",
                region_id,
                RegionRequest::Alter(RegionAlterRequest {
                    schema_version: current.schema_version(),
                    kind: AlterKind::AddColumns {
                        columns: columns.clone(),
                    },
                }),
            )
            .await?;
            last = Some(self.metadata_of(name, region_id).await?);
        }
        last.context(InvalidTableSnafu {
            name,
            reason: "the table has no region",
        })
    }

    /// Writes rows (columns by name) into a table; returns the rows written.
    pub async fn put(&self, name: &str, rows: RecordBatch) -> Result<usize> {
        let region_id = first_region(&self.table(name).await?)?;
        self.put_region(name, region_id, rows).await
    }

    /// Writes rows into one region of a table already looked up.
    pub async fn put_region(
        &self,
        name: &str,
        region_id: RegionId,
        rows: RecordBatch,
    ) -> Result<usize> {
        self.request(
            name,
            "put",
            region_id,
            RegionRequest::Put(RegionPutRequest { rows }),
        )
        .await
    }

    /// Flushes every region of a table.
    pub async fn flush(&self, name: &str) -> Result<()> {
        self.each_region(name, "flush", || RegionRequest::Flush(RegionFlushRequest))
            .await
    }

    /// Compacts every region of a table (and waits for it).
    pub async fn compact(&self, name: &str, options: CompactOptions) -> Result<()> {
        self.each_region(name, "compact", || {
            RegionRequest::Compact(RegionCompactRequest { options })
        })
        .await
    }

    /// Sends `request()` to every region of a table in turn; stops at the first error.
    async fn each_region(
        &self,
        name: &str,
        action: &'static str,
        request: impl Fn() -> RegionRequest,
    ) -> Result<()> {
        for region_id in self.table(name).await?.region_ids() {
            self.request(name, action, region_id, request()).await?;
        }
        Ok(())
    }

    /// The options set on a table (its first region's; absent keys take their defaults).
    pub async fn options(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let region_id = first_region(&self.table(name).await?)?;
        self.engine
            .region_options(region_id)
            .await
            .context(EngineSnafu {
                table: name,
                action: "options",
            })
    }

    /// Every table with its rows, files and bytes.
    pub async fn summaries(&self) -> Vec<TableSummary> {
        let mut out = Vec::new();
        for entry in self.tables().await {
            let mut stats = RegionStatistics::default();
            for region_id in entry.region_ids() {
                if let Some(s) = self.engine.region_statistics(region_id) {
                    stats.memtable_bytes += s.memtable_bytes;
                    stats.memtable_rows += s.memtable_rows;
                    stats.files += s.files;
                    stats.sst_bytes += s.sst_bytes;
                    stats.sst_rows += s.sst_rows;
                    stats.committed_sequence = stats.committed_sequence.max(s.committed_sequence);
                    stats.schema_version = stats.schema_version.max(s.schema_version);
                    stats.compaction_window_secs = s.compaction_window_secs;
                }
            }
            out.push(TableSummary { entry, stats });
        }
        out
    }

    /// Closes every table (flushing first if `flush`), stops the engine and releases the
    /// directory lock. Requests after it fail.
    pub async fn close(&self, flush: bool) -> Result<()> {
        let tables = self.tables().await;
        let mut first_error = None;
        for table in &tables {
            for region_id in table.region_ids() {
                let r = self
                    .request(
                        &table.name,
                        "close",
                        region_id,
                        RegionRequest::Close(RegionCloseRequest { flush }),
                    )
                    .await;
                if let Err(e) = r {
                    first_error.get_or_insert(e);
                }
            }
        }
        let stopped = self
            .engine
            .stop()
            .await
            .context(EngineStartSnafu { dir: &self.dir });
        // The directory is free for the next process (or the next open) once closed.
        drop(
            self.lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        match first_error {
            Some(e) => Err(e),
            None => stopped,
        }
    }

    async fn request(
        &self,
        table: &str,
        action: &'static str,
        region_id: RegionId,
        request: RegionRequest,
    ) -> Result<usize> {
        self.engine
            .handle_request(region_id, request)
            .await
            .map(|r| r.affected_rows)
            .context(EngineSnafu { table, action })
    }
}

/// The table's first region (every table has at least one: the catalog checks it).
fn first_region(table: &TableEntry) -> Result<RegionId> {
    table.region_ids().next().context(InvalidTableSnafu {
        name: table.name.as_str(),
        reason: "the table has no region",
    })
}

/// Shared handle to an instance.
pub type InstanceRef = Arc<Instance>;

/// Takes the data directory's lock (a second process gets a clear error).
fn lock_dir(dir: &Path) -> Result<File> {
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .context(DataDirSnafu { dir })?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => DataDirLockedSnafu {
            dir,
            lock: lock_path,
        }
        .fail(),
        Err(TryLockError::Error(source)) => Err(source).context(DataDirSnafu { dir }),
    }
}

//! `mito server`: the embedded database of a data directory, served over HTTP and the
//! PostgreSQL wire protocol.
//!
//! ```text
//! clients ──HTTP/1.1──> http::serve (a task per connection)
//!                         └─ router: /write /api/v2/write ─> frontend::ingest  (a task each)
//!                                    /v1/sql              ─> frontend::query   (a task each)
//!                                    /metrics /health /ping
//!         ──PostgreSQL──> pg::serve (a task per connection) ─> frontend::query (read-only)
//!                                          │
//!                                   frontend::Instance ──> MitoEngine (WAL group commit)
//! ```
//!
//! [`config`] holds the options (TOML, every key defaulted), [`auth`] the users file.
//! [`Server::bind`] checks the options and binds; [`Server::run`] serves until a shutdown
//! signal, then drains the connections; the caller closes the instance (flushing) after it
//! returns.

pub mod auth;
pub mod config;
pub mod http;
mod pg;

/// The body of the `pg_bind` fuzz target (see `fuzz/`).
pub use pg::fuzz_bind;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use frontend::Instance;
use snafu::{ResultExt, Snafu};
use tokio::net::TcpListener;

use crate::auth::{Users, UsersError};
use crate::config::{ConfigError, ServerConfig};
use crate::http::{AppState, ServerMetrics};

/// Why the server could not start.
#[derive(Debug, Snafu)]
pub enum Error {
    /// The options are invalid or unsafe.
    #[snafu(display("{source}"))]
    Config {
        /// What is wrong.
        source: ConfigError,
    },
    /// The users file is unreadable or invalid.
    #[snafu(display("{source}"))]
    UsersFile {
        /// What is wrong.
        source: UsersError,
    },
    /// The address could not be bound.
    #[snafu(display("cannot listen on {addr}: {source}"))]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The metrics could not be registered (a bug).
    #[snafu(display("registering the server's metrics: {source}"))]
    Metrics {
        /// The cause.
        source: prometheus::Error,
    },
}

/// A bound, not yet serving server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    pg: Option<TcpListener>,
    users: Option<Arc<Users>>,
    config: ServerConfig,
}

impl Server {
    /// Checks `config`, loads the users file and binds the HTTP address: everything that
    /// can refuse a start, before the caller opens the data directory.
    pub async fn bind(config: ServerConfig) -> Result<Self, Error> {
        config.validate().context(ConfigSnafu)?;
        let users = match &config.auth.users {
            Some(path) => Some(Arc::new(Users::load(path).context(UsersFileSnafu)?)),
            None => None,
        };
        let addr = config.http.addr;
        let listener = TcpListener::bind(addr).await.context(BindSnafu { addr })?;
        let pg = if config.pg.enabled {
            let addr = config.pg.addr;
            Some(TcpListener::bind(addr).await.context(BindSnafu { addr })?)
        } else {
            None
        };
        Ok(Self {
            listener,
            pg,
            users,
            config,
        })
    }

    /// The HTTP address bound (with the port chosen when the config said 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The PostgreSQL address bound, if the protocol is enabled.
    pub fn pg_addr(&self) -> Option<SocketAddr> {
        self.pg.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves `instance` until `shutdown` completes, then stops accepting and lets in-flight
    /// requests finish (up to `shutdown_timeout`).
    pub async fn run(
        self,
        instance: Arc<Instance>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let pg = self.pg.map(|listener| {
            let handlers = Arc::new(pg::Handlers::new(instance.clone(), self.users.clone()));
            tokio::spawn(pg::serve(
                listener,
                handlers,
                self.config.pg.max_connections,
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
                self.config.shutdown_timeout,
            ))
        });
        let state = Arc::new(AppState {
            instance,
            users: self.users,
            config: self.config.http.clone(),
            metrics: ServerMetrics::new().context(MetricsSnafu)?,
        });
        let router = http::router(state);
        // The signal stops HTTP and, through `stop`, the PostgreSQL listener; `stop` is
        // dropped when HTTP returns, which ends the PostgreSQL listener's wait either way.
        http::serve(
            self.listener,
            router,
            &self.config.http,
            async move {
                shutdown.await;
                let _ = stop.send(true);
            },
            self.config.shutdown_timeout,
        )
        .await;
        if let Some(pg) = pg
            && let Err(e) = pg.await
        {
            tracing::warn!(error = %e, "the PostgreSQL listener task failed");
        }
        Ok(())
    }
}

/// After a failed `accept` (out of file descriptors and the like): logs it and pauses, so an
/// accept loop does not spin. `what` names the listener.
pub(crate) async fn accept_failed(what: &str, e: &std::io::Error) {
    tracing::warn!(error = %e, listener = what, "accepting a connection failed");
    #[allow(
        clippy::disallowed_methods,
        reason = "a back-off of an accept loop; nothing depends on its length"
    )]
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

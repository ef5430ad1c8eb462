//! The PostgreSQL wire protocol (protocol 3.0, via pgwire): `psql`, psycopg, JDBC and
//! Grafana's PostgreSQL data source query Mito as they query PostgreSQL.
//!
//! ```text
//! client ──TCP──> serve (a task per connection, at most pg.max_connections)
//!                   └─ pgwire::process_socket
//!                        ├─ Startup: trust, or SCRAM-SHA-256 against the users file
//!                        ├─ Queries (simple protocol) ─┐
//!                        ├─ Extended (Parse/Bind/...) ─┴─> frontend::query (read-only)
//!                        └─ cancel requests: by (pid, secret key), stop the running query
//! ```
//!
//! Results are Arrow batches encoded as rows as they arrive (text, or binary per column when
//! the client asks). No TLS: serve it on loopback or behind a TLS proxy.

mod compat;
mod params;

pub use params::fuzz_bind;
mod query;
mod startup;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use frontend::Instance;
use pgwire::api::auth::DefaultServerParameterProvider;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers, RandomPidSecretKeyGenerator};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::auth::Users;

use self::query::{Extended, Queries, StatementParser};
use self::startup::Startup;

/// Every handler of a connection; one shared by all.
pub(crate) struct Handlers {
    startup: Arc<Startup>,
    simple: Arc<Queries>,
    extended: Arc<Extended>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    pub(crate) fn new(instance: Arc<Instance>, users: Option<Arc<Users>>) -> Self {
        let connections = Arc::new(ConnectionManager::new());
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = "16.0 (Mito)".into();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        let simple = Arc::new(Queries {
            instance: instance.clone(),
            running: Arc::new(AtomicUsize::new(0)),
        });
        Self {
            startup: Arc::new(Startup {
                users,
                parameters,
                connections: connections.clone(),
                keys: RandomPidSecretKeyGenerator::default(),
            }),
            extended: Arc::new(Extended {
                queries: simple.clone(),
                parser: Arc::new(StatementParser { instance }),
            }),
            simple,
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
    }

    fn running(&self) -> usize {
        self.simple.running.load(Ordering::SeqCst)
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.simple.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.extended.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// Serves connections on `listener` until `shutdown`; then stops accepting, waits up to
/// `grace` for running statements to finish, and closes every connection.
pub(crate) async fn serve(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                let handlers = handlers.clone();
                connections.spawn(async move {
                    let _permit = permit;
                    if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                        tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
                    }
                });
            }
            Err(e) => crate::accept_failed("PostgreSQL", &e).await,
        }
    }
    drop(listener);
    let drained = async {
        while handlers.running() > 0 {
            #[allow(
                clippy::disallowed_methods,
                reason = "polls the running-statement count during the shutdown grace"
            )]
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            running = handlers.running(),
            "PostgreSQL statements still running at the shutdown timeout"
        );
    }
    connections.shutdown().await;
}

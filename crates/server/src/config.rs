//! The server's options: one TOML file (`--config FILE`), every key optional with a safe
//! default, sizes and durations human-readable; `mito server` flags override the file.
//!
//! ```toml
//! [http]
//! addr = "127.0.0.1:4000"    # where the HTTP API listens
//! max_body = "64MiB"         # largest request body, after gzip decoding (413 above)
//! read_timeout = "30s"       # to read a request's headers, and then its body (408 after)
//! max_connections = 1024     # open connections; more wait to be accepted
//!
//! [pg]
//! enabled = true             # the PostgreSQL wire protocol (psql, psycopg, Grafana)
//! addr = "127.0.0.1:4003"    # where it listens
//! max_connections = 256      # open connections; more wait to be accepted
//!
//! [auth]
//! users = "users.txt"        # users file (see `mito user add`); none: no authentication
//! insecure = false           # allow a non-loopback address without authentication
//!
//! [query]
//! timeout = "10m"            # a query running longer fails ("0s": no limit)
//! memory_limit = "4GiB"      # memory of the running queries together (default: RAM / 4)
//!
//! shutdown_timeout = "30s"   # on SIGTERM: time in-flight requests get to finish
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use snafu::{ResultExt, Snafu};
use store_api::config::ReadableSize;

/// What is wrong with the options.
#[derive(Debug, Snafu)]
pub enum ConfigError {
    /// The file could not be read.
    #[snafu(display("cannot read the config file {}: {source}", path.display()))]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[snafu(display("config file {}: {source}", path.display()))]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// What the parser said (with the line and the key).
        source: toml::de::Error,
    },
    /// A value is out of range, or the combination is unsafe.
    #[snafu(display("{reason}"))]
    Invalid {
        /// What is wrong.
        reason: String,
    },
}

/// Every option of `mito server`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The HTTP API.
    pub http: HttpConfig,
    /// The PostgreSQL wire protocol.
    pub pg: PgConfig,
    /// Who may connect.
    pub auth: AuthConfig,
    /// Limits on SQL queries.
    pub query: QueryConfig,
    /// The storage engine: write buffers, caches, flush and compaction (`[engine]`, the
    /// fields of `MitoConfig`, each with its default).
    pub engine: mito_engine::MitoConfig,
    /// On SIGTERM/SIGINT: how long in-flight requests get to finish before their connections
    /// are closed (the data is flushed either way).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            pg: PgConfig::default(),
            auth: AuthConfig::default(),
            query: QueryConfig::default(),
            engine: mito_engine::MitoConfig::default(),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// The HTTP API's options.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on (port 0: any free port, printed at start).
    pub addr: SocketAddr,
    /// Largest request body, after gzip decoding; bigger ones get 413.
    pub max_body: ReadableSize,
    /// Time to read a request's headers, and then its whole body; slower clients get 408
    /// or are disconnected.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 4000)),
            max_body: ReadableSize::mib(64),
            read_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// The PostgreSQL wire protocol's options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgConfig {
    /// Serve it at all.
    pub enabled: bool,
    /// Address to listen on (port 0: any free port, printed at start).
    pub addr: SocketAddr,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 4003)),
            max_connections: 256,
        }
    }
}

/// Authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The users file; `None`: every request is served without credentials.
    pub users: Option<PathBuf>,
    /// Serve a non-loopback address without authentication.
    pub insecure: bool,
}

/// Limits on queries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// A query running longer fails; zero: no limit.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Memory of the running queries together; `None`: a quarter of RAM.
    pub memory_limit: Option<ReadableSize>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            memory_limit: None,
        }
    }
}

impl ServerConfig {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).context(ReadConfigSnafu { path })?;
        toml::from_str(&text).context(ParseConfigSnafu { path })
    }

    /// Checks the values and refuses an unsafe combination: a non-loopback address with
    /// no users file, unless `insecure`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| InvalidSnafu { reason }.fail();
        if self.http.max_body.as_bytes() < 1024 {
            return invalid(format!(
                "http.max_body {} is below 1KiB",
                self.http.max_body
            ));
        }
        if self.http.read_timeout.is_zero() {
            return invalid("http.read_timeout must be above zero".into());
        }
        if self.http.max_connections == 0 {
            return invalid("http.max_connections must be at least 1".into());
        }
        if let Some(limit) = self.query.memory_limit
            && limit.as_bytes() < ReadableSize::mib(16).as_bytes()
        {
            return invalid(format!(
                "query.memory_limit {limit} is below the smallest, 16MiB"
            ));
        }
        if self.pg.enabled && self.pg.max_connections == 0 {
            return invalid("pg.max_connections must be at least 1".into());
        }
        let mut exposed = vec![self.http.addr];
        if self.pg.enabled {
            exposed.push(self.pg.addr);
        }
        for addr in exposed {
            if !addr.ip().is_loopback() && self.auth.users.is_none() && !self.auth.insecure {
                return invalid(format!(
                    "refusing to serve {addr} without authentication: give a users file \
                     (--users FILE, made with `mito user add`), listen on a loopback address, \
                     or pass --insecure",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_default_and_sizes_and_durations_read_as_people_write_them() {
        let c: ServerConfig = toml::from_str("").unwrap();
        assert_eq!(c, ServerConfig::default());
        let c: ServerConfig = toml::from_str(
            "shutdown_timeout = \"5s\"\n[http]\naddr = \"127.0.0.1:0\"\nmax_body = \"1MiB\"\nread_timeout = \"2m\"\n[query]\ntimeout = \"0s\"\nmemory_limit = \"1GiB\"\n",
        )
        .unwrap();
        assert_eq!(c.http.max_body, ReadableSize::mib(1));
        assert_eq!(c.http.read_timeout, Duration::from_secs(120));
        assert_eq!(c.query.timeout, Duration::ZERO);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        c.validate().unwrap();
        // The engine's section: only what it names changes.
        let c: ServerConfig = toml::from_str("[engine]\ncolumn_cache_size = \"128MiB\"\n").unwrap();
        assert_eq!(c.engine.column_cache_size, ReadableSize::mib(128));
        assert_eq!(
            c.engine.page_cache_size,
            mito_engine::MitoConfig::default().page_cache_size
        );
    }

    #[test]
    fn unknown_keys_and_unsafe_combinations_are_refused() {
        let e = toml::from_str::<ServerConfig>("[http]\nadress = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("adress"), "{e}");
        let e = toml::from_str::<ServerConfig>("[engine]\ncolumn_cache = \"1GiB\"\n").unwrap_err();
        assert!(e.to_string().contains("column_cache"), "{e}");
        let mut c = ServerConfig::default();
        c.http.addr = "0.0.0.0:4000".parse().unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("without authentication"), "{e}");
        c.auth.insecure = true;
        c.validate().unwrap();
        c.auth.insecure = false;
        c.auth.users = Some("users".into());
        c.validate().unwrap();
        c.http.max_body = ReadableSize(10);
        assert!(c.validate().is_err());
        // The PostgreSQL address counts as well.
        let mut c = ServerConfig::default();
        c.pg.addr = "0.0.0.0:4003".parse().unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("0.0.0.0:4003"), "{e}");
        c.pg.enabled = false;
        c.validate().unwrap();
    }
}

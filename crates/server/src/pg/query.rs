//! Queries over the PostgreSQL protocol: the simple protocol (`Query`, several statements
//! allowed) and the extended one (`Parse` / `Bind` / `Describe` / `Execute`, `$1`
//! parameters). A `SELECT` runs through the frontend as over HTTP (read-only, guarded, the
//! query timeout and memory pool); a prepared statement keeps its logical plan and each
//! `Execute` only binds, optimizes and runs it. `SET`, `SHOW`, `BEGIN`/`COMMIT`/`ROLLBACK`
//! are answered here: they are what drivers send at connect and around queries. Anything
//! else (writes, DDL) is refused with an error; writes go through the HTTP API.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use arrow_schema::Schema;
use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::{Expr, Set, Statement, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use frontend::Instance;
use frontend::query::Prepared;
use futures::{Sink, StreamExt, stream};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, METADATA_APPLICATION_NAME, METADATA_USER, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;

use super::compat::{self, no_rows};
use super::params;

/// A statement as parsed for the extended protocol.
#[derive(Debug, Clone)]
pub(crate) enum PgStatement {
    /// A query, planned with its placeholders.
    Query(Arc<Prepared>),
    /// Not a query: answered without the engine.
    Other(Arc<Statement>),
    /// A query over a catalog that is always empty: no rows, these (text) columns.
    NoRows(Arc<Vec<String>>),
}

/// A text column named `name`.
fn text_field(name: String) -> FieldInfo {
    FieldInfo::new(name, None, None, Type::TEXT, FieldFormat::Text)
}

/// An empty result with text columns `names`.
fn empty_rows(names: &[String]) -> Response {
    let fields = Arc::new(names.iter().cloned().map(text_field).collect::<Vec<_>>());
    Response::Query(QueryResponse::new(fields, stream::empty()))
}

/// The setting a `SHOW` names, as `SET` stores it (`TIME ZONE` is `timezone`).
fn setting_name(variable: &[datafusion::sql::sqlparser::ast::Ident]) -> String {
    let name = variable
        .iter()
        .map(|i| i.value.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    if name == "time zone" {
        "timezone".to_string()
    } else {
        name
    }
}

/// Runs the queries of every connection.
pub(crate) struct Queries {
    pub(crate) instance: Arc<Instance>,
    /// Statements running now, over every connection (the shutdown waits for them).
    pub(crate) running: Arc<AtomicUsize>,
}

/// Counts a running statement while alive.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's `SET` values.
#[derive(Default)]
struct Settings(Mutex<HashMap<String, String>>);

/// A setting's value on `client`'s connection: what it `SET`, else the default.
fn setting(client: &dyn ClientInfo, name: &str) -> Option<String> {
    let set = client.session_extensions().get::<Settings>().and_then(|s| {
        s.0.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    });
    set.or_else(|| default_setting(name, client))
}

/// [`compat::rewrite`] of `statement` for `client`'s connection (its user and settings).
fn rewrite(client: &(dyn ClientInfo + Sync), statement: &mut Statement) -> PgWireResult<bool> {
    let user = client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default();
    let lookup = |name: &str| setting(client, name);
    compat::rewrite(
        statement,
        &compat::Session {
            user: &user,
            setting: &lookup,
        },
    )
}

/// What `SHOW` answers for settings a connection has not set.
fn default_setting(name: &str, client: &dyn ClientInfo) -> Option<String> {
    let v = match name {
        "server_version" => "16.0 (Mito)",
        "server_version_num" => "160000",
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "datestyle" => "ISO, MDY",
        "timezone" => "UTC",
        "intervalstyle" => "postgres",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "search_path" => "public",
        "max_identifier_length" => "63",
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
        "extra_float_digits" => "1",
        "application_name" => {
            return Some(
                client
                    .metadata()
                    .get(METADATA_APPLICATION_NAME)
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        _ => return None,
    };
    Some(v.to_string())
}

pub(crate) fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// A frontend error as PostgreSQL reports it (SQLSTATE by kind).
fn query_error(e: &frontend::Error) -> PgWireError {
    let code = match e {
        frontend::Error::Sql { source } => df_code(source),
        frontend::Error::TableNotFound { .. } => "42P01",
        _ => "XX000",
    };
    user_error(code, e.to_string())
}

fn df_code(e: &DataFusionError) -> &'static str {
    match e {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::Plan(m) if m.contains("not found") => "42P01",
        DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => "42000",
        DataFusionError::ResourcesExhausted(m) if m.contains("timeout") => "57014",
        DataFusionError::ResourcesExhausted(_) => "53000",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ArrowError(e, _)
            if matches!(e.as_ref(), arrow_schema::ArrowError::DivideByZero) =>
        {
            "22012"
        }
        DataFusionError::Context(_, inner) => df_code(inner),
        _ => "XX000",
    }
}

/// Parses a query string into statements (PostgreSQL syntax).
fn parse(sql: &str) -> PgWireResult<Vec<Statement>> {
    Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| user_error("42601", e.to_string()))
}

/// The result columns' formats, one per column; a bind whose format codes do not match the
/// columns (a count other than 0, 1 or the number of columns) is refused.
fn column_formats(format: &Format, columns: usize) -> PgWireResult<Format> {
    match format {
        Format::Individual(codes) if codes.len() != columns => Err(user_error(
            "08P01",
            format!("{} result format codes for {columns} columns", codes.len()),
        )),
        other => Ok(other.clone()),
    }
}

/// The row description of `schema`.
fn fields(schema: &Schema, format: &Format) -> PgWireResult<Arc<Vec<FieldInfo>>> {
    let format = column_formats(format, schema.fields().len())?;
    Ok(Arc::new(arrow_schema_to_pg_fields(schema, &format, None)?))
}

/// A query's result as rows, streamed: each batch is encoded as it arrives. The statement
/// counts as running until the stream is dropped.
fn query_response(
    fields: Arc<Vec<FieldInfo>>,
    batches: SendableRecordBatchStream,
    running: Running,
) -> QueryResponse {
    let encode = fields.clone();
    let rows = batches
        .map(move |batch: Result<RecordBatch, DataFusionError>| {
            let _running = &running;
            let out: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(batch) => encode_recordbatch(encode.clone(), batch),
                Err(e) => Box::new(std::iter::once(Err(user_error(df_code(&e), e.to_string())))),
            };
            stream::iter(out)
        })
        .flatten();
    QueryResponse::new(fields, rows)
}

/// One text column `name` holding one row, `value` (`SHOW`).
fn text_row(name: String, value: String) -> PgWireResult<Response> {
    let fields = Arc::new(vec![text_field(name)]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter([Ok(row)]),
    )))
}

/// The text of a `SET` value: a literal's value, an identifier's name.
fn setting_value(values: &[Expr]) -> String {
    values
        .iter()
        .map(|v| match v {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            Expr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Queries {
    /// Answers a statement that is not a query.
    fn other(&self, client: &dyn ClientInfo, statement: &Statement) -> PgWireResult<Response> {
        match statement {
            Statement::Set(set) => {
                let (name, value) = match set {
                    Set::SingleAssignment {
                        variable, values, ..
                    } => (variable.to_string(), setting_value(values)),
                    Set::SetTimeZone { value, .. } => (
                        "timezone".into(),
                        setting_value(std::slice::from_ref(value)),
                    ),
                    // Other forms (SET ROLE, SET TRANSACTION, ...) change nothing here.
                    _ => return Ok(Response::Execution(Tag::new("SET"))),
                };
                let settings = client
                    .session_extensions()
                    .get_or_insert_with(Settings::default);
                let mut map = settings.0.lock().unwrap_or_else(|p| p.into_inner());
                map.insert(name.to_lowercase(), value);
                Ok(Response::Execution(Tag::new("SET")))
            }
            Statement::ShowVariable { variable } => {
                let name = setting_name(variable);
                let value = setting(client, &name).ok_or_else(|| {
                    user_error(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                text_row(name, value)
            }
            Statement::StartTransaction { .. } => Ok(Response::TransactionStart(Tag::new("BEGIN"))),
            Statement::Commit { .. } => Ok(Response::TransactionEnd(Tag::new("COMMIT"))),
            Statement::Rollback { .. } => Ok(Response::TransactionEnd(Tag::new("ROLLBACK"))),
            Statement::Discard { .. } => Ok(Response::Execution(Tag::new("DISCARD ALL"))),
            Statement::Deallocate { .. } => Ok(Response::Execution(Tag::new("DEALLOCATE"))),
            other => Err(user_error(
                "25006",
                format!(
                    "only queries run over the PostgreSQL protocol (SELECT, SHOW, SET, EXPLAIN); \
                     write with the HTTP API. Refused: {}",
                    first_words(&other.to_string())
                ),
            )),
        }
    }

    /// Runs one query statement with the simple protocol.
    async fn query(&self, sql: &str) -> PgWireResult<Response> {
        let running = Running::new(&self.running);
        let (schema, batches) = frontend::query::query_stream(&self.instance, sql)
            .await
            .map_err(|e| query_error(&e))?;
        let fields = fields(&schema, &Format::UnifiedText)?;
        Ok(Response::Query(query_response(fields, batches, running)))
    }
}

/// The start of a statement, for an error message.
fn first_words(sql: &str) -> String {
    let mut out: String = sql.chars().take(60).collect();
    if out.len() < sql.len() {
        out.push_str("...");
    }
    out
}

/// Whether a parsed statement is run by the engine (else answered by [`Queries::other`]).
fn is_query(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Query(_)
            | Statement::Explain { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
    )
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = parse(query)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let single = statements.len() == 1;
        let mut out = Vec::new();
        for mut statement in statements {
            let response = if is_query(&statement) {
                // One statement runs as sent (its text is the plan cache's key); several, or
                // one rewritten by `compat`, as printed back by the parser.
                let rewritten = match rewrite(client, &mut statement) {
                    Ok(r) => r,
                    Err(PgWireError::UserError(info)) => {
                        out.push(Response::Error(info));
                        break;
                    }
                    Err(e) => return Err(e),
                };
                if let Some(columns) = no_rows(&statement) {
                    Ok(empty_rows(&columns))
                } else {
                    let text = if single && !rewritten {
                        query.to_string()
                    } else {
                        statement.to_string()
                    };
                    self.query(&text).await
                }
            } else {
                self.other(client, &statement)
            };
            match response {
                Ok(r) => out.push(r),
                // PostgreSQL stops a multi-statement string at its first error.
                Err(PgWireError::UserError(info)) => {
                    out.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Parses statements for the extended protocol (one statement per `Parse`).
pub(crate) struct StatementParser {
    pub(crate) instance: Arc<Instance>,
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = parse(sql)?;
        if statements.len() > 1 {
            return Err(user_error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(mut statement) = statements.pop() else {
            return Ok(None);
        };
        if !is_query(&statement) {
            return Ok(Some(PgStatement::Other(Arc::new(statement))));
        }
        let changed = rewrite(client, &mut statement)?;
        if let Some(columns) = no_rows(&statement) {
            return Ok(Some(PgStatement::NoRows(Arc::new(columns))));
        }
        let rewritten = changed.then(|| statement.to_string());
        let sql = rewritten.as_deref().unwrap_or(sql);
        let prepared = frontend::query::prepare(&self.instance, sql)
            .await
            .map_err(|e| query_error(&e))?;
        Ok(Some(PgStatement::Query(Arc::new(prepared))))
    }

    fn get_parameter_types(&self, statement: &Self::Statement) -> PgWireResult<Vec<Type>> {
        match statement {
            PgStatement::Query(p) => Ok(p
                .params()
                .iter()
                .map(|t| {
                    t.as_ref()
                        .and_then(|t| into_pg_type(t).ok())
                        .unwrap_or(Type::UNKNOWN)
                })
                .collect()),
            PgStatement::Other(_) | PgStatement::NoRows(_) => Ok(Vec::new()),
        }
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match statement {
            PgStatement::Query(p) => {
                let f = fields(p.schema(), format.unwrap_or(&Format::UnifiedText))?;
                Ok(f.as_ref().clone())
            }
            PgStatement::NoRows(columns) => Ok(columns.iter().cloned().map(text_field).collect()),
            PgStatement::Other(s) => Ok(match s.as_ref() {
                Statement::ShowVariable { variable } => vec![text_field(setting_name(variable))],
                _ => Vec::new(),
            }),
        }
    }
}

/// The extended protocol's handler.
pub(crate) struct Extended {
    pub(crate) queries: Arc<Queries>,
    pub(crate) parser: Arc<StatementParser>,
}

#[async_trait]
impl ExtendedQueryHandler for Extended {
    type Statement = PgStatement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = match &portal.statement.statement {
            PgStatement::Query(p) => p.clone(),
            PgStatement::Other(s) => return self.queries.other(client, s),
            PgStatement::NoRows(columns) => return Ok(empty_rows(columns)),
        };
        let values = params::decode(
            prepared.params(),
            &portal.statement.parameter_types,
            &portal.parameter_format,
            &portal.parameters,
        )?;
        let running = Running::new(&self.queries.running);
        let (schema, batches) = frontend::query::execute(&self.queries.instance, &prepared, values)
            .await
            .map_err(|e| query_error(&e))?;
        let fields = fields(&schema, &portal.result_column_format)?;
        Ok(Response::Query(query_response(fields, batches, running)))
    }
}

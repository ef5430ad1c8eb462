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
use pgwire::api::{ClientInfo, ClientPortalStore, METADATA_APPLICATION_NAME, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;

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

/// The columns of a query over an always-empty catalog (see [`over_empty_catalog`]), as
/// PostgreSQL names them; `None` if it is not one (or selects `*`).
fn no_rows(statement: &Statement) -> Option<Vec<String>> {
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr};
    let Statement::Query(query) = statement else {
        return None;
    };
    if !over_empty_catalog(query) {
        return None;
    }
    let mut body = query.body.as_ref();
    let select = loop {
        match body {
            SetExpr::Select(select) => break select,
            SetExpr::SetOperation { left, .. } => body = left,
            SetExpr::Query(q) => body = &q.body,
            _ => return None,
        }
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.clone()),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                parts.last().map(|i| i.value.clone())
            }
            SelectItem::UnnamedExpr(_) => Some("?column?".to_string()),
            _ => None,
        })
        .collect()
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
                let set = client.session_extensions().get::<Settings>().and_then(|s| {
                    s.0.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&name)
                        .cloned()
                });
                let value = set
                    .or_else(|| default_setting(&name, client))
                    .ok_or_else(|| {
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

/// Rewrites what PostgreSQL clients' catalog queries use and DataFusion does not know:
/// `OPERATOR(pg_catalog.~)` (the plain operator), `COLLATE pg_catalog.default` (dropped) and
/// casts to `regclass`/`regtype`/`oid`-like types (text; Mito's oids are only compared).
/// A scalar subquery or `EXISTS` over a catalog that is always empty in Mito (see
/// [`over_empty_catalog`]) becomes its value over no rows, NULL or false: PostgreSQL
/// clients' catalog queries correlate such subqueries in ways DataFusion cannot plan.
/// Returns whether anything changed.
fn pg_compat(statement: &mut Statement) -> bool {
    use datafusion::sql::sqlparser::ast::{
        BinaryOperator, DataType as SqlType, Ident, visit_expressions_mut,
    };
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |e| {
        match e {
            Expr::BinaryOp { op, .. } => {
                if let BinaryOperator::PGCustomBinaryOperator(parts) = op
                    && let Some(plain) = parts.last().and_then(|p| plain_operator(p))
                {
                    *op = plain;
                    changed = true;
                }
            }
            Expr::Collate { expr, .. } => {
                let inner = std::mem::replace(expr.as_mut(), Expr::Identifier(Ident::new("_")));
                *e = inner;
                changed = true;
            }
            Expr::Subquery(query) if over_empty_catalog(query) => {
                *e = Expr::Value(Value::Null.into());
                changed = true;
            }
            Expr::Exists { subquery, negated } if over_empty_catalog(subquery) => {
                *e = Expr::Value(Value::Boolean(*negated).into());
                changed = true;
            }
            Expr::Cast { data_type, .. } => {
                if let SqlType::Custom(name, _) = data_type {
                    let last = name.0.last().map(|p| p.to_string().to_lowercase());
                    if matches!(
                        last.as_deref(),
                        Some(
                            "regclass"
                                | "regtype"
                                | "regproc"
                                | "regnamespace"
                                | "regrole"
                                | "oid"
                                | "text"
                                | "name"
                        )
                    ) {
                        *data_type = SqlType::Text;
                        changed = true;
                    }
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    changed
}

/// Whether `query` returns no rows because it reads a catalog that is always empty in Mito,
/// named with its schema (`pg_catalog.pg_attrdef`, `pg_catalog.pg_inherits`, ...): see
/// [`set_is_empty`] and [`select_is_empty`].
fn over_empty_catalog(query: &datafusion::sql::sqlparser::ast::Query) -> bool {
    set_is_empty(&query.body)
}

/// Whether a query body returns no rows because of [`select_is_empty`]: a `SELECT`, or a set
/// operation whose left side is empty (and, for `UNION`, its right side too).
fn set_is_empty(body: &datafusion::sql::sqlparser::ast::SetExpr) -> bool {
    use datafusion::sql::sqlparser::ast::{SetExpr, SetOperator};
    match body {
        SetExpr::Select(select) => select_is_empty(select),
        SetExpr::Query(q) => set_is_empty(&q.body),
        SetExpr::SetOperation {
            op, left, right, ..
        } => set_is_empty(left) && (*op != SetOperator::Union || set_is_empty(right)),
        _ => false,
    }
}

/// Whether a `SELECT` returns no rows: it inner-joins an always-empty catalog (comma joins
/// included) and aggregates nothing.
fn select_is_empty(select: &datafusion::sql::sqlparser::ast::Select) -> bool {
    use datafusion::sql::sqlparser::ast::{JoinOperator, TableFactor};
    // An aggregate over no rows is one row (`count(*)` is 0); aggregates inside subqueries
    // of the select list do not count.
    let aggregate = select.projection.iter().any(|p| match p {
        datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(e)
        | datafusion::sql::sqlparser::ast::SelectItem::ExprWithAlias { expr: e, .. } => {
            matches!(e, Expr::Function(f) if {
                let name = f.name.to_string().to_lowercase();
                let name = name.rsplit('.').next().unwrap_or_default().to_string();
                matches!(name.as_str(), "count" | "sum" | "max" | "min" | "avg" | "array_agg"
                    | "string_agg" | "bool_and" | "bool_or" | "every" | "json_agg")
            })
        }
        _ => false,
    });
    if aggregate || select.having.is_some() {
        return false;
    }
    let empty = |f: &TableFactor| match f {
        TableFactor::Table { name, .. } => {
            let parts: Vec<String> = name.0.iter().map(|p| p.to_string()).collect();
            match parts.as_slice() {
                [schema, table] => {
                    schema == "pg_catalog" && frontend::query::is_empty_catalog(table)
                }
                _ => false,
            }
        }
        _ => false,
    };
    // Only inner joins: an outer join keeps the other side's rows.
    let inner = select.from.iter().flat_map(|t| &t.joins).all(|j| {
        matches!(
            j.join_operator,
            JoinOperator::Inner(_) | JoinOperator::Join(_) | JoinOperator::CrossJoin(_)
        )
    });
    inner
        && select
            .from
            .iter()
            .any(|t| empty(&t.relation) || t.joins.iter().any(|j| empty(&j.relation)))
}

fn plain_operator(op: &str) -> Option<datafusion::sql::sqlparser::ast::BinaryOperator> {
    use datafusion::sql::sqlparser::ast::BinaryOperator as B;
    Some(match op {
        "~" => B::PGRegexMatch,
        "~*" => B::PGRegexIMatch,
        "!~" => B::PGRegexNotMatch,
        "!~*" => B::PGRegexNotIMatch,
        "~~" => B::PGLikeMatch,
        "=" => B::Eq,
        "<>" => B::NotEq,
        "<" => B::Lt,
        ">" => B::Gt,
        "<=" => B::LtEq,
        ">=" => B::GtEq,
        "||" => B::StringConcat,
        _ => return None,
    })
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
                // one rewritten by `pg_compat`, as printed back by the parser.
                let rewritten = pg_compat(&mut statement);
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
        _client: &C,
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
        let changed = pg_compat(&mut statement);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_queries_are_rewritten_into_what_datafusion_plans() {
        let sql = "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(cpu)$' COLLATE pg_catalog.default AND c.reloftype::pg_catalog.regtype::pg_catalog.text = ''";
        let mut s = parse(sql).unwrap().remove(0);
        assert!(pg_compat(&mut s));
        let text = s.to_string();
        assert!(
            !text.contains("OPERATOR") && !text.contains("COLLATE") && !text.contains("regtype"),
            "{text}"
        );
        let mut plain = parse("SELECT 1").unwrap().remove(0);
        assert!(!pg_compat(&mut plain));
        // Subqueries over always-empty catalogs are their value over no rows.
        let mut s = parse(
            "SELECT a.attname, (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) \
             FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid), \
             EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = a.attrelid) \
             FROM pg_catalog.pg_attribute a",
        )
        .unwrap()
        .remove(0);
        assert!(pg_compat(&mut s));
        assert_eq!(
            s.to_string(),
            "SELECT a.attname, NULL, false FROM pg_catalog.pg_attribute a"
        );
    }

    #[test]
    fn queries_over_always_empty_catalogs_answer_no_rows_with_their_columns() {
        let cols = |sql: &str| no_rows(&parse(sql).unwrap().remove(0));
        assert_eq!(
            cols("SELECT pol.polname, pol.polcmd AS cmd, 1 FROM pg_catalog.pg_policy pol"),
            Some(vec!["polname".into(), "cmd".into(), "?column?".into()])
        );
        assert_eq!(
            cols(
                "SELECT pubname FROM pg_catalog.pg_publication p JOIN pg_catalog.pg_class c \
                  ON true UNION SELECT pubname FROM pg_catalog.pg_publication"
            ),
            Some(vec!["pubname".into()])
        );
        // Not empty: an aggregate is one row, an outer join keeps the other side, a user
        // table of the same name is not the catalog, a UNION with a non-empty side.
        assert_eq!(cols("SELECT count(*) FROM pg_catalog.pg_policy"), None);
        assert_eq!(
            cols(
                "SELECT c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_inherits i ON true"
            ),
            None
        );
        assert_eq!(cols("SELECT polname FROM pg_policy"), None);
        assert_eq!(
            cols(
                "SELECT pubname FROM pg_catalog.pg_publication UNION SELECT relname FROM pg_catalog.pg_class"
            ),
            None
        );
    }
}

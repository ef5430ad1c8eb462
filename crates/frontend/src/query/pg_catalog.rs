//! The part of PostgreSQL's `pg_catalog` that clients read to list tables and columns:
//! `psql`'s `\dt`, drivers' and dashboards' metadata queries. Built from the session's
//! tables when the session is (so it is as current as the tables), in the `pg_catalog`
//! schema, with the functions those queries call (`pg_table_is_visible`, `pg_get_userbyid`,
//! `format_type`, ...), each also under its `pg_catalog.` name. Catalogs Mito has nothing for
//! (constraints, policies, inheritance, ...) are there and empty, which is their true content.
//!
//! Object ids: the namespaces `pg_catalog` (11) and `public` (2200) as in PostgreSQL, tables
//! from 16384 in name order (stable while the tables are), types with PostgreSQL's own oids.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::{ScalarValue, TableReference};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use snafu::ResultExt;

use crate::error::{Result, SqlSnafu};

use super::session::Registered;

/// The owner every object has.
const OWNER: i64 = 10;
const OWNER_NAME: &str = "mito";
const PG_CATALOG: i64 = 11;
const PUBLIC: i64 = 2200;
const FIRST_TABLE: i64 = 16384;
const HEAP: i64 = 2;

/// The PostgreSQL type oid of an Arrow type (one of [`TYPES`]).
fn pg_type(t: &DataType) -> i64 {
    match t {
        DataType::Boolean => 16,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => 21,
        DataType::Int32 | DataType::UInt16 => 23,
        DataType::Int64 | DataType::UInt32 => 20,
        DataType::UInt64 => 1700,
        DataType::Float32 => 700,
        DataType::Float64 => 701,
        DataType::Timestamp(_, Some(_)) => 1184,
        DataType::Timestamp(_, None) => 1114,
        DataType::Date32 | DataType::Date64 => 1082,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => 17,
        DataType::Dictionary(_, v) => pg_type(v),
        _ => 25,
    }
}

/// Every type [`pg_type`] gives: (oid, `pg_type.typname`, what `format_type` prints).
const TYPES: &[(i64, &str, &str)] = &[
    (16, "bool", "boolean"),
    (17, "bytea", "bytea"),
    (20, "int8", "bigint"),
    (21, "int2", "smallint"),
    (23, "int4", "integer"),
    (25, "text", "text"),
    (700, "float4", "real"),
    (701, "float8", "double precision"),
    (1082, "date", "date"),
    (1114, "timestamp", "timestamp without time zone"),
    (1184, "timestamptz", "timestamp with time zone"),
    (1700, "numeric", "numeric"),
];

/// The catalogs that are always empty in Mito, and their (text) columns.
const EMPTY: &[(&str, &[&str])] = &[
    ("pg_index", &["indexrelid", "indrelid", "indisprimary"]),
    ("pg_constraint", &["oid", "conname", "conrelid", "contype"]),
    ("pg_inherits", &["inhrelid", "inhparent", "inhseqno"]),
    ("pg_policy", &["polname", "polrelid"]),
    ("pg_trigger", &["tgname", "tgrelid"]),
    ("pg_attrdef", &["adrelid", "adnum", "adbin"]),
    (
        "pg_description",
        &["objoid", "classoid", "objsubid", "description"],
    ),
    ("pg_statistic_ext", &["oid", "stxname", "stxrelid"]),
    ("pg_publication", &["oid", "pubname"]),
    ("pg_collation", &["oid", "collname"]),
    (
        "pg_extension",
        &["oid", "extname", "extowner", "extnamespace", "extversion"],
    ),
];

/// The catalogs with rows (the always-empty ones are [`EMPTY`]).
const FILLED: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_type",
    "pg_am",
    "pg_database",
    "pg_roles",
];

/// The schema of the PostgreSQL-flavoured `information_schema` views (`tables`, `columns`,
/// `schemata`): the PostgreSQL server reads `information_schema.X` from here (DataFusion's
/// own `information_schema` names Arrow types and has no `udt_name`).
pub const PG_INFORMATION_SCHEMA: &str = "pg_information_schema";

/// The views of [`PG_INFORMATION_SCHEMA`].
const INFORMATION_VIEWS: &[&str] = &["tables", "columns", "schemata"];

/// Whether `pg_catalog.<name>` is one of the catalogs that are always empty (constraints,
/// policies, inheritance, ...): a client's subquery over one returns no rows.
pub fn is_empty_catalog(name: &str) -> bool {
    EMPTY.iter().any(|(t, _)| *t == name)
}

/// Whether `pg_catalog.<name>` exists (PostgreSQL finds these by their bare names too).
pub fn is_catalog(name: &str) -> bool {
    FILLED.contains(&name) || is_empty_catalog(name)
}

/// Whether [`PG_INFORMATION_SCHEMA`] has a view `name` (`tables`, `columns`, `schemata`).
pub fn is_information_view(name: &str) -> bool {
    INFORMATION_VIEWS.contains(&name)
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> DfResult<RecordBatch> {
    let schema = Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .map_err(DataFusionError::from)
}

fn ints(v: impl IntoIterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(v))
}

fn texts<S: AsRef<str>>(v: impl IntoIterator<Item = S>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

fn flags(n: usize, value: bool) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![value; n]))
}

fn register(ctx: &SessionContext, name: &str, batch: RecordBatch) -> DfResult<()> {
    register_in(ctx, "pg_catalog", name, batch)
}

fn register_in(ctx: &SessionContext, schema: &str, name: &str, batch: RecordBatch) -> DfResult<()> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
    ctx.register_table(TableReference::partial(schema, name), Arc::new(table))?;
    Ok(())
}

/// An empty catalog with these (text) columns.
fn empty(ctx: &SessionContext, name: &str, columns: &[&str]) -> DfResult<()> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    register(ctx, name, RecordBatch::new_empty(schema))
}

/// Adds `pg_catalog` to `ctx`, describing `tables`.
pub(super) fn install(ctx: &SessionContext, tables: &[Registered]) -> Result<()> {
    build(ctx, tables).context(SqlSnafu)
}

fn build(ctx: &SessionContext, tables: &[Registered]) -> DfResult<()> {
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| DataFusionError::Plan("the session has no default catalog".into()))?;
    catalog.register_schema("pg_catalog", Arc::new(MemorySchemaProvider::new()))?;
    catalog.register_schema(PG_INFORMATION_SCHEMA, Arc::new(MemorySchemaProvider::new()))?;
    let mut sorted: Vec<&Registered> = tables.iter().collect();
    sorted.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let n = sorted.len();
    let oids: Vec<i64> = (0..n as i64).map(|i| FIRST_TABLE + i).collect();

    register(
        ctx,
        "pg_namespace",
        batch(vec![
            ("oid", ints([PG_CATALOG, PUBLIC, 13000])),
            (
                "nspname",
                texts(["pg_catalog", "public", "information_schema"]),
            ),
            ("nspowner", ints([OWNER; 3])),
        ])?,
    )?;
    register(
        ctx,
        "pg_class",
        batch(vec![
            ("oid", ints(oids.iter().copied())),
            ("relname", texts(sorted.iter().map(|t| t.0.name.as_str()))),
            ("relnamespace", ints(vec![PUBLIC; n])),
            ("relkind", texts(vec!["r"; n])),
            ("relowner", ints(vec![OWNER; n])),
            ("relam", ints(vec![HEAP; n])),
            ("reltablespace", ints(vec![0; n])),
            ("reltoastrelid", ints(vec![0; n])),
            ("reloftype", ints(vec![0; n])),
            ("relchecks", ints(vec![0; n])),
            (
                "relnatts",
                ints(sorted.iter().map(|t| t.2.schema().fields().len() as i64)),
            ),
            ("relhasindex", flags(n, false)),
            ("relhasrules", flags(n, false)),
            ("relhastriggers", flags(n, false)),
            ("relhassubclass", flags(n, false)),
            ("relrowsecurity", flags(n, false)),
            ("relforcerowsecurity", flags(n, false)),
            ("relispartition", flags(n, false)),
            ("relpersistence", texts(vec!["p"; n])),
            ("relreplident", texts(vec!["d"; n])),
        ])?,
    )?;
    let (mut rel, mut name, mut ty, mut num, mut notnull) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (t, oid) in sorted.iter().zip(&oids) {
        for (i, f) in t.2.schema().fields().iter().enumerate() {
            rel.push(*oid);
            name.push(f.name().clone());
            ty.push(pg_type(f.data_type()));
            num.push(i as i64 + 1);
            notnull.push(!f.is_nullable());
        }
    }
    let m = rel.len();
    register(
        ctx,
        "pg_attribute",
        batch(vec![
            ("attrelid", ints(rel)),
            ("attname", texts(name)),
            ("atttypid", ints(ty)),
            ("attnum", ints(num)),
            ("atttypmod", ints(vec![-1; m])),
            (
                "attnotnull",
                Arc::new(BooleanArray::from(notnull)) as ArrayRef,
            ),
            ("attisdropped", flags(m, false)),
            ("atthasdef", flags(m, false)),
            ("attcollation", ints(vec![0; m])),
            ("attidentity", texts(vec![""; m])),
            ("attgenerated", texts(vec![""; m])),
        ])?,
    )?;
    register(
        ctx,
        "pg_type",
        batch(vec![
            ("oid", ints(TYPES.iter().map(|t| t.0))),
            ("typname", texts(TYPES.iter().map(|t| t.1))),
            ("typnamespace", ints(vec![PG_CATALOG; TYPES.len()])),
            ("typcollation", ints(vec![0; TYPES.len()])),
        ])?,
    )?;
    register(
        ctx,
        "pg_am",
        batch(vec![
            ("oid", ints([HEAP])),
            ("amname", texts(["heap"])),
            ("amtype", texts(["t"])),
        ])?,
    )?;
    register(
        ctx,
        "pg_database",
        batch(vec![
            ("oid", ints([1])),
            ("datname", texts([OWNER_NAME])),
            ("datdba", ints([OWNER])),
        ])?,
    )?;
    register(
        ctx,
        "pg_roles",
        batch(vec![
            ("oid", ints([OWNER])),
            ("rolname", texts([OWNER_NAME])),
        ])?,
    )?;
    for (table, columns) in EMPTY {
        empty(ctx, table, columns)?;
    }
    information_schema(ctx, &sorted)?;
    for udf in functions() {
        ctx.register_udf(udf);
    }
    Ok(())
}

/// The PostgreSQL-flavoured `information_schema.tables`, `.columns` and `.schemata` of
/// `tables` (in name order): PostgreSQL's type names in `data_type` and `udt_name`, which
/// dashboards read to find time and value columns.
fn information_schema(ctx: &SessionContext, tables: &[&Registered]) -> DfResult<()> {
    let view = |name: &str, batch| register_in(ctx, PG_INFORMATION_SCHEMA, name, batch);
    let n = tables.len();
    view(
        "tables",
        batch(vec![
            ("table_catalog", texts(vec![OWNER_NAME; n])),
            ("table_schema", texts(vec!["public"; n])),
            (
                "table_name",
                texts(tables.iter().map(|t| t.0.name.as_str())),
            ),
            ("table_type", texts(vec!["BASE TABLE"; n])),
            ("is_insertable_into", texts(vec!["NO"; n])),
        ])?,
    )?;
    let (mut table, mut column, mut position, mut nullable, mut data_type, mut udt) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for t in tables {
        for (i, f) in t.2.schema().fields().iter().enumerate() {
            let oid = pg_type(f.data_type());
            let ty = TYPES.iter().find(|t| t.0 == oid);
            table.push(t.0.name.as_str());
            column.push(f.name().as_str());
            position.push(i as i64 + 1);
            nullable.push(if f.is_nullable() { "YES" } else { "NO" });
            data_type.push(ty.map_or("text", |t| t.2));
            udt.push(ty.map_or("text", |t| t.1));
        }
    }
    let m = table.len();
    view(
        "columns",
        batch(vec![
            ("table_catalog", texts(vec![OWNER_NAME; m])),
            ("table_schema", texts(vec!["public"; m])),
            ("table_name", texts(table)),
            ("column_name", texts(column)),
            ("ordinal_position", ints(position)),
            (
                "column_default",
                Arc::new(StringArray::new_null(m)) as ArrayRef,
            ),
            ("is_nullable", texts(nullable)),
            ("data_type", texts(data_type)),
            ("udt_catalog", texts(vec![OWNER_NAME; m])),
            ("udt_schema", texts(vec!["pg_catalog"; m])),
            ("udt_name", texts(udt)),
        ])?,
    )?;
    view(
        "schemata",
        batch(vec![
            ("catalog_name", texts([OWNER_NAME; 3])),
            (
                "schema_name",
                texts(["pg_catalog", "public", "information_schema"]),
            ),
            ("schema_owner", texts([OWNER_NAME; 3])),
        ])?,
    )
}

/// A function of constant result over `args` arguments, named `qualified`
/// (`pg_catalog.NAME`) and `NAME`.
fn constant(qualified: &'static str, args: Vec<DataType>, value: ScalarValue) -> ScalarUDF {
    let ret = value.data_type();
    let name = qualified.strip_prefix("pg_catalog.").unwrap_or(qualified);
    let f = create_udf(
        name,
        args,
        ret,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(value.clone()))),
    );
    f.with_aliases([qualified])
}

/// A text function of arguments of types `args`, named `qualified` (`pg_catalog.NAME`) and
/// `NAME`, whose values `f` makes from the first argument's array (the others are accepted
/// and unused, as `format_type`'s type modifier).
fn text_function(
    qualified: &'static str,
    args: Vec<DataType>,
    f: fn(&ArrayRef) -> DfResult<StringArray>,
) -> ScalarUDF {
    let name = qualified.strip_prefix("pg_catalog.").unwrap_or(qualified);
    create_udf(
        name,
        args,
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let values = match args.first() {
                Some(a) => a.to_array(1)?,
                None => return Err(DataFusionError::Plan(format!("{name} takes an argument"))),
            };
            Ok(ColumnarValue::Array(Arc::new(f(&values)?)))
        }),
    )
    .with_aliases([qualified])
}

fn functions() -> Vec<ScalarUDF> {
    let format_type = text_function(
        "pg_catalog.format_type",
        vec![DataType::Int64, DataType::Int64],
        |oids| {
            let oids = oids
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| DataFusionError::Plan("format_type takes an oid".into()))?;
            Ok(oids
                .iter()
                .map(|o| o.map(|o| TYPES.iter().find(|t| t.0 == o).map_or("unknown", |t| t.2)))
                .collect())
        },
    );
    let quote_ident = text_function("pg_catalog.quote_ident", vec![DataType::Utf8], |values| {
        let values = values
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| DataFusionError::Plan("quote_ident takes text".into()))?;
        Ok(values.iter().map(|v| v.map(quote_ident)).collect())
    });
    vec![
        constant(
            "pg_catalog.pg_get_userbyid",
            vec![DataType::Int64],
            ScalarValue::Utf8(Some(OWNER_NAME.into())),
        ),
        constant(
            "pg_catalog.pg_table_is_visible",
            vec![DataType::Int64],
            ScalarValue::Boolean(Some(true)),
        ),
        constant(
            "pg_catalog.current_schema",
            vec![],
            ScalarValue::Utf8(Some("public".into())),
        ),
        constant(
            "pg_catalog.current_database",
            vec![],
            ScalarValue::Utf8(Some(OWNER_NAME.into())),
        ),
        constant(
            "pg_catalog.current_user",
            vec![],
            ScalarValue::Utf8(Some(OWNER_NAME.into())),
        ),
        constant(
            "pg_catalog.obj_description",
            vec![DataType::Int64, DataType::Utf8],
            ScalarValue::Utf8(None),
        ),
        constant(
            "pg_catalog.col_description",
            vec![DataType::Int64, DataType::Int64],
            ScalarValue::Utf8(None),
        ),
        // Over the (empty, text-typed) pg_attrdef: there are no column defaults.
        constant(
            "pg_catalog.pg_get_expr",
            vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
            ScalarValue::Utf8(None),
        ),
        format_type,
        quote_ident,
    ]
}

/// `name` as PostgreSQL's `quote_ident` gives it: as is when it is a plain lower-case
/// identifier, else in double quotes (inner quotes doubled). Reserved words are quoted too.
pub fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// PostgreSQL's reserved key words (its documentation's appendix C), which `quote_ident`
/// quotes.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "system_user",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_functions_answer_as_postgresql_does() {
        let ctx = SessionContext::new();
        for udf in functions() {
            ctx.register_udf(udf);
        }
        let batches = ctx
            .sql(
                "SELECT format_type(701, -1), pg_catalog.format_type(1114, -1), \
                 quote_ident('Cpu'), pg_catalog.quote_ident('cpu')",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let row: Vec<String> = batches[0]
            .columns()
            .iter()
            .map(|c| {
                c.as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .value(0)
                    .to_string()
            })
            .collect();
        assert_eq!(
            row,
            [
                "double precision",
                "timestamp without time zone",
                "\"Cpu\"",
                "cpu"
            ]
        );
    }

    #[test]
    fn quote_ident_quotes_what_postgresql_quotes() {
        assert_eq!(quote_ident("cpu"), "cpu");
        assert_eq!(quote_ident("usage_user"), "usage_user");
        assert_eq!(quote_ident("Cpu"), "\"Cpu\"");
        assert_eq!(quote_ident("my-table"), "\"my-table\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("1x"), "\"1x\"");
        assert_eq!(quote_ident(""), "\"\"");
    }
}

//! What PostgreSQL clients send that DataFusion does not plan, rewritten on the parsed
//! statement before it is planned: `psql`'s and drivers' catalog queries, and the metadata
//! queries of Grafana's PostgreSQL data source (the table and column lists of its query
//! editor, its version and extension checks). Each rewrite gives what PostgreSQL would
//! answer for Mito's catalogs; none changes a query over user tables.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart,
    Statement, Value, visit_relations_mut,
};
use frontend::query::{PG_INFORMATION_SCHEMA, is_catalog, is_empty_catalog, is_information_view};
use pgwire::error::PgWireResult;

use super::query::user_error;

/// What the rewrites need of the connection.
pub(crate) struct Session<'a> {
    /// The connection's user.
    pub(crate) user: &'a str,
    /// The value of a setting (`SET`, else its default), as `SHOW` gives it.
    pub(crate) setting: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

/// Rewrites `statement` into what DataFusion plans over Mito's catalogs (see the module
/// docs). Returns whether anything changed; an error for what PostgreSQL refuses too (an
/// unknown setting in `current_setting`).
pub(crate) fn rewrite(statement: &mut Statement, session: &Session<'_>) -> PgWireResult<bool> {
    let relations = relations(statement);
    let search_path = search_path_lists(statement, session);
    let expressions = expressions(statement, session)?;
    Ok(relations || search_path || expressions)
}

/// Catalog names as PostgreSQL resolves them: a bare `pg_class` is `pg_catalog.pg_class`
/// (`pg_catalog` is always first on the search path), and `information_schema.tables`,
/// `.columns` and `.schemata` are the PostgreSQL-flavoured views of
/// [`PG_INFORMATION_SCHEMA`].
fn relations(statement: &mut Statement) -> bool {
    let mut changed = false;
    let _ = visit_relations_mut(statement, |name| {
        let parts: Vec<String> = name.0.iter().map(|p| p.to_string()).collect();
        let renamed = match parts.as_slice() {
            [table] if is_catalog(table) => Some(["pg_catalog", table.as_str()]),
            [schema, view] if schema == "information_schema" && is_information_view(view) => {
                Some([PG_INFORMATION_SCHEMA, view.as_str()])
            }
            _ => None,
        };
        if let Some(parts) = renamed {
            *name = ObjectName(
                parts
                    .iter()
                    .map(|p| ObjectNamePart::Identifier(Ident::new(*p)))
                    .collect(),
            );
            changed = true;
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// `x IN (subquery over current_setting('search_path'))` as `x IN ('public', ...)`: the
/// subquery Grafana and other tools use to split the search path into schema names
/// (`generate_series` over `string_to_array`, which DataFusion cannot plan in `FROM`)
/// answers the session's search path, each entry trimmed and `"$user"` as the user.
fn search_path_lists(statement: &mut Statement, session: &Session<'_>) -> bool {
    use datafusion::sql::sqlparser::ast::visit_expressions_mut;
    let mut changed = false;
    let _ = visit_expressions_mut(statement, |e| {
        if let Expr::InSubquery {
            expr,
            subquery,
            negated,
        } = e
            && subquery
                .to_string()
                .to_lowercase()
                .replace(' ', "")
                .contains("current_setting('search_path')")
        {
            let path = (session.setting)("search_path").unwrap_or_default();
            let list = path
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| if s == "\"$user\"" { session.user } else { s })
                .map(|s| Expr::Value(Value::SingleQuotedString(s.to_string()).into()))
                .collect();
            let expr = std::mem::replace(expr.as_mut(), Expr::Value(Value::Null.into()));
            *e = Expr::InList {
                expr: Box::new(expr),
                list,
                negated: *negated,
            };
            changed = true;
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// The lower-case name of a function call, without its `pg_catalog.` schema.
fn function_name(f: &datafusion::sql::sqlparser::ast::Function) -> String {
    let name = f.name.to_string().to_lowercase();
    match name.strip_prefix("pg_catalog.") {
        Some(bare) => bare.to_string(),
        None => name,
    }
}

/// The arguments of a call, when each is a plain expression.
fn arguments(f: &datafusion::sql::sqlparser::ast::Function) -> Option<Vec<&Expr>> {
    match &f.args {
        FunctionArguments::None => Some(Vec::new()),
        FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        FunctionArguments::Subquery(_) => None,
    }
}

/// A string literal's value.
fn text(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        Expr::Nested(inner) => text(inner),
        _ => None,
    }
}

fn literal(s: &str) -> Expr {
    Expr::Value(Value::SingleQuotedString(s.to_string()).into())
}

/// The functions whose value is the connection's: `current_setting('name'[, missing_ok])`
/// (its value as `SHOW` gives it; an unknown name is 42704 unless `missing_ok`), and
/// `user`, `current_user`, `session_user`, `current_role` (the connection's user) and
/// `current_catalog` (the database, `mito`).
fn session_function(e: &Expr, session: &Session<'_>) -> PgWireResult<Option<Expr>> {
    let Expr::Function(f) = e else {
        return Ok(None);
    };
    let name = function_name(f);
    let Some(args) = arguments(f) else {
        return Ok(None);
    };
    Ok(match (name.as_str(), args.as_slice()) {
        ("user" | "current_user" | "session_user" | "current_role", []) => {
            Some(literal(session.user))
        }
        ("current_catalog", []) => Some(literal("mito")),
        ("current_setting", [setting, rest @ ..]) if rest.len() <= 1 => {
            let Some(setting) = text(setting) else {
                return Ok(None);
            };
            let missing_ok = matches!(
                rest.first(),
                Some(Expr::Value(v)) if v.value == Value::Boolean(true)
            );
            match (session.setting)(&setting.to_lowercase()) {
                Some(value) => Some(literal(&value)),
                None if missing_ok => Some(Expr::Value(Value::Null.into())),
                None => {
                    return Err(user_error(
                        "42704",
                        format!("unrecognized configuration parameter \"{setting}\""),
                    ));
                }
            }
        }
        _ => None,
    })
}

/// The parts of a qualified name as PostgreSQL's `parse_ident` splits it: at dots outside
/// double quotes, unquoted parts in lower case; `None` if it is not a valid name.
fn parse_ident(s: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = s.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c.is_whitespace() {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(parts),
            Some('.') => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some(_) => return None,
        }
    }
}

/// The parts of `parse_ident('literal')`, if `e` is that call.
fn parse_ident_call(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::Nested(inner) => parse_ident_call(inner),
        Expr::Function(f) if function_name(f) == "parse_ident" => match arguments(f)?.as_slice() {
            [arg] => parse_ident(text(arg)?),
            _ => None,
        },
        _ => None,
    }
}

/// `array_length(parse_ident('a.b'), 1)` and `(parse_ident('a.b'))[k]` as their values
/// (DataFusion is built without array functions): how Grafana's column list tells a
/// schema-qualified table name from a bare one.
fn parse_ident_access(e: &Expr) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::{AccessExpr, Subscript};
    match e {
        Expr::Function(f) if function_name(f) == "array_length" => match arguments(f)?.as_slice() {
            [array, dim] => {
                let parts = parse_ident_call(array)?;
                let one = matches!(dim, Expr::Value(v) if v.value.to_string() == "1");
                Some(if one {
                    Expr::Value(Value::Number(parts.len().to_string(), false).into())
                } else {
                    Expr::Value(Value::Null.into())
                })
            }
            _ => None,
        },
        Expr::CompoundFieldAccess { root, access_chain } => {
            let parts = parse_ident_call(root)?;
            let [AccessExpr::Subscript(Subscript::Index { index })] = access_chain.as_slice()
            else {
                return None;
            };
            let Expr::Value(v) = index else {
                return None;
            };
            let k: usize = v.value.to_string().parse().ok()?;
            Some(match k.checked_sub(1).and_then(|i| parts.get(i)) {
                Some(part) => literal(part),
                None => Expr::Value(Value::Null.into()),
            })
        }
        _ => None,
    }
}

/// The columns of a query over an always-empty catalog (see [`over_empty_catalog`]), as
/// PostgreSQL names them; `None` if it is not one (or selects `*`).
pub(crate) fn no_rows(statement: &Statement) -> Option<Vec<String>> {
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

/// The expression rewrites: `OPERATOR(pg_catalog.~)` (the plain operator), `COLLATE
/// pg_catalog.default` (dropped), casts to `regclass`/`regtype`/`oid`-like types (text;
/// Mito's oids are only compared), a scalar subquery or `EXISTS` over a catalog that is
/// always empty in Mito (see [`over_empty_catalog`]) as its value over no rows, NULL or
/// false (clients' catalog queries correlate such subqueries in ways DataFusion cannot
/// plan), the session's functions ([`session_function`]) and `parse_ident` of a literal
/// ([`parse_ident_access`]).
fn expressions(statement: &mut Statement, session: &Session<'_>) -> PgWireResult<bool> {
    use datafusion::sql::sqlparser::ast::{
        BinaryOperator, DataType as SqlType, Ident, visit_expressions_mut,
    };
    let mut changed = false;
    let flow = visit_expressions_mut(statement, |e| {
        match session_function(e, session) {
            Ok(Some(value)) => {
                *e = value;
                changed = true;
                return ControlFlow::Continue(());
            }
            Ok(None) => {}
            Err(err) => return ControlFlow::Break(err),
        }
        if let Some(value) = parse_ident_access(e) {
            *e = value;
            changed = true;
            return ControlFlow::Continue(());
        }
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
        ControlFlow::Continue(())
    });
    match flow {
        ControlFlow::Break(err) => Err(err),
        ControlFlow::Continue(()) => Ok(changed),
    }
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
                [schema, table] => schema == "pg_catalog" && is_empty_catalog(table),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Vec<Statement> {
        use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
        datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap()
    }

    fn lookup(name: &str) -> Option<String> {
        match name {
            "search_path" => Some("\"$user\", public".into()),
            "server_version_num" => Some("160000".into()),
            _ => None,
        }
    }

    fn session() -> Session<'static> {
        Session {
            user: "grafana",
            setting: &lookup,
        }
    }

    fn rewritten(sql: &str) -> String {
        let mut s = parse(sql).remove(0);
        rewrite(&mut s, &session()).unwrap();
        s.to_string()
    }

    #[test]
    fn catalog_queries_are_rewritten_into_what_datafusion_plans() {
        let sql = "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(cpu)$' COLLATE pg_catalog.default AND c.reloftype::pg_catalog.regtype::pg_catalog.text = ''";
        let mut s = parse(sql).remove(0);
        assert!(rewrite(&mut s, &session()).unwrap());
        let text = s.to_string();
        assert!(
            !text.contains("OPERATOR") && !text.contains("COLLATE") && !text.contains("regtype"),
            "{text}"
        );
        let mut plain = parse("SELECT 1").remove(0);
        assert!(!rewrite(&mut plain, &session()).unwrap());
        // Subqueries over always-empty catalogs are their value over no rows.
        let mut s = parse(
            "SELECT a.attname, (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) \
             FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid), \
             EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = a.attrelid) \
             FROM pg_catalog.pg_attribute a",
        )
        .remove(0);
        assert!(rewrite(&mut s, &session()).unwrap());
        assert_eq!(
            s.to_string(),
            "SELECT a.attname, NULL, false FROM pg_catalog.pg_attribute a"
        );
    }

    #[test]
    fn queries_over_always_empty_catalogs_answer_no_rows_with_their_columns() {
        let cols = |sql: &str| no_rows(&parse(sql).remove(0));
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
        // Not empty: an aggregate is one row, an outer join keeps the other side, a bare
        // name (before `relations` qualifies it), a UNION with a non-empty side.
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

    #[test]
    fn grafana_metadata_queries_become_what_datafusion_plans() {
        // The version check of the data source's configuration page.
        assert_eq!(
            rewritten("SELECT current_setting('server_version_num')::int/100 as version"),
            "SELECT '160000'::INT / 100 AS version"
        );
        // Its TimescaleDB check: a bare catalog name is pg_catalog's.
        let mut s =
            parse("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").remove(0);
        assert!(rewrite(&mut s, &session()).unwrap());
        assert_eq!(no_rows(&s), Some(vec!["extversion".to_string()]));
        // The schema constraint of the table and column lists: the search path's schemas.
        let constraint = "quote_ident(table_schema) IN (SELECT CASE WHEN trim(s[i]) = '\"$user\"' \
             THEN user ELSE trim(s[i]) END FROM generate_series(\
             array_lower(string_to_array(current_setting('search_path'),','),1), \
             array_upper(string_to_array(current_setting('search_path'),','),1)) as i, \
             string_to_array(current_setting('search_path'),',') s)";
        assert_eq!(
            rewritten(&format!(
                "SELECT quote_ident(table_name) FROM information_schema.tables WHERE {constraint}"
            )),
            "SELECT quote_ident(table_name) FROM pg_information_schema.tables \
             WHERE quote_ident(table_schema) IN ('grafana', 'public')"
        );
        // The column list's test for a schema-qualified table name.
        assert_eq!(
            rewritten(
                "SELECT column_name FROM information_schema.columns WHERE \
                 CASE WHEN array_length(parse_ident('cpu'),1) = 2 \
                 THEN quote_ident(table_schema) = (parse_ident('cpu'))[1] \
                 AND quote_ident(table_name) = (parse_ident('cpu'))[2] \
                 ELSE quote_ident(table_name) = 'cpu' END"
            ),
            "SELECT column_name FROM pg_information_schema.columns WHERE \
             CASE WHEN 1 = 2 THEN quote_ident(table_schema) = 'cpu' \
             AND quote_ident(table_name) = NULL ELSE quote_ident(table_name) = 'cpu' END"
        );
        assert_eq!(
            rewritten("SELECT (parse_ident('Public.\"My Table\"'))[2], user, current_user"),
            "SELECT 'My Table', 'grafana', 'grafana'"
        );
        // An unknown setting is PostgreSQL's error; with missing_ok, NULL.
        let mut s = parse("SELECT current_setting('no_such')").remove(0);
        assert!(rewrite(&mut s, &session()).is_err());
        assert_eq!(
            rewritten("SELECT current_setting('no_such', true)"),
            "SELECT NULL"
        );
    }

    #[test]
    fn parse_ident_splits_as_postgresql_does() {
        assert_eq!(parse_ident("cpu"), Some(vec!["cpu".to_string()]));
        assert_eq!(
            parse_ident("Public . \"My.Table\""),
            Some(vec!["public".to_string(), "My.Table".to_string()])
        );
        assert_eq!(parse_ident("\"a\"\"b\""), Some(vec!["a\"b".to_string()]));
        assert_eq!(parse_ident(""), None);
        assert_eq!(parse_ident("a..b"), None);
        assert_eq!(parse_ident("\"open"), None);
        assert_eq!(parse_ident("a b"), None);
    }
}

//! Query shapes: a statement with the literals of its top-level `WHERE` clause taken out as
//! parameters `$1`, `$2`, ...
//!
//! Dashboards and TSBS send a few shapes over and over, each time with other hosts and another
//! window. A shape is planned once with placeholders; each text of that shape runs a reset copy
//! of the kept physical plan, its values bound where the scans read their filters (see
//! `RegionPartition`). A shape whose placeholders would end up anywhere but in the scans'
//! filters (a filter the engine cannot take, a function argument) fails to plan as a template
//! and its texts are planned one by one, as before.

use std::ops::ControlFlow;

use arrow_schema::DataType;
use datafusion::common::ScalarValue;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{
    Expr, Query, SetExpr, Statement as SqlStatement, UnaryOperator, Value, ValueWithSpan, Visit,
    VisitMut, Visitor, VisitorMut,
};

/// A literal taken out of a statement, as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    /// A single-quoted string.
    Text(String),
    /// An unsigned number.
    Number(String),
}

/// `statement` with the literals of the `WHERE` clause of its top-level `SELECT` (outside
/// subqueries) replaced by `$1`, `$2`, ... in order, and the literals taken out; `None` if
/// it is not such a query, has no such literal, or already holds placeholders.
pub(crate) fn parameterize(statement: &Statement) -> Option<(Statement, Vec<Literal>)> {
    let Statement::Statement(s) = statement else {
        return None;
    };
    let SqlStatement::Query(query) = s.as_ref() else {
        return None;
    };
    if has_placeholder(query) {
        return None;
    }
    let mut query = query.clone();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let selection = select.selection.as_mut()?;
    let mut taker = Taker {
        literals: Vec::new(),
        subquery: 0,
    };
    let _ = selection.visit(&mut taker);
    if taker.literals.is_empty() {
        return None;
    }
    let shaped = Statement::Statement(Box::new(SqlStatement::Query(query)));
    Some((shaped, taker.literals))
}

/// The cache key of a shape: its text and the kinds of its literals.
pub(crate) fn key(shaped: &Statement, literals: &[Literal]) -> String {
    let kinds: String = literals
        .iter()
        .map(|l| match l {
            Literal::Text(_) => 's',
            Literal::Number(_) => 'n',
        })
        .collect();
    format!("{shaped} /*{kinds}*/")
}

/// The values of `literals` as parameters of the types planning inferred for them, or
/// `None` where binding could differ from planning the literal in place: a string is bound
/// only to a string, dictionary-of-string or time column, a number only to a numeric column
/// (and to an integer column only if it is an integer that fits).
pub(crate) fn bind(literals: &[Literal], types: &[DataType]) -> Option<Vec<ScalarValue>> {
    if literals.len() != types.len() {
        return None;
    }
    literals
        .iter()
        .zip(types)
        .map(|(literal, ty)| {
            let value = match literal {
                Literal::Text(s) if text_type(ty) => ScalarValue::Utf8(Some(s.clone())),
                Literal::Number(n) if ty.is_integer() => ScalarValue::Int64(Some(n.parse().ok()?)),
                Literal::Number(n) if ty.is_floating() => {
                    ScalarValue::Float64(Some(n.parse().ok()?))
                }
                _ => return None,
            };
            let cast = value.cast_to(ty).ok()?;
            // A cast that loses the value (an integer out of range) is not the literal.
            (!cast.is_null()).then_some(cast)
        })
        .collect()
}

fn text_type(ty: &DataType) -> bool {
    match ty {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => true,
        DataType::Dictionary(_, value) => matches!(
            value.as_ref(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        _ => false,
    }
}

/// Replaces literals outside subqueries with numbered placeholders.
struct Taker {
    literals: Vec<Literal>,
    /// How many queries the visit is inside.
    subquery: usize,
}

impl VisitorMut for Taker {
    type Break = ();

    fn pre_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.subquery += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.subquery = self.subquery.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.subquery > 0 {
            return ControlFlow::Continue(());
        }
        let literal = match expr {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => Literal::Text(s.clone()),
                Value::Number(n, false) => Literal::Number(n.clone()),
                _ => return ControlFlow::Continue(()),
            },
            // A negative number is one literal.
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr: inner,
            } => match inner.as_ref() {
                Expr::Value(v) => match &v.value {
                    Value::Number(n, false) => Literal::Number(format!("-{n}")),
                    _ => return ControlFlow::Continue(()),
                },
                _ => return ControlFlow::Continue(()),
            },
            _ => return ControlFlow::Continue(()),
        };
        self.literals.push(literal);
        *expr = Expr::value(Value::Placeholder(format!("${}", self.literals.len())));
        ControlFlow::Continue(())
    }
}

fn has_placeholder(query: &Query) -> bool {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();

        fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<()> {
            match value.value {
                Value::Placeholder(_) => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    query.visit(&mut Finder).is_break()
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParser;

    use super::*;

    fn statement(sql: &str) -> Statement {
        let mut s = DFParser::parse_sql(sql).unwrap();
        s.pop_front().unwrap()
    }

    #[test]
    fn where_literals_become_placeholders_in_order() {
        let s = statement(
            "SELECT date_bin(INTERVAL '1 minute', time) AS m, max(v) FROM cpu \
             WHERE host IN ('a', 'b') AND v > 90.5 AND time >= '2016-01-01T00:00:00' \
             GROUP BY m ORDER BY m LIMIT 5",
        );
        let (shaped, literals) = parameterize(&s).unwrap();
        assert_eq!(
            literals,
            vec![
                Literal::Text("a".into()),
                Literal::Text("b".into()),
                Literal::Number("90.5".into()),
                Literal::Text("2016-01-01T00:00:00".into()),
            ]
        );
        let text = shaped.to_string();
        assert!(
            text.contains("host IN ($1, $2) AND v > $3 AND time >= $4"),
            "{text}"
        );
        // The select list, grouping and limit keep their literals.
        assert!(
            text.contains("INTERVAL '1 minute'") && text.contains("LIMIT 5"),
            "{text}"
        );
        let (negative, taken) = parameterize(&statement("SELECT * FROM t WHERE v > -1.5")).unwrap();
        assert_eq!(taken, vec![Literal::Number("-1.5".into())]);
        assert!(negative.to_string().ends_with("v > $1"), "{negative}");
        // Texts of one shape share a key; other literal kinds make another key.
        let other = statement(
            "SELECT date_bin(INTERVAL '1 minute', time) AS m, max(v) FROM cpu \
             WHERE host IN ('x', 'y') AND v > 1 AND time >= '2016-01-02T00:00:00' \
             GROUP BY m ORDER BY m LIMIT 5",
        );
        let (other_shaped, other_literals) = parameterize(&other).unwrap();
        assert_eq!(key(&shaped, &literals), key(&other_shaped, &other_literals));
        let kinds = statement(
            "SELECT date_bin(INTERVAL '1 minute', time) AS m, max(v) FROM cpu \
             WHERE host IN ('x', 'y') AND v > '1' AND time >= '2016-01-02T00:00:00' \
             GROUP BY m ORDER BY m LIMIT 5",
        );
        let (kinds_shaped, kinds_literals) = parameterize(&kinds).unwrap();
        assert_ne!(key(&shaped, &literals), key(&kinds_shaped, &kinds_literals));
    }

    #[test]
    fn statements_without_a_shape() {
        for sql in [
            "SELECT * FROM cpu",
            "SELECT * FROM cpu WHERE host = $1",
            "SELECT 1 UNION ALL SELECT 2",
            "EXPLAIN SELECT * FROM cpu WHERE host = 'a'",
            "SELECT * FROM cpu WHERE v IN (SELECT v FROM t WHERE w = 'a')",
        ] {
            assert!(parameterize(&statement(sql)).is_none(), "{sql}");
        }
    }

    #[test]
    fn binding_keeps_only_what_the_literal_means() {
        use arrow_schema::TimeUnit;
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let dict = DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8));
        let bound = bind(
            &[
                Literal::Text("host_1".into()),
                Literal::Text("2016-01-01T00:01:00".into()),
                Literal::Number("90".into()),
                Literal::Number("7".into()),
            ],
            &[dict.clone(), ts.clone(), DataType::Float64, DataType::Int32],
        )
        .unwrap();
        assert_eq!(bound[0].data_type(), dict);
        assert_eq!(
            bound[1],
            ScalarValue::TimestampNanosecond(Some(1_451_606_460_000_000_000), None)
        );
        assert_eq!(bound[2], ScalarValue::Float64(Some(90.0)));
        assert_eq!(bound[3], ScalarValue::Int32(Some(7)));
        // A fraction against an integer column, a number against a string column, a string
        // against a number, an integer out of range, a time that does not parse.
        for (literal, ty) in [
            (Literal::Number("1.5".into()), DataType::Int64),
            (Literal::Number("1".into()), DataType::Utf8),
            (Literal::Text("1".into()), DataType::Float64),
            (Literal::Number("300".into()), DataType::Int8),
            (Literal::Text("yesterday".into()), ts.clone()),
        ] {
            assert!(
                bind(std::slice::from_ref(&literal), std::slice::from_ref(&ty)).is_none(),
                "{literal:?} {ty}"
            );
        }
    }
}

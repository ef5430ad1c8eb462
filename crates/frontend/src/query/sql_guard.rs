//! Bounds on the shape of a statement, checked on its syntax tree before DataFusion plans it.
//!
//! DataFusion walks expressions recursively in many places (naming columns, simplifying,
//! displaying); an expression nested thousands of levels deep (`1+1+...+1` with 10,000 terms)
//! overflows the thread's stack and aborts the process. So: long chains of `AND` or `OR`, the
//! deep expressions generated filters have, are rebalanced into trees of logarithmic depth
//! (the same truth value); any other expression nested deeper than [`MAX_EXPR_DEPTH`] is
//! refused with an error. Subqueries nest at most `datafusion.sql_parser.recursion_limit`
//! (50) deep: the parser refuses more.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Value, VisitMut, VisitorMut};

/// Expressions nested deeper than this are refused (after `AND`/`OR` chains are balanced).
pub const MAX_EXPR_DEPTH: usize = 128;

/// `AND`/`OR` chains up to this long keep their shape (and so their column names).
const KEEP_CHAIN: usize = 64;

/// Rebalances long `AND`/`OR` chains of `statement` and checks its expression depth; the
/// error says why a statement is refused.
pub fn check(statement: &mut Statement) -> Result<(), String> {
    match statement {
        Statement::Statement(s) => {
            let mut guard = Guard { depth: 0 };
            match s.visit(&mut guard) {
                ControlFlow::Continue(()) => Ok(()),
                ControlFlow::Break(()) => Err(format!(
                    "the statement nests expressions more than {MAX_EXPR_DEPTH} levels deep \
                     (operators or function calls inside each other); write it with fewer levels"
                )),
            }
        }
        Statement::Explain(e) => check(&mut e.statement),
        _ => Err("only queries run here (SELECT, WITH, EXPLAIN, SHOW)".to_string()),
    }
}

struct Guard {
    depth: usize,
}

impl VisitorMut for Guard {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        balance(expr);
        self.depth += 1;
        if self.depth > MAX_EXPR_DEPTH {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<()> {
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }
}

/// Rebuilds a long chain of one of `AND`/`OR` rooted at `expr` as a balanced tree, operands
/// in the same order. Walks the chain with a stack of its own, never recursively.
fn balance(expr: &mut Expr) {
    let op = match expr {
        Expr::BinaryOp {
            op: op @ (BinaryOperator::And | BinaryOperator::Or),
            ..
        } => op.clone(),
        _ => return,
    };
    // Cheap check first: chains written by hand are short.
    let mut length = 1;
    let mut cur = &*expr;
    while let Expr::BinaryOp { left, op: o, .. } = cur {
        if *o != op {
            break;
        }
        length += 1;
        cur = left;
    }
    if length <= KEEP_CHAIN {
        return;
    }
    let mut operands = Vec::new();
    let mut stack = vec![std::mem::replace(expr, Expr::value(Value::Null))];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp { left, op: o, right } if o == op => {
                stack.push(*right);
                stack.push(*left);
            }
            other => operands.push(other),
        }
    }
    *expr = balanced(operands, &op);
}

/// `operands` joined by `op` as a tree of depth log2(n).
fn balanced(mut operands: Vec<Expr>, op: &BinaryOperator) -> Expr {
    if operands.len() <= 1 {
        return operands.pop().unwrap_or(Expr::value(Value::Null));
    }
    let right = operands.split_off(operands.len() / 2);
    Expr::BinaryOp {
        left: Box::new(balanced(operands, op)),
        op: op.clone(),
        right: Box::new(balanced(right, op)),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests assert by panicking"
)]
mod tests {
    use datafusion::sql::parser::DFParser;

    use super::*;

    fn parse(sql: &str) -> Statement {
        DFParser::parse_sql(sql).unwrap().pop_front().unwrap()
    }

    #[test]
    fn long_or_chains_become_shallow_and_keep_their_operands() {
        let terms: Vec<String> = (0..4000).map(|i| format!("v = {i}")).collect();
        let sql = format!("SELECT * FROM t WHERE {}", terms.join(" OR "));
        let mut statement = parse(&sql);
        assert_eq!(check(&mut statement), Ok(()));
        let text = statement.to_string();
        for i in [0, 1, 1999, 3999] {
            assert!(text.contains(&format!("v = {i} ")) || text.ends_with(&format!("v = {i}")));
        }
    }

    #[test]
    fn short_chains_keep_their_shape() {
        let sql = "SELECT a AND b AND c FROM t";
        let mut statement = parse(sql);
        assert_eq!(check(&mut statement), Ok(()));
        assert_eq!(statement.to_string(), sql);
    }

    #[test]
    fn deep_arithmetic_is_refused() {
        let terms = vec!["1"; 10_000];
        let mut statement = parse(&format!("SELECT {}", terms.join("+")));
        let e = check(&mut statement).map_or_else(|e| e, |()| panic!("accepted"));
        assert!(e.contains("128 levels"), "{e}");
        let terms = vec!["1"; 120];
        assert_eq!(
            check(&mut parse(&format!("SELECT {}", terms.join("+")))),
            Ok(())
        );
    }

    #[test]
    fn statements_other_than_queries_are_refused() {
        let mut statement = parse("COPY (SELECT 1) TO 'x.csv'");
        assert!(check(&mut statement).is_err());
    }
}

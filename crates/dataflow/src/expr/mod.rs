//! The AIO dataflow expression language: compile once with [`Expr::compile`], then
//! [`Expr::eval`] for every message.
//!
//! Text enters as a rule's `expression` together with the number of inputs the rule
//! lists (`$1..$n`); compiling checks syntax, function names, argument counts and input
//! numbers, and reports the 1-based column of the first problem. Evaluation takes the
//! input values (borrowed from the message) and returns a [`Value`] or a typed
//! [`EvalError`]; numbers, booleans and borrowed strings are computed without touching
//! the heap.

mod error;
mod functions;
mod lexer;
mod ops;
mod parser;

use std::borrow::Cow;

pub use error::{EvalError, ParseError, ParseErrorKind};

use crate::value::Value;
use functions::Func;
use ops::{BinOp, UnOp};

pub(crate) use ops::values_equal;

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Expr {
    root: Node,
    inputs: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Empty,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Lit(Lit),
    /// 0-based index into the inputs.
    Input(usize),
    Tuple(Vec<Node>),
    Unary(UnOp, Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    If(Box<Node>, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

/// Calls with up to this many arguments evaluate them into a stack buffer.
const INLINE_ARGS: usize = 5;

impl Expr {
    /// Compiles `src` for a rule with `inputs` inputs (`$1..=$inputs` are valid).
    pub fn compile(src: &str, inputs: usize) -> Result<Expr, ParseError> {
        let tokens = lexer::tokenize(src)?;
        let root = parser::parse(tokens, inputs)?;
        Ok(Expr { root, inputs })
    }

    /// How many inputs the expression was compiled for.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Evaluates against `inputs` (`inputs[0]` is `$1`). Missing inputs read as `()`.
    pub fn eval<'a>(&'a self, inputs: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
        eval(&self.root, inputs)
    }

    /// `Some((a, b))` (0-based) when the expression is exactly `$a == $b`, the usual
    /// dataset condition, which a caller can then test with [`values_equal`] directly.
    pub(crate) fn input_equality(&self) -> Option<(usize, usize)> {
        match &self.root {
            Node::Binary(BinOp::Eq, l, r) => match (l.as_ref(), r.as_ref()) {
                (Node::Input(a), Node::Input(b)) => Some((*a, *b)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Evaluates a condition: `true` or `false`, with a missing result (`()`, from a
    /// missing input) counting as `false`. Anything else is an error.
    pub fn eval_condition<'a>(&'a self, inputs: &[Value<'a>]) -> Result<bool, EvalError> {
        match self.eval(inputs)? {
            Value::Bool(b) => Ok(b),
            Value::Empty => Ok(false),
            other => Err(EvalError::NotBoolean(other.type_name())),
        }
    }
}

fn eval<'a>(node: &'a Node, inputs: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
    match node {
        Node::Lit(lit) => Ok(match lit {
            Lit::Empty => Value::Empty,
            Lit::Bool(b) => Value::Bool(*b),
            Lit::Int(i) => Value::Int(*i),
            Lit::Float(x) => Value::Float(*x),
            Lit::Str(s) => Value::String(Cow::Borrowed(s)),
        }),
        Node::Input(i) => Ok(inputs.get(*i).cloned().unwrap_or_default()),
        Node::Tuple(items) => Ok(Value::Tuple(
            items
                .iter()
                .map(|n| eval(n, inputs))
                .collect::<Result<_, _>>()?,
        )),
        Node::Unary(op, operand) => ops::unary(*op, eval(operand, inputs)?),
        Node::Binary(op, l, r) => ops::binary(*op, eval(l, inputs)?, eval(r, inputs)?),
        Node::And(l, r) => logic("&&", false, l, r, inputs),
        Node::Or(l, r) => logic("||", true, l, r, inputs),
        Node::If(c, a, b) => match eval(c, inputs)? {
            Value::Bool(true) => eval(a, inputs),
            Value::Bool(false) => eval(b, inputs),
            Value::Empty => Ok(Value::Empty),
            other => Err(EvalError::ArgumentType {
                function: "if",
                position: 1,
                expected: "a boolean",
                got: other.type_name(),
            }),
        },
        Node::Call(func, args) if args.len() <= INLINE_ARGS => {
            let mut buf: [Value<'a>; INLINE_ARGS] = Default::default();
            for (slot, arg) in buf.iter_mut().zip(args) {
                *slot = eval(arg, inputs)?;
            }
            functions::call(*func, &mut buf[..args.len()])
        }
        Node::Call(func, args) => {
            let mut values = args
                .iter()
                .map(|n| eval(n, inputs))
                .collect::<Result<Vec<_>, _>>()?;
            functions::call(*func, &mut values)
        }
    }
}

/// `&&` (`decisive` = false) and `||` (`decisive` = true), short-circuiting. A missing
/// operand makes the result missing unless the other operand decides it.
fn logic<'a>(
    op: &'static str,
    decisive: bool,
    l: &'a Node,
    r: &'a Node,
    inputs: &[Value<'a>],
) -> Result<Value<'a>, EvalError> {
    let left = eval(l, inputs)?;
    match left {
        Value::Bool(b) if b == decisive => return Ok(Value::Bool(b)),
        Value::Bool(_) | Value::Empty => {}
        other => {
            let right = eval(r, inputs)?;
            return Err(EvalError::BinaryType {
                op,
                left: other.type_name(),
                right: right.type_name(),
            });
        }
    }
    match (left, eval(r, inputs)?) {
        (_, Value::Bool(b)) if b == decisive => Ok(Value::Bool(b)),
        (Value::Empty, Value::Bool(_) | Value::Empty) | (_, Value::Empty) => Ok(Value::Empty),
        (_, Value::Bool(b)) => Ok(Value::Bool(b)),
        (left, right) => Err(EvalError::BinaryType {
            op,
            left: left.type_name(),
            right: right.type_name(),
        }),
    }
}

#[cfg(test)]
mod tests;

//! The operators: arithmetic with Int/Float promotion, `+` as concatenation, comparison
//! and equality.
//!
//! Promotion follows the docs: two integers give an integer (`7 / 2` is `3`), anything
//! with a float gives a float. Integer overflow and integer division by zero are errors;
//! float arithmetic follows IEEE 754. A missing value (`()`) on either side makes the
//! result missing, except for `==` and `!=`, which is how rules test for absent fields.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::error::EvalError;
use crate::value::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Pow,
    Mul,
    Div,
    Rem,
    Add,
    Sub,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
}

impl BinOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Pow => "^",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Lt => "<",
            BinOp::Gt => ">",
            BinOp::Le => "<=",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnOp {
    Neg,
    Not,
}

pub(crate) fn unary<'a>(op: UnOp, v: Value<'a>) -> Result<Value<'a>, EvalError> {
    match (op, v) {
        (_, Value::Empty) => Ok(Value::Empty),
        (UnOp::Neg, Value::Int(i)) => i
            .checked_neg()
            .map(Value::Int)
            .ok_or(EvalError::Overflow("-")),
        (UnOp::Neg, Value::Float(x)) => Ok(Value::Float(-x)),
        (UnOp::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
        (op, other) => Err(EvalError::UnaryType {
            op: if op == UnOp::Neg { "-" } else { "!" },
            operand: other.type_name(),
        }),
    }
}

pub(crate) fn binary<'a>(op: BinOp, l: Value<'a>, r: Value<'a>) -> Result<Value<'a>, EvalError> {
    match op {
        BinOp::Eq => return Ok(Value::Bool(values_equal(&l, &r))),
        BinOp::Ne => return Ok(Value::Bool(!values_equal(&l, &r))),
        _ => {}
    }
    if matches!(l, Value::Empty) || matches!(r, Value::Empty) {
        return Ok(Value::Empty);
    }
    match op {
        BinOp::Add => add(l, r),
        BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => compare(op, &l, &r),
        _ => arithmetic(op, &l, &r),
    }
}

fn type_error(op: BinOp, l: &Value, r: &Value) -> EvalError {
    EvalError::BinaryType {
        op: op.symbol(),
        left: l.type_name(),
        right: r.type_name(),
    }
}

/// `+`: numbers add; if either side is a string both sides are joined as text.
fn add<'a>(l: Value<'a>, r: Value<'a>) -> Result<Value<'a>, EvalError> {
    match (l, r) {
        (Value::String(s), r) => {
            let mut s = s.into_owned();
            s.push_str(&r.to_text());
            Ok(Value::String(Cow::Owned(s)))
        }
        (l, Value::String(s)) => {
            let mut text = l.to_text().into_owned();
            text.push_str(&s);
            Ok(Value::String(Cow::Owned(text)))
        }
        (l, r) => arithmetic(BinOp::Add, &l, &r),
    }
}

fn arithmetic<'a>(op: BinOp, l: &Value<'a>, r: &Value<'a>) -> Result<Value<'a>, EvalError> {
    match (l, r) {
        (Value::Int(a), Value::Int(b)) => int_arithmetic(op, *a, *b),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let (a, b) = (as_f64(l), as_f64(r));
            Ok(Value::Float(match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div => a / b,
                BinOp::Rem => a % b,
                _ => a.powf(b),
            }))
        }
        _ => Err(type_error(op, l, r)),
    }
}

fn int_arithmetic<'a>(op: BinOp, a: i64, b: i64) -> Result<Value<'a>, EvalError> {
    let overflow = EvalError::Overflow(op.symbol());
    let result = match op {
        BinOp::Add => a.checked_add(b),
        BinOp::Sub => a.checked_sub(b),
        BinOp::Mul => a.checked_mul(b),
        BinOp::Div | BinOp::Rem if b == 0 => return Err(EvalError::DivisionByZero),
        BinOp::Div => a.checked_div(b),
        BinOp::Rem => a.checked_rem(b),
        _ => match u32::try_from(b) {
            Ok(exp) => a.checked_pow(exp),
            // A negative exponent leaves the integers; so does a huge one.
            Err(_) => return Ok(Value::Float((a as f64).powf(b as f64))),
        },
    };
    result.map(Value::Int).ok_or(overflow)
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        _ => f64::NAN,
    }
}

/// `< > <= >=` on two numbers, two strings (by code point) or two booleans.
fn compare<'a>(op: BinOp, l: &Value<'a>, r: &Value<'a>) -> Result<Value<'a>, EvalError> {
    let ordering = match (l, r) {
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            as_f64(l).partial_cmp(&as_f64(r))
        }
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => return Err(type_error(op, l, r)),
    };
    // NaN compares false with everything, as in IEEE 754.
    let Some(ordering) = ordering else {
        return Ok(Value::Bool(false));
    };
    Ok(Value::Bool(match op {
        BinOp::Lt => ordering == Ordering::Less,
        BinOp::Gt => ordering == Ordering::Greater,
        BinOp::Le => ordering != Ordering::Greater,
        _ => ordering != Ordering::Less,
    }))
}

/// `==`: numbers compare by value across Int and Float (`1 == 1.0`), tuples element by
/// element, `()` equals only `()`, and values of different types are simply unequal.
pub(crate) fn values_equal(l: &Value, r: &Value) -> bool {
    match (l, r) {
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            as_f64(l) == as_f64(r)
        }
        (Value::Tuple(a), Value::Tuple(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| values_equal(x, y))
        }
        (Value::Json(a), Value::Json(b)) => a == b,
        (a, b) => a == b,
    }
}

//! The values an expression computes with, and how they map to and from JSON.
//!
//! The AIO expression language has six types — Int (i64), Float (f64), String, Bool,
//! Tuple and Empty (a missing field or a JSON `null`) — plus JSON objects, which pass
//! through untouched but cannot take part in arithmetic. [`Value`] borrows whatever it
//! can (strings, objects) from the message, the dataset records or the expression text,
//! so reading an input and comparing it allocates nothing.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde_json::{Number, Value as Json};

/// One value during evaluation. `'a` is the lifetime of the message, the dataset records
/// and the compiled expression it may borrow from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value<'a> {
    /// A missing field or a JSON `null`; written as `()` in expressions.
    #[default]
    Empty,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(Cow<'a, str>),
    /// `(1, 2, 3)` in expressions, a JSON array in messages.
    Tuple(Vec<Value<'a>>),
    /// A JSON object: copied as-is, never computed with.
    Json(&'a Json),
}

impl<'a> Value<'a> {
    /// Reads a JSON value. Integers that fit an i64 become `Int`, every other number a
    /// `Float`; arrays become tuples; objects stay opaque.
    pub fn from_json(json: &'a Json) -> Value<'a> {
        match json {
            Json::Null => Value::Empty,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => Value::String(Cow::Borrowed(s)),
            Json::Array(items) => Value::Tuple(items.iter().map(Value::from_json).collect()),
            Json::Object(_) => Value::Json(json),
        }
    }

    /// The JSON to write for this value; `None` for `Empty`, which removes the target.
    /// Floats that JSON cannot carry (NaN, ±infinity) become `null`.
    pub fn to_json(&self) -> Option<Json> {
        Some(match self {
            Value::Empty => return None,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::Number((*i).into()),
            Value::Float(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::String(s) => Json::String(s.clone().into_owned()),
            Value::Tuple(items) => Json::Array(
                items
                    .iter()
                    .map(|v| v.to_json().unwrap_or(Json::Null))
                    .collect(),
            ),
            Value::Json(j) => (*j).clone(),
        })
    }

    /// The name `typeof` returns.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Empty => "empty",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Tuple(_) => "tuple",
            Value::Json(_) => "json",
        }
    }

    /// The value as text, as `+` concatenation, `str::from` and metadata writes see it.
    /// Strings are returned as they are (borrowed when they were borrowed).
    pub fn to_text(&self) -> Cow<'a, str> {
        match self {
            Value::String(s) => s.clone(),
            other => Cow::Owned(other.to_string()),
        }
    }
}

/// Text form: numbers as JSON writes them (`3.0` stays `3.0`), tuples as `(1, 2)`,
/// `Empty` as the empty string, objects as JSON.
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Empty => Ok(()),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => match Number::from_f64(*x) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "{x}"),
            },
            Value::String(s) => f.write_str(s),
            Value::Tuple(items) => {
                f.write_char('(')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match item {
                        Value::Empty => f.write_str("()")?,
                        Value::String(s) => write!(f, "{:?}", s.as_ref())?,
                        other => write!(f, "{other}")?,
                    }
                }
                f.write_char(')')
            }
            Value::Json(j) => write!(f, "{j}"),
        }
    }
}

impl From<i64> for Value<'_> {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value<'_> {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

impl From<bool> for Value<'_> {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::String(Cow::Borrowed(s))
    }
}

impl From<String> for Value<'_> {
    fn from(s: String) -> Self {
        Value::String(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_numbers_keep_their_integer_or_float_nature() {
        assert_eq!(Value::from_json(&json!(42)), Value::Int(42));
        assert_eq!(Value::from_json(&json!(2.5)), Value::Float(2.5));
        assert_eq!(
            Value::from_json(&json!(u64::MAX)),
            Value::Float(u64::MAX as f64)
        );
        assert_eq!(Value::from_json(&json!(null)), Value::Empty);
    }

    #[test]
    fn arrays_read_as_tuples_and_write_back_as_arrays() {
        let json = json!([1, "a", null]);
        let v = Value::from_json(&json);
        assert_eq!(v.to_string(), "(1, \"a\", ())");
        assert_eq!(v.to_json(), Some(json!([1, "a", null])));
    }

    #[test]
    fn non_finite_floats_are_written_as_null() {
        assert_eq!(Value::Float(f64::NAN).to_json(), Some(Json::Null));
        assert_eq!(Value::Empty.to_json(), None);
    }

    #[test]
    fn float_text_keeps_the_decimal_point() {
        assert_eq!(Value::Float(3.0).to_text(), "3.0");
        assert_eq!(Value::Float(2.5).to_text(), "2.5");
    }
}

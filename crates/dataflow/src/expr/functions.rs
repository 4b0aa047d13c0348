//! The built-in functions: their names, how many arguments each takes (checked when the
//! expression is compiled) and what they compute.
//!
//! Missing values propagate: a function given `()` for an argument returns `()`, so a
//! rule whose input is absent writes nothing instead of failing. The exceptions are
//! `typeof` (which reports `"empty"`) and the needle of `contains`/`contains_any`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::mem;

use super::error::{EvalError, ParseErrorKind};
use super::ops::values_equal;
use crate::value::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Unit(Unit),
    Scale,
    RoundN,
    Floor,
    Round,
    Ceil,
    Math1(Math1),
    Math2(Math2),
    Lower,
    Upper,
    Trim,
    StrFrom,
    Substring,
    Len,
    If,
    Min,
    Max,
    Contains,
    ContainsAny,
    TypeOf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    CToF,
    FToC,
    PsiToBar,
    BarToPsi,
    InToCm,
    CmToIn,
    FtToM,
    MToFt,
    LbToKg,
    KgToLb,
    GalToL,
    LToGal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Math1 {
    Abs,
    Sqrt,
    Cbrt,
    Ln,
    Log2,
    Log10,
    Exp,
    Exp2,
    Cos,
    Sin,
    Tan,
    Acos,
    Asin,
    Atan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Math2 {
    Log,
    Pow,
    Atan2,
    Hypot,
}

/// Every function, for lookup by name.
const ALL: &[Func] = &[
    Func::Unit(Unit::CToF),
    Func::Unit(Unit::FToC),
    Func::Unit(Unit::PsiToBar),
    Func::Unit(Unit::BarToPsi),
    Func::Unit(Unit::InToCm),
    Func::Unit(Unit::CmToIn),
    Func::Unit(Unit::FtToM),
    Func::Unit(Unit::MToFt),
    Func::Unit(Unit::LbToKg),
    Func::Unit(Unit::KgToLb),
    Func::Unit(Unit::GalToL),
    Func::Unit(Unit::LToGal),
    Func::Scale,
    Func::RoundN,
    Func::Floor,
    Func::Round,
    Func::Ceil,
    Func::Math1(Math1::Abs),
    Func::Math1(Math1::Sqrt),
    Func::Math1(Math1::Cbrt),
    Func::Math1(Math1::Ln),
    Func::Math1(Math1::Log2),
    Func::Math1(Math1::Log10),
    Func::Math1(Math1::Exp),
    Func::Math1(Math1::Exp2),
    Func::Math1(Math1::Cos),
    Func::Math1(Math1::Sin),
    Func::Math1(Math1::Tan),
    Func::Math1(Math1::Acos),
    Func::Math1(Math1::Asin),
    Func::Math1(Math1::Atan),
    Func::Math2(Math2::Log),
    Func::Math2(Math2::Pow),
    Func::Math2(Math2::Atan2),
    Func::Math2(Math2::Hypot),
    Func::Lower,
    Func::Upper,
    Func::Trim,
    Func::StrFrom,
    Func::Substring,
    Func::Len,
    Func::If,
    Func::Min,
    Func::Max,
    Func::Contains,
    Func::ContainsAny,
    Func::TypeOf,
];

const REGEX: &str = "regular expressions exist only in dataflow graphs";
const WINDOW: &str = "aggregations exist only in window transforms of dataflow graphs";

/// Names the docs list for other transforms; naming them gets a pointed error.
const ELSEWHERE: &[(&str, &str)] = &[
    ("str::regex_matches", REGEX),
    ("str::regex_replace", REGEX),
    ("average", WINDOW),
    ("sum", WINDOW),
    ("count", WINDOW),
    ("first", WINDOW),
    ("last", WINDOW),
];

impl Func {
    /// Finds a function by name. The `math::` functions also answer to their bare name
    /// (`abs`), as the mapping page's own example writes `abs($1 - $2)`.
    pub(crate) fn lookup(name: &str) -> Result<Func, ParseErrorKind> {
        let found = ALL.iter().copied().find(|f| f.name() == name).or_else(|| {
            ALL.iter()
                .copied()
                .find(|f| f.name().strip_prefix("math::") == Some(name))
        });
        if let Some(f) = found {
            return Ok(f);
        }
        if let Some((_, why)) = ELSEWHERE.iter().find(|(n, _)| *n == name) {
            return Err(ParseErrorKind::UnavailableFunction(name.to_owned(), why));
        }
        Err(ParseErrorKind::UnknownFunction(name.to_owned()))
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Func::Unit(unit) => unit.name(),
            Func::Scale => "scale",
            Func::RoundN => "round_n",
            Func::Floor => "floor",
            Func::Round => "round",
            Func::Ceil => "ceil",
            Func::Math1(m) => m.name(),
            Func::Math2(Math2::Log) => "math::log",
            Func::Math2(Math2::Pow) => "math::pow",
            Func::Math2(Math2::Atan2) => "math::atan2",
            Func::Math2(Math2::Hypot) => "math::hypot",
            Func::Lower => "str::to_lowercase",
            Func::Upper => "str::to_uppercase",
            Func::Trim => "str::trim",
            Func::StrFrom => "str::from",
            Func::Substring => "str::substring",
            Func::Len => "len",
            Func::If => "if",
            Func::Min => "min",
            Func::Max => "max",
            Func::Contains => "contains",
            Func::ContainsAny => "contains_any",
            Func::TypeOf => "typeof",
        }
    }

    /// Checks the argument count; `min`, `max` and `len` take one or more.
    pub(crate) fn check_arity(self, got: usize) -> Result<(), ParseErrorKind> {
        let (expected, at_least) = match self {
            Func::Min | Func::Max | Func::Len => (1, true),
            Func::Scale => (5, false),
            Func::Substring | Func::If => (3, false),
            Func::RoundN | Func::Math2(_) | Func::Contains | Func::ContainsAny => (2, false),
            _ => (1, false),
        };
        if got == expected || (at_least && got > expected) {
            return Ok(());
        }
        Err(ParseErrorKind::Arity {
            name: self.name(),
            expected,
            at_least,
            got,
        })
    }
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::CToF => "cToF",
            Unit::FToC => "fToC",
            Unit::PsiToBar => "psiToBar",
            Unit::BarToPsi => "barToPsi",
            Unit::InToCm => "inToCm",
            Unit::CmToIn => "cmToIn",
            Unit::FtToM => "ftToM",
            Unit::MToFt => "mToFt",
            Unit::LbToKg => "lbToKg",
            Unit::KgToLb => "kgToLb",
            Unit::GalToL => "galToL",
            Unit::LToGal => "lToGal",
        }
    }

    /// The formulas of the expressions reference, verbatim.
    fn convert(self, x: f64) -> f64 {
        match self {
            Unit::CToF => x * 9.0 / 5.0 + 32.0,
            Unit::FToC => (x - 32.0) * 5.0 / 9.0,
            Unit::PsiToBar => x * 0.0689476,
            Unit::BarToPsi => x / 0.0689476,
            Unit::InToCm => x * 2.54,
            Unit::CmToIn => x / 2.54,
            Unit::FtToM => x * 0.3048,
            Unit::MToFt => x / 0.3048,
            Unit::LbToKg => x * 0.453592,
            Unit::KgToLb => x / 0.453592,
            Unit::GalToL => x * 3.78541,
            Unit::LToGal => x / 3.78541,
        }
    }
}

impl Math1 {
    fn name(self) -> &'static str {
        match self {
            Math1::Abs => "math::abs",
            Math1::Sqrt => "math::sqrt",
            Math1::Cbrt => "math::cbrt",
            Math1::Ln => "math::ln",
            Math1::Log2 => "math::log2",
            Math1::Log10 => "math::log10",
            Math1::Exp => "math::exp",
            Math1::Exp2 => "math::exp2",
            Math1::Cos => "math::cos",
            Math1::Sin => "math::sin",
            Math1::Tan => "math::tan",
            Math1::Acos => "math::acos",
            Math1::Asin => "math::asin",
            Math1::Atan => "math::atan",
        }
    }
}

/// Calls `f` with evaluated arguments (`if` never gets here: it is lazy). The slice is
/// `mut` so that results can move out of it instead of being cloned.
pub(crate) fn call<'a>(f: Func, args: &mut [Value<'a>]) -> Result<Value<'a>, EvalError> {
    let name = f.name();
    match f {
        Func::TypeOf => return Ok(Value::String(Cow::Borrowed(first(args).type_name()))),
        Func::Contains | Func::ContainsAny => return contains(f, args),
        _ => {}
    }
    if args.iter().any(|a| matches!(a, Value::Empty)) {
        return Ok(Value::Empty);
    }
    match f {
        Func::Unit(unit) => Ok(Value::Float(unit.convert(number(name, 1, first(args))?))),
        Func::Scale => scale(args),
        Func::RoundN => round_n(args),
        Func::Floor => integral(name, first(args), f64::floor),
        Func::Round => integral(name, first(args), f64::round),
        Func::Ceil => integral(name, first(args), f64::ceil),
        Func::Math1(m) => math1(m, name, first(args)),
        Func::Math2(m) => math2(m, name, args),
        Func::Lower => Ok(Value::String(Cow::Owned(
            text(name, 1, first(args))?.to_lowercase(),
        ))),
        Func::Upper => Ok(Value::String(Cow::Owned(
            text(name, 1, first(args))?.to_uppercase(),
        ))),
        Func::Trim => trim(take_first(args)),
        Func::StrFrom => Ok(Value::String(first(args).to_text())),
        Func::Substring => substring(args),
        Func::Len => len(args),
        Func::Min => extreme(name, args, Ordering::Less),
        Func::Max => extreme(name, args, Ordering::Greater),
        Func::If | Func::TypeOf | Func::Contains | Func::ContainsAny => Ok(Value::Empty),
    }
}

fn first<'s, 'a>(args: &'s [Value<'a>]) -> &'s Value<'a> {
    const EMPTY: Value<'static> = Value::Empty;
    args.first().unwrap_or(&EMPTY)
}

/// Moves the first argument out (arity is checked at compile time, so it exists).
fn take_first<'a>(args: &mut [Value<'a>]) -> Value<'a> {
    args.first_mut().map(mem::take).unwrap_or_default()
}

fn arg<'s, 'a>(args: &'s [Value<'a>], i: usize) -> &'s Value<'a> {
    const EMPTY: Value<'static> = Value::Empty;
    args.get(i).unwrap_or(&EMPTY)
}

pub(crate) fn number(function: &'static str, position: usize, v: &Value) -> Result<f64, EvalError> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(x) => Ok(*x),
        other => Err(EvalError::ArgumentType {
            function,
            position,
            expected: "a number",
            got: other.type_name(),
        }),
    }
}

fn integer(function: &'static str, position: usize, v: &Value) -> Result<i64, EvalError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(EvalError::ArgumentType {
            function,
            position,
            expected: "an integer",
            got: other.type_name(),
        }),
    }
}

fn text<'s>(function: &'static str, position: usize, v: &'s Value) -> Result<&'s str, EvalError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(EvalError::ArgumentType {
            function,
            position,
            expected: "a string",
            got: other.type_name(),
        }),
    }
}

fn scale<'a>(args: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
    let mut n = [0.0; 5];
    for (i, slot) in n.iter_mut().enumerate() {
        *slot = number("scale", i + 1, arg(args, i))?;
    }
    let [v, src_lo, src_hi, dst_lo, dst_hi] = n;
    if src_hi == src_lo {
        return Err(EvalError::InvalidArgument {
            function: "scale",
            message: "the source range is empty (srcLo equals srcHi)",
        });
    }
    Ok(Value::Float(
        (v - src_lo) * (dst_hi - dst_lo) / (src_hi - src_lo) + dst_lo,
    ))
}

fn round_n<'a>(args: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
    let decimals = integer("round_n", 2, arg(args, 1))?;
    if !(0..=15).contains(&decimals) {
        return Err(EvalError::InvalidArgument {
            function: "round_n",
            message: "decimals must be between 0 and 15",
        });
    }
    match first(args) {
        Value::Int(i) => Ok(Value::Int(*i)),
        other => {
            let x = number("round_n", 1, other)?;
            // `decimals` is 0..=15, so the cast cannot truncate.
            let factor = 10f64.powi(decimals as i32);
            Ok(Value::Float((x * factor).round() / factor))
        }
    }
}

/// floor/round/ceil: integers are already integral; floats stay floats (`2.0`).
fn integral<'a>(
    name: &'static str,
    v: &Value<'a>,
    op: fn(f64) -> f64,
) -> Result<Value<'a>, EvalError> {
    match v {
        Value::Int(i) => Ok(Value::Int(*i)),
        other => Ok(Value::Float(op(number(name, 1, other)?))),
    }
}

fn math1<'a>(m: Math1, name: &'static str, v: &Value<'a>) -> Result<Value<'a>, EvalError> {
    if let (Math1::Abs, Value::Int(i)) = (m, v) {
        return i
            .checked_abs()
            .map(Value::Int)
            .ok_or(EvalError::Overflow(name));
    }
    let x = number(name, 1, v)?;
    Ok(Value::Float(match m {
        Math1::Abs => x.abs(),
        Math1::Sqrt => x.sqrt(),
        Math1::Cbrt => x.cbrt(),
        Math1::Ln => x.ln(),
        Math1::Log2 => x.log2(),
        Math1::Log10 => x.log10(),
        Math1::Exp => x.exp(),
        Math1::Exp2 => x.exp2(),
        Math1::Cos => x.cos(),
        Math1::Sin => x.sin(),
        Math1::Tan => x.tan(),
        Math1::Acos => x.acos(),
        Math1::Asin => x.asin(),
        Math1::Atan => x.atan(),
    }))
}

fn math2<'a>(m: Math2, name: &'static str, args: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
    let a = number(name, 1, arg(args, 0))?;
    let b = number(name, 2, arg(args, 1))?;
    Ok(Value::Float(match m {
        Math2::Log => a.log(b),
        Math2::Pow => a.powf(b),
        Math2::Atan2 => a.atan2(b),
        Math2::Hypot => a.hypot(b),
    }))
}

fn trim(v: Value<'_>) -> Result<Value<'_>, EvalError> {
    match v {
        Value::String(Cow::Borrowed(s)) => Ok(Value::String(Cow::Borrowed(s.trim()))),
        Value::String(Cow::Owned(s)) => Ok(Value::String(Cow::Owned(s.trim().to_owned()))),
        other => Err(EvalError::ArgumentType {
            function: "str::trim",
            position: 1,
            expected: "a string",
            got: other.type_name(),
        }),
    }
}

/// `str::substring(s, start, end)`: characters `start..end` (end excluded). Indexes past
/// the end are clamped, so `str::substring("abc", 1, 99)` is `"bc"`.
fn substring<'a>(args: &mut [Value<'a>]) -> Result<Value<'a>, EvalError> {
    const NAME: &str = "str::substring";
    let start = integer(NAME, 2, arg(args, 1))?;
    let end = integer(NAME, 3, arg(args, 2))?;
    let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
        return Err(EvalError::InvalidArgument {
            function: NAME,
            message: "indexes must not be negative",
        });
    };
    let s = text(NAME, 1, first(args))?;
    let end = end.max(start);
    let byte = |n: usize| s.char_indices().nth(n).map_or(s.len(), |(b, _)| b);
    let (from, to) = (byte(start), byte(end));
    Ok(match take_first(args) {
        Value::String(Cow::Borrowed(s)) => Value::String(Cow::Borrowed(&s[from..to])),
        Value::String(Cow::Owned(s)) => Value::String(Cow::Owned(s[from..to].to_owned())),
        _ => Value::Empty,
    })
}

fn len<'a>(args: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
    let count = match args {
        [Value::String(s)] => s.chars().count(),
        [Value::Tuple(items)] => items.len(),
        [other] => {
            return Err(EvalError::ArgumentType {
                function: "len",
                position: 1,
                expected: "a string or a tuple",
                got: other.type_name(),
            })
        }
        many => many.len(),
    };
    Ok(Value::Int(i64::try_from(count).unwrap_or(i64::MAX)))
}

/// `min`/`max` of several numbers, or of the elements of one tuple (JSON array). The
/// winner keeps its type: `min(2, 3.5)` is the integer `2`. Nulls in an array are skipped.
fn extreme<'a>(
    name: &'static str,
    args: &mut [Value<'a>],
    want: Ordering,
) -> Result<Value<'a>, EvalError> {
    let values: &mut [Value<'a>] = match args {
        [Value::Tuple(items)] => items,
        many => many,
    };
    let mut best: Option<(f64, usize)> = None;
    for (i, v) in values.iter().enumerate() {
        if matches!(v, Value::Empty) {
            continue;
        }
        let x = number(name, i + 1, v)?;
        let better = match best {
            None => true,
            Some((b, _)) => x.partial_cmp(&b) == Some(want),
        };
        if better {
            best = Some((x, i));
        }
    }
    match best {
        Some((_, i)) => Ok(values.get_mut(i).map(mem::take).unwrap_or_default()),
        None => Err(EvalError::InvalidArgument {
            function: name,
            message: "needs at least one number",
        }),
    }
}

/// `contains(tuple, value)` and `contains_any(tuple, candidates)`. A string haystack is
/// searched for substrings.
fn contains<'a>(f: Func, args: &[Value<'a>]) -> Result<Value<'a>, EvalError> {
    let name = f.name();
    let hay = first(args);
    let needle = arg(args, 1);
    let candidates: &[Value<'a>] = match (f, needle) {
        (Func::Contains, _) => std::slice::from_ref(needle),
        (_, Value::Tuple(items)) => items,
        (_, Value::Empty) => return Ok(Value::Empty),
        (_, other) => std::slice::from_ref(other),
    };
    let found = match hay {
        Value::Empty => return Ok(Value::Empty),
        Value::Tuple(items) => candidates
            .iter()
            .any(|c| items.iter().any(|item| values_equal(item, c))),
        Value::String(s) => candidates.iter().any(|c| match c {
            Value::String(sub) => s.contains(sub.as_ref()),
            _ => false,
        }),
        other => {
            return Err(EvalError::ArgumentType {
                function: name,
                position: 1,
                expected: "a tuple or a string",
                got: other.type_name(),
            })
        }
    };
    Ok(Value::Bool(found))
}

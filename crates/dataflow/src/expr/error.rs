//! What can go wrong with an expression: when it is compiled ([`ParseError`], with the
//! column) and when it is evaluated against a message ([`EvalError`]).

/// An expression that cannot be compiled. Displays as `column 7: expected ')', found …`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {kind}")]
pub struct ParseError {
    /// 1-based character column where the problem starts; one past the end for a
    /// missing token at the end of the text.
    pub column: usize,
    pub kind: ParseErrorKind,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("expected {expected}, found {found}")]
    Expected {
        expected: &'static str,
        found: String,
    },
    #[error("unexpected character `{0}`")]
    UnexpectedChar(char),
    #[error("unterminated string; close it with the quote it opened with")]
    UnterminatedString,
    #[error("unknown escape `\\{0}` in string")]
    InvalidEscape(char),
    #[error("invalid number `{0}`")]
    InvalidNumber(String),
    #[error("`${0}` is not an input; inputs are `$1`, `$2`, … in the order of `inputs`")]
    BadInputReference(String),
    #[error("`${index}` refers to input {index} but the rule has {available} input(s)")]
    InputOutOfRange { index: usize, available: usize },
    #[error("unknown function `{0}`")]
    UnknownFunction(String),
    #[error("`{0}` is not available here: {1}")]
    UnavailableFunction(String, &'static str),
    #[error("`{name}` takes {}, got {got}", arguments(*.expected, *.at_least))]
    Arity {
        name: &'static str,
        expected: usize,
        /// `true` when more than `expected` arguments are fine too.
        at_least: bool,
        got: usize,
    },
    #[error("`{0}` is not an operator; use `{1}`")]
    KeywordOperator(String, &'static str),
    #[error("expression nests too deeply (more than {0} levels)")]
    TooDeep(usize),
    #[error("expression is too long (more than {0} tokens)")]
    TooLong(usize),
}

/// An expression that failed on a particular message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("`{op}` cannot take {left} and {right}")]
    BinaryType {
        op: &'static str,
        left: &'static str,
        right: &'static str,
    },
    #[error("`{op}` cannot take {operand}")]
    UnaryType {
        op: &'static str,
        operand: &'static str,
    },
    #[error("`{function}` argument {position} must be {expected}, got {got}")]
    ArgumentType {
        function: &'static str,
        position: usize,
        expected: &'static str,
        got: &'static str,
    },
    #[error("`{function}`: {message}")]
    InvalidArgument {
        function: &'static str,
        message: &'static str,
    },
    #[error("division by zero")]
    DivisionByZero,
    #[error("integer overflow in `{0}`")]
    Overflow(&'static str),
    #[error("the expression must give a boolean here, got {0}")]
    NotBoolean(&'static str),
}

fn arguments(n: usize, at_least: bool) -> String {
    let prefix = if at_least { "at least " } else { "" };
    let plural = if n == 1 { "" } else { "s" };
    format!("{prefix}{n} argument{plural}")
}

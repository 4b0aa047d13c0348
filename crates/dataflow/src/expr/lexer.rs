//! Splits expression text into tokens, each tagged with its 1-based column so that the
//! parser can say where it stopped understanding.

use super::error::{ParseError, ParseErrorKind};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    /// `$n`, kept 1-based as written.
    Input(usize),
    /// A function name, `::` included (`math::sqrt`).
    Ident(String),
    LParen,
    RParen,
    Comma,
    Not,
    Caret,
    Star,
    Slash,
    Percent,
    Plus,
    Minus,
    Lt,
    Gt,
    Le,
    Ge,
    EqEq,
    Ne,
    AndAnd,
    OrOr,
    End,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Int(i) => format!("number `{i}`"),
            Tok::Float(x) => format!("number `{x}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Bool(b) => format!("`{b}`"),
            Tok::Input(n) => format!("`${n}`"),
            Tok::Ident(name) => format!("`{name}`"),
            Tok::End => "end of expression".to_owned(),
            other => format!("`{}`", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Comma => ",",
            Tok::Not => "!",
            Tok::Caret => "^",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Lt => "<",
            Tok::Gt => ">",
            Tok::Le => "<=",
            Tok::Ge => ">=",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            _ => "?",
        }
    }
}

/// A token and the column (1-based, in characters) where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub column: usize,
}

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut lexer = Lexer { chars, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let end = token.tok == Tok::End;
        tokens.push(token);
        if end {
            return Ok(tokens);
        }
    }
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn error(&self, column: usize, kind: ParseErrorKind) -> ParseError {
        ParseError { column, kind }
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        while self.peek(0).is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
        let column = self.pos + 1;
        let Some(c) = self.peek(0) else {
            return Ok(Token {
                tok: Tok::End,
                column,
            });
        };
        let next = self.peek(1);
        let (tok, len) = match (c, next) {
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            (',', _) => (Tok::Comma, 1),
            ('^', _) => (Tok::Caret, 1),
            ('*', _) => (Tok::Star, 1),
            ('/', _) => (Tok::Slash, 1),
            ('%', _) => (Tok::Percent, 1),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            ('<', Some('=')) => (Tok::Le, 2),
            ('<', _) => (Tok::Lt, 1),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('>', _) => (Tok::Gt, 1),
            ('=', Some('=')) => (Tok::EqEq, 2),
            ('!', Some('=')) => (Tok::Ne, 2),
            ('!', _) => (Tok::Not, 1),
            ('&', Some('&')) => (Tok::AndAnd, 2),
            ('|', Some('|')) => (Tok::OrOr, 2),
            ('=', _) => return Err(self.expected(column, "`==`", "`=`")),
            ('&', _) => return Err(self.expected(column, "`&&`", "`&`")),
            ('|', _) => return Err(self.expected(column, "`||`", "`|`")),
            ('"' | '\'', _) => return self.string(c, column),
            ('$', _) => return self.input(column),
            (c, _)
                if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) =>
            {
                return self.number(column)
            }
            (c, _) if c.is_alphabetic() || c == '_' => return self.ident(column),
            (c, _) => return Err(self.error(column, ParseErrorKind::UnexpectedChar(c))),
        };
        self.pos += len;
        Ok(Token { tok, column })
    }

    fn expected(&self, column: usize, expected: &'static str, found: &str) -> ParseError {
        self.error(
            column,
            ParseErrorKind::Expected {
                expected,
                found: found.to_owned(),
            },
        )
    }

    /// A string in double quotes (the documented form) or single quotes (which the
    /// conversions page uses in its `if` example). Backslash escapes `\" \' \\ \n \t \r`.
    fn string(&mut self, quote: char, column: usize) -> Result<Token, ParseError> {
        self.pos += 1;
        let mut text = String::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Err(self.error(column, ParseErrorKind::UnterminatedString));
            };
            self.pos += 1;
            match c {
                c if c == quote => break,
                '\\' => {
                    let escaped = match self.peek(0) {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some(c @ ('"' | '\'' | '\\')) => c,
                        Some(other) => {
                            return Err(
                                self.error(self.pos + 1, ParseErrorKind::InvalidEscape(other))
                            )
                        }
                        None => return Err(self.error(column, ParseErrorKind::UnterminatedString)),
                    };
                    self.pos += 1;
                    text.push(escaped);
                }
                c => text.push(c),
            }
        }
        Ok(Token {
            tok: Tok::Str(text),
            column,
        })
    }

    fn input(&mut self, column: usize) -> Result<Token, ParseError> {
        self.pos += 1;
        let start = self.pos;
        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            let found = self.word_at(start);
            return Err(ParseError {
                column,
                kind: ParseErrorKind::BadInputReference(found),
            });
        }
        let digits: String = self.chars[start..self.pos].iter().collect();
        match digits.parse::<usize>() {
            Ok(0) | Err(_) => Err(self.error(column, ParseErrorKind::BadInputReference(digits))),
            Ok(n) => Ok(Token {
                tok: Tok::Input(n),
                column,
            }),
        }
    }

    /// The identifier-like text at `pos`, for error messages (`$last` → `last`).
    fn word_at(&self, pos: usize) -> String {
        self.chars[pos..]
            .iter()
            .take_while(|c| c.is_alphanumeric() || **c == '_')
            .collect()
    }

    fn number(&mut self, column: usize) -> Result<Token, ParseError> {
        let start = self.pos;
        let mut is_float = false;
        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            is_float = true;
            self.pos += 1;
            while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek(1), Some('+' | '-')));
            if self.peek(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                is_float = true;
                self.pos += 1 + sign;
                while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
            }
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        if self
            .peek(0)
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            let rest = self.word_at(self.pos);
            return Err(self.error(column, ParseErrorKind::InvalidNumber(text + &rest)));
        }
        let tok = if is_float {
            text.parse().map(Tok::Float).ok()
        } else {
            text.parse().map(Tok::Int).ok()
        };
        match tok {
            Some(tok) => Ok(Token { tok, column }),
            None => Err(self.error(column, ParseErrorKind::InvalidNumber(text))),
        }
    }

    fn ident(&mut self, column: usize) -> Result<Token, ParseError> {
        let mut name = String::new();
        loop {
            while let Some(c) = self.peek(0).filter(|c| c.is_alphanumeric() || *c == '_') {
                name.push(c);
                self.pos += 1;
            }
            let continues = self.peek(0) == Some(':')
                && self.peek(1) == Some(':')
                && self.peek(2).is_some_and(|c| c.is_alphabetic() || c == '_');
            if !continues {
                break;
            }
            name.push_str("::");
            self.pos += 2;
        }
        let tok = match name.as_str() {
            "true" => Tok::Bool(true),
            "false" => Tok::Bool(false),
            _ => Tok::Ident(name),
        };
        Ok(Token { tok, column })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        tokenize(src)
            .expect("valid")
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn splits_operators_numbers_and_names() {
        assert_eq!(
            toks("math::sqrt($1)>=2.5e1&&!x"),
            vec![
                Tok::Ident("math::sqrt".into()),
                Tok::LParen,
                Tok::Input(1),
                Tok::RParen,
                Tok::Ge,
                Tok::Float(25.0),
                Tok::AndAnd,
                Tok::Not,
                Tok::Ident("x".into()),
                Tok::End
            ]
        );
    }

    #[test]
    fn strings_take_either_quote_and_escapes() {
        assert_eq!(
            toks(r#""a\"b" 'c'"#),
            vec![Tok::Str("a\"b".into()), Tok::Str("c".into()), Tok::End]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let tokens = tokenize("\"é\" + $2").expect("valid");
        assert_eq!(tokens[1].column, 5);
        assert_eq!(tokens[2].column, 7);
    }

    #[test]
    fn lone_equals_asks_for_double_equals() {
        let err = tokenize("$1 = 2").expect_err("invalid");
        assert_eq!(err.to_string(), "column 4: expected `==`, found `=`");
    }

    #[test]
    fn dollar_zero_and_dollar_last_are_rejected() {
        assert_eq!(
            tokenize("$0").expect_err("invalid").kind,
            ParseErrorKind::BadInputReference("0".into())
        );
        assert_eq!(
            tokenize("$last").expect_err("invalid").kind,
            ParseErrorKind::BadInputReference("last".into())
        );
    }
}

//! A Pratt parser from tokens to the expression tree.
//!
//! Precedence, tightest first: `^` (right-associative), unary `-` and `!`, `* / %`,
//! `+ -`, `< > <= >=`, `== !=`, `&&`, `||`; all binary operators but `^` associate to
//! the left. Unary minus sits below `^` as the conversions page says ("negation sticks to
//! its neighbour, except when exponentiation is involved"), so `-2 ^ 2` is `-4`.

use super::error::{ParseError, ParseErrorKind};
use super::functions::Func;
use super::lexer::{Tok, Token};
use super::ops::{BinOp, UnOp};
use super::{Lit, Node};

/// Deeper nesting than this is refused rather than risking the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// Longer expressions are refused. Besides nesting, a long operator chain
/// (`1 + 1 + …`) also makes a deep tree, and evaluating or dropping a tree recurses;
/// bounding the tokens bounds the tree's height.
pub(crate) const MAX_TOKENS: usize = 512;

/// Binding power of the operand of unary `-` and `!`.
const UNARY_BP: u8 = 13;

pub(crate) fn parse(tokens: Vec<Token>, inputs: usize) -> Result<Node, ParseError> {
    if let Some(token) = tokens.get(MAX_TOKENS) {
        return Err(ParseError {
            column: token.column,
            kind: ParseErrorKind::TooLong(MAX_TOKENS),
        });
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        inputs,
        depth: 0,
    };
    let node = parser.expr(0)?;
    let token = parser.peek();
    if token.tok != Tok::End {
        return Err(parser.unexpected("an operator or the end of the expression"));
    }
    Ok(node)
}

enum Infix {
    Binary(BinOp),
    And,
    Or,
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    inputs: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        // The lexer always ends the list with `End`; past it we keep answering `End`.
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[self.pos.min(last)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn unexpected(&self, expected: &'static str) -> ParseError {
        let token = self.peek();
        let kind = match &token.tok {
            Tok::Ident(word) if word == "and" => {
                ParseErrorKind::KeywordOperator(word.clone(), "&&")
            }
            Tok::Ident(word) if word == "or" => ParseErrorKind::KeywordOperator(word.clone(), "||"),
            Tok::Ident(word) if word == "not" => ParseErrorKind::KeywordOperator(word.clone(), "!"),
            tok => ParseErrorKind::Expected {
                expected,
                found: tok.describe(),
            },
        };
        ParseError {
            column: token.column,
            kind,
        }
    }

    fn expect(&mut self, tok: Tok, expected: &'static str) -> Result<(), ParseError> {
        if self.peek().tok == tok {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn expr(&mut self, min_bp: u8) -> Result<Node, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError {
                column: self.peek().column,
                kind: ParseErrorKind::TooDeep(MAX_DEPTH),
            });
        }
        let mut lhs = self.prefix()?;
        while let Some((infix, left_bp, right_bp)) = infix(&self.peek().tok) {
            if left_bp < min_bp {
                break;
            }
            self.advance();
            let rhs = Box::new(self.expr(right_bp)?);
            let l = Box::new(lhs);
            lhs = match infix {
                Infix::Binary(op) => Node::Binary(op, l, rhs),
                Infix::And => Node::And(l, rhs),
                Infix::Or => Node::Or(l, rhs),
            };
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn prefix(&mut self) -> Result<Node, ParseError> {
        let token = self.peek().clone();
        let node = match token.tok {
            Tok::Int(i) => Node::Lit(Lit::Int(i)),
            Tok::Float(x) => Node::Lit(Lit::Float(x)),
            Tok::Str(s) => Node::Lit(Lit::Str(s)),
            Tok::Bool(b) => Node::Lit(Lit::Bool(b)),
            Tok::Input(n) if n > self.inputs => {
                return Err(ParseError {
                    column: token.column,
                    kind: ParseErrorKind::InputOutOfRange {
                        index: n,
                        available: self.inputs,
                    },
                })
            }
            Tok::Input(n) => Node::Input(n - 1),
            Tok::Minus | Tok::Not => {
                self.advance();
                let op = if token.tok == Tok::Minus {
                    UnOp::Neg
                } else {
                    UnOp::Not
                };
                return Ok(Node::Unary(op, Box::new(self.expr(UNARY_BP)?)));
            }
            Tok::LParen => return self.group(),
            Tok::Ident(name) => return self.call(name, token.column),
            _ => return Err(self.unexpected("a value")),
        };
        self.advance();
        Ok(node)
    }

    /// `()` (Empty), `(e)` (grouping) or `(a, b, …)` (a tuple).
    fn group(&mut self) -> Result<Node, ParseError> {
        self.advance();
        if self.peek().tok == Tok::RParen {
            self.advance();
            return Ok(Node::Lit(Lit::Empty));
        }
        let first = self.expr(0)?;
        if self.peek().tok != Tok::Comma {
            self.expect(Tok::RParen, "`)`")?;
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek().tok == Tok::Comma {
            self.advance();
            items.push(self.expr(0)?);
        }
        self.expect(Tok::RParen, "`,` or `)`")?;
        Ok(Node::Tuple(items))
    }

    fn call(&mut self, name: String, column: usize) -> Result<Node, ParseError> {
        if matches!(name.as_str(), "and" | "or" | "not") {
            return Err(self.unexpected("a value"));
        }
        self.advance();
        if self.peek().tok != Tok::LParen {
            return Err(self.unexpected("`(` after a function name"));
        }
        let func = Func::lookup(&name).map_err(|kind| ParseError { column, kind })?;
        self.advance();
        let mut args = Vec::new();
        if self.peek().tok == Tok::RParen {
            self.advance();
        } else {
            loop {
                args.push(self.expr(0)?);
                if self.peek().tok == Tok::Comma {
                    self.advance();
                    continue;
                }
                self.expect(Tok::RParen, "`,` or `)`")?;
                break;
            }
        }
        func.check_arity(args.len())
            .map_err(|kind| ParseError { column, kind })?;
        match (func, <[Node; 3]>::try_from(args)) {
            (Func::If, Ok([c, a, b])) => Ok(Node::If(Box::new(c), Box::new(a), Box::new(b))),
            (_, Ok(three)) => Ok(Node::Call(func, three.into())),
            (_, Err(args)) => Ok(Node::Call(func, args)),
        }
    }
}

/// Operator, left and right binding power.
fn infix(tok: &Tok) -> Option<(Infix, u8, u8)> {
    let binary = |op, l, r| Some((Infix::Binary(op), l, r));
    match tok {
        Tok::OrOr => Some((Infix::Or, 1, 2)),
        Tok::AndAnd => Some((Infix::And, 3, 4)),
        Tok::EqEq => binary(BinOp::Eq, 5, 6),
        Tok::Ne => binary(BinOp::Ne, 5, 6),
        Tok::Lt => binary(BinOp::Lt, 7, 8),
        Tok::Gt => binary(BinOp::Gt, 7, 8),
        Tok::Le => binary(BinOp::Le, 7, 8),
        Tok::Ge => binary(BinOp::Ge, 7, 8),
        Tok::Plus => binary(BinOp::Add, 9, 10),
        Tok::Minus => binary(BinOp::Sub, 9, 10),
        Tok::Star => binary(BinOp::Mul, 11, 12),
        Tok::Slash => binary(BinOp::Div, 11, 12),
        Tok::Percent => binary(BinOp::Rem, 11, 12),
        // Right-associative: the right side binds at less than the left.
        Tok::Caret => binary(BinOp::Pow, 15, 14),
        _ => None,
    }
}

//! The client group query language: which clients belong to a group.
//!
//! Grammar (keywords `and`, `or`, `in` and the operand names are case-insensitive; attribute keys
//! are exact):
//!
//! ```text
//! query     = and_expr { "or" and_expr }
//! and_expr  = primary { "and" primary }
//! primary   = "(" query ")" | predicate
//! predicate = operand ( "=" | "<>" | "!=" ) literal
//!           | operand ( "<" | ">" | "<=" | ">=" ) integer
//!           | operand "in" "[" literal { "," literal } "]"
//! operand   = "authenticationName" | "attributes." key        key = [A-Za-z0-9_]+
//! literal   = '...' | "..." | integer                         integer = [-]digits (64-bit)
//! ```
//!
//! `and` binds tighter than `or`, so `a or b and c` is `a or (b and c)`. Strings have no escapes:
//! a string ends at the next quote of the kind that opened it.
//!
//! Semantics (Event Grid documents the syntax, not these edge cases; ours are the safe reading):
//! - A missing attribute makes every predicate on it false, `<>` included.
//! - A type mismatch (string literal against an integer attribute or the reverse) is false, for
//!   `<>` too: `attributes.floor <> 'x'` does not select a client whose floor is 3.
//! - A string-array attribute satisfies `=` and `in` when any element does; `<>` when no
//!   element equals the literal. Ordering operators take integers only (a string literal there
//!   is a parse error) and are false on strings and arrays.
//! - Comparison is exact and case-sensitive, the authentication name included.
//!
//! Errors name the 0-based character position, what was found and what was expected, e.g.
//! `unexpected token ')' at 14, expected an operand (authenticationName or attributes.<key>)`.
//! Invariant: evaluation never fails and never allocates; nesting is bounded by [`MAX_DEPTH`].

use std::fmt;

use crate::access::ClientView;
use crate::hooks::AttributeValue;

/// The deepest nesting of parentheses a query may use.
pub const MAX_DEPTH: usize = 32;

/// A parsed query, ready to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    expr: Expr,
}

/// Why a query did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected {found} at {position}, expected {expected}")]
pub struct QueryError {
    /// 0-based character offset of the offending token.
    pub position: usize,
    /// What was there, e.g. `token ')'` or `end of query`.
    pub found: String,
    /// What the parser wanted instead.
    pub expected: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Predicate(Operand, Test),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Operand {
    AuthenticationName,
    Attribute(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Eq(Literal),
    Ne(Literal),
    Lt(i64),
    Gt(i64),
    Le(i64),
    Ge(i64),
    In(Vec<Literal>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Literal {
    String(String),
    Integer(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    String(String),
    Integer(i64),
    Word(String),
}

const EXPECT_OPERAND: &str = "an operand (authenticationName or attributes.<key>)";
const EXPECT_OPERATOR: &str = "an operator (=, <>, !=, <, >, <=, >= or in)";
const EXPECT_LITERAL: &str = "a string or integer literal";

// === impl Query ===

impl Query {
    /// Parses a query.
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        let tokens = lex(text)?;
        let mut parser = Parser { tokens, next: 0, end: text.chars().count() };
        let expr = parser.or_expr(0)?;
        match parser.peek() {
            None => Ok(Query { expr }),
            Some(_) => Err(parser.unexpected("'and', 'or' or the end of the query")),
        }
    }

    /// True when the client belongs to the group this query defines.
    pub fn matches(&self, client: &ClientView<'_>) -> bool {
        self.expr.eval(client)
    }
}

impl std::str::FromStr for Query {
    type Err = QueryError;

    fn from_str(text: &str) -> Result<Query, QueryError> {
        Query::parse(text)
    }
}

// === impl Expr ===

impl Expr {
    fn eval(&self, client: &ClientView<'_>) -> bool {
        match self {
            Expr::Or(terms) => terms.iter().any(|term| term.eval(client)),
            Expr::And(terms) => terms.iter().all(|term| term.eval(client)),
            Expr::Predicate(operand, test) => {
                let value = match operand {
                    Operand::AuthenticationName => Value::Str(client.authentication_name),
                    Operand::Attribute(key) => match client.attributes.get(key) {
                        Some(AttributeValue::String(s)) => Value::Str(s),
                        Some(AttributeValue::Integer(i)) => Value::Int(*i),
                        Some(AttributeValue::StringArray(items)) => Value::Array(items),
                        None => return false,
                    },
                };
                test.eval(value)
            }
        }
    }
}

/// An operand's value during evaluation, borrowed from the client.
#[derive(Clone, Copy)]
enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Array(&'a [String]),
}

impl Test {
    fn eval(&self, value: Value<'_>) -> bool {
        let int = |f: &dyn Fn(i64) -> bool| matches!(value, Value::Int(v) if f(v));
        match self {
            Test::Eq(literal) => equals(value, literal),
            Test::Ne(literal) => comparable(value, literal) && !equals(value, literal),
            Test::In(literals) => literals.iter().any(|literal| equals(value, literal)),
            Test::Lt(n) => int(&|v| v < *n),
            Test::Gt(n) => int(&|v| v > *n),
            Test::Le(n) => int(&|v| v <= *n),
            Test::Ge(n) => int(&|v| v >= *n),
        }
    }
}

/// Equality with Event Grid's any-element rule for arrays; false across types.
fn equals(value: Value<'_>, literal: &Literal) -> bool {
    match (value, literal) {
        (Value::Str(v), Literal::String(s)) => v == s,
        (Value::Array(items), Literal::String(s)) => items.iter().any(|item| item == s),
        (Value::Int(v), Literal::Integer(n)) => v == *n,
        _ => false,
    }
}

/// Whether the value and literal have types that can be compared at all.
fn comparable(value: Value<'_>, literal: &Literal) -> bool {
    matches!(
        (value, literal),
        (Value::Str(_) | Value::Array(_), Literal::String(_))
            | (Value::Int(_), Literal::Integer(_))
    )
}

// === parser ===

struct Parser {
    /// Each token with its 0-based character position.
    tokens: Vec<(usize, Token)>,
    next: usize,
    /// The query's length in characters: the position of "end of query".
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, token)| token)
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).map(|(_, token)| token.clone());
        self.next += 1;
        token
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(word)) if word.eq_ignore_ascii_case(keyword))
    }

    /// An error about the next token (or the end of the query).
    fn unexpected(&self, expected: &'static str) -> QueryError {
        match self.tokens.get(self.next) {
            Some((position, token)) => {
                QueryError { position: *position, found: format!("token {token}"), expected }
            }
            None => QueryError { position: self.end, found: "end of query".into(), expected },
        }
    }

    fn or_expr(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut terms = vec![self.and_expr(depth)?];
        while self.peek_keyword("or") {
            self.next += 1;
            terms.push(self.and_expr(depth)?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::Or(terms) })
    }

    fn and_expr(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut terms = vec![self.primary(depth)?];
        while self.peek_keyword("and") {
            self.next += 1;
            terms.push(self.primary(depth)?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::And(terms) })
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, QueryError> {
        if self.peek() != Some(&Token::LParen) {
            return self.predicate();
        }
        if depth >= MAX_DEPTH {
            return Err(self.unexpected("at most 32 nested parentheses"));
        }
        self.next += 1;
        let expr = self.or_expr(depth + 1)?;
        if self.peek() != Some(&Token::RParen) {
            return Err(self.unexpected("')', 'and' or 'or'"));
        }
        self.next += 1;
        Ok(expr)
    }

    fn predicate(&mut self) -> Result<Expr, QueryError> {
        let operand = match self.peek() {
            Some(Token::Word(word)) => operand(word).ok_or_else(|| self.unexpected(EXPECT_OPERAND)),
            _ => Err(self.unexpected(EXPECT_OPERAND)),
        }?;
        self.next += 1;
        let test = match self.peek() {
            Some(Token::Eq) => Test::Eq(self.after_operator(Parser::literal)?),
            Some(Token::Ne) => Test::Ne(self.after_operator(Parser::literal)?),
            Some(Token::Lt) => Test::Lt(self.after_operator(Parser::integer)?),
            Some(Token::Gt) => Test::Gt(self.after_operator(Parser::integer)?),
            Some(Token::Le) => Test::Le(self.after_operator(Parser::integer)?),
            Some(Token::Ge) => Test::Ge(self.after_operator(Parser::integer)?),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("in") => {
                self.next += 1;
                Test::In(self.list()?)
            }
            _ => return Err(self.unexpected(EXPECT_OPERATOR)),
        };
        Ok(Expr::Predicate(operand, test))
    }

    fn after_operator<T>(
        &mut self,
        value: fn(&mut Parser) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        self.next += 1;
        value(self)
    }

    fn literal(&mut self) -> Result<Literal, QueryError> {
        match self.peek() {
            Some(Token::String(s)) => {
                let literal = Literal::String(s.clone());
                self.next += 1;
                Ok(literal)
            }
            Some(Token::Integer(n)) => {
                let literal = Literal::Integer(*n);
                self.next += 1;
                Ok(literal)
            }
            _ => Err(self.unexpected(EXPECT_LITERAL)),
        }
    }

    fn integer(&mut self) -> Result<i64, QueryError> {
        match self.peek() {
            Some(Token::Integer(n)) => {
                let n = *n;
                self.next += 1;
                Ok(n)
            }
            _ => Err(self.unexpected("an integer (ordering compares integers only)")),
        }
    }

    fn list(&mut self) -> Result<Vec<Literal>, QueryError> {
        if self.peek() != Some(&Token::LBracket) {
            return Err(self.unexpected("'[' opening the list"));
        }
        self.next += 1;
        let mut literals = vec![self.literal()?];
        loop {
            match self.bump() {
                Some(Token::Comma) => literals.push(self.literal()?),
                Some(Token::RBracket) => return Ok(literals),
                _ => {
                    self.next -= 1;
                    return Err(self.unexpected("',' or ']'"));
                }
            }
        }
    }
}

/// The operand a word names, if any.
fn operand(word: &str) -> Option<Operand> {
    if word.eq_ignore_ascii_case("authenticationName") {
        return Some(Operand::AuthenticationName);
    }
    let prefix = word.get(..11)?;
    let key = &word[11..];
    let key_ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (prefix.eq_ignore_ascii_case("attributes.") && key_ok)
        .then(|| Operand::Attribute(key.to_string()))
}

// === lexer ===

fn lex(text: &str) -> Result<Vec<(usize, Token)>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let token = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Token::LParen,
            ')' => Token::RParen,
            '[' => Token::LBracket,
            ']' => Token::RBracket,
            ',' => Token::Comma,
            '=' => Token::Eq,
            '!' if next == Some('=') => {
                i += 1;
                Token::Ne
            }
            '<' if next == Some('>') => {
                i += 1;
                Token::Ne
            }
            '<' if next == Some('=') => {
                i += 1;
                Token::Le
            }
            '>' if next == Some('=') => {
                i += 1;
                Token::Ge
            }
            '<' => Token::Lt,
            '>' => Token::Gt,
            '\'' | '"' => {
                let close = chars[i + 1..].iter().position(|&q| q == c).ok_or(QueryError {
                    position: start,
                    found: "unterminated string".into(),
                    expected: "a closing quote",
                })?;
                let s: String = chars[i + 1..i + 1 + close].iter().collect();
                i += close + 1;
                Token::String(s)
            }
            '-' | '0'..='9' => {
                let mut end = i + 1;
                while end < chars.len() && chars[end].is_ascii_digit() {
                    end += 1;
                }
                let digits: String = chars[i..end].iter().collect();
                let n = digits.parse::<i64>().map_err(|_| QueryError {
                    position: start,
                    found: format!("number {digits}"),
                    expected: "a 64-bit integer",
                })?;
                i = end - 1;
                Token::Integer(n)
            }
            c if is_word_char(c) => {
                let mut end = i + 1;
                while end < chars.len() && is_word_char(chars[end]) {
                    end += 1;
                }
                let word: String = chars[i..end].iter().collect();
                i = end - 1;
                Token::Word(word)
            }
            other => {
                return Err(QueryError {
                    position: start,
                    found: format!("character {other:?}"),
                    expected: "a token",
                });
            }
        };
        tokens.push((start, token));
        i += 1;
    }
    Ok(tokens)
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$'
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::LParen => f.write_str("'('"),
            Token::RParen => f.write_str("')'"),
            Token::LBracket => f.write_str("'['"),
            Token::RBracket => f.write_str("']'"),
            Token::Comma => f.write_str("','"),
            Token::Eq => f.write_str("'='"),
            Token::Ne => f.write_str("'<>'"),
            Token::Lt => f.write_str("'<'"),
            Token::Gt => f.write_str("'>'"),
            Token::Le => f.write_str("'<='"),
            Token::Ge => f.write_str("'>='"),
            Token::String(s) => write!(f, "{s:?}"),
            Token::Integer(n) => write!(f, "{n}"),
            Token::Word(w) => write!(f, "'{w}'"),
        }
    }
}

#[cfg(test)]
mod tests;

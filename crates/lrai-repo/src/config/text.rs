//! Protobuf text format, parsed into a generic tree of fields with positions.
//!
//! This is the subset `config.pbtxt` files use, written by hand rather than pulled in with a
//! protobuf reflection stack: messages in `{}` or `<>` (the `:` before them is optional),
//! scalars (strings in `""` or `''` with C escapes, adjacent strings concatenated, numbers
//! with a leading `-`, identifiers for enums and booleans), repeated fields written either
//! as repeated entries or as `[a, b]` lists, `#` comments, and `,` or `;` after a field.
//! A list is flattened into repeated entries, which is what protobuf makes of it too.
//!
//! The parser never panics: every failure is a [`RepoError::Syntax`] with line and column,
//! and nesting is capped at [`MAX_DEPTH`] so hostile input cannot overflow the stack.

use std::fmt;

use crate::{RepoError, Result};

/// Deepest nesting of messages accepted; Triton's schema needs 5.
pub const MAX_DEPTH: usize = 64;

/// A position in the text: 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A message: its fields in the order written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    /// Fields in text order; a repeated field appears once per value.
    pub fields: Vec<Field>,
}

/// One field with one value (a `[a, b]` list becomes one `Field` per element).
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The field name.
    pub name: String,
    /// Where the name is.
    pub pos: Pos,
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub value_pos: Pos,
}

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar.
    Scalar(Scalar),
    /// A nested message.
    Message(Message),
}

/// A scalar as written; typed interpretation is left to the schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A string (escapes resolved, adjacent literals joined).
    Str(String),
    /// A number as written, with its sign (`-12`, `0x1f`, `1.5e3`, `-inf`).
    Number(String),
    /// An identifier: an enum name or a boolean (`TYPE_FP32`, `true`).
    Ident(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => write!(f, "{s:?}"),
            Scalar::Number(n) => f.write_str(n),
            Scalar::Ident(i) => f.write_str(i),
        }
    }
}

impl Value {
    /// Short description for error messages: the scalar, or `a message`.
    pub fn describe(&self) -> String {
        match self {
            Value::Scalar(s) => s.to_string(),
            Value::Message(_) => "a message".to_string(),
        }
    }
}

/// Parses a whole document (the body of the top-level message).
///
/// # Errors
/// [`RepoError::Syntax`] at the first problem: an unexpected character or token, an
/// unterminated string or message, a bad escape, non-UTF-8 string bytes, or nesting deeper
/// than [`MAX_DEPTH`].
pub fn parse(text: &str) -> Result<Message> {
    let tokens = Lexer::new(text).tokens()?;
    let mut parser = Parser {
        tokens,
        at: 0,
        depth: 0,
    };
    let fields = parser.body(None)?;
    Ok(Message { fields })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Number(String),
    Str(String),
    Sym(char),
    Eof,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) | Token::Number(s) => format!("'{s}'"),
            Token::Str(s) => format!("string {s:?}"),
            Token::Sym(c) => format!("'{c}'"),
            Token::Eof => "end of input".to_string(),
        }
    }
}

fn syntax(pos: Pos, expected: impl Into<String>, found: impl Into<String>) -> RepoError {
    RepoError::Syntax {
        pos,
        expected: expected.into(),
        found: found.into(),
    }
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
    line: usize,
    column: usize,
}

impl Lexer {
    fn new(text: &str) -> Lexer {
        Lexer {
            chars: text.chars().collect(),
            at: 0,
            line: 1,
            column: 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at.saturating_add(ahead)).copied()
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn tokens(mut self) -> Result<Vec<(Token, Pos)>> {
        let mut out = Vec::new();
        loop {
            self.skip_space();
            let pos = self.pos();
            let Some(c) = self.peek() else {
                out.push((Token::Eof, pos));
                return Ok(out);
            };
            let token = if c.is_ascii_alphabetic() || c == '_' {
                Token::Ident(self.take_while(|c, _| c.is_ascii_alphanumeric() || c == '_'))
            } else if c.is_ascii_digit()
                || (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit()))
            {
                Token::Number(self.number())
            } else if c == '"' || c == '\'' {
                Token::Str(self.string(c)?)
            } else if "{}<>[]:,;-".contains(c) {
                self.bump();
                Token::Sym(c)
            } else {
                return Err(syntax(
                    pos,
                    "a field name, value or one of { } < > [ ] : , ; -",
                    format!("{c:?}"),
                ));
            };
            out.push((token, pos));
        }
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else if c.is_whitespace() {
                self.bump();
            } else {
                break;
            }
        }
    }

    /// Takes characters while `keep(c, taken_so_far)` holds.
    fn take_while(&mut self, keep: impl Fn(char, &str) -> bool) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if !keep(c, &s) {
                break;
            }
            s.push(c);
            self.bump();
        }
        s
    }

    /// A number token: digits, letters (hex, exponent, `f` suffix), `.`, and a sign right
    /// after a decimal exponent. Its meaning is checked when a field reads it.
    fn number(&mut self) -> String {
        self.take_while(|c, s| {
            let hex = s.starts_with("0x") || s.starts_with("0X");
            c.is_ascii_alphanumeric()
                || c == '_'
                || c == '.'
                || ((c == '+' || c == '-') && !hex && (s.ends_with('e') || s.ends_with('E')))
        })
    }

    fn string(&mut self, quote: char) -> Result<String> {
        let start = self.pos();
        self.bump();
        let mut bytes: Vec<u8> = Vec::new();
        loop {
            let pos = self.pos();
            match self.bump() {
                None => return Err(syntax(pos, format!("closing {quote}"), "end of input")),
                Some('\n') => {
                    return Err(syntax(
                        pos,
                        format!("closing {quote} (strings cannot span lines)"),
                        "end of line",
                    ));
                }
                Some(c) if c == quote => break,
                Some('\\') => self.escape(pos, &mut bytes)?,
                Some(c) => {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        String::from_utf8(bytes).map_err(|_| {
            syntax(
                start,
                "a string of UTF-8 text",
                "escapes that make invalid UTF-8",
            )
        })
    }

    fn escape(&mut self, pos: Pos, bytes: &mut Vec<u8>) -> Result<()> {
        const EXPECTED: &str = "an escape: \\n \\t \\r \\a \\b \\f \\v \\\\ \\' \\\" \\? \\NNN \\xHH \\uHHHH \\UHHHHHHHH";
        let Some(c) = self.bump() else {
            return Err(syntax(pos, EXPECTED, "end of input"));
        };
        let simple = match c {
            'n' => Some(b'\n'),
            't' => Some(b'\t'),
            'r' => Some(b'\r'),
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '\'' => Some(b'\''),
            '"' => Some(b'"'),
            '?' => Some(b'?'),
            _ => None,
        };
        if let Some(b) = simple {
            bytes.push(b);
            return Ok(());
        }
        match c {
            '0'..='7' => {
                let mut value = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            self.bump();
                        }
                        None => break,
                    }
                }
                let byte = u8::try_from(value).map_err(|_| {
                    syntax(pos, "an octal escape up to \\377", format!("{value:o}"))
                })?;
                bytes.push(byte);
            }
            'x' | 'X' => {
                let value = self.hex_digits(pos, 1, 2)?;
                // At most two hex digits: the value fits a byte.
                bytes.push(u8::try_from(value).unwrap_or(u8::MAX));
            }
            'u' | 'U' => {
                let n = if c == 'u' { 4 } else { 8 };
                let value = self.hex_digits(pos, n, n)?;
                let ch = char::from_u32(value).ok_or_else(|| {
                    syntax(pos, "a Unicode scalar value", format!("\\{c}{value:x}"))
                })?;
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            other => return Err(syntax(pos, EXPECTED, format!("\\{other}"))),
        }
        Ok(())
    }

    fn hex_digits(&mut self, pos: Pos, min: usize, max: usize) -> Result<u32> {
        let mut value: u32 = 0;
        let mut n = 0;
        while n < max {
            match self.peek().and_then(|d| d.to_digit(16)) {
                Some(d) => {
                    value = value.saturating_mul(16).saturating_add(d);
                    self.bump();
                    n += 1;
                }
                None => break,
            }
        }
        if n < min {
            let found = self
                .peek()
                .map_or_else(|| "end of input".to_string(), |c| format!("{c:?}"));
            return Err(syntax(
                pos,
                format!("{min} hex digit(s) in the escape"),
                found,
            ));
        }
        Ok(value)
    }
}

struct Parser {
    tokens: Vec<(Token, Pos)>,
    at: usize,
    depth: usize,
}

const EOF: (Token, Pos) = (Token::Eof, Pos { line: 1, column: 1 });

impl Parser {
    fn peek(&self) -> &(Token, Pos) {
        // The lexer always ends the list with Eof, and `next` never moves past it.
        self.tokens
            .get(self.at)
            .or(self.tokens.last())
            .unwrap_or(&EOF)
    }

    fn next(&mut self) -> (Token, Pos) {
        let t = self.peek().clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        t
    }

    fn peek_sym(&self, c: char) -> bool {
        self.peek().0 == Token::Sym(c)
    }

    /// Fields up to `close` (a closing symbol and the opening position), or to the end.
    fn body(&mut self, close: Option<(char, Pos)>) -> Result<Vec<Field>> {
        let mut fields = Vec::new();
        loop {
            let (token, pos) = self.next();
            match token {
                Token::Eof => {
                    return match close {
                        None => Ok(fields),
                        Some((c, open)) => Err(syntax(
                            pos,
                            format!("'{c}' to close the message opened at {open}"),
                            "end of input",
                        )),
                    };
                }
                Token::Sym(c) if close.is_some_and(|(close, _)| close == c) => return Ok(fields),
                Token::Ident(name) => {
                    self.field(name, pos, &mut fields)?;
                    if self.peek_sym(',') || self.peek_sym(';') {
                        self.next();
                    }
                }
                Token::Sym('[') => {
                    return Err(syntax(
                        pos,
                        "a field name (extension and Any fields in [...] are not supported)",
                        "'['",
                    ));
                }
                other => return Err(syntax(pos, "a field name", other.describe())),
            }
        }
    }

    fn field(&mut self, name: String, pos: Pos, out: &mut Vec<Field>) -> Result<()> {
        let colon = self.peek_sym(':');
        if colon {
            self.next();
        }
        let (token, value_pos) = self.peek().clone();
        match token {
            Token::Sym('{') | Token::Sym('<') => {
                let value = Value::Message(self.message()?);
                out.push(Field {
                    name,
                    pos,
                    value,
                    value_pos,
                });
                Ok(())
            }
            Token::Sym('[') => self.list(&name, pos, out),
            _ if colon => {
                let value = Value::Scalar(self.scalar()?);
                out.push(Field {
                    name,
                    pos,
                    value,
                    value_pos,
                });
                Ok(())
            }
            other => Err(syntax(
                value_pos,
                format!("':' or '{{' after field name '{name}'"),
                other.describe(),
            )),
        }
    }

    fn message(&mut self) -> Result<Message> {
        let (open, pos) = self.next();
        let close = if open == Token::Sym('<') { '>' } else { '}' };
        if self.depth >= MAX_DEPTH {
            return Err(syntax(
                pos,
                format!("at most {MAX_DEPTH} nested messages"),
                "deeper nesting",
            ));
        }
        self.depth += 1;
        let fields = self.body(Some((close, pos)));
        self.depth -= 1;
        Ok(Message { fields: fields? })
    }

    fn list(&mut self, name: &str, pos: Pos, out: &mut Vec<Field>) -> Result<()> {
        self.next(); // '['
        if self.peek_sym(']') {
            self.next();
            return Ok(());
        }
        loop {
            let (token, value_pos) = self.peek().clone();
            let value = match token {
                Token::Sym('{') | Token::Sym('<') => Value::Message(self.message()?),
                _ => Value::Scalar(self.scalar()?),
            };
            out.push(Field {
                name: name.to_string(),
                pos,
                value,
                value_pos,
            });
            let (token, at) = self.next();
            match token {
                Token::Sym(',') if self.peek_sym(']') => {
                    self.next();
                    return Ok(());
                }
                Token::Sym(',') => {}
                Token::Sym(']') => return Ok(()),
                other => {
                    return Err(syntax(
                        at,
                        format!("',' or ']' in the list of field '{name}'"),
                        other.describe(),
                    ));
                }
            }
        }
    }

    fn scalar(&mut self) -> Result<Scalar> {
        let (token, pos) = self.next();
        match token {
            Token::Str(mut s) => {
                while let Token::Str(more) = &self.peek().0 {
                    s.push_str(more);
                    self.next();
                }
                Ok(Scalar::Str(s))
            }
            Token::Number(n) => Ok(Scalar::Number(n)),
            Token::Ident(i) => Ok(Scalar::Ident(i)),
            Token::Sym('-') => {
                let (token, at) = self.next();
                match token {
                    Token::Number(n) => Ok(Scalar::Number(format!("-{n}"))),
                    Token::Ident(i)
                        if ["inf", "infinity", "nan"]
                            .contains(&i.to_ascii_lowercase().as_str()) =>
                    {
                        Ok(Scalar::Number(format!("-{i}")))
                    }
                    other => Err(syntax(at, "a number after '-'", other.describe())),
                }
            }
            other => Err(syntax(pos, "a value", other.describe())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(f: &Field) -> &Scalar {
        match &f.value {
            Value::Scalar(s) => s,
            Value::Message(_) => panic!("{} is a message", f.name),
        }
    }

    fn message(f: &Field) -> &Message {
        match &f.value {
            Value::Message(m) => m,
            Value::Scalar(_) => panic!("{} is a scalar", f.name),
        }
    }

    #[test]
    fn parses_scalars_messages_and_lists() {
        let m = parse(
            "name: \"a\" # comment\n n: -12, x: 0x1F; e: TYPE_FP32\n\
             dims: [1, -1, 3]\n sub { k: 'v' } other: < z: 1.5e-3 >\n input [ {a: 1}, {a: 2} ]",
        )
        .unwrap();
        let names: Vec<&str> = m.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "name", "n", "x", "e", "dims", "dims", "dims", "sub", "other", "input", "input"
            ]
        );
        assert_eq!(scalar(&m.fields[0]), &Scalar::Str("a".into()));
        assert_eq!(scalar(&m.fields[1]), &Scalar::Number("-12".into()));
        assert_eq!(scalar(&m.fields[2]), &Scalar::Number("0x1F".into()));
        assert_eq!(scalar(&m.fields[3]), &Scalar::Ident("TYPE_FP32".into()));
        assert_eq!(scalar(&m.fields[5]), &Scalar::Number("-1".into()));
        assert_eq!(
            scalar(&message(&m.fields[8]).fields[0]),
            &Scalar::Number("1.5e-3".into())
        );
        assert_eq!(
            scalar(&message(&m.fields[10]).fields[0]),
            &Scalar::Number("2".into())
        );
        assert_eq!(m.fields[1].pos, Pos { line: 2, column: 2 });
        assert_eq!(m.fields[1].value_pos, Pos { line: 2, column: 5 });
    }

    #[test]
    fn resolves_escapes_and_joins_adjacent_strings() {
        let m = parse(r#"s: "a\n\t\"\\\x41\101\u00e9" 'b\'c' "#).unwrap();
        assert_eq!(scalar(&m.fields[0]), &Scalar::Str("a\n\t\"\\AAéb'c".into()));
    }

    #[test]
    fn accepts_colon_before_braces_and_separators() {
        let m = parse("a: { b: 1; }, c { }; d: [ ], e: [ {}, {} ,]").unwrap();
        let names: Vec<&str> = m.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "c", "e", "e"]);
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn reports_errors_with_line_and_column() {
        assert_eq!(
            err("name: \"a\"\nmax_batch_size 8"),
            "line 2, column 16: expected ':' or '{' after field name 'max_batch_size', found '8'"
        );
        assert_eq!(
            err("input {\n  name: \"x\"\n"),
            "line 3, column 1: expected '}' to close the message opened at line 1, column 7, \
             found end of input"
        );
        assert_eq!(
            err("name: \"abc\ndef\""),
            "line 1, column 11: expected closing \" (strings cannot span lines), found end of line"
        );
        assert_eq!(
            err("s: \"\\q\""),
            "line 1, column 5: expected an escape: \\n \\t \\r \\a \\b \\f \\v \\\\ \\' \\\" \\? \
             \\NNN \\xHH \\uHHHH \\UHHHHHHHH, found \\q"
        );
        assert_eq!(
            err("dims: [1 2]"),
            "line 1, column 10: expected ',' or ']' in the list of field 'dims', found '2'"
        );
        assert_eq!(
            err("a: -x"),
            "line 1, column 5: expected a number after '-', found 'x'"
        );
        assert_eq!(
            err("}"),
            "line 1, column 1: expected a field name, found '}'"
        );
        assert_eq!(
            err("a: 1 @"),
            "line 1, column 6: expected a field name, value or one of { } < > [ ] : , ; -, \
             found '@'"
        );
        assert_eq!(
            err("s: \"\\xff\""),
            "line 1, column 4: expected a string of UTF-8 text, found escapes that make invalid UTF-8"
        );
    }

    #[test]
    fn caps_nesting_depth() {
        let deep = "a {".repeat(10_000);
        assert!(err(&deep).contains("at most 64 nested messages"));
        let ok = format!("{}{}", "a {".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
    }
}

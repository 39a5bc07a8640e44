//! Tokens of the text form, and the character classes shared with the
//! printer (what may appear unquoted, how strings are escaped).

use super::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    /// `%name` or `%"name"`, without the `%`.
    Value(String),
    Str(String),
    /// The text of an integer literal, sign included.
    Int(String),
    /// The text of a float literal (`nan` and `inf` lex as identifiers).
    Float(String),
    Punct(char),
    Eof,
}

impl Tok {
    /// How an error message names what it found.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Value(s) => format!("value {}", value_ref(s)),
            Tok::Str(_) => "a string".to_string(),
            Tok::Int(s) | Tok::Float(s) => format!("number `{s}`"),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::Eof => "the end of the text".to_string(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

/// Characters of an unquoted value name: ONNX exporters produce names like
/// `/layer1/conv/Conv_output_0` or `conv1.weight`, which stay readable.
pub fn is_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

pub fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

pub fn is_ident(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(is_ident_start) && cs.all(is_ident_char)
}

/// A double-quoted string literal with escapes for `"`, `\` and control
/// characters; everything else (unicode included) is written as is.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `%name`, quoting the name unless every character may stand bare.
pub fn value_ref(name: &str) -> String {
    if !name.is_empty() && name.chars().all(is_value_char) {
        format!("%{name}")
    } else {
        format!("%{}", quote(name))
    }
}

/// An identifier if `s` is one, else a string literal.
pub fn ident_or_quote(s: &str) -> String {
    if is_ident(s) { s.to_string() } else { quote(s) }
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    col: usize,
}

impl Lexer<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn err(&self, line: usize, col: usize, message: String) -> ParseError {
        ParseError { line, col, message }
    }

    fn string(&mut self, line: usize, col: usize) -> Result<String, ParseError> {
        let mut s = String::new();
        loop {
            let (l, c) = (self.line, self.col);
            match self.bump() {
                None => return Err(self.err(line, col, "unterminated string".into())),
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some('u') => s.push(self.unicode_escape(l, c)?),
                    other => {
                        let what = other.map_or("end of text".to_string(), |o| format!("`{o}`"));
                        return Err(self.err(l, c, format!("bad escape \\ followed by {what}")));
                    }
                },
                Some(ch) => s.push(ch),
            }
        }
    }

    fn unicode_escape(&mut self, line: usize, col: usize) -> Result<char, ParseError> {
        let bad = |this: &Self| this.err(line, col, "bad \\u{...} escape".into());
        if self.bump() != Some('{') {
            return Err(bad(self));
        }
        let mut hex = String::new();
        loop {
            match self.bump() {
                Some('}') => break,
                Some(h) if h.is_ascii_hexdigit() && hex.len() < 6 => hex.push(h),
                _ => return Err(bad(self)),
            }
        }
        u32::from_str_radix(&hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| bad(self))
    }

    fn digits(&mut self, out: &mut String) -> usize {
        let mut n = 0;
        while let Some(c) = self.peek().filter(char::is_ascii_digit) {
            out.push(c);
            self.bump();
            n += 1;
        }
        n
    }

    /// After an optional `-` (already in `text`): digits, an optional
    /// fraction and an optional exponent; or `inf` for `-inf`.
    fn number(&mut self, mut text: String, line: usize, col: usize) -> Result<Tok, ParseError> {
        if text == "-" && self.peek() == Some('i') {
            let mut word = String::new();
            while let Some(c) = self.peek().filter(|&c| is_ident_char(c)) {
                word.push(c);
                self.bump();
            }
            return if word == "inf" {
                Ok(Tok::Float("-inf".into()))
            } else {
                Err(self.err(line, col, format!("unexpected `-{word}`")))
            };
        }
        if self.digits(&mut text) == 0 && text == "-" {
            return Err(self.err(line, col, "expected digits after `-`".into()));
        }
        let mut float = false;
        if self.peek() == Some('.') {
            float = true;
            text.push('.');
            self.bump();
            self.digits(&mut text);
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            float = true;
            text.push('e');
            self.bump();
            if let Some(s @ ('+' | '-')) = self.peek() {
                text.push(s);
                self.bump();
            }
            if self.digits(&mut text) == 0 {
                return Err(self.err(line, col, format!("bad number `{text}`")));
            }
        }
        if let Some(c) = self.peek().filter(|&c| is_ident_char(c) || c == '.') {
            return Err(self.err(line, col, format!("bad number `{text}{c}...`")));
        }
        Ok(if float {
            Tok::Float(text)
        } else {
            Tok::Int(text)
        })
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('#') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let (line, col) = (self.line, self.col);
        let Some(c) = self.bump() else {
            return Ok(Token {
                tok: Tok::Eof,
                line,
                col,
            });
        };
        let tok = match c {
            '"' => Tok::Str(self.string(line, col)?),
            '%' => match self.peek() {
                Some('"') => {
                    self.bump();
                    Tok::Value(self.string(line, col)?)
                }
                Some(c) if is_value_char(c) => {
                    let mut name = String::new();
                    while let Some(c) = self.peek().filter(|&c| is_value_char(c)) {
                        name.push(c);
                        self.bump();
                    }
                    Tok::Value(name)
                }
                _ => return Err(self.err(line, col, "expected a value name after `%`".into())),
            },
            '-' => self.number("-".into(), line, col)?,
            c if c.is_ascii_digit() => self.number(c.to_string(), line, col)?,
            c if is_ident_start(c) => {
                let mut word = c.to_string();
                while let Some(c) = self.peek().filter(|&c| is_ident_char(c)) {
                    word.push(c);
                    self.bump();
                }
                Tok::Ident(word)
            }
            '(' | ')' | '[' | ']' | '{' | '}' | ',' | ':' | '=' | '*' | '?' => Tok::Punct(c),
            c => return Err(self.err(line, col, format!("unexpected character {c:?}"))),
        };
        Ok(Token { tok, line, col })
    }
}

/// The whole text as tokens, ending with `Eof`.
pub fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let mut lx = Lexer {
        chars: src.chars().peekable(),
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    loop {
        let t = lx.next_token()?;
        let end = t.tok == Tok::Eof;
        out.push(t);
        if end {
            return Ok(out);
        }
    }
}

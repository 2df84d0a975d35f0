//! The lexer: words (dotted mnemonics included), `%` names, numbers as written, strings,
//! punctuation and line ends, each with its line and column.

use super::TextError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// An identifier, keyword or dotted mnemonic (`ld.global.nc.f32`, `st.global.L1::evict_last.f32`).
    Word(String),
    /// `%` and the word after it (`r5`, `p0`, `tid.x`).
    Pct(String),
    /// A numeric literal as written (`12`, `0x3f800000`, `2.5e-3`).
    Num(String),
    /// A string literal, unescaped.
    Str(String),
    /// One of `{ } [ ] , = : + - @`.
    Punct(char),
    /// `..`
    DotDot,
    Newline,
    Eof,
}

impl Tok {
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Pct(w) => format!("`%{w}`"),
            Tok::Num(n) => format!("`{n}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Punct(c) => format!("`{c}`"),
            Tok::DotDot => "`..`".into(),
            Tok::Newline => "end of line".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) line: usize,
    pub(super) col: usize,
}

pub(super) type Res<T> = Result<T, TextError>;

pub(super) fn err_at<T>(line: usize, col: usize, message: impl Into<String>) -> Res<T> {
    Err(TextError { line, col, message: message.into() })
}

pub(super) struct Lexer<'a> {
    src: &'a str,
    /// Byte position.
    pos: usize,
    pub(super) line: usize,
    pub(super) col: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0, line: 1, col: 1 }
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.src[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek_char().is_some_and(&keep) {
            self.bump();
        }
        self.src[start..self.pos].to_string()
    }

    pub(super) fn next(&mut self) -> Res<Token> {
        loop {
            match self.peek_char() {
                Some(' ' | '\t' | '\r') => {
                    self.bump();
                }
                Some('/') if self.peek_second() == Some('/') => {
                    while self.peek_char().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let (line, col) = (self.line, self.col);
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
        let tok = match self.peek_char() {
            None => Tok::Eof,
            Some('\n') => {
                self.bump();
                Tok::Newline
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => Tok::Word(self.word()),
            Some('%') => {
                self.bump();
                let w = self.take_while(word);
                if w.is_empty() {
                    return err_at(line, col, "`%` must be followed by a name");
                }
                Tok::Pct(w)
            }
            Some(c) if c.is_ascii_digit() => Tok::Num(self.number()),
            Some('"') => Tok::Str(self.string(line, col)?),
            Some('.') if self.peek_second() == Some('.') => {
                self.bump();
                self.bump();
                Tok::DotDot
            }
            Some(c @ ('{' | '}' | '[' | ']' | ',' | '=' | ':' | '+' | '-' | '@')) => {
                self.bump();
                Tok::Punct(c)
            }
            Some(c) => return err_at(line, col, format!("unexpected character {c:?}")),
        };
        Ok(Token { tok, line, col })
    }

    /// A word: letters, digits, `_` and `.`, and `::` between two of those, as in PTX's
    /// qualified modifiers (`ld.global.L1::evict_last.f32`); a lone `:` ends it.
    fn word(&mut self) -> String {
        let start = self.pos;
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
        loop {
            while self.peek_char().is_some_and(word) {
                self.bump();
            }
            let rest = &self.src[self.pos..];
            if rest.starts_with("::") && rest[2..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                self.bump();
                self.bump();
            } else {
                break;
            }
        }
        self.src[start..self.pos].to_string()
    }

    /// Digits, hex after `0x`, or a decimal with fraction and exponent; `0..n` stays a range.
    fn number(&mut self) -> String {
        let start = self.pos;
        if self.peek_char() == Some('0') && matches!(self.peek_second(), Some('x' | 'X')) {
            self.bump();
            self.bump();
            self.take_while(|c| c.is_ascii_alphanumeric());
            return self.src[start..self.pos].to_string();
        }
        self.take_while(|c| c.is_ascii_digit());
        if self.peek_char() == Some('.') && self.peek_second().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
            self.take_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek_char(), Some('e' | 'E')) {
            let rest = &self.src[self.pos + 1..];
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.starts_with(|c: char| c.is_ascii_digit()) {
                self.bump();
                if matches!(self.peek_char(), Some('+' | '-')) {
                    self.bump();
                }
                self.take_while(|c| c.is_ascii_digit());
            }
        }
        // Letters glued to a number (`12ab`) are kept so that the error names them.
        self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
        self.src[start..self.pos].to_string()
    }

    fn string(&mut self, line: usize, col: usize) -> Res<String> {
        self.bump();
        let mut out = String::new();
        loop {
            let (l, c) = (self.line, self.col);
            match self.bump() {
                None | Some('\n') => return err_at(line, col, "unterminated string"),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('u') if self.peek_char() == Some('{') => {
                        self.bump();
                        let hex = self.take_while(|c| c.is_ascii_hexdigit());
                        let ch = (hex.len() <= 6 && self.bump() == Some('}'))
                            .then(|| u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32))
                            .flatten();
                        match ch {
                            Some(ch) => out.push(ch),
                            None => return err_at(l, c, "bad `\\u{...}` escape"),
                        }
                    }
                    _ => return err_at(l, c, "unknown escape in string"),
                },
                Some(ch) => out.push(ch),
            }
        }
    }
}

//! Tokens of the text format, with 1-based line:column positions.

/// A source position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
}

/// A token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Identifier or keyword: letters, digits, `_`, `.` (`scan.ssd`, `f8e4m3`, `transpose_b`).
    Ident(String),
    /// `%12` or `%12#1`.
    Value(String, Option<u32>),
    /// `@name` or `@"any name"`.
    At(String),
    /// A string literal.
    Str(String),
    /// An integer literal: any value of `i64` or of `u64` (seeds, bounds and dims are `u64`).
    Int(i128),
    /// A float literal (has `.`, an exponent, or is `inf`/`nan` with an optional sign).
    Float(f64),
    /// One of `{ } [ ] ( ) , : = #`, or `<=`.
    Punct(&'static str),
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Value(v, None) => format!("`%{v}`"),
            Tok::Value(v, Some(i)) => format!("`%{v}#{i}`"),
            Tok::At(s) => format!("`@{s}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Int(i) => format!("`{i}`"),
            Tok::Float(f) => format!("`{f}`"),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// A lexing error at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// Splits `src` into tokens; `//` starts a comment to the end of the line.
pub fn lex(src: &str) -> Result<Vec<(Tok, Pos)>, LexError> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let peek = |j: usize| chars.get(j).copied();
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, col };
        let start = i;
        let err = |message: String| Err(LexError { pos, message });
        if c == '\n' {
            i += 1;
            line += 1;
            col = 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            col += 1;
            continue;
        }
        if c == '/' && peek(i + 1) == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let tok = if c.is_ascii_alphabetic() || c == '_' {
            while peek(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            match word.as_str() {
                "inf" => Tok::Float(f64::INFINITY),
                "nan" | "NaN" => Tok::Float(f64::NAN),
                _ => Tok::Ident(word),
            }
        } else if c.is_ascii_digit() || (c == '-' && peek(i + 1).is_some_and(|d| d.is_ascii_digit() || d == 'i')) {
            i += 1;
            if c == '-' && peek(i) == Some('i') {
                if chars.get(i..i + 3).is_some_and(|w| w.iter().collect::<String>() == "inf") {
                    i += 3;
                    Tok::Float(f64::NEG_INFINITY)
                } else {
                    return err("expected a number after `-`".into());
                }
            } else {
                let mut is_float = false;
                while peek(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
                if peek(i) == Some('.') && peek(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    is_float = true;
                    i += 1;
                    while peek(i).is_some_and(|c| c.is_ascii_digit()) {
                        i += 1;
                    }
                }
                if matches!(peek(i), Some('e' | 'E')) {
                    let mut j = i + 1;
                    if matches!(peek(j), Some('+' | '-')) {
                        j += 1;
                    }
                    if peek(j).is_some_and(|c| c.is_ascii_digit()) {
                        is_float = true;
                        i = j;
                        while peek(i).is_some_and(|c| c.is_ascii_digit()) {
                            i += 1;
                        }
                    }
                }
                let text: String = chars[start..i].iter().collect();
                if is_float {
                    match text.parse::<f64>() {
                        Ok(f) => Tok::Float(f),
                        Err(_) => return err(format!("malformed number `{text}`")),
                    }
                } else {
                    match text.parse::<i128>() {
                        Ok(v) if i64::try_from(v).is_ok() || u64::try_from(v).is_ok() => Tok::Int(v),
                        _ => return err(format!("integer `{text}` does not fit in 64 bits")),
                    }
                }
            }
        } else if c == '%' {
            i += 1;
            let s = i;
            while peek(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                i += 1;
            }
            if s == i {
                return err("expected a value name after `%`".into());
            }
            let name: String = chars[s..i].iter().collect();
            let mut idx = None;
            if peek(i) == Some('#') {
                i += 1;
                let s2 = i;
                while peek(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
                let digits: String = chars[s2..i].iter().collect();
                match digits.parse::<u32>() {
                    Ok(v) => idx = Some(v),
                    Err(_) => return err(format!("expected a result index after `%{name}#`")),
                }
            }
            Tok::Value(name, idx)
        } else if c == '@' {
            i += 1;
            if peek(i) == Some('"') {
                let (s, ni, nl, nc) = string(&chars, i, line, col + 1)?;
                i = ni;
                line = nl;
                col = nc;
                toks.push((Tok::At(s), pos));
                continue;
            }
            let s = i;
            while peek(i).is_some_and(super::print::is_name_char) {
                i += 1;
            }
            if s == i {
                return err("expected a name after `@`".into());
            }
            Tok::At(chars[s..i].iter().collect())
        } else if c == '"' {
            let (s, ni, nl, nc) = string(&chars, i, line, col)?;
            i = ni;
            line = nl;
            col = nc;
            toks.push((Tok::Str(s), pos));
            continue;
        } else if c == '<' && peek(i + 1) == Some('=') {
            i += 2;
            Tok::Punct("<=")
        } else {
            let p = match c {
                '{' => "{",
                '}' => "}",
                '[' => "[",
                ']' => "]",
                '(' => "(",
                ')' => ")",
                ',' => ",",
                ':' => ":",
                '=' => "=",
                '#' => "#",
                _ => return err(format!("unexpected character {c:?}")),
            };
            i += 1;
            Tok::Punct(p)
        };
        col += i - start;
        toks.push((tok, pos));
    }
    toks.push((Tok::Eof, Pos { line, col }));
    Ok(toks)
}

/// Reads a string literal starting at the `"` at `i`; returns it and the position after it.
fn string(
    chars: &[char],
    mut i: usize,
    mut line: usize,
    mut col: usize,
) -> Result<(String, usize, usize, usize), LexError> {
    let pos = Pos { line, col };
    let mut s = String::new();
    i += 1;
    col += 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(LexError { pos, message: "unterminated string".into() });
        };
        i += 1;
        col += 1;
        match c {
            '"' => return Ok((s, i, line, col)),
            '\\' => {
                let Some(&e) = chars.get(i) else {
                    return Err(LexError { pos, message: "unterminated string".into() });
                };
                i += 1;
                col += 1;
                s.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    '"' => '"',
                    '\\' => '\\',
                    _ => {
                        return Err(LexError {
                            pos: Pos { line, col: col - 2 },
                            message: format!("unknown escape `\\{e}`"),
                        })
                    }
                });
            }
            '\n' => {
                line += 1;
                col = 1;
                s.push('\n');
            }
            c => s.push(c),
        }
    }
}

//! The P4_16 lexer: source text → tokens with byte spans, plus the `#include`s of the built-in
//! libraries. It never reads files and never panics; every malformed piece of input becomes a
//! [`Diagnostic`] and lexing continues, so one run reports all lexical errors.
//!
//! Owns: characters, comments, literals, operators, preprocessor lines.
//! Must not touch: grammar (that is `parser`'s) or meaning (the checking pass's).
//!
//! `>>` is never produced: the lexer emits two `>` tokens and the parser joins adjacent ones into
//! a right shift, so `register<bit<32>>` closes two type-argument lists (as the P4_16 grammar
//! requires).

use super::ast::Include;
use super::diag::{Diagnostic, Span};
use std::fmt;

/// The libraries vmdep's compiler has built in; `#include` of anything else is an error.
pub const BUILTIN_INCLUDES: [&str; 2] = ["core.p4", "v1model.p4"];

/// Lexing stops collecting errors after this many, so a binary file does not produce megabytes.
const MAX_LEX_ERRORS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Punct {
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    /// `<`
    Lt,
    /// `>` (also half of `>>`)
    Gt,
    Le,
    Ge,
    Shl,
    Semi,
    Comma,
    Colon,
    Dot,
    DotDot,
    Assign,
    EqEq,
    Ne,
    Plus,
    PlusPlus,
    /// `|+|`
    PlusSat,
    Minus,
    /// `|-|`
    MinusSat,
    Star,
    Slash,
    Percent,
    Amp,
    AmpAmp,
    /// `&&&`
    Mask,
    Pipe,
    PipePipe,
    Caret,
    Tilde,
    Bang,
    Question,
    At,
}

impl Punct {
    pub fn text(self) -> &'static str {
        use Punct::*;
        match self {
            LParen => "(",
            RParen => ")",
            LBrace => "{",
            RBrace => "}",
            LBracket => "[",
            RBracket => "]",
            Lt => "<",
            Gt => ">",
            Le => "<=",
            Ge => ">=",
            Shl => "<<",
            Semi => ";",
            Comma => ",",
            Colon => ":",
            Dot => ".",
            DotDot => "..",
            Assign => "=",
            EqEq => "==",
            Ne => "!=",
            Plus => "+",
            PlusPlus => "++",
            PlusSat => "|+|",
            Minus => "-",
            MinusSat => "|-|",
            Star => "*",
            Slash => "/",
            Percent => "%",
            Amp => "&",
            AmpAmp => "&&",
            Mask => "&&&",
            Pipe => "|",
            PipePipe => "||",
            Caret => "^",
            Tilde => "~",
            Bang => "!",
            Question => "?",
            At => "@",
        }
    }
}

/// Operators by spelling, longest first so that the first match is the longest match.
const PUNCTS: [(&str, Punct); 37] = [
    ("&&&", Punct::Mask),
    ("|+|", Punct::PlusSat),
    ("|-|", Punct::MinusSat),
    ("<=", Punct::Le),
    (">=", Punct::Ge),
    ("<<", Punct::Shl),
    ("..", Punct::DotDot),
    ("==", Punct::EqEq),
    ("!=", Punct::Ne),
    ("++", Punct::PlusPlus),
    ("&&", Punct::AmpAmp),
    ("||", Punct::PipePipe),
    ("(", Punct::LParen),
    (")", Punct::RParen),
    ("{", Punct::LBrace),
    ("}", Punct::RBrace),
    ("[", Punct::LBracket),
    ("]", Punct::RBracket),
    ("<", Punct::Lt),
    (">", Punct::Gt),
    (";", Punct::Semi),
    (",", Punct::Comma),
    (":", Punct::Colon),
    (".", Punct::Dot),
    ("=", Punct::Assign),
    ("+", Punct::Plus),
    ("-", Punct::Minus),
    ("*", Punct::Star),
    ("/", Punct::Slash),
    ("%", Punct::Percent),
    ("&", Punct::Amp),
    ("|", Punct::Pipe),
    ("^", Punct::Caret),
    ("~", Punct::Tilde),
    ("!", Punct::Bang),
    ("?", Punct::Question),
    ("@", Punct::At),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokKind {
    /// Identifiers and keywords alike (`_` included); the parser decides what a word means.
    Ident(String),
    Int {
        value: u128,
        width: Option<u32>,
        signed: bool,
    },
    Str(String),
    Punct(Punct),
    Eof,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokKind,
    pub span: Span,
}

impl fmt::Display for TokKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokKind::Ident(s) => write!(f, "`{s}`"),
            TokKind::Int { .. } => write!(f, "integer literal"),
            TokKind::Str(_) => write!(f, "string literal"),
            TokKind::Punct(p) => write!(f, "`{}`", p.text()),
            TokKind::Eof => write!(f, "end of file"),
        }
    }
}

/// What the lexer found: tokens ending with one `Eof`, and the built-in includes.
#[derive(Debug)]
pub struct Lexed {
    pub tokens: Vec<Token>,
    pub includes: Vec<Include>,
}

/// Splits `source` into tokens. Returns every lexical error found (up to a cap) on failure.
pub fn lex(source: &str) -> Result<Lexed, Vec<Diagnostic>> {
    let mut lx = Lexer {
        src: source,
        bytes: source.as_bytes(),
        pos: 0,
        tokens: Vec::new(),
        includes: Vec::new(),
        errors: Vec::new(),
        line_start: true,
    };
    lx.run();
    if lx.errors.is_empty() {
        let end = source.len();
        lx.tokens.push(Token {
            kind: TokKind::Eof,
            span: Span::new(end, end),
        });
        Ok(Lexed {
            tokens: lx.tokens,
            includes: lx.includes,
        })
    } else {
        Err(lx.errors)
    }
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    tokens: Vec<Token>,
    includes: Vec<Include>,
    errors: Vec<Diagnostic>,
    /// Only whitespace (and comments) seen since the last newline: `#` may start a directive.
    line_start: bool,
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> u8 {
        self.bytes.get(self.pos + ahead).copied().unwrap_or(0)
    }

    fn error(&mut self, lo: usize, hi: usize, msg: impl Into<String>) {
        if self.errors.len() < MAX_LEX_ERRORS {
            self.errors.push(Diagnostic::error(Span::new(lo, hi), msg));
        }
    }

    fn push(&mut self, kind: TokKind, lo: usize) {
        self.tokens.push(Token {
            kind,
            span: Span::new(lo, self.pos),
        });
        self.line_start = false;
    }

    fn run(&mut self) {
        while self.pos < self.bytes.len() {
            if self.errors.len() >= MAX_LEX_ERRORS {
                return;
            }
            let c = self.bytes[self.pos];
            let lo = self.pos;
            match c {
                b'\n' => {
                    self.pos += 1;
                    self.line_start = true;
                }
                b' ' | b'\t' | b'\r' | b'\x0c' | b'\x0b' => self.pos += 1,
                b'/' if self.peek(1) == b'/' => self.skip_line(),
                b'/' if self.peek(1) == b'*' => self.block_comment(),
                b'#' if self.line_start => self.directive(),
                b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                    let word = self.word().to_string();
                    self.push(TokKind::Ident(word), lo);
                }
                b'0'..=b'9' => self.number(),
                b'"' => self.string(),
                _ => self.punct(),
            }
        }
    }

    fn word(&mut self) -> &str {
        let lo = self.pos;
        while self.peek(0).is_ascii_alphanumeric() || self.peek(0) == b'_' {
            self.pos += 1;
        }
        &self.src[lo..self.pos]
    }

    fn skip_line(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
            self.pos += 1;
        }
    }

    fn block_comment(&mut self) {
        let lo = self.pos;
        match self.src[lo + 2..].find("*/") {
            Some(i) => self.pos = lo + 2 + i + 2,
            None => {
                self.error(lo, lo + 2, "unterminated comment: `/*` has no closing `*/`");
                self.pos = self.bytes.len();
            }
        }
    }

    fn punct(&mut self) {
        let lo = self.pos;
        let rest = &self.bytes[lo..];
        if let Some((text, p)) = PUNCTS
            .iter()
            .find(|(text, _)| rest.starts_with(text.as_bytes()))
        {
            self.pos += text.len();
            self.push(TokKind::Punct(*p), lo);
            return;
        }
        // Not an operator: report the whole character (it may be multi-byte UTF-8).
        let ch = self.src[lo..].chars().next().unwrap_or('\u{fffd}');
        self.pos += ch.len_utf8();
        let shown = if ch.is_control() {
            format!("{:?}", ch)
        } else {
            format!("`{ch}`")
        };
        if ch == '#' {
            self.error(
                lo,
                self.pos,
                "unexpected `#`: preprocessor directives must start a line",
            );
        } else {
            self.error(lo, self.pos, format!("unexpected character {shown}"));
        }
    }

    /// A string literal. P4 strings have C-like escapes and do not span lines.
    fn string(&mut self) {
        let lo = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(ch) = self.src[self.pos..].chars().next() else {
                self.error(lo, lo + 1, "unterminated string literal");
                return;
            };
            match ch {
                '"' => {
                    self.pos += 1;
                    break;
                }
                '\n' => {
                    self.error(lo, self.pos, "unterminated string literal");
                    return;
                }
                '\\' => {
                    let esc_lo = self.pos;
                    self.pos += 1;
                    let Some(e) = self.src[self.pos..].chars().next() else {
                        continue; // reported as unterminated on the next turn
                    };
                    self.pos += e.len_utf8();
                    match e {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        'r' => value.push('\r'),
                        '0' => value.push('\0'),
                        '\\' | '"' | '\'' => value.push(e),
                        '\n' => {} // line continuation
                        _ => self.error(
                            esc_lo,
                            self.pos,
                            format!("unknown escape sequence `\\{e}` in string literal"),
                        ),
                    }
                }
                _ => {
                    value.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
        self.push(TokKind::Str(value), lo);
    }

    /// Integer literals: `[W(w|s)]` then decimal, `0x`, `0o`, `0b` or `0d` digits, `_` between.
    fn number(&mut self) {
        let lo = self.pos;
        let mut digits_start = lo;
        let mut width = None;
        let mut signed = false;
        // A width prefix is decimal digits followed by `w` or `s` and then another digit.
        let mut i = lo;
        while self.bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if let Some(&ws @ (b'w' | b's')) = self.bytes.get(i) {
            if self.bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                let text = &self.src[lo..i];
                match text.parse::<u32>() {
                    Ok(w) if w > 0 => width = Some(w),
                    Ok(_) => self.error(lo, i + 1, "width of an integer literal must be positive"),
                    Err(_) => self.error(lo, i + 1, "width of an integer literal is too large"),
                }
                signed = ws == b's';
                digits_start = i + 1;
            }
        }
        self.pos = digits_start;
        let (radix, body_start) = match (self.peek(0), self.peek(1) | 0x20) {
            (b'0', b'x') => (16, digits_start + 2),
            (b'0', b'o') => (8, digits_start + 2),
            (b'0', b'b') => (2, digits_start + 2),
            (b'0', b'd') => (10, digits_start + 2),
            _ => (10, digits_start),
        };
        self.pos = body_start;
        // Take every alphanumeric character so that `12ab` or `0b102` is one bad literal, not two
        // tokens.
        while self.peek(0).is_ascii_alphanumeric() || self.peek(0) == b'_' {
            self.pos += 1;
        }
        let body = &self.src[body_start..self.pos];
        let mut value: u128 = 0;
        let mut any_digit = false;
        for ch in body.chars() {
            if ch == '_' {
                continue;
            }
            let Some(d) = ch.to_digit(radix) else {
                self.error(
                    lo,
                    self.pos,
                    format!("invalid digit `{ch}` in base-{radix} integer literal"),
                );
                return;
            };
            any_digit = true;
            match value
                .checked_mul(u128::from(radix))
                .and_then(|v| v.checked_add(u128::from(d)))
            {
                Some(v) => value = v,
                None => {
                    self.error(
                        lo,
                        self.pos,
                        "integer literal is too large (vmdep supports values up to 128 bits)",
                    );
                    return;
                }
            }
        }
        if !any_digit {
            self.error(lo, self.pos, "integer literal has no digits");
            return;
        }
        self.push(
            TokKind::Int {
                value,
                width,
                signed,
            },
            lo,
        );
    }

    /// A `#` line. Only the two built-in includes are accepted.
    fn directive(&mut self) {
        let lo = self.pos;
        self.pos += 1;
        while matches!(self.peek(0), b' ' | b'\t') {
            self.pos += 1;
        }
        let name = self.word().to_string();
        let name_hi = self.pos;
        if name == "include" {
            self.include(lo);
            return;
        }
        let shown = if name.is_empty() {
            "#".to_string()
        } else {
            format!("#{name}")
        };
        let hint = match name.as_str() {
            "define" => "; use `const`",
            "if" | "ifdef" | "ifndef" | "elif" | "else" | "endif" | "undef" => {
                "; vmdep's compiler has no preprocessor"
            }
            _ => "",
        };
        self.error(
            lo,
            name_hi,
            format!("unsupported preprocessor directive `{shown}`{hint}"),
        );
        // Skip the directive with its `\` continuation lines so they do not cascade into errors.
        while self.pos < self.bytes.len() && self.bytes[self.pos] != b'\n' {
            if self.bytes[self.pos] == b'\\' && self.peek(1) == b'\n' {
                self.pos += 1;
            }
            self.pos += 1;
        }
    }

    fn include(&mut self, lo: usize) {
        while matches!(self.peek(0), b' ' | b'\t') {
            self.pos += 1;
        }
        let close = match self.peek(0) {
            b'<' => b'>',
            b'"' => b'"',
            _ => {
                self.skip_line();
                self.error(
                    lo,
                    self.pos,
                    "expected `<FILE>` or `\"FILE\"` after `#include`",
                );
                return;
            }
        };
        let path_lo = self.pos + 1;
        let line_end = self.src[path_lo..]
            .find('\n')
            .map_or(self.bytes.len(), |i| path_lo + i);
        let Some(path_len) = self.bytes[path_lo..line_end]
            .iter()
            .position(|&b| b == close)
        else {
            self.pos = line_end;
            self.error(lo, line_end, "unterminated file name in `#include`");
            return;
        };
        let path = &self.src[path_lo..path_lo + path_len];
        self.pos = path_lo + path_len + 1;
        let hi = self.pos;
        // Anything after the file name except a comment is an error.
        while matches!(self.peek(0), b' ' | b'\t' | b'\r') {
            self.pos += 1;
        }
        let trailing_ok = matches!(self.peek(0), b'\n' | 0)
            || (self.peek(0) == b'/' && matches!(self.peek(1), b'/' | b'*'));
        if !trailing_ok {
            let t = self.pos;
            self.skip_line();
            self.error(t, self.pos, "unexpected text after `#include` file name");
            return;
        }
        if close == b'>' && BUILTIN_INCLUDES.contains(&path) {
            self.includes.push(Include {
                path: path.to_string(),
                span: Span::new(lo, hi),
            });
        } else {
            self.error(
                lo,
                hi,
                format!(
                    "cannot include `{path}`: only <core.p4> and <v1model.p4> are available \
                     (they are built in; vmdep's compiler does not read other files)"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokKind> {
        lex(src)
            .expect("lexes")
            .tokens
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    fn int(value: u128, width: Option<u32>, signed: bool) -> TokKind {
        TokKind::Int {
            value,
            width,
            signed,
        }
    }

    fn first_error(src: &str) -> String {
        lex(src).expect_err("should fail")[0].message.clone()
    }

    #[test]
    fn integer_literal_forms() {
        assert_eq!(
            kinds("5 0x0800 0X1f 0o17 0b1010 0d99 1_000 8w5 16s3 32w0xFF 4w0b1_0"),
            vec![
                int(5, None, false),
                int(0x800, None, false),
                int(0x1f, None, false),
                int(0o17, None, false),
                int(0b1010, None, false),
                int(99, None, false),
                int(1000, None, false),
                int(5, Some(8), false),
                int(3, Some(16), true),
                int(0xff, Some(32), false),
                int(2, Some(4), false),
                TokKind::Eof
            ]
        );
    }

    #[test]
    fn integer_literal_up_to_128_bits_and_overflow_is_an_error() {
        assert_eq!(
            kinds("0xffffffffffffffffffffffffffffffff")[0],
            int(u128::MAX, None, false)
        );
        assert!(first_error("0x1_0000_0000_0000_0000_0000_0000_0000_0000").contains("too large"));
        assert!(first_error("340282366920938463463374607431768211456").contains("too large"));
        assert!(first_error("99999999999w1").contains("width"));
    }

    #[test]
    fn bad_digits_are_one_error() {
        assert_eq!(
            first_error("0b102"),
            "invalid digit `2` in base-2 integer literal"
        );
        assert!(first_error("12ab").contains("invalid digit `a`"));
        assert_eq!(first_error("0x"), "integer literal has no digits");
    }

    #[test]
    fn operators_take_the_longest_match_but_never_shift_right() {
        let p = |s: &str| -> Vec<Punct> {
            kinds(s)
                .into_iter()
                .filter_map(|k| match k {
                    TokKind::Punct(p) => Some(p),
                    _ => None,
                })
                .collect()
        };
        use Punct::*;
        assert_eq!(
            p("&&& && & |+| |-| || | ++ + .. . << <= < >> >= == = != !"),
            vec![
                Mask, AmpAmp, Amp, PlusSat, MinusSat, PipePipe, Pipe, PlusPlus, Plus, DotDot, Dot,
                Shl, Le, Lt, Gt, Gt, Ge, EqEq, Assign, Ne, Bang
            ]
        );
        // `>>` stays two tokens whose spans touch, so the parser can tell it from `> >`.
        let toks = lex("a>>b").unwrap().tokens;
        assert_eq!(toks[1].span.hi, toks[2].span.lo);
    }

    #[test]
    fn comments_and_strings() {
        assert_eq!(
            kinds("a // x\n /* y \n z */ b \"s\\\"t\\n\""),
            vec![
                TokKind::Ident("a".into()),
                TokKind::Ident("b".into()),
                TokKind::Str("s\"t\n".into()),
                TokKind::Eof
            ]
        );
        assert!(first_error("a /* never closed").starts_with("unterminated comment"));
        assert_eq!(first_error("\"abc"), "unterminated string literal");
    }

    #[test]
    fn builtin_includes_are_recorded_and_others_rejected() {
        let lexed = lex("#include <core.p4>\n  # include <v1model.p4> // arch\nx").unwrap();
        let paths: Vec<_> = lexed.includes.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["core.p4", "v1model.p4"]);
        assert!(first_error("#include \"mine.p4\"\n").contains("cannot include `mine.p4`"));
        assert!(first_error("#include <psa.p4>\n").contains("cannot include `psa.p4`"));
        assert_eq!(
            first_error("#define X 1\n"),
            "unsupported preprocessor directive `#define`; use `const`"
        );
        assert!(first_error("#ifdef X\n").contains("`#ifdef`"));
        assert!(first_error("a # b").contains("must start a line"));
    }

    #[test]
    fn bad_characters_are_reported_with_their_span() {
        let errs = lex("a $ é").unwrap_err();
        assert_eq!(errs[0].message, "unexpected character `$`");
        assert_eq!(errs[0].span, Span::new(2, 3));
        assert_eq!(errs[1].message, "unexpected character `é`");
        assert_eq!(errs[1].span, Span::new(4, 6));
    }
}

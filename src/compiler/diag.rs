//! Source spans and compiler diagnostics, rendered the way rustc and p4c users expect:
//! `FILE:LINE:COL: error: MESSAGE`, the source line, and a caret under the span.

use std::fmt::Write as _;

/// A half-open byte range `lo..hi` into the source being compiled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub lo: u32,
    pub hi: u32,
}

impl Span {
    pub fn new(lo: usize, hi: usize) -> Self {
        Span {
            lo: lo as u32,
            hi: hi.max(lo) as u32,
        }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
        }
    }
}

/// One compiler error, attached to the place in the source that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub span: Span,
    pub message: String,
    /// Secondary remarks, e.g. where a duplicate was first declared.
    pub notes: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            span,
            message: message.into(),
            notes: Vec::new(),
        }
    }

    pub fn with_note(mut self, span: Span, note: impl Into<String>) -> Self {
        self.notes.push((span, note.into()));
        self
    }

    /// Renders `FILE:LINE:COL: error: MESSAGE` with the source line and carets.
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = String::new();
        render_one(&mut out, file, source, self.span, "error", &self.message);
        for (span, note) in &self.notes {
            render_one(&mut out, file, source, *span, "note", note);
        }
        out
    }
}

/// Line (1-based), column (1-based, in characters) and the text of the line holding byte `pos`.
pub fn line_col(source: &str, pos: u32) -> (usize, usize, &str) {
    let pos = (pos as usize).min(source.len());
    // Step back to a char boundary so slicing never panics on odd spans.
    let mut pos = pos;
    while !source.is_char_boundary(pos) {
        pos -= 1;
    }
    let line_start = source[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[pos..].find('\n').map_or(source.len(), |i| pos + i);
    let line_no = source[..line_start].matches('\n').count() + 1;
    let col = source[line_start..pos].chars().count() + 1;
    (
        line_no,
        col,
        source[line_start..line_end].trim_end_matches('\r'),
    )
}

fn render_one(out: &mut String, file: &str, source: &str, span: Span, level: &str, msg: &str) {
    let (line, col, text) = line_col(source, span.lo);
    let _ = writeln!(out, "{file}:{line}:{col}: {level}: {msg}");
    let gutter = line.to_string().len();
    let _ = writeln!(out, "{:gutter$} |", "");
    let _ = writeln!(out, "{line} | {}", text.replace('\t', " "));
    // Carets run to the end of the span or of the line, at least one wide.
    let line_chars = text.chars().count();
    let span_chars = source
        .get(span.lo as usize..(span.hi as usize).min(source.len()))
        .map_or(1, |s| s.split('\n').next().unwrap_or("").chars().count());
    let width = span_chars.clamp(1, (line_chars + 1).saturating_sub(col - 1).max(1));
    let _ = writeln!(
        out,
        "{:gutter$} | {}{}",
        "",
        " ".repeat(col - 1),
        "^".repeat(width)
    );
}

/// All diagnostics of a failed compile, in source order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s) in P4 program", .0.len())]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn render(&self, file: &str, source: &str) -> String {
        self.0.iter().map(|d| d.render(file, source)).collect()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_column_and_caret() {
        let src = "header h_t {\n    bit<8> x\n}\n";
        let lo = src.find("x").unwrap();
        let d = Diagnostic::error(Span::new(lo, lo + 1), "expected `;`");
        assert_eq!(
            d.render("a.p4", src),
            "a.p4:2:12: error: expected `;`\n  |\n2 |     bit<8> x\n  |            ^\n"
        );
    }

    #[test]
    fn span_past_end_does_not_panic() {
        let d = Diagnostic::error(Span::new(100, 200), "unexpected end of file");
        let out = d.render("a.p4", "control c() {");
        assert!(out.starts_with("a.p4:1:14: error: unexpected end of file"));
    }
}

//! The P4_16 parser: tokens → [`ast::Program`](super::ast::Program), by recursive descent with the operator precedence
//! of the P4_16 grammar (which, unlike C, binds `&`, `^` and `|` tighter than comparisons).
//!
//! Owns: syntax, the syntax errors' messages and spans, and rejecting the P4_16 constructs that
//! vmdep's compiler does not support (with a message naming the construct).
//! Must not touch: names and types (the checking pass resolves and checks them).
//!
//! Robustness: nesting (expressions, statements, types) is limited to [`MAX_DEPTH`], which also
//! bounds the depth of the trees built (so dropping them cannot overflow the stack either), and
//! speculative parsing (generic calls, casts, declarations) runs under a work budget so no input
//! makes the parser slow. After an error the parser skips to the next top-level declaration and
//! goes on, so one run reports the first error of each declaration.

use super::ast::*;
use super::diag::{Diagnostic, Diagnostics, Span};
use super::lexer::{lex, Punct, TokKind, Token};
use std::collections::HashSet;

/// How deep expressions, statements and types may nest.
pub const MAX_DEPTH: u32 = 256;

/// Stop after this many errors: later ones are usually consequences of earlier ones.
const MAX_ERRORS: usize = 10;

/// Words that can never be a name. `apply`, `key`, `actions`, `state`, `entries`, `type` and
/// `priority` are keywords only where the grammar expects them and may name things elsewhere.
const RESERVED: &[&str] = &[
    "_",
    "abstract",
    "action",
    "bit",
    "bool",
    "const",
    "control",
    "default",
    "else",
    "enum",
    "error",
    "exit",
    "extern",
    "false",
    "for",
    "header",
    "header_union",
    "if",
    "in",
    "inout",
    "int",
    "list",
    "match_kind",
    "out",
    "package",
    "parser",
    "return",
    "select",
    "string",
    "struct",
    "switch",
    "table",
    "this",
    "transition",
    "true",
    "tuple",
    "typedef",
    "value_set",
    "varbit",
    "void",
];

/// Keywords that start a top-level declaration; error recovery resumes at them.
const DECL_KEYWORDS: &[&str] = &[
    "const",
    "typedef",
    "type",
    "header",
    "header_union",
    "struct",
    "enum",
    "error",
    "match_kind",
    "parser",
    "control",
    "action",
    "extern",
    "package",
];

/// The parser thread's stack. Nesting up to [`MAX_DEPTH`] takes a few MiB in a debug build
/// (far less optimized), more than the 2 MiB a spawned thread gets by default.
const PARSER_STACK_BYTES: usize = 64 << 20;

/// Parses a whole P4_16 program.
///
/// The work runs on a thread of its own so that the stack it needs does not depend on the
/// caller's (rustc does the same for itself); the stack is reserved, not committed, memory.
pub fn parse(source: &str) -> Result<Program, Diagnostics> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("p4-parser".to_string())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, || parse_here(source))
            .map_err(|e| {
                Diagnostic::error(
                    Span::default(),
                    format!("cannot start the parser thread: {e}"),
                )
            })?;
        // A panic in the parser is a bug: let it reach the caller (and the fuzzer) unchanged.
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn parse_here(source: &str) -> Result<Program, Diagnostics> {
    let lexed = lex(source).map_err(Diagnostics)?;
    let budget = 64 * lexed.tokens.len() as u64 + 100_000;
    let mut p = Parser {
        toks: lexed.tokens,
        pos: 0,
        depth: 0,
        steps: 0,
        budget,
        failed_generic: HashSet::new(),
    };
    let mut decls = Vec::new();
    let mut errors = Vec::new();
    while !p.at_eof() && errors.len() < MAX_ERRORS {
        if p.eat_p(Punct::Semi) {
            continue; // an empty declaration
        }
        let start = p.pos;
        match p.decl() {
            Ok(d) => decls.push(d),
            Err(e) => {
                errors.push(e);
                p.recover(start);
            }
        }
    }
    if errors.is_empty() {
        Ok(Program {
            includes: lexed.includes,
            decls,
        })
    } else {
        Err(Diagnostics(errors))
    }
}

type PResult<T> = Result<T, Diagnostic>;

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: u32,
    /// Tokens consumed so far, counting re-reads after backtracking.
    steps: u64,
    /// When `steps` passes this, speculation stops and the parser commits to its first guess.
    budget: u64,
    /// Token positions where `name<...>(` did not parse as a generic call, so it is not retried.
    failed_generic: HashSet<usize>,
}

fn unsupported(span: Span, what: &str) -> Diagnostic {
    Diagnostic::error(span, format!("{what} not supported by vmdep's compiler"))
}

impl Parser {
    // ---- token access -------------------------------------------------------------------

    fn tok(&self) -> &Token {
        // The lexer always ends the stream with `Eof`, and `bump` never moves past it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn nth(&self, n: usize) -> &Token {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)]
    }

    fn span(&self) -> Span {
        self.tok().span
    }

    fn at_eof(&self) -> bool {
        self.tok().kind == TokKind::Eof
    }

    fn bump(&mut self) -> Token {
        let t = self.tok().clone();
        if t.kind != TokKind::Eof {
            self.pos += 1;
        }
        self.steps += 1;
        t
    }

    /// End of the last consumed token.
    fn prev_hi(&self) -> u32 {
        if self.pos == 0 {
            0
        } else {
            self.toks[self.pos - 1].span.hi
        }
    }

    fn span_from(&self, lo: u32) -> Span {
        Span {
            lo,
            hi: self.prev_hi().max(lo),
        }
    }

    fn at_p(&self, p: Punct) -> bool {
        self.tok().kind == TokKind::Punct(p)
    }

    fn nth_is_p(&self, n: usize, p: Punct) -> bool {
        self.nth(n).kind == TokKind::Punct(p)
    }

    fn eat_p(&mut self, p: Punct) -> bool {
        let at = self.at_p(p);
        if at {
            self.bump();
        }
        at
    }

    fn word(&self) -> Option<&str> {
        match &self.tok().kind {
            TokKind::Ident(s) => Some(s),
            _ => None,
        }
    }

    fn nth_word(&self, n: usize) -> Option<&str> {
        match &self.nth(n).kind {
            TokKind::Ident(s) => Some(s),
            _ => None,
        }
    }

    fn at_kw(&self, kw: &str) -> bool {
        self.word() == Some(kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let at = self.at_kw(kw);
        if at {
            self.bump();
        }
        at
    }

    fn found(&self) -> String {
        match &self.tok().kind {
            TokKind::Ident(s) if RESERVED.contains(&s.as_str()) => format!("keyword `{s}`"),
            k => k.to_string(),
        }
    }

    fn expected(&self, what: &str) -> Diagnostic {
        Diagnostic::error(
            self.span(),
            format!("expected {what}, found {}", self.found()),
        )
    }

    fn expect_p(&mut self, p: Punct, context: &str) -> PResult<Span> {
        if self.at_p(p) {
            Ok(self.bump().span)
        } else {
            Err(self.expected(&format!("`{}` {context}", p.text())))
        }
    }

    /// Expects the `;` that ends `what`; when it is missing, points at the token it should
    /// follow (the next token may be lines away).
    fn expect_semi(&mut self, what: &str) -> PResult<()> {
        if self.eat_p(Punct::Semi) {
            return Ok(());
        }
        let prev = self
            .pos
            .checked_sub(1)
            .map_or(self.span(), |i| self.toks[i].span);
        Err(Diagnostic::error(
            prev,
            format!("expected `;` after {what}, found {}", self.found()),
        ))
    }

    /// The end of the file came before the `}` closing `what`, which opened at `open`.
    fn unclosed(&self, open: Span, what: &str) -> Diagnostic {
        Diagnostic::error(
            self.span(),
            format!("unexpected end of file: {what} is not closed (missing `}}`)"),
        )
        .with_note(open, format!("{what} opens here"))
    }

    fn expect_kw(&mut self, kw: &str, context: &str) -> PResult<Span> {
        if self.at_kw(kw) {
            Ok(self.bump().span)
        } else {
            Err(self.expected(&format!("`{kw}` {context}")))
        }
    }

    /// A name: any identifier that is not a reserved word.
    fn ident(&mut self, what: &str) -> PResult<Ident> {
        match &self.tok().kind {
            TokKind::Ident(s) if !RESERVED.contains(&s.as_str()) => {
                let name = s.clone();
                let span = self.bump().span;
                Ok(Ident { name, span })
            }
            _ => Err(self.expected(what)),
        }
    }

    fn at_ident(&self) -> bool {
        self.word().is_some_and(|w| !RESERVED.contains(&w))
    }

    // ---- nesting and backtracking -------------------------------------------------------

    fn enter(&mut self) -> PResult<()> {
        if self.depth >= MAX_DEPTH {
            return Err(Diagnostic::error(
                self.span(),
                format!("nesting too deep (vmdep's compiler allows {MAX_DEPTH} levels)"),
            ));
        }
        self.depth += 1;
        Ok(())
    }

    /// Runs `f` one nesting level deeper.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        self.enter()?;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn may_speculate(&self) -> bool {
        self.steps < self.budget
    }

    /// Runs `f`; on failure rewinds to where it started and returns `None`.
    fn attempt<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> Option<T> {
        let (pos, depth) = (self.pos, self.depth);
        match f(self) {
            Ok(v) => Some(v),
            Err(_) => {
                self.pos = pos;
                self.depth = depth;
                None
            }
        }
    }

    /// After an error in the declaration that started at token `start`: skip to the end of that
    /// declaration (its `;` or its closing brace) or to the next declaration keyword.
    fn recover(&mut self, start: usize) {
        let error_pos = self.pos;
        self.pos = start;
        let mut depth = 0i64;
        loop {
            let t = self.tok();
            match &t.kind {
                TokKind::Eof => return,
                TokKind::Ident(w)
                    if depth == 0
                        && self.pos > start
                        && self.pos >= error_pos
                        && DECL_KEYWORDS.contains(&w.as_str()) =>
                {
                    return
                }
                TokKind::Punct(Punct::LBrace) => depth += 1,
                TokKind::Punct(Punct::RBrace) => {
                    depth -= 1;
                    if depth <= 0 && self.pos >= error_pos {
                        self.bump();
                        return;
                    }
                }
                TokKind::Punct(Punct::Semi) if depth <= 0 && self.pos >= error_pos => {
                    self.bump();
                    return;
                }
                _ => {}
            }
            self.bump();
        }
    }

    // ---- annotations --------------------------------------------------------------------

    fn annotations(&mut self) -> PResult<Vec<Annotation>> {
        let mut out = Vec::new();
        while self.at_p(Punct::At) {
            out.push(self.annotation()?);
        }
        Ok(out)
    }

    fn annotation(&mut self) -> PResult<Annotation> {
        let lo = self.bump().span.lo; // `@`
        let name = match &self.tok().kind {
            // Annotation names may be keywords (`@pragma`, `@hidden`, `@name`...).
            TokKind::Ident(s) => {
                let name = s.clone();
                Ident {
                    name,
                    span: self.bump().span,
                }
            }
            _ => return Err(self.expected("an annotation name after `@`")),
        };
        let mut args = Vec::new();
        if self.at_p(Punct::LParen) {
            let open = self.bump().span;
            let parsed = if self.may_speculate() {
                self.attempt(|p| {
                    let mut args = Vec::new();
                    if !p.at_p(Punct::RParen) {
                        loop {
                            args.push(p.expr()?);
                            if !p.eat_p(Punct::Comma) {
                                break;
                            }
                        }
                    }
                    p.expect_p(Punct::RParen, "")?;
                    Ok(args)
                })
            } else {
                None
            };
            match parsed {
                Some(a) => args = a,
                // Annotation bodies may be any balanced tokens (`@pkginfo(name = "x")`); only
                // expression lists are kept.
                None => self.skip_balanced(open, Punct::LParen, Punct::RParen)?,
            }
        } else if self.at_p(Punct::LBracket) {
            let open = self.bump().span;
            self.skip_balanced(open, Punct::LBracket, Punct::RBracket)?;
        }
        Ok(Annotation {
            name,
            args,
            span: self.span_from(lo),
        })
    }

    /// Skips to the token closing an already consumed `open`.
    fn skip_balanced(&mut self, open_span: Span, open: Punct, close: Punct) -> PResult<()> {
        let mut depth = 1u32;
        loop {
            if self.at_eof() {
                return Err(Diagnostic::error(
                    open_span,
                    format!("unclosed `{}` in annotation", open.text()),
                ));
            }
            let t = self.bump();
            if t.kind == TokKind::Punct(open) {
                depth += 1;
            } else if t.kind == TokKind::Punct(close) {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
        }
    }

    // ---- declarations -------------------------------------------------------------------

    fn decl(&mut self) -> PResult<Decl> {
        let lo = self.span().lo;
        let annotations = self.annotations()?;
        let kw_span = self.span();
        let kind = match self.word() {
            Some("const") => DeclKind::Const(self.const_decl(annotations)?),
            Some(kw @ ("typedef" | "type")) => {
                let newtype = kw == "type";
                self.bump();
                let ty = self.ty()?;
                let name = self.ident("a name for the type")?;
                self.expect_semi(if newtype {
                    "the `type` declaration"
                } else {
                    "the `typedef` declaration"
                })?;
                DeclKind::Typedef {
                    annotations,
                    ty,
                    name,
                    newtype,
                }
            }
            Some("header") => DeclKind::Header(self.struct_like("header", annotations)?),
            Some("struct") => DeclKind::Struct(self.struct_like("struct", annotations)?),
            Some("enum") => self.enum_decl(annotations)?,
            Some("error") if self.nth_is_p(1, Punct::LBrace) => {
                self.no_annotations(&annotations, "`error` declarations")?;
                self.bump();
                DeclKind::Error {
                    members: self.name_list("`error`")?,
                }
            }
            Some("match_kind") => {
                self.no_annotations(&annotations, "`match_kind` declarations")?;
                self.bump();
                DeclKind::MatchKind {
                    members: self.name_list("`match_kind`")?,
                }
            }
            Some("parser") => DeclKind::Parser(self.parser_decl(annotations)?),
            Some("control") => DeclKind::Control(self.control_decl(annotations)?),
            Some("action") => DeclKind::Action(self.action_decl(annotations)?),
            Some("header_union") => return Err(unsupported(kw_span, "`header_union` is")),
            Some("extern") => {
                return Err(Diagnostic::error(
                    kw_span,
                    "`extern` declarations are not supported by vmdep's compiler \
                     (the externs of core.p4 and v1model.p4 are built in)",
                ))
            }
            Some("package") => return Err(unsupported(kw_span, "`package` declarations are")),
            Some("abstract") => return Err(unsupported(kw_span, "`abstract` methods are")),
            Some("value_set") => return Err(unsupported(kw_span, "`value_set` is")),
            _ => self.instantiation_or_function(annotations)?,
        };
        Ok(Decl {
            kind,
            span: self.span_from(lo),
        })
    }

    fn no_annotations(&self, annotations: &[Annotation], what: &str) -> PResult<()> {
        match annotations.first() {
            Some(a) => Err(Diagnostic::error(
                a.span,
                format!("annotations on {what} are not supported by vmdep's compiler"),
            )),
            None => Ok(()),
        }
    }

    /// At top level, a type starts an instantiation `T(args) name;`; `T name(...)` would be a
    /// function declaration, which the subset does not have.
    fn instantiation_or_function(&mut self, annotations: Vec<Annotation>) -> PResult<DeclKind> {
        if !self.at_ident() && !self.starts_type() {
            return Err(self.expected("a declaration"));
        }
        let ty = self.ty()?;
        if self.at_p(Punct::LParen) {
            return Ok(DeclKind::Instantiation(
                self.instantiation_rest(annotations, ty)?,
            ));
        }
        if self.at_ident() && self.nth_is_p(1, Punct::LParen) {
            return Err(unsupported(
                ty.span.to(self.span()),
                "function declarations are",
            ));
        }
        if self.at_ident() {
            return Err(Diagnostic::error(
                ty.span.to(self.span()),
                "variables are not allowed at top level; use `const`",
            ));
        }
        Err(self.expected("`(` with constructor arguments after the type"))
    }

    fn instantiation_rest(
        &mut self,
        annotations: Vec<Annotation>,
        ty: TypeRef,
    ) -> PResult<Instantiation> {
        let args = self.args()?;
        let name = self.ident("a name for the instance")?;
        self.expect_semi("the instantiation")?;
        Ok(Instantiation {
            annotations,
            ty,
            args,
            name,
        })
    }

    fn const_decl(&mut self, annotations: Vec<Annotation>) -> PResult<ConstDecl> {
        self.expect_kw("const", "")?;
        let ty = self.ty()?;
        let name = self.ident("a name for the constant")?;
        self.expect_p(Punct::Assign, "and a value: constants must be initialized")?;
        let value = self.expr()?;
        self.expect_semi("the constant declaration")?;
        Ok(ConstDecl {
            annotations,
            ty,
            name,
            value,
        })
    }

    fn struct_like(&mut self, kw: &str, annotations: Vec<Annotation>) -> PResult<StructLike> {
        self.bump();
        let name = self.ident(&format!("a name for the {kw}"))?;
        if self.at_p(Punct::Lt) {
            return Err(unsupported(self.span(), &format!("generic {kw} types are")));
        }
        let open = self.expect_p(Punct::LBrace, &format!("to open the {kw} body"))?;
        let mut fields = Vec::new();
        while !self.eat_p(Punct::RBrace) {
            if self.at_eof() {
                return Err(self.unclosed(open, &format!("{kw} `{}`", name.name)));
            }
            let lo = self.span().lo;
            let annotations = self.annotations()?;
            let ty = self.ty()?;
            let fname = self.ident("a field name")?;
            self.expect_semi(&format!("field `{}`", fname.name))?;
            fields.push(Field {
                annotations,
                ty,
                name: fname,
                span: self.span_from(lo),
            });
        }
        Ok(StructLike {
            annotations,
            name,
            fields,
        })
    }

    fn enum_decl(&mut self, annotations: Vec<Annotation>) -> PResult<DeclKind> {
        self.bump();
        let underlying = if self.at_ident() && self.nth_is_p(1, Punct::LBrace) {
            None
        } else {
            Some(self.ty()?)
        };
        let name = self.ident("a name for the enum")?;
        self.expect_p(Punct::LBrace, "to open the enum body")?;
        let mut members = Vec::new();
        while !self.at_p(Punct::RBrace) {
            let m = self.ident("an enum member")?;
            let value = if self.eat_p(Punct::Assign) {
                Some(self.expr()?)
            } else {
                None
            };
            members.push((m, value));
            if !self.eat_p(Punct::Comma) {
                break;
            }
        }
        self.expect_p(Punct::RBrace, "to close the enum body")?;
        Ok(DeclKind::Enum {
            annotations,
            name,
            underlying,
            members,
        })
    }

    /// `{ a, b, c }` with an optional trailing comma.
    fn name_list(&mut self, what: &str) -> PResult<Vec<Ident>> {
        self.expect_p(Punct::LBrace, &format!("after {what}"))?;
        let mut out = Vec::new();
        while !self.at_p(Punct::RBrace) {
            out.push(self.ident("a name")?);
            if !self.eat_p(Punct::Comma) {
                break;
            }
        }
        self.expect_p(Punct::RBrace, &format!("to close the {what} list"))?;
        Ok(out)
    }

    fn params(&mut self) -> PResult<Vec<Param>> {
        self.expect_p(Punct::LParen, "to open the parameter list")?;
        let mut out = Vec::new();
        if self.eat_p(Punct::RParen) {
            return Ok(out);
        }
        loop {
            let lo = self.span().lo;
            let annotations = self.annotations()?;
            let direction = match self.word() {
                Some("in") => Some(Direction::In),
                Some("out") => Some(Direction::Out),
                Some("inout") => Some(Direction::InOut),
                _ => None,
            };
            if direction.is_some() {
                self.bump();
            }
            let ty = self.ty()?;
            let name = self.ident("a parameter name")?;
            if self.at_p(Punct::Assign) {
                return Err(unsupported(self.span(), "default parameter values are"));
            }
            out.push(Param {
                annotations,
                direction,
                ty,
                name,
                span: self.span_from(lo),
            });
            if !self.eat_p(Punct::Comma) {
                break;
            }
        }
        self.expect_p(Punct::RParen, "to close the parameter list")?;
        Ok(out)
    }

    /// The part shared by parsers and controls: name, parameters, and the rejections of the
    /// forms the subset lacks.
    fn block_header(&mut self, kw: &str) -> PResult<(Ident, Vec<Param>, Span)> {
        self.bump();
        let name = self.ident(&format!("a name for the {kw}"))?;
        if self.at_p(Punct::Lt) {
            return Err(unsupported(
                self.span(),
                &format!("generic {kw}s (type parameters) are"),
            ));
        }
        let params = self.params()?;
        if self.at_p(Punct::Semi) {
            return Err(Diagnostic::error(
                name.span.to(self.span()),
                format!(
                    "{kw} type declarations are not supported by vmdep's compiler \
                     (v1model's are built in)"
                ),
            ));
        }
        if self.at_p(Punct::LParen) {
            return Err(unsupported(
                self.span(),
                &format!("{kw} constructor parameters are"),
            ));
        }
        let open = self.expect_p(
            Punct::LBrace,
            &format!("to open the body of {kw} `{}`", name.name),
        )?;
        Ok((name, params, open))
    }

    fn parser_decl(&mut self, annotations: Vec<Annotation>) -> PResult<ParserDecl> {
        let (name, params, open) = self.block_header("parser")?;
        let mut locals = Vec::new();
        let mut states = Vec::new();
        while !self.eat_p(Punct::RBrace) {
            if self.at_eof() {
                return Err(self.unclosed(open, &format!("parser `{}`", name.name)));
            }
            let lo = self.span().lo;
            let anns = self.annotations()?;
            if self.at_kw("state") {
                states.push(self.state(anns, lo)?);
            } else if self.at_kw("value_set") {
                return Err(unsupported(self.span(), "`value_set` is"));
            } else {
                let kind = self.local(anns, false)?;
                locals.push(Local {
                    kind,
                    span: self.span_from(lo),
                });
            }
        }
        Ok(ParserDecl {
            annotations,
            name,
            params,
            locals,
            states,
        })
    }

    fn state(&mut self, annotations: Vec<Annotation>, lo: u32) -> PResult<ParserState> {
        self.bump();
        let name = self.ident("a state name")?;
        let open = self.expect_p(Punct::LBrace, &format!("to open state `{}`", name.name))?;
        let mut stmts = Vec::new();
        let transition = loop {
            if self.at_kw("transition") {
                let t = self.transition()?;
                self.expect_p(
                    Punct::RBrace,
                    &format!(
                        "to close state `{}`: `transition` must be its last statement",
                        name.name
                    ),
                )?;
                break t;
            }
            if self.at_p(Punct::RBrace) {
                // P4_16: a state without a transition goes to `reject`.
                let close = self.bump().span;
                break Transition::Direct(Ident {
                    name: "reject".to_string(),
                    span: close,
                });
            }
            if self.at_eof() {
                return Err(self.unclosed(open, &format!("state `{}`", name.name)));
            }
            stmts.push(self.stmt()?);
        };
        Ok(ParserState {
            annotations,
            name,
            stmts,
            transition,
            span: self.span_from(lo),
        })
    }

    fn transition(&mut self) -> PResult<Transition> {
        self.bump();
        if !self.at_kw("select") {
            let next = self.ident("a state name or `select` after `transition`")?;
            self.expect_semi("the transition")?;
            return Ok(Transition::Direct(next));
        }
        let lo = self.bump().span.lo;
        self.expect_p(Punct::LParen, "after `select`")?;
        let mut exprs = Vec::new();
        loop {
            exprs.push(self.expr()?);
            if !self.eat_p(Punct::Comma) {
                break;
            }
        }
        self.expect_p(Punct::RParen, "to close the `select` expressions")?;
        let open = self.expect_p(Punct::LBrace, "to open the `select` cases")?;
        let mut cases = Vec::new();
        while !self.eat_p(Punct::RBrace) {
            if self.at_eof() {
                return Err(self.unclosed(open, "the `select` case list"));
            }
            let case_lo = self.span().lo;
            let keysets = self.keysets()?;
            self.expect_p(Punct::Colon, "after the select case's keyset")?;
            let next = self.ident("the next state's name")?;
            self.expect_semi("the select case")?;
            cases.push(SelectCase {
                keysets,
                next,
                span: self.span_from(case_lo),
            });
        }
        Ok(Transition::Select {
            exprs,
            cases,
            span: self.span_from(lo),
        })
    }

    /// A keyset or a parenthesized tuple of keysets, as in select cases and table entries.
    fn keysets(&mut self) -> PResult<Vec<Keyset>> {
        if self.at_p(Punct::LParen) && self.may_speculate() {
            let tuple = self.attempt(|p| {
                p.bump();
                let mut ks = Vec::new();
                loop {
                    ks.push(p.keyset()?);
                    if !p.eat_p(Punct::Comma) {
                        break;
                    }
                }
                p.expect_p(Punct::RParen, "")?;
                if p.at_p(Punct::Colon) {
                    Ok(ks)
                } else {
                    Err(p.expected("`:`"))
                }
            });
            if let Some(ks) = tuple {
                return Ok(ks);
            }
        }
        Ok(vec![self.keyset()?])
    }

    fn keyset(&mut self) -> PResult<Keyset> {
        if self.at_kw("default") {
            return Ok(Keyset::Default(self.bump().span));
        }
        let e = self.expr()?;
        if self.eat_p(Punct::Mask) {
            let mask = self.expr()?;
            return Ok(Keyset::Mask(e, mask));
        }
        if self.eat_p(Punct::DotDot) {
            let hi = self.expr()?;
            return Ok(Keyset::Range(e, hi));
        }
        Ok(match e.kind {
            ExprKind::DontCare => Keyset::DontCare(e.span),
            _ => Keyset::Expr(e),
        })
    }

    fn control_decl(&mut self, annotations: Vec<Annotation>) -> PResult<ControlDecl> {
        let (name, params, open) = self.block_header("control")?;
        let mut locals = Vec::new();
        let apply = loop {
            if self.at_eof() {
                return Err(self.unclosed(open, &format!("control `{}`", name.name)));
            }
            if self.at_p(Punct::RBrace) {
                return Err(self.expected(&format!("`apply` block in control `{}`", name.name)));
            }
            let lo = self.span().lo;
            let anns = self.annotations()?;
            if self.at_kw("apply") && self.nth_is_p(1, Punct::LBrace) {
                self.no_annotations(&anns, "`apply` blocks")?;
                self.bump();
                break self.block()?;
            }
            let kind = self.local(anns, true)?;
            locals.push(Local {
                kind,
                span: self.span_from(lo),
            });
        };
        if self.at_eof() {
            return Err(self.unclosed(open, &format!("control `{}`", name.name)));
        }
        self.expect_p(
            Punct::RBrace,
            &format!(
                "to close control `{}`: the `apply` block must come last",
                name.name
            ),
        )?;
        Ok(ControlDecl {
            annotations,
            name,
            params,
            locals,
            apply,
        })
    }

    /// A declaration inside a parser or control: constant, variable, instance, and in controls
    /// also actions and tables.
    fn local(&mut self, annotations: Vec<Annotation>, in_control: bool) -> PResult<LocalKind> {
        match self.word() {
            Some("const") => return Ok(LocalKind::Const(self.const_decl(annotations)?)),
            Some("action") if in_control => {
                return Ok(LocalKind::Action(self.action_decl(annotations)?))
            }
            Some("table") if in_control => {
                return Ok(LocalKind::Table(self.table_decl(annotations)?))
            }
            Some(kw @ ("action" | "table")) => {
                return Err(Diagnostic::error(
                    self.span(),
                    format!("`{kw}` is only allowed in a control"),
                ))
            }
            _ => {}
        }
        if !self.at_ident() && !self.starts_type() {
            return Err(self.expected(if in_control {
                "a declaration or `apply`"
            } else {
                "a declaration or `state`"
            }));
        }
        let ty = self.ty()?;
        if self.at_p(Punct::LParen) {
            return Ok(LocalKind::Instantiation(
                self.instantiation_rest(annotations, ty)?,
            ));
        }
        Ok(LocalKind::Var(self.var_rest(annotations, ty)?))
    }

    fn var_rest(&mut self, annotations: Vec<Annotation>, ty: TypeRef) -> PResult<VarDecl> {
        let name = self.ident("a variable name")?;
        let init = if self.eat_p(Punct::Assign) {
            Some(self.expr()?)
        } else {
            None
        };
        self.expect_semi(&format!("the declaration of `{}`", name.name))?;
        Ok(VarDecl {
            annotations,
            ty,
            name,
            init,
        })
    }

    fn action_decl(&mut self, annotations: Vec<Annotation>) -> PResult<ActionDecl> {
        self.bump();
        let name = self.ident("a name for the action")?;
        let params = self.params()?;
        if !self.at_p(Punct::LBrace) {
            return Err(self.expected(&format!("`{{` to open the body of action `{}`", name.name)));
        }
        let body = self.block()?;
        Ok(ActionDecl {
            annotations,
            name,
            params,
            body,
        })
    }

    fn table_decl(&mut self, annotations: Vec<Annotation>) -> PResult<TableDecl> {
        let lo = self.bump().span.lo;
        let name = self.ident("a name for the table")?;
        let open = self.expect_p(Punct::LBrace, &format!("to open table `{}`", name.name))?;
        let mut props = Vec::new();
        while !self.eat_p(Punct::RBrace) {
            if self.at_eof() {
                return Err(self.unclosed(open, &format!("table `{}`", name.name)));
            }
            props.push(self.table_property()?);
        }
        Ok(TableDecl {
            annotations,
            name,
            props,
            span: self.span_from(lo),
        })
    }

    fn table_property(&mut self) -> PResult<TableProperty> {
        let lo = self.span().lo;
        let is_const = self.eat_kw("const");
        let pname = match &self.tok().kind {
            // Property names may be the contextual keywords `key`, `actions`, `entries`.
            TokKind::Ident(s) if !RESERVED.contains(&s.as_str()) => s.clone(),
            _ => return Err(self.expected("a table property (`key`, `actions`, ...)")),
        };
        let name_span = self.bump().span;
        self.expect_p(Punct::Assign, &format!("after `{pname}`"))?;
        let kind = match pname.as_str() {
            "key" if !is_const => self.table_key()?,
            "actions" if !is_const => self.table_actions()?,
            "default_action" => {
                let action = self.action_ref()?;
                self.expect_semi("`default_action`")?;
                TablePropertyKind::DefaultAction { is_const, action }
            }
            "entries" => self.table_entries(is_const)?,
            "key" | "actions" => {
                return Err(Diagnostic::error(
                    name_span,
                    format!("`{pname}` cannot be `const`"),
                ))
            }
            _ => {
                let value = self.expr()?;
                self.expect_semi(&format!("table property `{pname}`"))?;
                TablePropertyKind::Other {
                    is_const,
                    name: Ident {
                        name: pname,
                        span: name_span,
                    },
                    value,
                }
            }
        };
        Ok(TableProperty {
            kind,
            span: self.span_from(lo),
        })
    }

    fn table_key(&mut self) -> PResult<TablePropertyKind> {
        let open = self.expect_p(Punct::LBrace, "to open the key list")?;
        let mut elems = Vec::new();
        while !self.eat_p(Punct::RBrace) {
            if self.at_eof() {
                return Err(self.unclosed(open, "the key list"));
            }
            let lo = self.span().lo;
            let expr = self.expr()?;
            self.expect_p(Punct::Colon, "and a match kind after the key expression")?;
            let match_kind = self.ident("a match kind (`exact`, `ternary`, `lpm`, ...)")?;
            let annotations = self.annotations()?;
            self.expect_semi("the key element")?;
            elems.push(KeyElement {
                annotations,
                expr,
                match_kind,
                span: self.span_from(lo),
            });
        }
        // The grammar has no `;` after the list; a stray one is harmless and tolerated.
        self.eat_p(Punct::Semi);
        Ok(TablePropertyKind::Key(elems))
    }

    fn table_actions(&mut self) -> PResult<TablePropertyKind> {
        let open = self.expect_p(Punct::LBrace, "to open the action list")?;
        let mut refs = Vec::new();
        while !self.eat_p(Punct::RBrace) {
            if self.at_eof() {
                return Err(self.unclosed(open, "the action list"));
            }
            refs.push(self.action_ref()?);
            self.expect_semi("the action name")?;
        }
        // The grammar has no `;` after the list; a stray one is harmless and tolerated.
        self.eat_p(Punct::Semi);
        Ok(TablePropertyKind::Actions(refs))
    }

    fn action_ref(&mut self) -> PResult<ActionRef> {
        let lo = self.span().lo;
        let annotations = self.annotations()?;
        let name = self.ident("an action name")?;
        let args = if self.at_p(Punct::LParen) {
            Some(self.args()?)
        } else {
            None
        };
        Ok(ActionRef {
            annotations,
            name,
            args,
            span: self.span_from(lo),
        })
    }

    fn table_entries(&mut self, is_const: bool) -> PResult<TablePropertyKind> {
        let open = self.expect_p(Punct::LBrace, "to open the entry list")?;
        let mut entries = Vec::new();
        while !self.eat_p(Punct::RBrace) {
            if self.at_eof() {
                return Err(self.unclosed(open, "the entry list"));
            }
            let lo = self.span().lo;
            let mut annotations = self.annotations()?;
            if self.at_kw("const") {
                return Err(unsupported(self.span(), "per-entry `const` is"));
            }
            let priority = if self.at_kw("priority") && self.nth_is_p(1, Punct::Assign) {
                self.bump();
                self.bump();
                let p = self.expr()?;
                self.expect_p(Punct::Colon, "after the entry priority")?;
                Some(p)
            } else {
                None
            };
            let keysets = self.keysets()?;
            self.expect_p(Punct::Colon, "after the entry's keyset")?;
            let action = self.action_ref()?;
            annotations.extend(self.annotations()?);
            self.expect_semi("the entry")?;
            entries.push(Entry {
                annotations,
                keysets,
                action,
                priority,
                span: self.span_from(lo),
            });
        }
        // The grammar has no `;` after the list; a stray one is harmless and tolerated.
        self.eat_p(Punct::Semi);
        Ok(TablePropertyKind::Entries { is_const, entries })
    }

    // ---- statements ---------------------------------------------------------------------

    fn block(&mut self) -> PResult<Block> {
        self.nested(|p| {
            let open = p.expect_p(Punct::LBrace, "to open a block")?;
            let lo = open.lo;
            let mut stmts = Vec::new();
            while !p.eat_p(Punct::RBrace) {
                if p.at_eof() {
                    return Err(p.unclosed(open, "the block"));
                }
                stmts.push(p.stmt()?);
            }
            Ok(Block {
                stmts,
                span: p.span_from(lo),
            })
        })
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        self.nested(Self::stmt_inner)
    }

    fn stmt_inner(&mut self) -> PResult<Stmt> {
        let lo = self.span().lo;
        if self.at_p(Punct::At) {
            let a = self.annotation()?;
            return Err(Diagnostic::error(
                a.span,
                "annotations on statements are not supported by vmdep's compiler",
            ));
        }
        let word = self.word().map(str::to_string);
        let kind = match word.as_deref() {
            _ if self.at_p(Punct::LBrace) => StmtKind::Block(self.block()?),
            _ if self.eat_p(Punct::Semi) => StmtKind::Empty,
            Some("if") => self.if_stmt()?,
            Some("switch") => self.switch_stmt()?,
            Some("return") => {
                self.bump();
                let value = if self.at_p(Punct::Semi) {
                    None
                } else {
                    Some(self.expr()?)
                };
                self.expect_semi("`return`")?;
                StmtKind::Return(value)
            }
            Some("exit") => {
                self.bump();
                self.expect_semi("`exit`")?;
                StmtKind::Exit
            }
            Some("const") => StmtKind::Const(self.const_decl(Vec::new())?),
            Some("for") => return Err(unsupported(self.span(), "`for` loops are")),
            Some("transition") => {
                return Err(Diagnostic::error(
                    self.span(),
                    "`transition` is only allowed as the last statement of a parser state",
                ))
            }
            Some(kw @ ("action" | "table")) => {
                return Err(Diagnostic::error(
                    self.span(),
                    format!("`{kw}` declarations are not allowed inside a block"),
                ))
            }
            _ => self.decl_or_expr_stmt()?,
        };
        Ok(Stmt {
            kind,
            span: self.span_from(lo),
        })
    }

    fn if_stmt(&mut self) -> PResult<StmtKind> {
        self.bump();
        self.expect_p(Punct::LParen, "after `if`")?;
        let cond = self.expr()?;
        self.expect_p(Punct::RParen, "to close the `if` condition")?;
        let then = self.stmt_as_block()?;
        let otherwise = if self.eat_kw("else") {
            Some(Box::new(self.stmt()?))
        } else {
            None
        };
        Ok(StmtKind::If {
            cond,
            then,
            otherwise,
        })
    }

    /// The body of an `if`: a block as written, or a single statement wrapped in one.
    fn stmt_as_block(&mut self) -> PResult<Block> {
        if self.at_p(Punct::LBrace) {
            return self.block();
        }
        let s = self.stmt()?;
        Ok(Block {
            span: s.span,
            stmts: vec![s],
        })
    }

    fn switch_stmt(&mut self) -> PResult<StmtKind> {
        self.bump();
        self.expect_p(Punct::LParen, "after `switch`")?;
        let expr = self.expr()?;
        self.expect_p(Punct::RParen, "to close the `switch` expression")?;
        let open = self.expect_p(Punct::LBrace, "to open the `switch` cases")?;
        let mut cases: Vec<SwitchCase> = Vec::new();
        while !self.at_p(Punct::RBrace) {
            if self.at_eof() {
                return Err(self.unclosed(open, "the `switch` case list"));
            }
            let lo = self.span().lo;
            let label = if self.at_kw("default") {
                SwitchLabel::Default(self.bump().span)
            } else if self.at_ident() && self.nth_is_p(1, Punct::Colon) {
                SwitchLabel::Name(self.ident("a label")?)
            } else {
                SwitchLabel::Expr(self.expr()?)
            };
            self.expect_p(Punct::Colon, "after the `switch` label")?;
            let body = if self.at_p(Punct::LBrace) {
                Some(self.block()?)
            } else {
                None
            };
            cases.push(SwitchCase {
                label,
                body,
                span: self.span_from(lo),
            });
        }
        if let Some(last) = cases.last().filter(|c| c.body.is_none()) {
            return Err(Diagnostic::error(
                last.span,
                "the last `switch` case needs a block: there is no case to fall through to",
            ));
        }
        self.bump();
        Ok(StmtKind::Switch { expr, cases })
    }

    /// A statement that starts like a type may declare a variable (`T x;`, `T x = e;`);
    /// otherwise it is an assignment or a call.
    fn decl_or_expr_stmt(&mut self) -> PResult<StmtKind> {
        if self.starts_type() && !(self.at_kw("error") && self.nth_is_p(1, Punct::Dot)) {
            let ty = self.ty()?;
            return Ok(StmtKind::Var(self.var_rest(Vec::new(), ty)?));
        }
        if self.at_ident() && self.may_speculate() {
            let ty = self.attempt(|p| {
                let ty = p.ty()?;
                if p.at_ident() && (p.nth_is_p(1, Punct::Semi) || p.nth_is_p(1, Punct::Assign)) {
                    Ok(ty)
                } else {
                    Err(p.expected(""))
                }
            });
            if let Some(ty) = ty {
                return Ok(StmtKind::Var(self.var_rest(Vec::new(), ty)?));
            }
        }
        let lhs = self.expr()?;
        if self.eat_p(Punct::Assign) {
            let rhs = self.expr()?;
            self.expect_semi("the assignment")?;
            return Ok(StmtKind::Assign { lhs, rhs });
        }
        if !matches!(lhs.kind, ExprKind::Call { .. }) {
            return Err(if self.at_p(Punct::Semi) {
                Diagnostic::error(
                    lhs.span,
                    "this expression is not a statement: expected an assignment or a call",
                )
            } else {
                self.expected("`=` or `;` after the expression")
            });
        }
        self.expect_semi("the call")?;
        Ok(StmtKind::Call(lhs))
    }

    // ---- types --------------------------------------------------------------------------

    /// Whether the current token is a keyword that can only start a type.
    fn starts_type(&self) -> bool {
        matches!(
            self.word(),
            Some("bit" | "int" | "varbit" | "bool" | "string" | "error" | "tuple" | "void")
                | Some("match_kind")
        )
    }

    fn ty(&mut self) -> PResult<TypeRef> {
        self.nested(Self::ty_inner)
    }

    fn ty_inner(&mut self) -> PResult<TypeRef> {
        let lo = self.span().lo;
        let word = match self.word() {
            Some(w) => w.to_string(),
            None => return Err(self.expected("a type")),
        };
        let kind = match word.as_str() {
            "bool" => {
                self.bump();
                TypeKind::Bool
            }
            "bit" => {
                self.bump();
                if self.at_p(Punct::Lt) {
                    TypeKind::Bit(self.width("bit")?)
                } else {
                    TypeKind::Bit(Width::Lit(1))
                }
            }
            "int" => {
                self.bump();
                if self.at_p(Punct::Lt) {
                    TypeKind::SignedInt(self.width("int")?)
                } else {
                    TypeKind::Int
                }
            }
            "varbit" => {
                self.bump();
                TypeKind::Varbit(self.width("varbit")?)
            }
            "string" => {
                self.bump();
                TypeKind::String
            }
            "error" => {
                self.bump();
                TypeKind::Error
            }
            "match_kind" => {
                self.bump();
                TypeKind::MatchKind
            }
            "void" => {
                self.bump();
                TypeKind::Void
            }
            "_" => {
                self.bump();
                TypeKind::DontCare
            }
            "tuple" => {
                self.bump();
                if !self.at_p(Punct::Lt) {
                    return Err(self.expected("`<` after `tuple`"));
                }
                TypeKind::Tuple(self.type_args()?)
            }
            "list" | "header_union" => {
                return Err(unsupported(self.span(), &format!("`{word}` is")))
            }
            _ => {
                let name = self.ident("a type")?;
                let args = if self.at_p(Punct::Lt) {
                    self.type_args()?
                } else {
                    Vec::new()
                };
                TypeKind::Named { name, args }
            }
        };
        let ty = TypeRef {
            kind,
            span: self.span_from(lo),
        };
        if self.at_p(Punct::LBracket) {
            self.bump();
            let size = self.expr()?;
            self.expect_p(Punct::RBracket, "to close the header stack size")?;
            return Ok(TypeRef {
                kind: TypeKind::Stack {
                    elem: Box::new(ty),
                    size: Box::new(size),
                },
                span: self.span_from(lo),
            });
        }
        Ok(ty)
    }

    /// `<8>` or `<(EXPR)>` after `bit`, `int` or `varbit`.
    fn width(&mut self, ty: &str) -> PResult<Width> {
        self.bump(); // `<`
        let w = match self.tok().kind {
            TokKind::Int { value, .. } => {
                let span = self.bump().span;
                match u32::try_from(value) {
                    Ok(v) => Width::Lit(v),
                    Err(_) => {
                        return Err(Diagnostic::error(
                            span,
                            format!("width of `{ty}` is too large"),
                        ))
                    }
                }
            }
            TokKind::Punct(Punct::LParen) => {
                self.bump();
                let e = self.expr()?;
                self.expect_p(Punct::RParen, "to close the width expression")?;
                Width::Expr(Box::new(e))
            }
            _ => {
                return Err(self.expected(&format!(
                    "the width of `{ty}`: an integer literal or a parenthesized expression"
                )))
            }
        };
        self.expect_p(Punct::Gt, &format!("to close `{ty}<...>`"))?;
        Ok(w)
    }

    /// `<T, U, ...>`, at least one type.
    fn type_args(&mut self) -> PResult<Vec<TypeRef>> {
        self.bump(); // `<`
        let mut out = Vec::new();
        loop {
            out.push(self.ty()?);
            if !self.eat_p(Punct::Comma) {
                break;
            }
        }
        self.expect_p(Punct::Gt, "to close the type arguments")?;
        Ok(out)
    }

    // ---- expressions --------------------------------------------------------------------

    fn expr(&mut self) -> PResult<Expr> {
        self.nested(Self::ternary)
    }

    fn ternary(&mut self) -> PResult<Expr> {
        let cond = self.binary(1)?;
        if !self.eat_p(Punct::Question) {
            return Ok(cond);
        }
        let then = self.expr()?;
        self.expect_p(Punct::Colon, "in the conditional expression `?:`")?;
        let otherwise = self.expr()?;
        Ok(Expr {
            span: cond.span.to(otherwise.span),
            kind: ExprKind::Ternary {
                cond: Box::new(cond),
                then: Box::new(then),
                otherwise: Box::new(otherwise),
            },
        })
    }

    /// The binary operator at the current token: (operator, precedence, tokens it takes).
    /// Precedence follows the P4_16 grammar, loosest first.
    fn peek_binop(&self) -> Option<(BinOp, u8, usize)> {
        let TokKind::Punct(p) = self.tok().kind else {
            return None;
        };
        use Punct::*;
        Some(match p {
            PipePipe => (BinOp::Or, 1, 1),
            AmpAmp => (BinOp::And, 2, 1),
            EqEq => (BinOp::Eq, 3, 1),
            Ne => (BinOp::Ne, 3, 1),
            Gt => {
                let next = self.nth(1);
                if next.kind == TokKind::Punct(Gt) && next.span.lo == self.span().hi {
                    (BinOp::Shr, 8, 2)
                } else {
                    (BinOp::Gt, 4, 1)
                }
            }
            Lt => (BinOp::Lt, 4, 1),
            Le => (BinOp::Le, 4, 1),
            Ge => (BinOp::Ge, 4, 1),
            Pipe => (BinOp::BitOr, 5, 1),
            Caret => (BinOp::BitXor, 6, 1),
            Amp => (BinOp::BitAnd, 7, 1),
            Shl => (BinOp::Shl, 8, 1),
            PlusPlus => (BinOp::Concat, 9, 1),
            Plus => (BinOp::Add, 9, 1),
            Minus => (BinOp::Sub, 9, 1),
            PlusSat => (BinOp::AddSat, 9, 1),
            MinusSat => (BinOp::SubSat, 9, 1),
            Star => (BinOp::Mul, 10, 1),
            Slash => (BinOp::Div, 10, 1),
            Percent => (BinOp::Mod, 10, 1),
            _ => return None,
        })
    }

    /// Precedence climbing; all binary operators are left-associative.
    fn binary(&mut self, min_prec: u8) -> PResult<Expr> {
        let mut links = 0;
        let r = self.binary_chain(min_prec, &mut links);
        self.depth -= links;
        r
    }

    /// Each operator applied deepens the left operand's tree, so each counts as a nesting level.
    fn binary_chain(&mut self, min_prec: u8, links: &mut u32) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        while let Some((op, prec, ntoks)) = self.peek_binop() {
            if prec < min_prec {
                break;
            }
            self.enter()?;
            *links += 1;
            for _ in 0..ntoks {
                self.bump();
            }
            let rhs = self.binary(prec + 1)?;
            lhs = Expr {
                span: lhs.span.to(rhs.span),
                kind: ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                },
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        let lo = self.span().lo;
        let op = match self.tok().kind {
            TokKind::Punct(Punct::Bang) => Some(UnOp::Not),
            TokKind::Punct(Punct::Tilde) => Some(UnOp::BitNot),
            TokKind::Punct(Punct::Minus) => Some(UnOp::Neg),
            TokKind::Punct(Punct::Plus) => {
                // Unary plus changes nothing; the operand keeps its own node.
                self.bump();
                return self.nested(Self::unary);
            }
            TokKind::Punct(Punct::LParen) => {
                if let Some(ty) = self.cast_prefix() {
                    let expr = self.nested(Self::unary)?;
                    return Ok(Expr {
                        span: self.span_from(lo),
                        kind: ExprKind::Cast {
                            ty,
                            expr: Box::new(expr),
                        },
                    });
                }
                None
            }
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let expr = self.nested(Self::unary)?;
            return Ok(Expr {
                span: self.span_from(lo),
                kind: ExprKind::Unary {
                    op,
                    expr: Box::new(expr),
                },
            });
        }
        let e = self.primary()?;
        self.postfix(e)
    }

    /// `(TYPE)` when it starts a cast: consumes it and returns the type. A base-type keyword
    /// makes it a cast for sure; `(name)` is a cast when an operand follows it, as in
    /// `(my_port_t) x`.
    fn cast_prefix(&mut self) -> Option<TypeRef> {
        let definite = matches!(
            self.nth_word(1),
            Some("bit" | "int" | "varbit" | "bool" | "string" | "tuple")
        );
        if definite {
            // Errors inside the type are reported by the non-speculative path below.
            let save = (self.pos, self.depth);
            self.bump();
            match self.ty() {
                Ok(ty) if self.eat_p(Punct::RParen) => return Some(ty),
                _ => {
                    (self.pos, self.depth) = save;
                    return None;
                }
            }
        }
        let named = self.nth_word(1).is_some_and(|w| !RESERVED.contains(&w));
        if !named || !self.may_speculate() {
            return None;
        }
        self.attempt(|p| {
            p.bump();
            let ty = p.ty()?;
            p.expect_p(Punct::RParen, "")?;
            let operand_follows = match &p.tok().kind {
                TokKind::Ident(w) => !matches!(w.as_str(), "else"),
                TokKind::Int { .. } | TokKind::Str(_) => true,
                TokKind::Punct(q) => matches!(q, Punct::LParen | Punct::Bang | Punct::Tilde),
                TokKind::Eof => false,
            };
            if operand_follows {
                Ok(ty)
            } else {
                Err(p.expected(""))
            }
        })
    }

    fn primary(&mut self) -> PResult<Expr> {
        let lo = self.span().lo;
        let tok = self.tok().clone();
        let kind = match tok.kind {
            TokKind::Int {
                value,
                width,
                signed,
            } => {
                self.bump();
                ExprKind::Int {
                    value,
                    width,
                    signed,
                }
            }
            TokKind::Str(s) => {
                self.bump();
                ExprKind::String(s)
            }
            TokKind::Ident(w) => match w.as_str() {
                "true" | "false" => {
                    self.bump();
                    ExprKind::Bool(w == "true")
                }
                "_" => {
                    self.bump();
                    ExprKind::DontCare
                }
                // `error.X` names a member of the error type.
                "error" => {
                    let span = self.bump().span;
                    ExprKind::Name(Ident { name: w, span })
                }
                "this" => return Err(unsupported(tok.span, "`this` is")),
                _ => ExprKind::Name(self.ident("an expression")?),
            },
            TokKind::Punct(Punct::LParen) => {
                self.bump();
                let inner = self.expr()?;
                self.expect_p(Punct::RParen, "to close the parenthesized expression")?;
                // Parentheses only group; the node keeps its kind but spans the parentheses.
                return Ok(Expr {
                    kind: inner.kind,
                    span: self.span_from(lo),
                });
            }
            TokKind::Punct(Punct::LBrace) => self.list()?,
            TokKind::Punct(Punct::Dot) => {
                return Err(unsupported(
                    tok.span,
                    "names prefixed with `.` (top-level scope) are",
                ))
            }
            _ => return Err(self.expected("an expression")),
        };
        Ok(Expr {
            kind,
            span: self.span_from(lo),
        })
    }

    /// `{ a, b }`; `{}` is the empty list.
    fn list(&mut self) -> PResult<ExprKind> {
        self.bump();
        let mut items = Vec::new();
        while !self.at_p(Punct::RBrace) {
            if self.at_ident() && self.nth_is_p(1, Punct::Assign) {
                return Err(unsupported(
                    self.span(),
                    "struct initializers `{ field = value }` are",
                ));
            }
            items.push(self.expr()?);
            if !self.eat_p(Punct::Comma) {
                break;
            }
        }
        self.expect_p(Punct::RBrace, "to close the list expression")?;
        Ok(ExprKind::List(items))
    }

    fn postfix(&mut self, e: Expr) -> PResult<Expr> {
        let mut links = 0;
        let r = self.postfix_chain(e, &mut links);
        self.depth -= links;
        r
    }

    /// Member access, indexing, slicing and calls. Each one deepens the tree by a level.
    fn postfix_chain(&mut self, mut e: Expr, links: &mut u32) -> PResult<Expr> {
        let lo = e.span.lo;
        loop {
            let kind = match self.tok().kind {
                TokKind::Punct(Punct::Dot) => {
                    self.bump();
                    let member = match &self.tok().kind {
                        // Members may be contextual keywords (`t.apply()`) but not reserved.
                        TokKind::Ident(s) if !RESERVED.contains(&s.as_str()) => {
                            let name = s.clone();
                            Ident {
                                name,
                                span: self.bump().span,
                            }
                        }
                        _ => return Err(self.expected("a member name after `.`")),
                    };
                    ExprKind::Member {
                        base: Box::new(e),
                        member,
                    }
                }
                TokKind::Punct(Punct::LBracket) => {
                    self.bump();
                    let index = self.expr()?;
                    let kind = if self.eat_p(Punct::Colon) {
                        let lo_bit = self.expr()?;
                        ExprKind::Slice {
                            base: Box::new(e),
                            hi: Box::new(index),
                            lo: Box::new(lo_bit),
                        }
                    } else {
                        ExprKind::Index {
                            base: Box::new(e),
                            index: Box::new(index),
                        }
                    };
                    self.expect_p(Punct::RBracket, "to close the index")?;
                    kind
                }
                TokKind::Punct(Punct::LParen) => ExprKind::Call {
                    callee: Box::new(e),
                    type_args: Vec::new(),
                    args: self.args()?,
                },
                TokKind::Punct(Punct::Lt)
                    if matches!(e.kind, ExprKind::Name(_) | ExprKind::Member { .. }) =>
                {
                    match self.generic_call_type_args() {
                        Some(type_args) => ExprKind::Call {
                            callee: Box::new(e),
                            type_args,
                            args: self.args()?,
                        },
                        None => return Ok(e),
                    }
                }
                _ => return Ok(e),
            };
            self.enter()?;
            *links += 1;
            e = Expr {
                kind,
                span: self.span_from(lo),
            };
        }
    }

    /// `<T, ...>` followed by `(`: the explicit type arguments of a call such as
    /// `hash<bit<16>>(...)`. Anything else leaves `<` to be a comparison.
    fn generic_call_type_args(&mut self) -> Option<Vec<TypeRef>> {
        let at = self.pos;
        if self.failed_generic.contains(&at) || !self.may_speculate() {
            return None;
        }
        let r = self.attempt(|p| {
            let args = p.type_args()?;
            if p.at_p(Punct::LParen) {
                Ok(args)
            } else {
                Err(p.expected("`(`"))
            }
        });
        if r.is_none() {
            self.failed_generic.insert(at);
        }
        r
    }

    /// `(a, name = b, _)`
    fn args(&mut self) -> PResult<Vec<Argument>> {
        self.expect_p(Punct::LParen, "to open the argument list")?;
        let mut out = Vec::new();
        if self.eat_p(Punct::RParen) {
            return Ok(out);
        }
        loop {
            if self.at_ident() && self.nth_is_p(1, Punct::Assign) {
                let name = self.ident("an argument name")?;
                self.bump();
                out.push(Argument::Named(name, self.expr()?));
            } else {
                out.push(Argument::Positional(self.expr()?));
            }
            if !self.eat_p(Punct::Comma) {
                break;
            }
        }
        self.expect_p(Punct::RParen, "to close the argument list")?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: [(&str, &str); 4] = [
        (
            "ref1_lpm_checksum",
            include_str!("../../tests/fixtures/p4c-reference/ref1_lpm_checksum.p4"),
        ),
        (
            "ref2_ternary_counters",
            include_str!("../../tests/fixtures/p4c-reference/ref2_ternary_counters.p4"),
        ),
        (
            "ref3_register_clone_hash",
            include_str!("../../tests/fixtures/p4c-reference/ref3_register_clone_hash.p4"),
        ),
        (
            "ref4_parser_range",
            include_str!("../../tests/fixtures/p4c-reference/ref4_parser_range.p4"),
        ),
    ];

    /// The program's diagnostics as `LINE:COL: MESSAGE` lines, for compact assertions.
    fn errors(src: &str) -> Vec<String> {
        parse(src)
            .expect_err("should not parse")
            .0
            .iter()
            .map(|d| {
                let (line, col, _) = super::super::diag::line_col(src, d.span.lo);
                format!("{line}:{col}: {}", d.message)
            })
            .collect()
    }

    fn first_error(src: &str) -> String {
        errors(src).remove(0)
    }

    fn decls(src: &str) -> Vec<DeclKind> {
        let prog = parse(src).unwrap_or_else(|d| panic!("{}", d.render("test.p4", src)));
        prog.decls.into_iter().map(|d| d.kind).collect()
    }

    fn one_decl(src: &str) -> DeclKind {
        let mut d = decls(src);
        assert_eq!(d.len(), 1);
        d.remove(0)
    }

    /// The initializer of `const T X = EXPR;` in the program `const bit<8> X = {src};`.
    fn expr(src: &str) -> Expr {
        match one_decl(&format!("const bit<8> X = {src};")) {
            DeclKind::Const(c) => c.value,
            other => panic!("{other:?}"),
        }
    }

    /// An S-expression rendering so precedence tests read like the trees they check.
    fn sx(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Int {
                value,
                width,
                signed,
            } => match width {
                Some(w) => format!("{w}{}{value}", if *signed { "s" } else { "w" }),
                None => value.to_string(),
            },
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::String(s) => format!("{s:?}"),
            ExprKind::Name(n) => n.name.clone(),
            ExprKind::Member { base, member } => format!("{}.{}", sx(base), member.name),
            ExprKind::Index { base, index } => format!("{}[{}]", sx(base), sx(index)),
            ExprKind::Slice { base, hi, lo } => format!("{}[{}:{}]", sx(base), sx(hi), sx(lo)),
            ExprKind::Call {
                callee,
                type_args,
                args,
            } => {
                let targs = if type_args.is_empty() {
                    String::new()
                } else {
                    format!(
                        "<{}>",
                        type_args.iter().map(tx).collect::<Vec<_>>().join(",")
                    )
                };
                let args: Vec<_> = args
                    .iter()
                    .map(|a| match a {
                        Argument::Positional(e) => sx(e),
                        Argument::Named(n, e) => format!("{}={}", n.name, sx(e)),
                    })
                    .collect();
                format!("{}{targs}({})", sx(callee), args.join(","))
            }
            ExprKind::Unary { op, expr } => format!("({op:?} {})", sx(expr)),
            ExprKind::Binary { op, lhs, rhs } => format!("({op:?} {} {})", sx(lhs), sx(rhs)),
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => format!("(? {} {} {})", sx(cond), sx(then), sx(otherwise)),
            ExprKind::Cast { ty, expr } => format!("(cast {} {})", tx(ty), sx(expr)),
            ExprKind::List(items) => {
                format!("{{{}}}", items.iter().map(sx).collect::<Vec<_>>().join(","))
            }
            ExprKind::DontCare => "_".into(),
        }
    }

    fn wx(w: &Width) -> String {
        match w {
            Width::Lit(n) => n.to_string(),
            Width::Expr(e) => format!("({})", sx(e)),
        }
    }

    fn tx(t: &TypeRef) -> String {
        match &t.kind {
            TypeKind::Bool => "bool".into(),
            TypeKind::Bit(w) => format!("bit<{}>", wx(w)),
            TypeKind::SignedInt(w) => format!("int<{}>", wx(w)),
            TypeKind::Varbit(w) => format!("varbit<{}>", wx(w)),
            TypeKind::Int => "int".into(),
            TypeKind::String => "string".into(),
            TypeKind::Error => "error".into(),
            TypeKind::MatchKind => "match_kind".into(),
            TypeKind::Void => "void".into(),
            TypeKind::DontCare => "_".into(),
            TypeKind::Named { name, args } if args.is_empty() => name.name.clone(),
            TypeKind::Named { name, args } => format!(
                "{}<{}>",
                name.name,
                args.iter().map(tx).collect::<Vec<_>>().join(",")
            ),
            TypeKind::Stack { elem, size } => format!("{}[{}]", tx(elem), sx(size)),
            TypeKind::Tuple(ts) => {
                format!("tuple<{}>", ts.iter().map(tx).collect::<Vec<_>>().join(","))
            }
        }
    }

    fn sexpr(src: &str) -> String {
        sx(&expr(src))
    }

    #[test]
    fn binary_precedence_follows_the_p4_grammar() {
        assert_eq!(sexpr("a + b * c"), "(Add a (Mul b c))");
        assert_eq!(sexpr("a - b - c"), "(Sub (Sub a b) c)");
        // Unlike C, `&`, `^` and `|` bind tighter than comparisons.
        assert_eq!(sexpr("a & b == c"), "(Eq (BitAnd a b) c)");
        assert_eq!(sexpr("a | b ^ c & d"), "(BitOr a (BitXor b (BitAnd c d)))");
        assert_eq!(sexpr("a < b | c"), "(Lt a (BitOr b c))");
        assert_eq!(sexpr("a == b < c"), "(Eq a (Lt b c))");
        assert_eq!(sexpr("a << 1 + 2"), "(Shl a (Add 1 2))");
        assert_eq!(sexpr("a & b << 2"), "(BitAnd a (Shl b 2))");
        assert_eq!(sexpr("a ++ b + c"), "(Add (Concat a b) c)");
        assert_eq!(
            sexpr("a |+| b |-| c * d"),
            "(SubSat (AddSat a b) (Mul c d))"
        );
        assert_eq!(sexpr("a || b && c"), "(Or a (And b c))");
        assert_eq!(sexpr("a && b == c || d"), "(Or (And a (Eq b c)) d)");
        assert_eq!(sexpr("a / b % c"), "(Mod (Div a b) c)");
        assert_eq!(sexpr("a != b >= c"), "(Ne a (Ge b c))");
    }

    #[test]
    fn shift_right_is_two_adjacent_greater_thans() {
        assert_eq!(sexpr("a >> 2"), "(Shr a 2)");
        assert_eq!(sexpr("a >> 2 > b"), "(Gt (Shr a 2) b)");
        assert_eq!(sexpr("a > b"), "(Gt a b)");
        assert!(first_error("const bit<8> X = a > > 2;").contains("expected an expression"));
    }

    #[test]
    fn unary_ternary_and_cast() {
        assert_eq!(sexpr("-a * b"), "(Mul (Neg a) b)");
        assert_eq!(sexpr("!a == b"), "(Eq (Not a) b)");
        assert_eq!(sexpr("~~a"), "(BitNot (BitNot a))");
        assert_eq!(sexpr("+a"), "a");
        assert_eq!(sexpr("c ? x : y ? z : w"), "(? c x (? y z w))");
        assert_eq!(sexpr("a == 1 ? x + 1 : y"), "(? (Eq a 1) (Add x 1) y)");
        assert_eq!(sexpr("(bit<16>) a + b"), "(Add (cast bit<16> a) b)");
        assert_eq!(sexpr("(bit<16>) -a"), "(cast bit<16> (Neg a))");
        assert_eq!(sexpr("(int<8>) (a + b)"), "(cast int<8> (Add a b))");
        assert_eq!(sexpr("(port_t) x"), "(cast port_t x)");
        assert_eq!(sexpr("(x) + y"), "(Add x y)");
        assert_eq!(sexpr("(x) - y"), "(Sub x y)");
        assert_eq!(sexpr("(bit<8>) h.f[3:0]"), "(cast bit<8> h.f[3:0])");
    }

    #[test]
    fn postfix_calls_and_generic_calls() {
        assert_eq!(sexpr("h.ip.ttl"), "h.ip.ttl");
        assert_eq!(sexpr("s[3].f"), "s[3].f");
        assert_eq!(sexpr("x[7:0]"), "x[7:0]");
        assert_eq!(sexpr("f(a, n = b, _)"), "f(a,n=b,_)");
        assert_eq!(sexpr("t.apply().hit"), "t.apply().hit");
        assert_eq!(
            sexpr("hash<bit<16>, tuple<bit<8>, bool>>(a)"),
            "hash<bit<16>,tuple<bit<8>,bool>>(a)"
        );
        assert_eq!(sexpr("r.read<bit<32>>(x)"), "r.read<bit<32>>(x)");
        // Without a following `(` the `<` is a comparison.
        assert_eq!(sexpr("a < b && c > d"), "(And (Lt a b) (Gt c d))");
        assert_eq!(sexpr("a < b"), "(Lt a b)");
    }

    #[test]
    fn literals_lists_and_dont_care() {
        assert_eq!(sexpr("8w5 + 16s3 - 0x10"), "(Sub (Add 8w5 16s3) 16)");
        assert_eq!(sexpr("true && false"), "(And true false)");
        assert_eq!(sexpr("{a, b.c, 1,}"), "{a,b.c,1}");
        assert_eq!(sexpr("{}"), "{}");
        assert_eq!(sexpr("\"s\""), "\"s\"");
        assert_eq!(sexpr("error.NoError"), "error.NoError");
        assert!(first_error("const bit<8> X = { f = 1 };").contains(
            "struct initializers `{ field = value }` are not supported by vmdep's compiler"
        ));
    }

    #[test]
    fn spans_cover_the_source_text() {
        let src = "const bit<8> X = (a + b) * c;";
        let e = expr("(a + b) * c");
        assert_eq!(&src[e.span.lo as usize..e.span.hi as usize], "(a + b) * c");
        let ExprKind::Binary { lhs, .. } = &e.kind else {
            panic!()
        };
        assert_eq!(&src[lhs.span.lo as usize..lhs.span.hi as usize], "(a + b)");
        let src = "header h_t { bit<8> x; }";
        let DeclKind::Header(h) = one_decl(src) else {
            panic!()
        };
        let f = &h.fields[0];
        assert_eq!(&src[f.span.lo as usize..f.span.hi as usize], "bit<8> x;");
        assert_eq!(&src[f.ty.span.lo as usize..f.ty.span.hi as usize], "bit<8>");
        let prog = parse(src).unwrap();
        assert_eq!(prog.decls[0].span, Span::new(0, src.len()));
    }

    fn const_type(src: &str) -> String {
        match one_decl(&format!("const {src} X = 0;")) {
            DeclKind::Const(c) => tx(&c.ty),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn types() {
        for (src, want) in [
            ("bit", "bit<1>"),
            ("bit<8>", "bit<8>"),
            ("bit<(W + 1)>", "bit<((Add W 1))>"),
            ("int<8>", "int<8>"),
            ("int", "int"),
            ("varbit<32>", "varbit<32>"),
            ("bool", "bool"),
            ("string", "string"),
            ("error", "error"),
            ("register<bit<32>>", "register<bit<32>>"),
            ("h_t[4]", "h_t[4]"),
            ("tuple<bit<8>, bool>", "tuple<bit<8>,bool>"),
            ("my_t<_, bit<(8)>>", "my_t<_,bit<(8)>>"),
        ] {
            assert_eq!(const_type(src), want, "{src}");
        }
        assert!(first_error("const bit<W> X = 0;").contains("the width of `bit`"));
        assert!(first_error("const bit<99999999999> X = 0;").contains("too large"));
        assert!(first_error("const bit<8 X = 0;").contains("expected `>` to close `bit<...>`"));
    }

    #[test]
    fn type_level_declarations() {
        let d = decls(
            "typedef bit<9> port_t;\n\
             type bit<32> id_t;\n\
             @name(\"hdr\") header h_t { @foo bit<8> a; bit<16> b; }\n\
             struct s_t { h_t h; h_t[2] stack; }\n\
             enum Color { Red, Green, }\n\
             enum bit<8> Proto { Tcp = 6, Udp = 17 }\n\
             error { BadThing, Other }\n\
             match_kind { fancy }\n",
        );
        assert!(
            matches!(&d[0], DeclKind::Typedef { newtype: false, name, .. } if name.name == "port_t")
        );
        assert!(
            matches!(&d[1], DeclKind::Typedef { newtype: true, name, .. } if name.name == "id_t")
        );
        let DeclKind::Header(h) = &d[2] else { panic!() };
        assert_eq!(h.annotations[0].string_arg(), Some("hdr"));
        assert_eq!(h.fields.len(), 2);
        assert_eq!(h.fields[0].annotations[0].name.name, "foo");
        let DeclKind::Struct(s) = &d[3] else { panic!() };
        assert_eq!(tx(&s.fields[1].ty), "h_t[2]");
        let DeclKind::Enum {
            underlying: None,
            members,
            ..
        } = &d[4]
        else {
            panic!()
        };
        assert_eq!(members.len(), 2);
        let DeclKind::Enum {
            underlying: Some(u),
            members,
            ..
        } = &d[5]
        else {
            panic!()
        };
        assert_eq!(tx(u), "bit<8>");
        assert_eq!(sx(members[1].1.as_ref().unwrap()), "17");
        let DeclKind::Error { members } = &d[6] else {
            panic!()
        };
        assert_eq!(members[1].name, "Other");
        let DeclKind::MatchKind { members } = &d[7] else {
            panic!()
        };
        assert_eq!(members[0].name, "fancy");
    }

    #[test]
    fn instantiations_and_top_level_actions() {
        let d = decls(
            "V1Switch(P(), VC(), I()) main;\n\
             counter(1024, CounterType.packets) c;\n\
             register<bit<32>>(16) r;\n\
             action a(bit<8> x) { }\n",
        );
        let DeclKind::Instantiation(i) = &d[0] else {
            panic!()
        };
        assert_eq!(
            (tx(&i.ty).as_str(), i.name.name.as_str(), i.args.len()),
            ("V1Switch", "main", 3)
        );
        assert_eq!(sx(i.args[0].expr()), "P()");
        let DeclKind::Instantiation(i) = &d[1] else {
            panic!()
        };
        assert_eq!(sx(i.args[1].expr()), "CounterType.packets");
        let DeclKind::Instantiation(i) = &d[2] else {
            panic!()
        };
        assert_eq!(tx(&i.ty), "register<bit<32>>");
        let DeclKind::Action(a) = &d[3] else { panic!() };
        assert_eq!(
            (a.params[0].direction, a.params[0].name.name.as_str()),
            (None, "x")
        );
    }

    #[test]
    fn parser_declaration() {
        let DeclKind::Parser(p) = one_decl(
            "parser P(packet_in pkt, out headers_t h, inout meta_t m) {\n\
               bit<8> tmp = 0;\n\
               Checksum16() ck;\n\
               state start {\n\
                 pkt.extract(h.eth);\n\
                 transition select(h.eth.t, m.x) {\n\
                   (0x0800, _): parse_ip;\n\
                   (0x8100 &&& 0xefff, 1 .. 5): parse_vlan;\n\
                   (default, 3): accept;\n\
                   default: reject;\n\
                 }\n\
               }\n\
               state parse_ip { transition accept; }\n\
               state parse_vlan { }\n\
             }",
        ) else {
            panic!()
        };
        assert_eq!(p.params[1].direction, Some(Direction::Out));
        assert!(matches!(&p.locals[0].kind, LocalKind::Var(v) if v.init.is_some()));
        assert!(matches!(&p.locals[1].kind, LocalKind::Instantiation(i) if i.name.name == "ck"));
        assert_eq!(p.states.len(), 3);
        let Transition::Select { exprs, cases, .. } = &p.states[0].transition else {
            panic!()
        };
        assert_eq!(exprs.len(), 2);
        assert!(matches!(
            cases[0].keysets.as_slice(),
            [Keyset::Expr(_), Keyset::DontCare(_)]
        ));
        assert!(matches!(
            cases[1].keysets.as_slice(),
            [Keyset::Mask(_, _), Keyset::Range(_, _)]
        ));
        assert!(matches!(
            cases[2].keysets.as_slice(),
            [Keyset::Default(_), Keyset::Expr(_)]
        ));
        assert!(matches!(cases[3].keysets.as_slice(), [Keyset::Default(_)]));
        assert_eq!(cases[3].next.name, "reject");
        assert!(matches!(&p.states[1].transition, Transition::Direct(n) if n.name == "accept"));
        // A state without `transition` goes to `reject`.
        assert!(matches!(&p.states[2].transition, Transition::Direct(n) if n.name == "reject"));
    }

    #[test]
    fn control_with_tables() {
        let DeclKind::Control(c) = one_decl(
            "control C(inout headers_t h, inout standard_metadata_t sm) {\n\
               const bit<8> K = 3;\n\
               bit<8> v;\n\
               direct_counter(CounterType.packets) dc;\n\
               action set(bit<9> port) { sm.egress_spec = port; }\n\
               table t {\n\
                 key = { h.ip.dst : lpm @name(\"dst\"); h.x : ternary; }\n\
                 actions = { set; @defaultonly NoAction; }\n\
                 const default_action = set(1);\n\
                 const entries = {\n\
                   priority = 10: (0x0a000000 &&& 0xff000000, _) : set(2);\n\
                   (1, 2) : set(3) @name(\"e\");\n\
                 }\n\
                 size = 1024;\n\
                 counters = dc;\n\
                 support_timeout = true;\n\
               }\n\
               apply { t.apply(); }\n\
             }",
        ) else {
            panic!()
        };
        assert_eq!(c.locals.len(), 5);
        let LocalKind::Table(t) = &c.locals[4].kind else {
            panic!()
        };
        let kinds: Vec<_> = t.props.iter().map(|p| &p.kind).collect();
        let TablePropertyKind::Key(keys) = kinds[0] else {
            panic!()
        };
        assert_eq!(keys[0].match_kind.name, "lpm");
        assert_eq!(keys[0].annotations[0].string_arg(), Some("dst"));
        let TablePropertyKind::Actions(acts) = kinds[1] else {
            panic!()
        };
        assert_eq!(acts[1].annotations[0].name.name, "defaultonly");
        assert!(acts[0].args.is_none());
        let TablePropertyKind::DefaultAction {
            is_const: true,
            action,
        } = kinds[2]
        else {
            panic!()
        };
        assert_eq!(action.args.as_ref().map(Vec::len), Some(1));
        let TablePropertyKind::Entries {
            is_const: true,
            entries,
        } = kinds[3]
        else {
            panic!()
        };
        assert_eq!(sx(entries[0].priority.as_ref().unwrap()), "10");
        assert!(matches!(
            entries[0].keysets.as_slice(),
            [Keyset::Mask(..), Keyset::DontCare(_)]
        ));
        assert_eq!(entries[1].annotations[0].string_arg(), Some("e"));
        assert!(entries[1].priority.is_none());
        let names: Vec<_> = kinds[4..]
            .iter()
            .map(|k| match k {
                TablePropertyKind::Other { name, value, .. } => {
                    format!("{}={}", name.name, sx(value))
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["size=1024", "counters=dc", "support_timeout=true"]);
    }

    fn apply_stmts(body: &str) -> Vec<StmtKind> {
        let DeclKind::Control(c) = one_decl(&format!("control C() {{ apply {{ {body} }} }}"))
        else {
            panic!()
        };
        c.apply.stmts.into_iter().map(|s| s.kind).collect()
    }

    #[test]
    fn statements() {
        let s = apply_stmts(
            "x = 1; f(x); ; { y = 2; } return; return 3; exit;\n\
             bit<8> v = 3; my_t w; h_t[2] hs; const bool B = true; error e = error.NoError;\n\
             s[0].f = 1;",
        );
        assert!(matches!(&s[0], StmtKind::Assign { lhs, rhs } if sx(lhs) == "x" && sx(rhs) == "1"));
        assert!(matches!(&s[1], StmtKind::Call(e) if sx(e) == "f(x)"));
        assert!(matches!(&s[2], StmtKind::Empty));
        assert!(matches!(&s[3], StmtKind::Block(b) if b.stmts.len() == 1));
        assert!(matches!(&s[4], StmtKind::Return(None)));
        assert!(matches!(&s[5], StmtKind::Return(Some(_))));
        assert!(matches!(&s[6], StmtKind::Exit));
        assert!(matches!(&s[7], StmtKind::Var(v) if tx(&v.ty) == "bit<8>" && v.init.is_some()));
        assert!(matches!(&s[8], StmtKind::Var(v) if tx(&v.ty) == "my_t" && v.init.is_none()));
        assert!(matches!(&s[9], StmtKind::Var(v) if tx(&v.ty) == "h_t[2]"));
        assert!(matches!(&s[10], StmtKind::Const(c) if c.name.name == "B"));
        assert!(matches!(&s[11], StmtKind::Var(v) if tx(&v.ty) == "error"));
        assert!(matches!(&s[12], StmtKind::Assign { lhs, .. } if sx(lhs) == "s[0].f"));
    }

    #[test]
    fn if_else_chains() {
        let s = apply_stmts("if (a) { x(); } else if (b) y = 1; else { z(); }");
        let StmtKind::If {
            cond,
            then,
            otherwise: Some(other),
        } = &s[0]
        else {
            panic!()
        };
        assert_eq!(sx(cond), "a");
        assert_eq!(then.stmts.len(), 1);
        let StmtKind::If {
            then,
            otherwise: Some(last),
            ..
        } = &other.kind
        else {
            panic!()
        };
        // A single statement body becomes a block of one.
        assert!(matches!(&then.stmts[0].kind, StmtKind::Assign { .. }));
        assert!(matches!(&last.kind, StmtKind::Block(_)));
    }

    #[test]
    fn switch_with_fallthrough_and_default() {
        let s = apply_stmts(
            "switch (t.apply().action_run) { a: b: { x(); } c: { } default: { } }\n\
             switch (v) { 1: { } 2 + 1: { } }",
        );
        let StmtKind::Switch { expr, cases } = &s[0] else {
            panic!()
        };
        assert_eq!(sx(expr), "t.apply().action_run");
        assert!(matches!(&cases[0].label, SwitchLabel::Name(n) if n.name == "a"));
        assert!(cases[0].body.is_none());
        assert!(cases[1].body.is_some());
        assert!(matches!(&cases[3].label, SwitchLabel::Default(_)));
        let StmtKind::Switch { cases, .. } = &s[1] else {
            panic!()
        };
        assert!(matches!(&cases[1].label, SwitchLabel::Expr(e) if sx(e) == "(Add 2 1)"));
        assert!(first_error("control C() { apply { switch (x) { a: } } }")
            .contains("the last `switch` case needs a block"));
    }

    #[test]
    fn annotations_keep_expression_arguments_only() {
        let DeclKind::Header(h) = one_decl(
            "@name(\"a\", 3) @hidden @pkginfo(name = \"x\", version = 1) @p[k = 1] header h {}",
        ) else {
            panic!()
        };
        let a = &h.annotations;
        assert_eq!(a.len(), 4);
        assert_eq!(a[0].args.len(), 2);
        assert!(a[1].args.is_empty() && a[2].args.is_empty() && a[3].args.is_empty());
        assert_eq!(a[2].name.name, "pkginfo");
        assert!(first_error("@name(\"a\" header h {}").contains("unclosed `(` in annotation"));
    }

    #[test]
    fn unsupported_constructs_are_named() {
        for (src, what) in [
            ("header_union U { h1 a; }", "`header_union` is"),
            ("extern E { E(); }", "`extern` declarations are"),
            ("package P(int x);", "`package` declarations are"),
            (
                "bit<8> f(in bit<8> x) { return x; }",
                "function declarations are",
            ),
            (
                "parser P<T>(in T x) { state start { transition accept; } }",
                "generic parsers",
            ),
            ("parser P(packet_in p);", "parser type declarations are"),
            (
                "control C(inout bit<8> x);",
                "control type declarations are",
            ),
            (
                "control C()(bit<8> k) { apply { } }",
                "control constructor parameters are",
            ),
            (
                "parser P() { value_set<bit<8>>(4) vs; state start { transition accept; } }",
                "`value_set` is",
            ),
            (
                "control C() { apply { for (bit<8> i = 0; i < 4; i = i + 1) { } } }",
                "`for` loops are",
            ),
            ("struct S<T> { T x; }", "generic struct types are"),
            ("action a(bit<8> x = 1) { }", "default parameter values are"),
            ("const bit<8> X = this;", "`this` is"),
            ("const list<bit<8>> X = 0;", "`list` is"),
            (
                "control C() { apply { .x = 1; } }",
                "names prefixed with `.`",
            ),
        ] {
            let e = first_error(src);
            assert!(
                e.contains(what) && e.contains("not supported by vmdep's compiler"),
                "{src}: {e}"
            );
        }
    }

    #[test]
    fn syntax_errors_name_what_was_expected() {
        assert_eq!(
            first_error("header h { bit<8> x }"),
            "1:19: expected `;` after field `x`, found `}`"
        );
        assert_eq!(
            first_error("const bit<8> X = 1\nheader h {}"),
            "1:18: expected `;` after the constant declaration, found keyword `header`"
        );
        assert_eq!(
            first_error("control C() { apply { x = 1; }"),
            "1:31: unexpected end of file: control `C` is not closed (missing `}`)"
        );
        assert_eq!(
            first_error("control C() { apply { x = 1; } x = 2; }"),
            "1:32: expected `}` to close control `C`: the `apply` block must come last, found `x`"
        );
        assert_eq!(first_error("}"), "1:1: expected a declaration, found `}`");
        let src = "control C() { apply { if (x) { } ";
        let d = &parse(src).unwrap_err().0[0];
        assert_eq!(
            d.message,
            "unexpected end of file: the block is not closed (missing `}`)"
        );
        assert_eq!(d.span, Span::new(src.len(), src.len()));
        assert_eq!(
            d.notes[0],
            (Span::new(20, 21), "the block opens here".to_string())
        );
        assert!(first_error("control C() { }").contains("expected `apply` block in control `C`"));
        assert!(first_error("control C() { apply { x + 1; } }").contains("not a statement"));
        assert!(first_error("control C() { apply { transition accept; } }")
            .contains("only allowed as the last statement of a parser state"));
        assert!(
            first_error("parser P() { state s { transition accept; x(); } }")
                .contains("`transition` must be its last statement")
        );
        assert!(first_error("header table { }").contains("found keyword `table`"));
        assert!(first_error("bit<8> x;").contains("variables are not allowed at top level"));
    }

    #[test]
    fn errors_are_reported_once_per_declaration() {
        let errs = errors(
            "header a { bit<8> x }\n\
             header b { bit<8> y; }\n\
             struct c { bit<8> z }\n\
             const bit<8> K = ;\n\
             header d { }\n",
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("1:"));
        assert!(errs[1].starts_with("3:"));
        assert!(errs[2].starts_with("4:"));
    }

    #[test]
    fn lexical_errors_come_through() {
        assert_eq!(
            first_error("/* x\nheader h {}"),
            "1:1: unterminated comment: `/*` has no closing `*/`"
        );
    }

    /// Runs `f` on a thread with the default 2 MiB stack of test threads and spawned threads,
    /// so deep-nesting tests prove `parse` works whatever stack its caller has.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .expect("parser overflowed a 2 MiB stack");
    }

    #[test]
    fn nesting_is_limited_whatever_the_callers_stack() {
        on_small_stack(|| {
            let ok = MAX_DEPTH as usize - 8;
            let src = format!("const bit<8> X = {}a{};", "(".repeat(ok), ")".repeat(ok));
            assert!(parse(&src).is_ok());
            for deep in [
                format!(
                    "const bit<8> X = {}a{};",
                    "(".repeat(100_000),
                    ")".repeat(100_000)
                ),
                format!("const bit<8> X = {}a;", "-".repeat(100_000)),
                format!(
                    "const bit<8> X = {}a{};",
                    "{".repeat(100_000),
                    "}".repeat(100_000)
                ),
                format!("const bit<8> X = a{};", " + a".repeat(100_000)),
                format!("const bit<8> X = a{};", ".b".repeat(100_000)),
                format!("const bit<8> X = a{};", "[0]".repeat(100_000)),
                format!(
                    "const {}bit<8>{} X = 0;",
                    "t<".repeat(100_000),
                    ">".repeat(100_000)
                ),
                format!(
                    "control C() {{ apply {{ {}{} }} }}",
                    "{".repeat(100_000),
                    "}".repeat(100_000)
                ),
                format!(
                    "control C() {{ apply {{ {} x(); }} }}",
                    "if (a) x(); else ".repeat(100_000)
                ),
            ] {
                let errs = parse(&deep).unwrap_err();
                assert!(
                    errs.0[0].message.starts_with("nesting too deep"),
                    "{:?}",
                    errs.0[0]
                );
            }
        });
    }

    #[test]
    fn speculation_is_bounded() {
        // Every `<` could open type arguments; the failure memo and the work budget keep this
        // linear instead of exponential.
        let src = format!("const bit<8> X = {}0;", "a < (b) < bit<(c < ".repeat(120));
        let started = std::time::Instant::now();
        assert!(parse(&src).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn reference_programs_parse() {
        for (name, src) in REFERENCE {
            let prog = parse(src).unwrap_or_else(|d| panic!("{}", d.render(name, src)));
            assert_eq!(prog.includes.len(), 2, "{name}");
            assert!(matches!(
                prog.decls.last().unwrap().kind,
                DeclKind::Instantiation(_)
            ));
        }
    }
}

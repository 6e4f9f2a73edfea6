//! The Go-template language Prometheus users write in alert labels and annotations, with
//! Prometheus' functions.
//!
//! Data: `{{ $labels.x }}`, `{{ $value }}`, `{{ $externalLabels.x }}`, `{{ $externalURL }}`,
//! `{{ .Labels.x }}`, `{{ .Value }}`. Go's actions: pipes, `{{- -}}` trimming, variables
//! (`:=` and `=`), `if`/`else if`/`else`, `range` (maps and query results, `break`,
//! `continue`), `with`, `define`/`template`/`block`, comments. Go's builtins: `and`, `or`,
//! `not`, `len`, `index`, `print`, `printf`, `println`, `urlquery`, `js`, `html`, `eq`,
//! `ne`, `lt`, `le`, `gt`, `ge`. Prometheus' functions: `query`, `first`, `label`, `value`,
//! `strvalue`, `sortByLabel`, `args`, `humanize`, `humanize1024`, `humanizeDuration`,
//! `humanizePercentage`, `humanizeTimestamp`, `toTime`, `toDuration`, `parseDuration`,
//! `title`, `toUpper`, `toLower`, `match`, `reReplaceAll`, `stripPort`, `stripDomain`,
//! `safeHtml`, `graphLink`, `tableLink`, `externalURL`, `pathPrefix`.
//!
//! Parse once with [`Template::parse`] (done when rules load, so bad templates, undefined
//! functions and undefined variables are reported by `medic check`, as Go reports them at
//! parse time), render many times with [`Template::render`] or, where a store is at hand
//! for `query`, [`Template::render_in`]. [`render`] does both.

mod exec;
mod format;

pub(crate) use format::go_duration;

use std::collections::BTreeMap;
use std::fmt;

use crate::store::{Labels, Sample};

/// What a template can see.
#[derive(Debug, Clone, Copy)]
pub struct TemplateData<'a> {
    /// `$labels` / `.Labels`: the alert's (or sample's) labels.
    pub labels: &'a Labels,
    /// `$externalLabels` / `.ExternalLabels`.
    pub external_labels: &'a Labels,
    /// `$externalURL` / `.ExternalURL` / `externalURL` (and `pathPrefix`, its path).
    pub external_url: &'a str,
    /// `$value` / `.Value`.
    pub value: f64,
}

/// What `query` runs: a PromQL instant query at the evaluation time, returning the
/// vector's samples (a scalar as one sample without labels) or an error message.
pub type QueryFn<'a> = dyn Fn(&str) -> Result<Vec<Sample>, String> + 'a;

/// What a render can reach beyond its data.
#[derive(Clone, Copy, Default)]
pub struct RenderContext<'a> {
    /// The store, for `query`. Without one (templates rendered outside a rule evaluation,
    /// such as a remediation step's params) `query` fails the render.
    pub query: Option<&'a QueryFn<'a>>,
}

impl fmt::Debug for RenderContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderContext")
            .field("query", &self.query.map(|_| "<fn>"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// `line`, `column` (1-based, characters): where the offending action starts in the
    /// template text.
    #[error("template: {line}:{column}: {msg}")]
    Parse {
        line: usize,
        column: usize,
        msg: String,
    },
    #[error("template: {0}")]
    Exec(String),
}

/// Parses and renders `text` in one go (no store: `query` fails).
pub fn render(text: &str, data: &TemplateData) -> Result<String, TemplateError> {
    Template::parse(text)?.render(data)
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
    /// Templates named by `{{ define }}` and `{{ block }}`.
    defs: BTreeMap<String, Vec<Node>>,
    /// Plain text without actions renders as itself (the common case: a fast path).
    literal: Option<String>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    /// `{{ pipeline }}`, or `{{ $x := pipeline }}` (prints nothing).
    Action(Pipeline),
    If {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    /// `{{ template "name" pipeline }}` (also what `{{ block }}` leaves in place).
    Template {
        name: String,
        pipe: Option<Pipeline>,
    },
    Break,
    Continue,
}

#[derive(Debug, Clone)]
struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`) by this pipeline.
    decl: Vec<String>,
    /// `=`: the variables exist and are overwritten (in whichever scope declared them).
    assign: bool,
    cmds: Vec<Cmd>,
}

/// One command of a pipeline: a function with arguments, or a single operand.
#[derive(Debug, Clone)]
struct Cmd {
    args: Vec<Operand>,
}

#[derive(Debug, Clone)]
enum Operand {
    /// `.`, `.Labels.x`: fields from dot.
    Dot(Vec<String>),
    /// `$x`, `$labels.x`.
    Var(String, Vec<String>),
    Func(String),
    Str(String),
    Num(f64),
    Int(i64),
    Bool(bool),
    Nil,
    Paren(Box<Pipeline>, Vec<String>),
}

/// A runtime value.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Nil,
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    /// A label map (`map[string]string`).
    Map(BTreeMap<String, String>),
    /// `args`' result (`map[string]interface{}`).
    Dict(BTreeMap<String, Val>),
    /// One sample of a `query` result.
    Sample(SampleVal),
    /// A `query` result.
    Samples(Vec<SampleVal>),
    /// `toTime`'s result: milliseconds since the epoch (Prometheus' `model.Time`).
    Time(i64),
    /// `toDuration`'s result: nanoseconds (Go's `time.Duration`).
    Dur(i64),
    /// The template's data (`.` at the top).
    Root,
}

/// Prometheus' template `sample`: `.Labels` and `.Value`.
#[derive(Debug, Clone, PartialEq)]
struct SampleVal {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The variables Prometheus declares before every alert template.
const ALERT_VARS: &[&str] = &["$", "$labels", "$externalLabels", "$externalURL", "$value"];

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        Self::parse_text(text).map_err(|e| match e {
            // while parsing, `column` holds the byte offset
            TemplateError::Parse { column, msg, .. } => {
                let before = &text[..column.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                TemplateError::Parse {
                    line,
                    column: before[line_start..].chars().count() + 1,
                    msg,
                }
            }
            other => other,
        })
    }

    fn parse_text(text: &str) -> Result<Template, TemplateError> {
        if !text.contains("{{") {
            return Ok(Template {
                nodes: Vec::new(),
                defs: BTreeMap::new(),
                literal: Some(text.to_string()),
            });
        }
        let items = lex(text)?;
        let mut p = Parser {
            items,
            i: 0,
            vars: ALERT_VARS.iter().map(|v| v.to_string()).collect(),
            range_depth: 0,
            depth: 0,
            defs: BTreeMap::new(),
        };
        let (nodes, end) = p.list()?;
        if let Some((end, pos)) = end {
            return Err(perr(pos, format!("unexpected {{{{{}}}}}", end.keyword())));
        }
        Ok(Template {
            nodes,
            defs: p.defs,
            literal: None,
        })
    }

    /// Renders without a store: `query` fails the render.
    pub fn render(&self, data: &TemplateData) -> Result<String, TemplateError> {
        self.render_in(data, &RenderContext::default())
    }

    /// Renders with what `ctx` gives access to (the store, for `query`).
    pub fn render_in(
        &self,
        data: &TemplateData,
        ctx: &RenderContext,
    ) -> Result<String, TemplateError> {
        if let Some(l) = &self.literal {
            return Ok(l.clone());
        }
        let mut ex = exec::Exec::new(data, ctx, &self.defs);
        let mut out = String::new();
        ex.walk(&self.nodes, &Val::Root, &mut out)?;
        Ok(out)
    }
}

fn map_of(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------- lexing

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Text(String),
    /// The tokens of one `{{ ... }}`, with its byte position.
    Action(Vec<Tok>, usize),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `.Labels.x` → ["Labels","x"]; `.` → [].
    Field(Vec<String>),
    /// `$labels.x` → ("$labels", ["x"]).
    Var(String, Vec<String>),
    Str(String),
    Num(String),
    Pipe,
    Open,
    /// `)` followed by optional `.field` chain.
    Close(Vec<String>),
    Declare,
    Assign,
    Comma,
}

/// A parse error at byte offset `pos` (made a line and column by [`Template::parse`]).
fn perr(pos: usize, msg: impl Into<String>) -> TemplateError {
    TemplateError::Parse {
        line: 0,
        column: pos,
        msg: msg.into(),
    }
}

fn lex(text: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = text;
    let mut base = 0;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            push_text(&mut items, rest, trim_next, false);
            break;
        };
        let inner_start = open + 2;
        let trim_left = rest[inner_start..].starts_with("- ")
            || rest[inner_start..].starts_with("-\t")
            || rest[inner_start..].starts_with("-\n");
        push_text(&mut items, &rest[..open], trim_next, trim_left);
        let body_start = if trim_left {
            inner_start + 1
        } else {
            inner_start
        };
        let body_rest = &rest[body_start..];
        // A comment may contain "}}"-free text only until "*/".
        let close = if body_rest.trim_start().starts_with("/*") {
            body_rest
                .find("*/")
                .and_then(|c| body_rest[c..].find("}}").map(|e| c + e))
        } else {
            find_close(body_rest)
        }
        .ok_or_else(|| perr(base + open, "unclosed action"))?;
        let mut body = &body_rest[..close];
        trim_next = false;
        if body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-") {
            trim_next = true;
            body = &body[..body.len() - 1];
        }
        let body = body.trim();
        if !(body.starts_with("/*") && body.ends_with("*/")) {
            let toks = lex_action(body, base + open)?;
            items.push(Item::Action(toks, base + open));
        }
        let consumed = body_start + close + 2;
        base += consumed;
        rest = &rest[consumed..];
    }
    Ok(items)
}

/// Finds the `}}` closing an action, skipping string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn push_text(items: &mut Vec<Item>, s: &str, trim_start: bool, trim_end: bool) {
    let mut s = s;
    if trim_start {
        s = s.trim_start();
    }
    if trim_end {
        s = s.trim_end();
    }
    if !s.is_empty() {
        items.push(Item::Text(s.to_string()));
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn lex_action(s: &str, pos: usize) -> Result<Vec<Tok>, TemplateError> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let fields = |chars: &[char], i: &mut usize| -> Vec<String> {
        let mut out = Vec::new();
        while *i < chars.len() && chars[*i] == '.' {
            let start = *i + 1;
            let mut j = start;
            while j < chars.len() && is_ident_char(chars[j]) {
                j += 1;
            }
            if j == start {
                break;
            }
            out.push(chars[start..j].iter().collect());
            *i = j;
        }
        out
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                toks.push(Tok::Pipe);
                i += 1
            }
            '(' => {
                toks.push(Tok::Open);
                i += 1
            }
            ')' => {
                i += 1;
                toks.push(Tok::Close(fields(&chars, &mut i)));
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                toks.push(Tok::Declare);
                i += 2
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1
            }
            '"' => {
                let mut out = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(perr(pos, "unterminated quoted string")),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => out.push('\n'),
                                Some('t') => out.push('\t'),
                                Some(c) => out.push(*c),
                                None => return Err(perr(pos, "unterminated quoted string")),
                            }
                        }
                        Some(c) => out.push(*c),
                    }
                    i += 1;
                }
                i += 1;
                toks.push(Tok::Str(out));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|c| *c == '`')
                    .ok_or_else(|| perr(pos, "unterminated raw string"))?;
                toks.push(Tok::Str(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            '.' => {
                if chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    let start = i;
                    i += 1;
                    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                        i += 1;
                    }
                    toks.push(Tok::Num(chars[start..i].iter().collect()));
                } else {
                    let f = fields(&chars, &mut i);
                    if f.is_empty() {
                        i += 1;
                    }
                    toks.push(Tok::Field(f));
                }
            }
            '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                toks.push(Tok::Var(name, fields(&chars, &mut i)));
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                toks.push(Tok::Num(chars[start..i].iter().collect()));
            }
            c if is_ident_char(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(perr(pos, format!("unexpected {other:?} in action"))),
        }
    }
    Ok(toks)
}

// ---------------------------------------------------------------- parsing

/// How a list of nodes ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    End,
    Else,
    /// `{{ else if ... }}` / `{{ else with ... }}`: the rest of the action is the next item.
    ElseChain,
}

impl Stop {
    fn keyword(self) -> &'static str {
        match self {
            Stop::End => "end",
            Stop::Else | Stop::ElseChain => "else",
        }
    }
}

/// A parsed list of nodes and what stopped it (with its position), None at the end of input.
type Listed = (Vec<Node>, Option<(Stop, usize)>);

struct Parser {
    items: Vec<Item>,
    i: usize,
    /// Variables in scope (Go checks variables when parsing).
    vars: Vec<String>,
    /// Nesting of `range` bodies (`break` and `continue` need one).
    range_depth: usize,
    /// Nesting of control structures (`define` is only allowed at the top).
    depth: usize,
    defs: BTreeMap<String, Vec<Node>>,
}

impl Parser {
    /// Parses nodes until `end` or `else` (returned with its position) or the end of input.
    fn list(&mut self) -> Result<Listed, TemplateError> {
        let mut nodes = Vec::new();
        while self.i < self.items.len() {
            let item = self.items[self.i].clone();
            self.i += 1;
            let (toks, pos) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action(toks, pos) => (toks, pos),
            };
            let kw = match toks.first() {
                Some(Tok::Ident(k)) => k.as_str(),
                _ => "",
            };
            match kw {
                "end" => {
                    if toks.len() > 1 {
                        return Err(perr(pos, "unexpected tokens in {{end}}"));
                    }
                    return Ok((nodes, Some((Stop::End, pos))));
                }
                "else" => {
                    // `else if ...` keeps the rest of the tokens for the caller
                    let rest = toks[1..].to_vec();
                    if !rest.is_empty() {
                        self.i -= 1;
                        self.items[self.i] = Item::Action(rest, pos);
                        return Ok((nodes, Some((Stop::ElseChain, pos))));
                    }
                    return Ok((nodes, Some((Stop::Else, pos))));
                }
                "if" | "range" | "with" => {
                    let kw = kw.to_string();
                    self.depth += 1;
                    let node = self.control(&kw, &toks[1..], pos);
                    self.depth -= 1;
                    nodes.push(node?);
                }
                "define" => {
                    if self.depth > 0 {
                        return Err(perr(pos, "{{define}} is only allowed at the top level"));
                    }
                    let name = template_name(&toks, "define", pos)?;
                    if toks.len() > 2 {
                        return Err(perr(pos, "unexpected tokens in define clause"));
                    }
                    self.definition(name, pos)?;
                }
                "block" => {
                    let name = template_name(&toks, "block", pos)?;
                    let pipe = if toks.len() > 2 {
                        Some(self.pipe(&toks[2..], pos)?)
                    } else {
                        None
                    };
                    self.definition(name.clone(), pos)?;
                    nodes.push(Node::Template { name, pipe });
                }
                "template" => {
                    let name = template_name(&toks, "template", pos)?;
                    let pipe = if toks.len() > 2 {
                        Some(self.pipe(&toks[2..], pos)?)
                    } else {
                        None
                    };
                    nodes.push(Node::Template { name, pipe });
                }
                "break" | "continue" => {
                    if self.range_depth == 0 {
                        return Err(perr(pos, format!("{{{{{kw}}}}} outside {{{{range}}}}")));
                    }
                    if toks.len() > 1 {
                        return Err(perr(pos, format!("unexpected tokens in {{{{{kw}}}}}")));
                    }
                    nodes.push(if kw == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                _ => nodes.push(Node::Action(self.pipe(&toks, pos)?)),
            }
        }
        Ok((nodes, None))
    }

    /// The body of `define`/`block` up to its `{{ end }}`, parsed as a template of its own:
    /// only `$` (its data) is in scope.
    fn definition(&mut self, name: String, pos: usize) -> Result<(), TemplateError> {
        let vars = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let range_depth = std::mem::replace(&mut self.range_depth, 0);
        let depth = std::mem::replace(&mut self.depth, 1);
        let body = self.list();
        self.vars = vars;
        self.range_depth = range_depth;
        self.depth = depth;
        let (body, end) = body?;
        match end {
            Some((Stop::End, _)) => {}
            Some((e, p)) => return Err(perr(p, format!("unexpected {{{{{}}}}}", e.keyword()))),
            None => {
                return Err(perr(
                    pos,
                    format!("unexpected EOF in definition of {name:?}"),
                ));
            }
        }
        if self.defs.insert(name.clone(), body).is_some() {
            return Err(perr(
                pos,
                format!("multiple definition of template {name:?}"),
            ));
        }
        Ok(())
    }

    fn control(&mut self, kw: &str, toks: &[Tok], pos: usize) -> Result<Node, TemplateError> {
        // Variables declared in the pipeline or the body live until the control's end.
        let mark = self.vars.len();
        let result = self.control_body(kw, toks, pos);
        self.vars.truncate(mark);
        result
    }

    fn control_body(&mut self, kw: &str, toks: &[Tok], pos: usize) -> Result<Node, TemplateError> {
        let pipe = self.pipe(toks, pos)?;
        if kw == "range" {
            self.range_depth += 1;
        }
        let body = self.list();
        if kw == "range" {
            self.range_depth -= 1;
        }
        let (then, end) = body?;
        let otherwise = match end {
            Some((Stop::End, _)) => Vec::new(),
            Some((Stop::Else, _)) => {
                let (otherwise, end) = self.list()?;
                match end {
                    Some((Stop::End, _)) => otherwise,
                    Some((e, p)) => {
                        return Err(perr(p, format!("unexpected {{{{{}}}}}", e.keyword())));
                    }
                    None => return Err(perr(pos, format!("missing {{{{end}}}} for {kw}"))),
                }
            }
            Some((Stop::ElseChain, _)) => {
                // `{{else if x}}` is `{{else}}{{if x}}...{{end}}` sharing the outer end.
                let Some(Item::Action(toks, p)) = self.items.get(self.i).cloned() else {
                    return Err(perr(pos, "bad else"));
                };
                self.i += 1;
                let kw2 = match toks.first() {
                    Some(Tok::Ident(k)) if k == "if" || k == "with" => k.clone(),
                    _ => return Err(perr(p, "expected if or with after else")),
                };
                vec![self.control(&kw2, &toks[1..], p)?]
            }
            None => return Err(perr(pos, format!("missing {{{{end}}}} for {kw}"))),
        };
        Ok(match kw {
            "if" => Node::If {
                cond: pipe,
                then,
                otherwise,
            },
            "range" => Node::Range {
                pipe,
                then,
                otherwise,
            },
            _ => Node::With {
                pipe,
                then,
                otherwise,
            },
        })
    }

    /// Parses a pipeline and checks its variables against the scope, declaring its own.
    fn pipe(&mut self, toks: &[Tok], pos: usize) -> Result<Pipeline, TemplateError> {
        let p = pipeline(toks, pos)?;
        self.declare(&p, pos)?;
        Ok(p)
    }

    fn declare(&mut self, p: &Pipeline, pos: usize) -> Result<(), TemplateError> {
        if p.assign {
            for name in &p.decl {
                self.use_var(name, pos)?;
            }
        } else {
            // As in Go, a declared variable is visible from its own pipeline on.
            self.vars.extend(p.decl.iter().cloned());
        }
        for cmd in &p.cmds {
            for op in &cmd.args {
                match op {
                    Operand::Var(name, _) => self.use_var(name, pos)?,
                    Operand::Paren(inner, _) => self.declare(inner, pos)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn use_var(&self, name: &str, pos: usize) -> Result<(), TemplateError> {
        if self.vars.iter().any(|v| v == name) {
            Ok(())
        } else {
            Err(perr(pos, format!("undefined variable {name:?}")))
        }
    }
}

/// The quoted name after `define`, `block` or `template`.
fn template_name(toks: &[Tok], kw: &str, pos: usize) -> Result<String, TemplateError> {
    match toks.get(1) {
        Some(Tok::Str(name)) => Ok(name.clone()),
        _ => Err(perr(
            pos,
            format!("expected a quoted template name in {kw} clause"),
        )),
    }
}

/// Every function a template may call (checked when parsing, as Go does).
const FUNCS: &[&str] = &[
    // Go's builtins
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "urlquery",
    "js",
    "html",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    // Prometheus': queries
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
    // numbers, times and durations
    "humanize",
    "humanize1024",
    "humanizePercentage",
    "humanizeDuration",
    "humanizeTimestamp",
    "toTime",
    "toDuration",
    "parseDuration",
    // strings
    "title",
    "toUpper",
    "toLower",
    "match",
    "reReplaceAll",
    "stripPort",
    "stripDomain",
    "graphLink",
    "tableLink",
    // others
    "args",
    "safeHtml",
    "externalURL",
    "pathPrefix",
];

fn pipeline(toks: &[Tok], pos: usize) -> Result<Pipeline, TemplateError> {
    let mut decl = Vec::new();
    let mut assign = false;
    let mut toks = toks;
    // `$x :=`, `$x =`, `$k, $v :=`
    let decl_end = toks
        .iter()
        .position(|t| matches!(t, Tok::Declare | Tok::Assign));
    if let Some(end) = decl_end {
        let names: Vec<&Tok> = toks[..end]
            .iter()
            .filter(|t| !matches!(t, Tok::Comma))
            .collect();
        if !names.is_empty()
            && names
                .iter()
                .all(|t| matches!(t, Tok::Var(_, f) if f.is_empty()))
        {
            for t in names {
                if let Tok::Var(n, _) = t {
                    decl.push(n.clone());
                }
            }
            assign = matches!(toks[end], Tok::Assign);
            toks = &toks[end + 1..];
        }
    }
    if toks.is_empty() {
        return Err(perr(pos, "missing value for command"));
    }
    let mut cmds = Vec::new();
    let mut i = 0;
    loop {
        let mut args = Vec::new();
        while i < toks.len() && toks[i] != Tok::Pipe {
            args.push(operand(toks, &mut i, pos)?);
        }
        if args.is_empty() {
            return Err(perr(pos, "missing command in pipeline"));
        }
        cmds.push(Cmd { args });
        if i >= toks.len() {
            break;
        }
        i += 1; // the pipe
    }
    Ok(Pipeline { decl, assign, cmds })
}

fn operand(toks: &[Tok], i: &mut usize, pos: usize) -> Result<Operand, TemplateError> {
    let t = toks[*i].clone();
    *i += 1;
    Ok(match t {
        Tok::Ident(name) => match name.as_str() {
            "true" => Operand::Bool(true),
            "false" => Operand::Bool(false),
            "nil" => Operand::Nil,
            _ if FUNCS.contains(&name.as_str()) => Operand::Func(name),
            _ => return Err(perr(pos, format!("function {name:?} not defined"))),
        },
        Tok::Field(f) => Operand::Dot(f),
        Tok::Var(n, f) => Operand::Var(n, f),
        Tok::Str(s) => Operand::Str(s),
        Tok::Num(n) => {
            if let Ok(v) = n.parse::<i64>() {
                Operand::Int(v)
            } else if let Ok(v) = n.parse::<f64>() {
                Operand::Num(v)
            } else {
                return Err(perr(pos, format!("bad number syntax: {n:?}")));
            }
        }
        Tok::Open => {
            let start = *i;
            let mut depth = 1;
            while *i < toks.len() {
                match &toks[*i] {
                    Tok::Open => depth += 1,
                    Tok::Close(_) => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                *i += 1;
            }
            let Some(Tok::Close(fields)) = toks.get(*i).cloned() else {
                return Err(perr(pos, "unclosed left paren"));
            };
            let inner = pipeline(&toks[start..*i], pos)?;
            *i += 1;
            Operand::Paren(Box::new(inner), fields)
        }
        other => return Err(perr(pos, format!("unexpected {other:?} in operand"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str, value: f64) -> String {
        let labels = Labels::new([("__name__", "up"), ("instance", "h:9100"), ("job", "node")]);
        let ext = Labels::new([("cluster", "prod")]);
        let d = TemplateData {
            labels: &labels,
            external_labels: &ext,
            external_url: "http://medic",
            value,
        };
        render(text, &d).unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn variables_and_fields() {
        assert_eq!(
            r("{{ $labels.instance }} is {{ $value }}", 0.5),
            "h:9100 is 0.5"
        );
        assert_eq!(r("{{ .Labels.job }}/{{ .Value }}", 3.0), "node/3");
        assert_eq!(r("{{$externalLabels.cluster}}", 0.0), "prod");
        assert_eq!(r("[{{ $labels.missing }}]", 0.0), "[]");
        assert_eq!(r("plain text", 0.0), "plain text");
        assert_eq!(r("{{ $value }}", 1e6), "1e+06");
        assert_eq!(r("{{ $value }}", 123456.0), "123456");
        assert_eq!(r("{{ $value }}", 0.00001), "1e-05");
    }

    #[test]
    fn humanizers_match_prometheus() {
        assert_eq!(r("{{ humanize $value }}", 1234567.0), "1.235M");
        assert_eq!(r("{{ $value | humanize }}", 0.001234), "1.234m");
        assert_eq!(r("{{ humanize 0 }}", 0.0), "0");
        assert_eq!(r("{{ humanize1024 $value }}", 1048576.0), "1Mi");
        assert_eq!(r("{{ humanizePercentage $value }}", 0.1234567), "12.35%");
        assert_eq!(r("{{ humanizeDuration $value }}", 90061.0), "1d 1h 1m 1s");
        assert_eq!(r("{{ humanizeDuration $value }}", 1.5), "1.5s");
        assert_eq!(r("{{ humanizeDuration $value }}", 0.0015), "1.5ms");
        assert_eq!(r("{{ humanize $value }}", 1000.0), "1k");
        assert_eq!(
            r("{{ humanizeTimestamp $value }}", 1435065584.128),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
    }

    #[test]
    fn printf_and_pipes() {
        assert_eq!(r(r#"{{ printf "%.2f" $value }}"#, 1.23456), "1.23");
        assert_eq!(r(r#"{{ $value | printf "%.1f%%" }}"#, 99.44), "99.4%");
        assert_eq!(r(r#"{{ printf "%s=%v" "a" 2 }}"#, 0.0), "a=2");
        assert_eq!(
            r(r#"{{ printf "%5.1f|%-4d|" 2.25 7 }}"#, 0.0),
            "  2.2|7   |"
        );
        assert_eq!(r(r#"{{ $labels.job | toUpper }}"#, 0.0), "NODE");
        assert_eq!(
            r(r#"{{ reReplaceAll ":.*" "" $labels.instance }}"#, 0.0),
            "h"
        );
    }

    #[test]
    fn trimming_conditionals_and_range() {
        assert_eq!(r("a  {{- 1 -}}  b", 0.0), "a1b");
        assert_eq!(
            r("{{ if gt $value 1.0 }}high{{ else }}low{{ end }}", 2.0),
            "high"
        );
        assert_eq!(
            r(
                "{{ if lt $value 1.0 }}a{{ else if lt $value 3.0 }}b{{ else }}c{{ end }}",
                2.0
            ),
            "b"
        );
        assert_eq!(
            r(
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                0.0
            ),
            "__name__=up;instance=h:9100;job=node;"
        );
        assert_eq!(r("{{ $x := humanize $value }}v={{ $x }}", 2000.0), "v=2k");
        assert_eq!(r("{{/* a comment */}}x", 0.0), "x");
        assert_eq!(r("{{ with $labels.job }}{{ . }}{{ end }}", 0.0), "node");
    }

    #[test]
    fn errors_are_reported() {
        assert!(Template::parse("{{ nosuchfunc $value }}").is_err());
        assert!(Template::parse("{{ if $value }}x").is_err());
        assert!(Template::parse("{{ $value ").is_err());
        assert_eq!(
            Template::parse("line one\nsay {{ nosuchfunc }}")
                .unwrap_err()
                .to_string(),
            "template: 2:5: function \"nosuchfunc\" not defined"
        );
        assert!(r("{{ humanize \"abc\" }}", 0.0).starts_with("ERR"));
    }

    /// Renders with a `query` hook serving a fixed store: `up` has three instances.
    fn rq(text: &str) -> String {
        let labels = Labels::new([("instance", "b:9100"), ("job", "node")]);
        let ext = Labels::default();
        let d = TemplateData {
            labels: &labels,
            external_labels: &ext,
            external_url: "http://medic.example:9464/prefix/",
            value: 1.0,
        };
        let hook = |q: &str| -> Result<Vec<Sample>, String> {
            let up = |i: &str, v: f64| {
                Sample::new(
                    Labels::new([("__name__", "up"), ("instance", i), ("job", "node")]),
                    0,
                    v,
                )
            };
            match q {
                "up" => Ok(vec![
                    up("c:9100", 1.0),
                    up("a:9100", 0.0),
                    up("b:9100", 1.0),
                ]),
                "nothing" => Ok(vec![]),
                "scalar(1)" => Ok(vec![Sample::new(Labels::default(), 0, 1.0)]),
                other => Err(format!("1:1: parse error: unexpected {other:?}")),
            }
        };
        let ctx = RenderContext { query: Some(&hook) };
        match Template::parse(text) {
            Ok(t) => t.render_in(&d, &ctx).unwrap_or_else(|e| format!("ERR {e}")),
            Err(e) => format!("PARSE {e}"),
        }
    }

    #[test]
    fn query_and_sample_functions() {
        assert_eq!(
            rq(r#"{{ range query "up" }}{{ .Labels.instance }}={{ .Value }} {{ end }}"#),
            "c:9100=1 a:9100=0 b:9100=1 "
        );
        assert_eq!(
            rq(
                r#"{{ range sortByLabel "instance" (query "up") }}{{ label "instance" . }} {{ end }}"#
            ),
            "a:9100 b:9100 c:9100 "
        );
        assert_eq!(rq(r#"{{ query "up" | first | value }}"#), "1");
        assert_eq!(
            rq(r#"{{ with query "up" }}{{ . | first | label "instance" }}{{ end }}"#),
            "c:9100"
        );
        // the usual "what is this instance's other metric" idiom
        assert_eq!(
            rq(
                r#"{{ range $i, $s := query "up" }}{{ if eq $s.Labels.instance $labels.instance }}{{ $i }}:{{ $s.Value }}{{ end }}{{ end }}"#
            ),
            "2:1"
        );
        assert_eq!(rq(r#"{{ len (query "up") }}"#), "3");
        assert_eq!(
            rq(r#"{{ (index (query "up") 1).Labels.instance }}"#),
            "a:9100"
        );
        assert_eq!(
            rq(r#"{{ with query "nothing" }}x{{ else }}none{{ end }}"#),
            "none"
        );
        assert_eq!(rq(r#"{{ query "scalar(1)" | first | value }}"#), "1");
        assert_eq!(rq(r#"[{{ query "up" | first | strvalue }}]"#), "[]");
        assert_eq!(
            rq(r#"{{ query "nothing" | first | value }}"#),
            "ERR template: error calling first: first() called on vector with no elements"
        );
        assert!(rq(r#"{{ query "bad(" }}"#).contains("error calling query: 1:1: parse error"));
        // without a store, query fails the render
        assert!(r(r#"{{ query "up" }}"#, 0.0).starts_with("ERR template: error calling query: "));
    }

    #[test]
    fn urls_hosts_and_escapers() {
        assert_eq!(rq("{{ externalURL }}"), "http://medic.example:9464/prefix/");
        assert_eq!(rq("{{ pathPrefix }}"), "/prefix/");
        assert_eq!(
            rq(r#"{{ graphLink "rate(x{a=\"b c\"}[5m])" }}"#),
            "/graph?g0.expr=rate%28x%7Ba%3D%22b+c%22%7D%5B5m%5D%29&g0.tab=0"
        );
        assert_eq!(rq(r#"{{ tableLink "up" }}"#), "/graph?g0.expr=up&g0.tab=1");
        assert_eq!(rq(r#"{{ "a b&c/d" | urlquery }}"#), "a+b%26c%2Fd");
        assert_eq!(
            rq(r#"{{ html "<a href='x'>&\"</a>" }}"#),
            "&lt;a href=&#39;x&#39;&gt;&amp;&#34;&lt;/a&gt;"
        );
        assert_eq!(
            rq(r#"{{ js "it's <b>\"=\\\n" }}"#),
            r#"it\'s \u003Cb\u003E\"\u003D\\\u000A"#
        );
        assert_eq!(rq(r#"{{ urlquery 1 2 }}"#), "1+2");
        assert_eq!(
            rq(r#"{{ stripDomain "node-1.dc.example.com:9100" }}"#),
            "node-1:9100"
        );
        assert_eq!(rq(r#"{{ stripDomain "node-1.dc.example.com" }}"#), "node-1");
        assert_eq!(rq(r#"{{ stripDomain "10.0.0.1:9100" }}"#), "10.0.0.1:9100");
        assert_eq!(rq(r#"{{ stripDomain "[::1]:9100" }}"#), "[::1]:9100");
        assert_eq!(rq(r#"{{ stripPort "[::1]:9100" }}"#), "::1");
        assert_eq!(rq(r#"{{ stripPort "host" }}"#), "host");
        assert_eq!(rq(r#"{{ safeHtml "<b>" }}"#), "<b>");
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(rq(r#"{{ parseDuration "1h30m" }}"#), "5400");
        assert_eq!(rq(r#"{{ parseDuration "250ms" }}"#), "0.25");
        assert_eq!(
            rq(r#"{{ parseDuration "soon" }}"#),
            "ERR template: error calling parseDuration: not a valid duration string: \"soon\""
        );
        assert_eq!(
            rq("{{ toTime 1435065584.128 }}"),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(rq("{{ toTime 0 }}"), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(rq("{{ toDuration 3723.5 }}"), "1h2m3.5s");
        assert_eq!(rq("{{ toDuration 120 }}"), "2m0s");
        assert_eq!(rq("{{ toDuration 0.0015 }}"), "1.5ms");
        assert_eq!(rq("{{ toDuration 0 }}"), "0s");
        assert_eq!(rq("{{ toDuration -90 }}"), "-1m30s");
        // durations convert back to seconds where a number is expected
        assert_eq!(rq("{{ toDuration 90 | humanizeDuration }}"), "1m 30s");
        assert!(
            rq(r#"{{ toTime "x" }}"#)
                .starts_with("ERR template: error calling toTime: strconv.ParseFloat")
        );
    }

    #[test]
    fn define_template_block_args_and_scopes() {
        assert_eq!(
            r(
                r#"{{ define "who" }}{{ .instance }}/{{ .job }}{{ end }}at {{ template "who" $labels }}"#,
                0.0
            ),
            "at h:9100/node"
        );
        assert_eq!(
            r(
                r#"{{ define "kv" }}{{ .arg0 }}={{ .arg1 }}{{ end }}{{ template "kv" (args "v" $value) }}"#,
                2.5
            ),
            "v=2.5"
        );
        assert_eq!(r(r#"{{ block "b" . }}[{{ .Value }}]{{ end }}"#, 7.0), "[7]");
        assert_eq!(
            r(r#"{{ define "n" }}{{ . }}{{ end }}{{ template "n" }}"#, 0.0),
            "<no value>"
        );
        assert!(
            r(r#"{{ template "missing" . }}"#, 0.0).contains("template \"missing\" not defined")
        );
        // a defined template sees only its data: $labels is undefined there, as in Go
        assert!(Template::parse(r#"{{ define "x" }}{{ $labels.job }}{{ end }}"#).is_err());
        assert!(Template::parse(r#"{{ if 1 }}{{ define "x" }}{{ end }}{{ end }}"#).is_err());
        assert!(
            Template::parse(r#"{{ define "x" }}a{{ end }}{{ define "x" }}b{{ end }}"#).is_err()
        );
        // recursion is bounded
        assert!(
            r(
                r#"{{ define "l" }}{{ template "l" . }}{{ end }}{{ template "l" . }}"#,
                0.0
            )
            .contains("depth")
        );
        // undefined variables are parse errors; `=` assigns across blocks
        assert!(Template::parse("{{ $nope }}").is_err());
        assert!(Template::parse("{{ $nope = 1 }}").is_err());
        assert!(Template::parse("{{ if 1 }}{{ $x := 1 }}{{ end }}{{ $x }}").is_err());
        assert_eq!(
            r(
                "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
                0.0
            ),
            "2"
        );
        assert_eq!(
            r(
                "{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ end }}{{ $x }}",
                0.0
            ),
            "1"
        );
    }

    #[test]
    fn break_continue_and_short_circuit() {
        assert_eq!(
            r(
                "{{ range $k, $v := $labels }}{{ if eq $k \"job\" }}{{ break }}{{ end }}{{ if eq $k \"__name__\" }}{{ continue }}{{ end }}{{ $k }};{{ end }}",
                0.0
            ),
            "instance;"
        );
        assert!(Template::parse("{{ break }}").is_err());
        assert!(Template::parse("{{ range $labels }}{{ else }}{{ break }}{{ end }}").is_err());
        // `and` stops at the first false operand, so `index` on nil is never evaluated
        assert_eq!(r("{{ and false (index nil 1) }}", 0.0), "false");
        assert_eq!(r("{{ or 0 \"\" \"x\" }}", 0.0), "x");
        assert_eq!(r("{{ $value | or 0 }}", 3.0), "3");
    }
}

//! The Go-template subset Prometheus users write in labels and annotations:
//! `{{ $labels.x }}`, `{{ $value }}`, `{{ $externalLabels.x }}`, `{{ .Labels.x }}`,
//! `{{ .Value }}`, functions (`humanize`, `humanize1024`, `humanizePercentage`,
//! `humanizeDuration`, `printf`, `toUpper`, `toLower`, `title`, `reReplaceAll`, `match`,
//! comparisons, `and`/`or`/`not`, `len`, `index`), pipes, `{{- -}}` trimming, variables,
//! `if`/`else if`/`else`/`end`, `range` over label maps and `with`.
//!
//! Parse once with [`Template::parse`] (done when rules load, so bad templates are reported
//! by `medic check`), render many times with [`Template::render`]. [`render`] does both.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::store::Labels;

/// What a template can see.
#[derive(Debug, Clone, Copy)]
pub struct TemplateData<'a> {
    /// `$labels` / `.Labels`: the alert's (or sample's) labels.
    pub labels: &'a Labels,
    /// `$externalLabels` / `.ExternalLabels`.
    pub external_labels: &'a Labels,
    /// `$externalURL` / `.ExternalURL`.
    pub external_url: &'a str,
    /// `$value` / `.Value`.
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("template: {pos}: {msg}")]
    Parse { pos: usize, msg: String },
    #[error("template: {0}")]
    Exec(String),
}

/// Parses and renders `text` in one go.
pub fn render(text: &str, data: &TemplateData) -> Result<String, TemplateError> {
    Template::parse(text)?.render(data)
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
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
}

#[derive(Debug, Clone)]
struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`) by this pipeline.
    decl: Vec<String>,
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
    Map(BTreeMap<String, String>),
    /// The template's data (`.` at the top).
    Root,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if !text.contains("{{") {
            return Ok(Template {
                nodes: Vec::new(),
                literal: Some(text.to_string()),
            });
        }
        let items = lex(text)?;
        let mut p = Parser { items, i: 0 };
        let (nodes, end) = p.list()?;
        if let Some(end) = end {
            return Err(TemplateError::Parse {
                pos: 0,
                msg: format!("unexpected {{{{{end}}}}}"),
            });
        }
        Ok(Template {
            nodes,
            literal: None,
        })
    }

    pub fn render(&self, data: &TemplateData) -> Result<String, TemplateError> {
        if let Some(l) = &self.literal {
            return Ok(l.clone());
        }
        let mut ex = Exec {
            data,
            vars: vec![
                ("$".into(), Val::Root),
                ("$labels".into(), Val::Map(map_of(data.labels))),
                (
                    "$externalLabels".into(),
                    Val::Map(map_of(data.external_labels)),
                ),
                (
                    "$externalURL".into(),
                    Val::Str(data.external_url.to_string()),
                ),
                ("$value".into(), Val::Num(data.value)),
            ],
            steps: 0,
        };
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

fn perr(pos: usize, msg: impl Into<String>) -> TemplateError {
    TemplateError::Parse {
        pos,
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

struct Parser {
    items: Vec<Item>,
    i: usize,
}

impl Parser {
    /// Parses nodes until `end` or `else` (returned) or the end of input (None).
    fn list(&mut self) -> Result<(Vec<Node>, Option<String>), TemplateError> {
        let mut nodes = Vec::new();
        while self.i < self.items.len() {
            let item = self.items[self.i].clone();
            self.i += 1;
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action(toks, pos) => {
                    let kw = match toks.first() {
                        Some(Tok::Ident(k)) => k.as_str(),
                        _ => "",
                    };
                    match kw {
                        "end" => return Ok((nodes, Some("end".into()))),
                        "else" => {
                            // `else if ...` keeps the rest of the tokens for the caller
                            let rest = toks[1..].to_vec();
                            if !rest.is_empty() {
                                self.i -= 1;
                                self.items[self.i] = Item::Action(rest, pos);
                                return Ok((nodes, Some("else-chain".into())));
                            }
                            return Ok((nodes, Some("else".into())));
                        }
                        "if" | "range" | "with" => {
                            let kw = kw.to_string();
                            let pipe = pipeline(&toks[1..], pos)?;
                            let node = self.control(&kw, pipe, pos)?;
                            nodes.push(node);
                        }
                        "define" | "template" | "block" | "break" | "continue" => {
                            return Err(perr(pos, format!("{kw:?} is not supported")));
                        }
                        _ => nodes.push(Node::Action(pipeline(&toks, pos)?)),
                    }
                }
            }
        }
        Ok((nodes, None))
    }

    fn control(&mut self, kw: &str, pipe: Pipeline, pos: usize) -> Result<Node, TemplateError> {
        let (then, end) = self.list()?;
        let otherwise = match end.as_deref() {
            Some("end") => Vec::new(),
            Some("else") => {
                let (otherwise, end) = self.list()?;
                if end.as_deref() != Some("end") {
                    return Err(perr(pos, format!("missing {{{{end}}}} for {kw}")));
                }
                otherwise
            }
            Some("else-chain") => {
                // `{{else if x}}` is `{{else}}{{if x}}...{{end}}` sharing the outer end.
                let Some(Item::Action(toks, p)) = self.items.get(self.i).cloned() else {
                    return Err(perr(pos, "bad else"));
                };
                self.i += 1;
                let kw2 = match toks.first() {
                    Some(Tok::Ident(k)) if k == "if" || k == "with" => k.clone(),
                    _ => return Err(perr(p, "expected if or with after else")),
                };
                let inner = pipeline(&toks[1..], p)?;
                vec![self.control(&kw2, inner, p)?]
            }
            _ => return Err(perr(pos, format!("missing {{{{end}}}} for {kw}"))),
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
}

const FUNCS: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizePercentage",
    "humanizeDuration",
    "humanizeTimestamp",
    "printf",
    "print",
    "println",
    "toUpper",
    "toLower",
    "title",
    "reReplaceAll",
    "match",
    "stripPort",
    "safeHtml",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "len",
    "index",
];

fn pipeline(toks: &[Tok], pos: usize) -> Result<Pipeline, TemplateError> {
    let mut decl = Vec::new();
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
    Ok(Pipeline { decl, cmds })
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

// ---------------------------------------------------------------- execution

struct Exec<'a> {
    data: &'a TemplateData<'a>,
    vars: Vec<(String, Val)>,
    steps: usize,
}

fn xerr(msg: impl Into<String>) -> TemplateError {
    TemplateError::Exec(msg.into())
}

impl Exec<'_> {
    fn walk(&mut self, nodes: &[Node], dot: &Val, out: &mut String) -> Result<(), TemplateError> {
        for n in nodes {
            self.steps += 1;
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.decl.is_empty() {
                        print_val(&v, out);
                    }
                }
                Node::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let v = self.pipeline(cond, dot)?;
                    let branch = if truthy(&v) { then } else { otherwise };
                    self.walk(branch, dot, out)?;
                    self.vars.truncate(mark);
                }
                Node::With {
                    pipe,
                    then,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let v = self.pipeline(pipe, dot)?;
                    if truthy(&v) {
                        self.walk(then, &v, out)?;
                    } else {
                        self.walk(otherwise, dot, out)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range {
                    pipe,
                    then,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let decl = pipe.decl.clone();
                    let bare = Pipeline {
                        decl: Vec::new(),
                        cmds: pipe.cmds.clone(),
                    };
                    let v = self.pipeline(&bare, dot)?;
                    let map = match v {
                        Val::Map(m) => m,
                        Val::Nil => BTreeMap::new(),
                        other => return Err(xerr(format!("range can't iterate over {other:?}"))),
                    };
                    if map.is_empty() {
                        self.walk(otherwise, dot, out)?;
                    }
                    for (k, v) in map {
                        let inner = self.vars.len();
                        match decl.as_slice() {
                            [] => {}
                            [val] => self.vars.push((val.clone(), Val::Str(v.clone()))),
                            [key, val, ..] => {
                                self.vars.push((key.clone(), Val::Str(k.clone())));
                                self.vars.push((val.clone(), Val::Str(v.clone())));
                            }
                        }
                        self.walk(then, &Val::Str(v), out)?;
                        self.vars.truncate(inner);
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Val) -> Result<Val, TemplateError> {
        let mut piped: Option<Val> = None;
        for cmd in &p.cmds {
            piped = Some(self.cmd(cmd, dot, piped)?);
        }
        let v = piped.unwrap_or(Val::Nil);
        for name in &p.decl {
            // `:=` shadows; `=` to an existing variable is the same here since scopes are
            // truncated at block ends.
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    fn cmd(&mut self, cmd: &Cmd, dot: &Val, piped: Option<Val>) -> Result<Val, TemplateError> {
        if let Operand::Func(name) = &cmd.args[0] {
            let mut args = Vec::with_capacity(cmd.args.len());
            for a in &cmd.args[1..] {
                args.push(self.operand(a, dot)?);
            }
            args.extend(piped);
            return call(name, args);
        }
        if cmd.args.len() > 1 || piped.is_some() {
            return Err(xerr("can't give argument to non-function"));
        }
        self.operand(&cmd.args[0], dot)
    }

    fn operand(&mut self, op: &Operand, dot: &Val) -> Result<Val, TemplateError> {
        Ok(match op {
            Operand::Dot(f) => self.fields(dot.clone(), f)?,
            Operand::Var(name, f) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| xerr(format!("undefined variable: {name}")))?;
                self.fields(v, f)?
            }
            Operand::Func(name) => call(name, Vec::new())?,
            Operand::Str(s) => Val::Str(s.clone()),
            Operand::Num(n) => Val::Num(*n),
            Operand::Int(n) => Val::Int(*n),
            Operand::Bool(b) => Val::Bool(*b),
            Operand::Nil => Val::Nil,
            Operand::Paren(p, f) => {
                let v = self.pipeline(p, dot)?;
                self.fields(v, f)?
            }
        })
    }

    fn fields(&self, mut v: Val, fields: &[String]) -> Result<Val, TemplateError> {
        for f in fields {
            v = match v {
                Val::Root => match f.as_str() {
                    "Labels" => Val::Map(map_of(self.data.labels)),
                    "ExternalLabels" => Val::Map(map_of(self.data.external_labels)),
                    "ExternalURL" => Val::Str(self.data.external_url.to_string()),
                    "Value" => Val::Num(self.data.value),
                    _ => return Err(xerr(format!("can't evaluate field {f}"))),
                },
                // Prometheus sets missingkey=zero: a missing label is "".
                Val::Map(m) => Val::Str(m.get(f).cloned().unwrap_or_default()),
                Val::Nil => Val::Nil,
                other => return Err(xerr(format!("can't evaluate field {f} in {other:?}"))),
            };
        }
        Ok(v)
    }
}

fn truthy(v: &Val) -> bool {
    match v {
        Val::Nil => false,
        Val::Bool(b) => *b,
        Val::Int(i) => *i != 0,
        Val::Num(n) => *n != 0.0,
        Val::Str(s) => !s.is_empty(),
        Val::Map(m) => !m.is_empty(),
        Val::Root => true,
    }
}

fn print_val(v: &Val, out: &mut String) {
    match v {
        Val::Nil => out.push_str("<no value>"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Val::Num(n) => out.push_str(&fmt_g(*n, None)),
        Val::Str(s) => out.push_str(s),
        Val::Map(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{k}:{v}");
            }
            out.push(']');
        }
        Val::Root => out.push_str("{}"),
    }
}

fn to_string(v: &Val) -> String {
    let mut s = String::new();
    print_val(v, &mut s);
    s
}

fn to_float(v: &Val) -> Result<f64, TemplateError> {
    match v {
        Val::Num(n) => Ok(*n),
        Val::Int(i) => Ok(*i as f64),
        Val::Str(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| xerr(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))),
        other => Err(xerr(format!("can't convert {other:?} to float"))),
    }
}

fn arity(name: &str, args: &[Val], n: usize) -> Result<(), TemplateError> {
    if args.len() != n {
        return Err(xerr(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        )));
    }
    Ok(())
}

fn compare(a: &Val, b: &Val) -> Result<std::cmp::Ordering, TemplateError> {
    use std::cmp::Ordering;
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
        (Val::Num(_) | Val::Int(_), Val::Num(_) | Val::Int(_)) => {
            let (x, y) = (to_float(a)?, to_float(b)?);
            Ok(x.partial_cmp(&y).unwrap_or(Ordering::Less))
        }
        _ => Err(xerr("incompatible types for comparison")),
    }
}

fn call(name: &str, args: Vec<Val>) -> Result<Val, TemplateError> {
    let one = |args: &[Val]| -> Result<f64, TemplateError> {
        arity(name, args, 1)?;
        to_float(&args[0])
    };
    let s1 = |args: &[Val]| -> Result<String, TemplateError> {
        arity(name, args, 1)?;
        Ok(to_string(&args[0]))
    };
    Ok(match name {
        "humanize" => Val::Str(humanize(one(&args)?)),
        "humanize1024" => Val::Str(humanize1024(one(&args)?)),
        "humanizePercentage" => Val::Str(format!("{}%", fmt_g(one(&args)? * 100.0, Some(4)))),
        "humanizeDuration" => Val::Str(humanize_duration(one(&args)?)),
        "humanizeTimestamp" => Val::Str(humanize_timestamp(one(&args)?)),
        "printf" => {
            let Some(Val::Str(f)) = args.first() else {
                return Err(xerr("printf: first argument must be a format string"));
            };
            Val::Str(sprintf(f, &args[1..]))
        }
        "print" | "println" => {
            // fmt.Sprint puts spaces between operands when neither is a string.
            let mut s = String::new();
            for (i, a) in args.iter().enumerate() {
                let sep = name == "println"
                    || (i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)));
                if i > 0 && sep {
                    s.push(' ');
                }
                print_val(a, &mut s);
            }
            if name == "println" {
                s.push('\n');
            }
            Val::Str(s)
        }
        "toUpper" => Val::Str(s1(&args)?.to_uppercase()),
        "toLower" => Val::Str(s1(&args)?.to_lowercase()),
        "title" => {
            let s = s1(&args)?;
            let mut out = String::with_capacity(s.len());
            let mut start = true;
            for c in s.chars() {
                if start {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric() && c != '_' && c != '\'';
            }
            Val::Str(out)
        }
        "safeHtml" => Val::Str(s1(&args)?),
        "stripPort" => {
            let s = s1(&args)?;
            Val::Str(match s.rsplit_once(':') {
                Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                _ => s,
            })
        }
        "reReplaceAll" => {
            arity(name, &args, 3)?;
            let re = regex::Regex::new(&to_string(&args[0])).map_err(|e| xerr(e.to_string()))?;
            // Go's $1 expansion matches regex's.
            Val::Str(
                re.replace_all(&to_string(&args[2]), to_string(&args[1]).as_str())
                    .into_owned(),
            )
        }
        "match" => {
            arity(name, &args, 2)?;
            let re = regex::Regex::new(&to_string(&args[0])).map_err(|e| xerr(e.to_string()))?;
            Val::Bool(re.is_match(&to_string(&args[1])))
        }
        "eq" => {
            if args.len() < 2 {
                return Err(xerr("missing argument for comparison"));
            }
            let first = &args[0];
            let mut any = false;
            for b in &args[1..] {
                if compare(first, b)? == std::cmp::Ordering::Equal {
                    any = true;
                }
            }
            Val::Bool(any)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(name, &args, 2)?;
            let o = compare(&args[0], &args[1])?;
            use std::cmp::Ordering::*;
            Val::Bool(match name {
                "ne" => o != Equal,
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            })
        }
        "and" => {
            let mut last = Val::Nil;
            for a in args {
                if !truthy(&a) {
                    return Ok(a);
                }
                last = a;
            }
            last
        }
        "or" => {
            let mut last = Val::Nil;
            for a in args {
                if truthy(&a) {
                    return Ok(a);
                }
                last = a;
            }
            last
        }
        "not" => {
            arity(name, &args, 1)?;
            Val::Bool(!truthy(&args[0]))
        }
        "len" => {
            arity(name, &args, 1)?;
            Val::Int(match &args[0] {
                Val::Str(s) => s.len() as i64,
                Val::Map(m) => m.len() as i64,
                other => return Err(xerr(format!("len of {other:?}"))),
            })
        }
        "index" => {
            arity(name, &args, 2)?;
            match &args[0] {
                Val::Map(m) => Val::Str(m.get(&to_string(&args[1])).cloned().unwrap_or_default()),
                other => return Err(xerr(format!("can't index item of type {other:?}"))),
            }
        }
        _ => return Err(xerr(format!("function {name:?} not defined"))),
    })
}

// ---------------------------------------------------------------- Prometheus' humanizers

fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return fmt_g(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", fmt_g(v, Some(4)))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return fmt_g(v, Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", fmt_g(v, Some(4)))
}

fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return fmt_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", fmt_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {mins}m {secs}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {mins}m {secs}s");
        }
        if mins != 0 {
            return format!("{sign}{mins}m {secs}s");
        }
        return format!("{sign}{}s", fmt_g(v, Some(4)));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", fmt_g(v, Some(4)))
}

/// Go's `time.Time.String()` of a Unix timestamp in UTC, as Prometheus prints it.
fn humanize_timestamp(v: f64) -> String {
    if !v.is_finite() {
        return fmt_g(v, Some(4));
    }
    // Prometheus goes through model.Time: millisecond precision.
    let ms = ((v * 1e9) as i64).div_euclid(1_000_000);
    let secs = ms.div_euclid(1000);
    let nanos = ms.rem_euclid(1000) * 1_000_000;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------- Go's number formatting

fn go_special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v == f64::INFINITY {
        Some("+Inf".into())
    } else if v == f64::NEG_INFINITY {
        Some("-Inf".into())
    } else {
        None
    }
}

/// Decimal digits (no trailing zeros) and the exponent of the first digit.
fn digits(v: f64, sig: Option<usize>) -> (bool, String, i32) {
    let s = match sig {
        Some(p) => format!("{:.*e}", p.max(1) - 1, v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mut d: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while d.len() > 1 && d.ends_with('0') {
        d.pop();
    }
    (
        v.is_sign_negative() && v != 0.0,
        d,
        exp.parse().unwrap_or(0),
    )
}

/// Go's `%g` (`sig` None: shortest representation, as `%v` prints a float64).
pub(crate) fn fmt_g(v: f64, sig: Option<usize>) -> String {
    if let Some(s) = go_special(v) {
        return s;
    }
    let (neg, d, exp) = digits(v, sig);
    let nd = d.len() as i32;
    let dp = exp + 1;
    let mut eprec = match sig {
        Some(p) => p.max(1) as i32,
        None => 6,
    };
    if sig.is_some() && eprec > nd && nd >= dp {
        eprec = nd;
    }
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&d[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&d[1..]);
        }
        push_exp(&mut out, exp);
    } else if dp <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-dp) as usize));
        out.push_str(&d);
    } else if dp >= nd {
        out.push_str(&d);
        out.extend(std::iter::repeat_n('0', (dp - nd) as usize));
    } else {
        out.push_str(&d[..dp as usize]);
        out.push('.');
        out.push_str(&d[dp as usize..]);
    }
    out
}

fn push_exp(out: &mut String, exp: i32) {
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.abs());
}

fn fmt_e(v: f64, prec: usize) -> String {
    if let Some(s) = go_special(v) {
        return s;
    }
    let s = format!("{v:.prec$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mut out = mant.to_string();
    push_exp(&mut out, exp.parse().unwrap_or(0));
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: %v %s %d %f %e %g %x %q %t %%.
fn sprintf(f: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&fl) = chars.peek() {
            match fl {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let num = match arg {
            Val::Num(n) => Some(*n),
            Val::Int(i) => Some(*i as f64),
            _ => None,
        };
        let mut s = match (verb, arg) {
            ('v' | 's', Val::Str(s)) => match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            ('q', Val::Str(s)) => format!("{s:?}"),
            ('d', Val::Int(i)) => i.to_string(),
            ('x', Val::Int(i)) => format!("{i:x}"),
            ('X', Val::Int(i)) => format!("{i:X}"),
            ('x', Val::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('t' | 'v', Val::Bool(b)) => b.to_string(),
            ('v', Val::Int(i)) => i.to_string(),
            ('v', Val::Num(n)) => fmt_g(*n, None),
            ('f' | 'F', _) if num.is_some() => {
                let n = num.unwrap_or_default();
                go_special(n).unwrap_or_else(|| format!("{:.*}", prec.unwrap_or(6), n))
            }
            ('e', _) if num.is_some() => fmt_e(num.unwrap_or_default(), prec.unwrap_or(6)),
            ('g', _) if num.is_some() => fmt_g(num.unwrap_or_default(), prec),
            ('v', other) => to_string(other),
            (verb, other) => {
                let ty = match other {
                    Val::Num(_) => "float64",
                    Val::Int(_) => "int",
                    Val::Str(_) => "string",
                    Val::Bool(_) => "bool",
                    _ => "map[string]string",
                };
                format!("%!{verb}({ty}={})", to_string(other))
            }
        };
        if num.is_some_and(|n| n >= 0.0) && !s.starts_with('+') && "dfFeEgv".contains(verb) {
            if plus {
                s.insert(0, '+');
            } else if space {
                s.insert(0, ' ');
            }
        }
        let w: usize = width.parse().unwrap_or(0);
        let len = s.chars().count();
        if len < w {
            let pad = w - len;
            if minus {
                s.extend(std::iter::repeat_n(' ', pad));
            } else if zero && num.is_some() {
                let at = usize::from(s.starts_with(['-', '+', ' ']));
                s.insert_str(at, &"0".repeat(pad));
            } else {
                s.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&s);
    }
    let extra: Vec<&Val> = args.collect();
    if !extra.is_empty() {
        out.push_str("%!(EXTRA ");
        for (i, a) in extra.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}", to_string(a));
        }
        out.push(')');
    }
    out
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
        assert!(r("{{ humanize \"abc\" }}", 0.0).starts_with("ERR"));
    }
}

//! Lexing and parsing a template, with Go's parse-time checks (undefined functions and
//! variables, misplaced `break`/`define`).

use std::collections::BTreeMap;

use super::ast::{Cmd, Node, Operand, Pipeline, TemplateError};

/// The variables Prometheus declares before every alert template.
pub(super) const ALERT_VARS: &[&str] =
    &["$", "$labels", "$externalLabels", "$externalURL", "$value"];

/// Templates named by `{{ define }}` and `{{ block }}`.
pub(super) type Defs = BTreeMap<String, Vec<Node>>;

/// Parses `text` (which contains an action) into its nodes and the templates it defines.
/// Errors carry the byte offset in `column`; [`super::Template::parse`] makes it a line and
/// column.
pub(super) fn parse(text: &str) -> Result<(Vec<Node>, Defs), TemplateError> {
    let items = lex(text)?;
    let mut p = Parser {
        items,
        loc: Locator {
            src: text,
            cursor: 0,
        },
        i: 0,
        vars: ALERT_VARS.iter().map(|v| v.to_string()).collect(),
        range_depth: 0,
        depth: 0,
        nesting: 0,
        defs: BTreeMap::new(),
    };
    let (nodes, end) = p.list()?;
    if let Some((end, pos)) = end {
        return Err(perr(pos, format!("unexpected {{{{{}}}}}", end.keyword())));
    }
    Ok((nodes, p.defs))
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

/// The deepest a template may nest parentheses, and `if`/`range`/`with` blocks (with their
/// `else if` chains) inside each other. Go allows 10,000; the parser and the executor recurse
/// per level, and real templates stay under ten, so the bound is far lower here, and hostile
/// input (50,000 nested parentheses) is an error, not a crashed stack.
pub(super) const MAX_NESTING: usize = 100;

fn too_deep(pos: usize) -> TemplateError {
    perr(
        pos,
        format!("max expression depth exceeded (more than {MAX_NESTING} levels)"),
    )
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

struct Parser<'s> {
    loc: Locator<'s>,
    items: Vec<Item>,
    i: usize,
    /// Variables in scope (Go checks variables when parsing).
    vars: Vec<String>,
    /// Nesting of `range` bodies (`break` and `continue` need one).
    range_depth: usize,
    /// Nesting of control structures (`define` is only allowed at the top).
    depth: usize,
    /// Nesting of control structures and `else if` chains, bounded by [`MAX_NESTING`].
    nesting: usize,
    defs: BTreeMap<String, Vec<Node>>,
}

/// Finds where each command starts in the source, for execution errors: commands are
/// parsed in the order they are written, so one cursor moving forward finds each first
/// token as the next occurrence of its text.
struct Locator<'s> {
    src: &'s str,
    cursor: usize,
}

impl Locator<'_> {
    /// (1-based line, 0-based byte in the line) of `first`'s next occurrence.
    fn find(&mut self, first: &Operand) -> (usize, usize) {
        let rest = &self.src[self.cursor.min(self.src.len())..];
        let found = match first {
            Operand::Func(n) => rest.find(n.as_str()).map(|i| (i, n.len())),
            Operand::Var(n, _) => rest.find(n.as_str()).map(|i| (i, n.len())),
            Operand::Dot(_) => rest.find('.').map(|i| (i, 1)),
            Operand::Str(_) => rest.find(['"', '`']).map(|i| (i, 1)),
            Operand::Paren(..) => rest.find('(').map(|i| (i, 1)),
            Operand::Bool(b) => rest.find(if *b { "true" } else { "false" }).map(|i| (i, 4)),
            Operand::Nil => rest.find("nil").map(|i| (i, 3)),
            Operand::Num(_) | Operand::Int(_) => rest
                .find(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.')
                .map(|i| (i, 1)),
        };
        let at = match found {
            Some((i, len)) => {
                let at = self.cursor + i;
                self.cursor = at + len;
                at
            }
            None => self.cursor,
        };
        let before = &self.src[..at.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col0 = at - before.rfind('\n').map_or(0, |i| i + 1);
        (line, col0)
    }
}

impl Parser<'_> {
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
            self.loc.cursor = self.loc.cursor.max(pos);
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
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(too_deep(pos));
        }
        // Variables declared in the pipeline or the body live until the control's end.
        let mark = self.vars.len();
        let result = self.control_body(kw, toks, pos);
        self.vars.truncate(mark);
        self.nesting -= 1;
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
        let p = pipeline(toks, pos, 0, &mut self.loc)?;
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
    "now",
    "urlQueryEscape",
];

fn pipeline(
    toks: &[Tok],
    pos: usize,
    depth: usize,
    loc: &mut Locator<'_>,
) -> Result<Pipeline, TemplateError> {
    if depth > MAX_NESTING {
        return Err(too_deep(pos));
    }
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
        let mut at = (0, 0);
        while i < toks.len() && toks[i] != Tok::Pipe {
            let op = operand(toks, &mut i, pos, depth, loc)?;
            if args.is_empty() && !matches!(op, Operand::Paren(..)) {
                at = loc.find(&op);
            }
            args.push(op);
        }
        if args.is_empty() {
            return Err(perr(pos, "missing command in pipeline"));
        }
        cmds.push(Cmd {
            args,
            line: at.0,
            col0: at.1,
        });
        if i >= toks.len() {
            break;
        }
        i += 1; // the pipe
    }
    Ok(Pipeline { decl, assign, cmds })
}

fn operand(
    toks: &[Tok],
    i: &mut usize,
    pos: usize,
    nest: usize,
    loc: &mut Locator<'_>,
) -> Result<Operand, TemplateError> {
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
            let inner = pipeline(&toks[start..*i], pos, nest + 1, loc)?;
            *i += 1;
            Operand::Paren(Box::new(inner), fields)
        }
        other => return Err(perr(pos, format!("unexpected {other:?} in operand"))),
    })
}

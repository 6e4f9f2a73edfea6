//! Executing a parsed template: Go's text/template semantics with Prometheus' options
//! (`missingkey=zero`) and functions.

use std::collections::BTreeMap;

use super::ast::{
    Cmd, Node, Operand, Pipeline, RenderContext, SampleVal, TemplateData, TemplateError, Val,
    map_of,
};
use super::format::{
    float_to_duration_ns, float_to_time_ms, fmt_g, html_escape, humanize, humanize_duration,
    humanize_timestamp, humanize1024, js_escape, print_val, query_escape, sprintf, strip_domain,
    strip_port, to_string, url_path,
};

/// Steps (nodes walked) after which a render is abandoned: templates cannot loop forever,
/// but `range` over a big query result inside a recursive `template` could take long.
const MAX_STEPS: usize = 1_000_000;
/// Nesting of `{{ template }}` calls (recursion) after which a render is abandoned.
const MAX_DEPTH: usize = 100;

/// What a walk of a node list ended with (`break` and `continue` leave their `range`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Flow {
    Normal,
    Break,
    Continue,
}

pub(super) struct Exec<'a> {
    data: &'a TemplateData<'a>,
    ctx: &'a RenderContext<'a>,
    defs: &'a BTreeMap<String, Vec<Node>>,
    vars: Vec<(String, Val)>,
    steps: usize,
    depth: usize,
}

fn xerr(msg: impl Into<String>) -> TemplateError {
    TemplateError::Exec(msg.into())
}

impl<'a> Exec<'a> {
    pub(super) fn new(
        data: &'a TemplateData<'a>,
        ctx: &'a RenderContext<'a>,
        defs: &'a BTreeMap<String, Vec<Node>>,
    ) -> Self {
        // What Prometheus declares before every alert template.
        let vars = vec![
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
        ];
        Exec {
            data,
            ctx,
            defs,
            vars,
            steps: 0,
            depth: 0,
        }
    }

    pub(super) fn walk(
        &mut self,
        nodes: &[Node],
        dot: &Val,
        out: &mut String,
    ) -> Result<Flow, TemplateError> {
        for n in nodes {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(xerr(format!("too many steps (over {MAX_STEPS})")));
            }
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
                    let flow = self.walk(branch, dot, out)?;
                    self.vars.truncate(mark);
                    if flow != Flow::Normal {
                        return Ok(flow);
                    }
                }
                Node::With {
                    pipe,
                    then,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let v = self.pipeline(pipe, dot)?;
                    let flow = if truthy(&v) {
                        self.walk(then, &v, out)?
                    } else {
                        self.walk(otherwise, dot, out)?
                    };
                    self.vars.truncate(mark);
                    if flow != Flow::Normal {
                        return Ok(flow);
                    }
                }
                Node::Range {
                    pipe,
                    then,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let flow = self.range(pipe, then, otherwise, dot, out)?;
                    self.vars.truncate(mark);
                    if flow != Flow::Normal {
                        return Ok(flow);
                    }
                }
                Node::Template { name, pipe } => {
                    let v = match pipe {
                        Some(p) => self.pipeline(p, dot)?,
                        None => Val::Nil,
                    };
                    let Some(body) = self.defs.get(name) else {
                        return Err(xerr(format!("template {name:?} not defined")));
                    };
                    if self.depth >= MAX_DEPTH {
                        return Err(xerr(format!(
                            "exceeded maximum template depth ({MAX_DEPTH})"
                        )));
                    }
                    // A template sees its data as `.` and `$`, and no other variable.
                    let saved = std::mem::replace(&mut self.vars, vec![("$".into(), v.clone())]);
                    self.depth += 1;
                    let r = self.walk(body, &v, out);
                    self.depth -= 1;
                    self.vars = saved;
                    r?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(
        &mut self,
        pipe: &Pipeline,
        then: &[Node],
        otherwise: &[Node],
        dot: &Val,
        out: &mut String,
    ) -> Result<Flow, TemplateError> {
        // The range's variables take each element, not the whole value.
        let bare = Pipeline {
            decl: Vec::new(),
            assign: false,
            cmds: pipe.cmds.clone(),
        };
        let v = self.pipeline(&bare, dot)?;
        let items: Vec<(Val, Val)> = match v {
            Val::Map(m) => m
                .into_iter()
                .map(|(k, v)| (Val::Str(k), Val::Str(v)))
                .collect(),
            Val::Dict(m) => m.into_iter().map(|(k, v)| (Val::Str(k), v)).collect(),
            Val::Samples(s) => s
                .into_iter()
                .enumerate()
                .map(|(i, s)| (Val::Int(i as i64), Val::Sample(s)))
                .collect(),
            // Go 1.22: ranging over an integer counts from 0.
            Val::Int(n) => (0..n.max(0)).map(|i| (Val::Int(i), Val::Int(i))).collect(),
            Val::Nil => Vec::new(),
            other => {
                return Err(xerr(format!(
                    "range can't iterate over {}",
                    to_string(&other)
                )));
            }
        };
        if items.is_empty() {
            return self.walk(otherwise, dot, out);
        }
        for (k, v) in items {
            let inner = self.vars.len();
            match pipe.decl.as_slice() {
                [] => {}
                [val] => self.vars.push((val.clone(), v.clone())),
                [key, val, ..] => {
                    self.vars.push((key.clone(), k));
                    self.vars.push((val.clone(), v.clone()));
                }
            }
            let flow = self.walk(then, &v, out)?;
            self.vars.truncate(inner);
            if flow == Flow::Break {
                break;
            }
        }
        Ok(Flow::Normal)
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Val) -> Result<Val, TemplateError> {
        let mut piped: Option<Val> = None;
        for cmd in &p.cmds {
            piped = Some(self.cmd(cmd, dot, piped)?);
        }
        let v = piped.unwrap_or(Val::Nil);
        for name in &p.decl {
            if p.assign {
                // `=` overwrites the variable where it was declared (possibly outside the
                // current block), as Go does.
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                    continue;
                }
            }
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    /// Runs one command; an error without a place yet gets this command's, as Go's
    /// `executing "name" at <cmd>:` context.
    fn cmd(&mut self, cmd: &Cmd, dot: &Val, piped: Option<Val>) -> Result<Val, TemplateError> {
        self.cmd_inner(cmd, dot, piped).map_err(|e| match e {
            TemplateError::Exec(msg) => {
                let mut col0 = cmd.col0;
                // Go places a field error on a variable's fields (`$labels.a.b` at `.a`)
                if let [Operand::Var(name, fields)] = cmd.args.as_slice()
                    && !fields.is_empty()
                {
                    col0 += name.len();
                }
                TemplateError::ExecAt {
                    line: cmd.line,
                    col0,
                    node: cmd.to_string(),
                    msg,
                }
            }
            other => other,
        })
    }

    fn cmd_inner(
        &mut self,
        cmd: &Cmd,
        dot: &Val,
        piped: Option<Val>,
    ) -> Result<Val, TemplateError> {
        if let Operand::Func(name) = &cmd.args[0] {
            if name == "and" || name == "or" {
                // Short-circuit evaluation, as Go (1.18+) does: stop at the first operand that
                // decides the result.
                let want = name == "or";
                let mut last = Val::Nil;
                let n = cmd.args.len() - 1 + usize::from(piped.is_some());
                if n == 0 {
                    return Err(xerr(format!(
                        "wrong number of args for {name}: want at least 1 got 0"
                    )));
                }
                for a in &cmd.args[1..] {
                    let v = self.operand(a, dot)?;
                    if truthy(&v) == want {
                        return Ok(v);
                    }
                    last = v;
                }
                if let Some(v) = piped {
                    return Ok(v);
                }
                return Ok(last);
            }
            let mut args = Vec::with_capacity(cmd.args.len());
            for a in &cmd.args[1..] {
                args.push(self.operand(a, dot)?);
            }
            args.extend(piped);
            return self.call(name, args);
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
            Operand::Func(name) => self.call(name, Vec::new())?,
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
                // ... and a missing key of `args`' map is the zero interface: no value.
                Val::Dict(m) => m.get(f).cloned().unwrap_or(Val::Nil),
                Val::Sample(s) => match f.as_str() {
                    "Labels" => Val::Map(s.labels),
                    "Value" => Val::Num(s.value),
                    _ => {
                        return Err(xerr(format!(
                            "can't evaluate field {f} in type *template.sample"
                        )));
                    }
                },
                Val::Nil => Val::Nil,
                other => {
                    return Err(xerr(format!(
                        "can't evaluate field {f} in type {}",
                        type_name(&other)
                    )));
                }
            };
        }
        Ok(v)
    }

    fn call(&mut self, name: &str, args: Vec<Val>) -> Result<Val, TemplateError> {
        // As Go reports an error a function returns.
        self.call_inner(name, args)
            .map_err(|e| xerr(format!("error calling {name}: {e}")))
    }

    fn call_inner(&mut self, name: &str, args: Vec<Val>) -> Result<Val, String> {
        let one = |args: &[Val]| -> Result<f64, String> {
            arity(name, args, 1)?;
            to_float(&args[0])
        };
        let s1 = |args: &[Val]| -> Result<String, String> {
            arity(name, args, 1)?;
            Ok(to_string(&args[0]))
        };
        let sample = |v: &Val| -> Result<SampleVal, String> {
            match v {
                Val::Sample(s) => Ok(s.clone()),
                other => Err(format!(
                    "wrong type for value; expected *template.sample; got {}",
                    type_name(other)
                )),
            }
        };
        Ok(match name {
            // ---- queries
            "query" => {
                arity(name, &args, 1)?;
                let Val::Str(q) = &args[0] else {
                    return Err(format!(
                        "wrong type for value; expected string; got {}",
                        type_name(&args[0])
                    ));
                };
                let Some(run) = self.ctx.query else {
                    return Err("no time series store to query here (query works in alerting rules' labels and annotations)".into());
                };
                Val::Samples(
                    run(q)?
                        .into_iter()
                        .map(|s| SampleVal {
                            labels: map_of(&s.labels),
                            value: s.value,
                        })
                        .collect(),
                )
            }
            "first" => {
                arity(name, &args, 1)?;
                match &args[0] {
                    Val::Samples(v) => match v.first() {
                        Some(s) => Val::Sample(s.clone()),
                        None => return Err("first() called on vector with no elements".into()),
                    },
                    other => {
                        return Err(format!(
                            "wrong type for value; expected template.queryResult; got {}",
                            type_name(other)
                        ));
                    }
                }
            }
            "label" => {
                arity(name, &args, 2)?;
                let s = sample(&args[1])?;
                Val::Str(
                    s.labels
                        .get(&to_string(&args[0]))
                        .cloned()
                        .unwrap_or_default(),
                )
            }
            "value" => {
                arity(name, &args, 1)?;
                Val::Num(sample(&args[0])?.value)
            }
            "strvalue" => {
                arity(name, &args, 1)?;
                Val::Str(
                    sample(&args[0])?
                        .labels
                        .get("__value__")
                        .cloned()
                        .unwrap_or_default(),
                )
            }
            "sortByLabel" => {
                arity(name, &args, 2)?;
                let by = to_string(&args[0]);
                let Val::Samples(mut v) = args[1].clone() else {
                    return Err(format!(
                        "wrong type for value; expected template.queryResult; got {}",
                        type_name(&args[1])
                    ));
                };
                // stable, as Go's sort.Stable
                v.sort_by(|a, b| {
                    let la = a.labels.get(&by).map_or("", |s| s.as_str());
                    let lb = b.labels.get(&by).map_or("", |s| s.as_str());
                    la.cmp(lb)
                });
                Val::Samples(v)
            }
            // ---- numbers, times and durations
            "humanize" => Val::Str(humanize(one(&args)?)),
            "humanize1024" => Val::Str(humanize1024(one(&args)?)),
            "humanizePercentage" => Val::Str(format!("{}%", fmt_g(one(&args)? * 100.0, Some(4)))),
            "humanizeDuration" => Val::Str(humanize_duration(one(&args)?)),
            "humanizeTimestamp" => Val::Str(humanize_timestamp(one(&args)?)),
            "toTime" => Val::Time(float_to_time_ms(one(&args)?)?),
            "toDuration" => Val::Dur(float_to_duration_ns(one(&args)?)?),
            "parseDuration" => {
                let s = s1(&args)?;
                let d = crate::common::Duration::parse(&s)
                    .map_err(|_| format!("not a valid duration string: {s:?}"))?;
                Val::Num(d.as_millis_i64() as f64 / 1000.0)
            }
            // ---- strings
            "printf" => {
                let Some(Val::Str(f)) = args.first() else {
                    return Err("first argument must be a format string".into());
                };
                Val::Str(sprintf(f, &args[1..]))
            }
            "print" => Val::Str(sprint(&args)),
            "println" => {
                // fmt.Sprintln: always a space between operands, then a newline
                let mut s = String::new();
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    print_val(a, &mut s);
                }
                s.push('\n');
                Val::Str(s)
            }
            "urlquery" => Val::Str(query_escape(&eval_args(&args))),
            // Prometheus 3.8: Go's url.QueryEscape of one string
            "urlQueryEscape" => Val::Str(query_escape(&s1(&args)?)),
            // Prometheus 3.6: the evaluation time, in seconds
            "now" => {
                arity(name, &args, 0)?;
                let ms = self.ctx.now_ms.unwrap_or_else(crate::common::time::now_ms);
                Val::Num(ms as f64 / 1000.0)
            }
            "html" => Val::Str(html_escape(&eval_args(&args))),
            "js" => Val::Str(js_escape(&eval_args(&args))),
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
            "stripPort" => Val::Str(strip_port(&s1(&args)?)),
            "stripDomain" => Val::Str(strip_domain(&s1(&args)?)),
            "graphLink" => Val::Str(format!(
                "/graph?g0.expr={}&g0.tab=0",
                query_escape(&s1(&args)?)
            )),
            "tableLink" => Val::Str(format!(
                "/graph?g0.expr={}&g0.tab=1",
                query_escape(&s1(&args)?)
            )),
            "reReplaceAll" => {
                arity(name, &args, 3)?;
                let re = regex::Regex::new(&to_string(&args[0])).map_err(|e| e.to_string())?;
                // Go's $1 expansion matches regex's.
                Val::Str(
                    re.replace_all(&to_string(&args[2]), to_string(&args[1]).as_str())
                        .into_owned(),
                )
            }
            "match" => {
                arity(name, &args, 2)?;
                let re = regex::Regex::new(&to_string(&args[0])).map_err(|e| e.to_string())?;
                Val::Bool(re.is_match(&to_string(&args[1])))
            }
            // ---- others
            "args" => Val::Dict(
                args.into_iter()
                    .enumerate()
                    .map(|(i, a)| (format!("arg{i}"), a))
                    .collect(),
            ),
            "externalURL" => {
                arity(name, &args, 0)?;
                Val::Str(self.data.external_url.to_string())
            }
            "pathPrefix" => {
                arity(name, &args, 0)?;
                Val::Str(url_path(self.data.external_url).to_string())
            }
            // ---- Go's builtins
            "eq" => {
                if args.len() < 2 {
                    return Err("missing argument for comparison".into());
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
                // As Go's text/template: only `<` and `==` are primitive; `gt` is "not
                // `le`", `ge` is "not `lt`". So with NaN (never `<`, never `==`), `gt NaN 1`
                // and `ge NaN 1` are true, `lt` and `le` false.
                let (a, b) = (&args[0], &args[1]);
                let lt = compare(a, b)? == std::cmp::Ordering::Less && !is_nan_pair(a, b);
                let eq = compare(a, b)? == std::cmp::Ordering::Equal && !is_nan_pair(a, b);
                Val::Bool(match name {
                    "ne" => !eq,
                    "lt" => lt,
                    "le" => lt || eq,
                    "gt" => !(lt || eq),
                    _ => !lt,
                })
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
                    Val::Dict(m) => m.len() as i64,
                    Val::Samples(v) => v.len() as i64,
                    other => return Err(format!("len of type {}", type_name(other))),
                })
            }
            "index" => {
                let Some((first, keys)) = args.split_first() else {
                    return Err("wrong number of args for index: want at least 1 got 0".into());
                };
                let mut v = first.clone();
                for k in keys {
                    v = index(&v, k)?;
                }
                v
            }
            _ => return Err(format!("function {name:?} not defined")),
        })
    }
}

/// One step of `index`.
fn index(v: &Val, k: &Val) -> Result<Val, String> {
    let int = |k: &Val| match k {
        Val::Int(i) => Ok(*i),
        other => Err(format!(
            "cannot index slice/array with type {}",
            type_name(other)
        )),
    };
    Ok(match v {
        // index returns the zero value for a missing key
        Val::Map(m) => Val::Str(m.get(&to_string(k)).cloned().unwrap_or_default()),
        Val::Dict(m) => m.get(&to_string(k)).cloned().unwrap_or(Val::Nil),
        Val::Samples(s) => {
            let i = int(k)?;
            match usize::try_from(i).ok().and_then(|i| s.get(i)) {
                Some(x) => Val::Sample(x.clone()),
                None => return Err(format!("index out of range: {i}")),
            }
        }
        Val::Str(s) => {
            let i = int(k)?;
            match usize::try_from(i).ok().and_then(|i| s.as_bytes().get(i)) {
                Some(b) => Val::Int(i64::from(*b)),
                None => return Err(format!("index out of range: {i}")),
            }
        }
        Val::Nil => return Err("index of untyped nil".into()),
        other => return Err(format!("can't index item of type {}", type_name(other))),
    })
}

/// Go's type names in messages.
fn type_name(v: &Val) -> &'static str {
    match v {
        Val::Nil => "nil",
        Val::Bool(_) => "bool",
        Val::Int(_) => "int",
        Val::Num(_) => "float64",
        Val::Str(_) => "string",
        Val::Map(_) => "map[string]string",
        Val::Dict(_) => "map[string]interface {}",
        Val::Sample(_) => "*template.sample",
        Val::Samples(_) => "template.queryResult",
        Val::Time(_) => "*time.Time",
        Val::Dur(_) => "*time.Duration",
        Val::Root => "struct",
    }
}

pub(super) fn truthy(v: &Val) -> bool {
    match v {
        Val::Nil => false,
        Val::Bool(b) => *b,
        Val::Int(i) => *i != 0,
        Val::Num(n) => *n != 0.0,
        Val::Str(s) => !s.is_empty(),
        Val::Map(m) => !m.is_empty(),
        Val::Dict(m) => !m.is_empty(),
        Val::Samples(s) => !s.is_empty(),
        // non-nil pointers
        Val::Sample(_) | Val::Time(_) | Val::Dur(_) | Val::Root => true,
    }
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Val]) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Val::Str(_)) && !matches!(args[i - 1], Val::Str(_)) {
            s.push(' ');
        }
        print_val(a, &mut s);
    }
    s
}

/// The text an escaping builtin (`urlquery`, `html`, `js`) works on: its one string
/// argument, else `fmt.Sprint` of all of them.
fn eval_args(args: &[Val]) -> String {
    match args {
        [Val::Str(s)] => s.clone(),
        _ => sprint(args),
    }
}

/// Prometheus' `ConvertToFloat`: numbers, numeric strings and durations (as seconds).
fn to_float(v: &Val) -> Result<f64, String> {
    match v {
        Val::Num(n) => Ok(*n),
        Val::Int(i) => Ok(*i as f64),
        Val::Dur(ns) => Ok(*ns as f64 / 1e9),
        Val::Str(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", type_name(other))),
    }
}

fn arity(name: &str, args: &[Val], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

/// Either side a NaN: no order and no equality hold.
fn is_nan_pair(a: &Val, b: &Val) -> bool {
    matches!(a, Val::Num(x) if x.is_nan()) || matches!(b, Val::Num(y) if y.is_nan())
}

fn compare(a: &Val, b: &Val) -> Result<std::cmp::Ordering, String> {
    use std::cmp::Ordering;
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
        (Val::Num(_) | Val::Int(_), Val::Num(_) | Val::Int(_)) => {
            let (x, y) = (to_float(a)?, to_float(b)?);
            Ok(x.partial_cmp(&y).unwrap_or(Ordering::Less))
        }
        (Val::Dur(x), Val::Dur(y)) => Ok(x.cmp(y)),
        _ => Err("incompatible types for comparison".into()),
    }
}

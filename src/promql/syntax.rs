//! A recognizer for PromQL's grammar that runs before the parser (promql-parser), for two
//! things that parser does not give: bounded work (an expression of more than
//! [`MAX_TOKENS`] tokens or nested deeper than [`MAX_DEPTH`] is refused up front, in linear
//! time, instead of holding a core for seconds and risking the stack of every recursive walk
//! over the tree), and errors as promtool words them: where (`1:7:`) and what was expected
//! (`unexpected end of input`, `unexpected identifier "bar"`), which the parser reduces to
//! "invalid promql query".
//!
//! It accepts a superset of what the parser accepts (it checks shape, not types), so it
//! never turns a valid expression into an error; its message is used only where the parser
//! failed too.

/// The most tokens an expression may have (a 4-term `a + b` has 3). Real rules stay under a
/// few hundred; promtool takes seconds on a 32,000-term sum.
pub const MAX_TOKENS: usize = 20_000;

/// The deepest an expression may nest: parentheses, calls, aggregations and each binary
/// operator of a chain (the tree of `1+1+1` is as deep as it has operators).
pub const MAX_DEPTH: usize = 256;

/// A syntax error at byte offset `pos` of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: usize,
    pub message: String,
    /// A limit was exceeded (the expression may be valid PromQL, but too big to take).
    pub limit: bool,
}

impl SyntaxError {
    /// `line:col: message`, as Prometheus' ParseErr (col in bytes from the line start).
    pub fn render(&self, input: &str) -> String {
        let pos = self.pos.min(input.len());
        let before = &input.as_bytes()[..pos];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = pos
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        format!("{line}:{col}: parse error: {}", self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Ident,
    Number,
    Duration,
    Str,
    Op,    // binary operators, `=`-family matchers included
    Punct, // ( ) { } [ ] , :
    At,
    Eof,
}

#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    kind: Kind,
    text: &'a str,
    pos: usize,
}

impl Tok<'_> {
    /// Prometheus' `Item.desc()`: `identifier "bar"`, `number "1"`, `"}"`, `<op:+>`, ...
    fn desc(&self) -> String {
        match self.kind {
            Kind::Eof => "end of input".into(),
            Kind::Ident if is_keyword(self.text) => format!("<{}>", self.text),
            Kind::Ident if is_aggregator(self.text) => format!("<aggr:{}>", self.text),
            Kind::Ident if self.text.contains(':') => format!("metric identifier {:?}", self.text),
            Kind::Ident => format!("identifier {:?}", self.text),
            Kind::Number => format!("number {:?}", self.text),
            Kind::Duration => format!("duration {:?}", self.text),
            Kind::Str => format!("string {:?}", self.text),
            Kind::Op if is_binop(self.text) => format!("<op:{}>", self.text),
            Kind::Op | Kind::Punct | Kind::At => format!("{:?}", self.text),
        }
    }
}

fn is_keyword(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "offset" | "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" | "bool"
    )
}

fn is_aggregator(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "sum"
            | "avg"
            | "count"
            | "min"
            | "max"
            | "group"
            | "stddev"
            | "stdvar"
            | "topk"
            | "bottomk"
            | "count_values"
            | "quantile"
            | "limitk"
            | "limit_ratio"
    )
}

fn is_set_op(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "and" | "or" | "unless" | "atan2"
    )
}

fn is_binop(s: &str) -> bool {
    matches!(
        s,
        "+" | "-" | "*" | "/" | "%" | "^" | "==" | "!=" | "<" | "<=" | ">" | ">="
    ) || is_set_op(s)
}

fn err(pos: usize, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        pos,
        message: message.into(),
        limit: false,
    }
}

/// `1`, `1.5`, `.5`, `1e-3`, `0x1f`.
fn is_number(t: &str) -> bool {
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()),
        None => t.parse::<f64>().is_ok() && !t.contains(['i', 'I', 'n', 'N']),
    }
}

/// The longest duration Prometheus represents: `i64::MAX` nanoseconds.
const MAX_DURATION_SECONDS: f64 = i64::MAX as f64 / 1e9;

/// The seconds a duration (`1h30m`) or a number of seconds (`300`, `1e3`) stands for; `None`
/// when it is neither or not a finite, non-negative amount.
fn duration_seconds(t: &str) -> Option<f64> {
    if is_number(t) {
        let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).map_or(f64::INFINITY, |v| v as f64),
            None => t.parse::<f64>().ok()?,
        };
        return (v.is_finite() && v >= 0.0).then_some(v);
    }
    let mut total = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
                .len();
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, secs) = [
            ("ms", 0.001),
            ("s", 1.0),
            ("m", 60.0),
            ("h", 3600.0),
            ("d", 86400.0),
            ("w", 604800.0),
            ("y", 31536000.0),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))?;
        rest = &rest[unit.len()..];
        total += n * secs;
    }
    total.is_finite().then_some(total)
}

/// `5m`, `1h30m`, `250ms` (number, unit; repeated).
fn is_duration(t: &str) -> bool {
    let mut rest = t;
    while !rest.is_empty() {
        let n = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
                .len();
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    !t.is_empty()
}

/// Splits the input into tokens (comments and spaces dropped), at most [`MAX_TOKENS`].
fn tokenize(input: &str) -> Result<Vec<Tok<'_>>, SyntaxError> {
    let b = input.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut parens: Vec<usize> = Vec::new();
    let mut bracket: Option<usize> = None;
    let mut brace: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if toks.len() >= MAX_TOKENS {
            return Err(SyntaxError {
                pos: start,
                message: format!(
                    "expression too long: more than {MAX_TOKENS} tokens (split it into recording rules)"
                ),
                limit: true,
            });
        }
        let in_range = bracket.is_some();
        let kind = if c.is_ascii_alphabetic() || c == b'_' || (c == b':' && !in_range) {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || (b[i] == b':' && !in_range))
            {
                i += 1;
            }
            let t = &input[start..i];
            if bracket.is_some()
                || brace.is_none() && matches!(t.to_ascii_lowercase().as_str(), "inf" | "nan")
            {
                if bracket.is_some() {
                    Kind::Duration
                } else {
                    Kind::Number
                }
            } else {
                Kind::Ident
            }
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            // numbers (1, 0x1f, 1e-3, .5) and durations (5m, 1h30m, 1.5s in Prometheus 3)
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == b'.'
                    || b[i] == b'_'
                    || ((b[i] == b'+' || b[i] == b'-')
                        && matches!(b[i - 1], b'e' | b'E')
                        && !input[start..i].starts_with("0x")))
            {
                i += 1;
            }
            let t = &input[start..i];
            if is_number(t) {
                Kind::Number
            } else if is_duration(t) {
                Kind::Duration
            } else {
                let digits = t.len()
                    - t.trim_start_matches(|ch: char| ch.is_ascii_digit() || ch == '.')
                        .len();
                return Err(err(
                    start,
                    format!("bad number or duration syntax: {:?}", &t[..digits]),
                ));
            }
        } else if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(err(start, "unterminated quoted string")),
                    Some(&q) if q == c => break,
                    Some(b'\\') if c != b'`' => i += 2,
                    Some(b'\n') if c != b'`' => {
                        return Err(err(start, "unterminated quoted string"));
                    }
                    Some(_) => i += 1,
                }
            }
            i += 1;
            Kind::Str
        } else {
            let two = input.get(i..i + 2).unwrap_or("");
            if matches!(two, "==" | "!=" | "<=" | ">=" | "=~" | "!~") {
                i += 2;
                Kind::Op
            } else {
                i += 1;
                match c {
                    b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' => Kind::Op,
                    b'@' => Kind::At,
                    b'(' => {
                        parens.push(start);
                        Kind::Punct
                    }
                    b')' => {
                        if parens.pop().is_none() {
                            return Err(err(i, "unexpected right parenthesis ')'"));
                        }
                        Kind::Punct
                    }
                    b'[' => {
                        bracket = Some(start);
                        Kind::Punct
                    }
                    b']' => {
                        if bracket.take().is_none() {
                            return Err(err(i, "unexpected right bracket ']'"));
                        }
                        Kind::Punct
                    }
                    b'{' => {
                        brace = Some(start);
                        Kind::Punct
                    }
                    b'}' => {
                        if brace.take().is_none() {
                            return Err(err(i, "unexpected right brace '}'"));
                        }
                        Kind::Punct
                    }
                    b',' | b':' => Kind::Punct,
                    _ => {
                        let ch = input[start..].chars().next().unwrap_or('?');
                        i = start + ch.len_utf8();
                        return Err(err(i, format!("unexpected character: {ch:?}")));
                    }
                }
            }
        };
        toks.push(Tok {
            kind,
            text: &input[start..i],
            pos: start,
        });
    }
    let end = input.len() + 1;
    if brace.is_some() {
        return Err(err(end, "unexpected end of input inside braces"));
    }
    if bracket.is_some() {
        return Err(err(end, "unclosed left bracket"));
    }
    if !parens.is_empty() {
        return Err(err(end, "unclosed left parenthesis"));
    }
    toks.push(Tok {
        kind: Kind::Eof,
        text: "",
        pos: input.len(),
    });
    Ok(toks)
}

/// What the recognizer saw of a well-formed expression: its calls, to place the parser's
/// type errors.
#[derive(Debug, Default, PartialEq)]
pub struct Shape {
    calls: Vec<CallSite>,
}

/// A function call or aggregation: its name (as written), where the name is, and the byte
/// span of each argument.
#[derive(Debug, PartialEq)]
struct CallSite {
    name: String,
    pos: usize,
    args: Vec<(usize, usize)>,
}

/// Checks `input` against PromQL's grammar and the limits.
pub fn check(input: &str) -> Result<Shape, SyntaxError> {
    let toks = tokenize(input)?;
    if toks.len() == 1 {
        return Err(err(input.len() + 1, "no expression found in input"));
    }
    let mut p = Parser {
        toks,
        at: 0,
        depth: 0,
        calls: Vec::new(),
    };
    p.expr()?;
    let t = p.peek();
    if t.kind != Kind::Eof {
        return Err(p.unexpected("", ""));
    }
    Ok(Shape { calls: p.calls })
}

/// The parser's error for a well-formed `input` (a type error, an unknown function) in
/// Prometheus' words and with a place: the argument of the wrong type, the unknown name,
/// else the start of the expression.
pub fn explain(input: &str, shape: &Shape, message: &str) -> String {
    let m = message.replace('\'', "\"");
    let start = input.len() - input.trim_start().len();
    let at = |pos: usize, msg: String| {
        SyntaxError {
            pos,
            message: msg,
            limit: false,
        }
        .render(input)
    };
    if let Some(name) = m
        .strip_prefix("unknown function with name \"")
        .and_then(|r| r.strip_suffix('"'))
    {
        let pos = shape
            .calls
            .iter()
            .find(|c| c.name == name)
            .map_or(start, |c| c.pos);
        return at(pos, m);
    }
    // `expected type matrix in call to function "rate", got vector`
    if let Some((head, got)) = m
        .strip_prefix("expected type ")
        .and_then(|r| r.rsplit_once(", got "))
        && let Some((want, context)) = head.split_once(" in ")
    {
        let words = |t: &str| match t {
            "vector" => "instant vector".to_string(),
            "matrix" => "range vector".to_string(),
            other => other.to_string(),
        };
        let (calls, context): (Vec<&CallSite>, String) =
            match context.strip_prefix("call to function \"") {
                Some(f) => {
                    let f = f.trim_end_matches('"');
                    let calls = shape.calls.iter().filter(|c| c.name == f).collect();
                    (calls, context.to_string())
                }
                None => {
                    let calls = shape
                        .calls
                        .iter()
                        .filter(|c| is_aggregator(&c.name))
                        .collect();
                    (calls, "aggregation parameter".to_string())
                }
            };
        // the first argument of such a call that is of the type the parser got
        let pos = calls
            .iter()
            .flat_map(|c| c.args.iter())
            .find(|(a, b)| {
                promql_parser::parser::parse(&input[*a..*b])
                    .is_ok_and(|e| e.value_type().to_string() == got)
            })
            .map_or(start, |(a, _)| *a);
        return at(
            pos,
            format!(
                "expected type {} in {context}, got {}",
                words(want),
                words(got)
            ),
        );
    }
    at(start, m)
}

struct Parser<'a> {
    toks: Vec<Tok<'a>>,
    at: usize,
    depth: usize,
    calls: Vec<CallSite>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Tok<'a> {
        self.toks[self.at.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Tok<'a> {
        let t = self.peek();
        if self.at < self.toks.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn is(&self, text: &str) -> bool {
        let t = self.peek();
        matches!(t.kind, Kind::Punct | Kind::Op | Kind::At) && t.text == text
            || t.kind == Kind::Ident && t.text.eq_ignore_ascii_case(text)
    }

    /// `unexpected <what> [in context][, expected x]` at the next token; at the end of the
    /// input the position is one past it, as Prometheus reports.
    fn unexpected(&self, context: &str, expected: &str) -> SyntaxError {
        let t = self.peek();
        let mut m = format!("unexpected {}", t.desc());
        if !context.is_empty() {
            m.push_str(" in ");
            m.push_str(context);
        }
        if !expected.is_empty() {
            m.push_str(", expected ");
            m.push_str(expected);
        }
        let pos = if t.kind == Kind::Eof {
            t.pos + 1
        } else {
            t.pos
        };
        err(pos, m)
    }

    fn expect(&mut self, text: &str, context: &str) -> Result<(), SyntaxError> {
        if self.is(text) {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(context, &format!("{text:?}")))
        }
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError {
                pos: self.peek().pos,
                message: format!(
                    "expression nested too deeply: more than {MAX_DEPTH} levels of parentheses, calls and operators"
                ),
                limit: true,
            });
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<(), SyntaxError> {
        self.enter()?;
        let before = self.depth;
        self.unary()?;
        loop {
            let t = self.peek();
            let op = match t.kind {
                Kind::Op if is_binop(t.text) => true,
                Kind::Ident if is_set_op(t.text) => true,
                _ => false,
            };
            if !op {
                break;
            }
            self.next();
            // each operator of a chain is one more level of the tree
            self.enter()?;
            if self.is("bool") {
                self.next();
            }
            if self.is("on") || self.is("ignoring") {
                self.next();
                self.label_list("grouping opts")?;
                if self.is("group_left") || self.is("group_right") {
                    self.next();
                    if self.is("(") {
                        self.label_list("grouping opts")?;
                    }
                }
            }
            if self.peek().kind == Kind::Eof {
                return Err(self.unexpected("", ""));
            }
            self.unary()?;
        }
        self.depth = before - 1;
        Ok(())
    }

    fn unary(&mut self) -> Result<(), SyntaxError> {
        let mut signs = 0;
        while self.is("+") || self.is("-") {
            self.next();
            signs += 1;
            self.enter()?;
        }
        self.primary()?;
        self.postfix()?;
        self.depth -= signs;
        Ok(())
    }

    fn postfix(&mut self) -> Result<(), SyntaxError> {
        loop {
            if self.is("[") {
                self.next();
                self.duration("range")?;
                if self.is(":") {
                    self.next();
                    if !self.is("]") {
                        self.duration("subquery")?;
                    }
                }
                self.expect("]", "range")?;
            } else if self.is("offset") {
                self.next();
                if self.is("-") || self.is("+") {
                    self.next();
                }
                self.duration("offset")?;
            } else if self.peek().kind == Kind::At {
                self.next();
                if self.is("-") || self.is("+") {
                    self.next();
                }
                let t = self.peek();
                if t.kind == Kind::Number {
                    self.next();
                } else if self.is("start") || self.is("end") {
                    self.next();
                    self.expect("(", "@ modifier")?;
                    self.expect(")", "@ modifier")?;
                } else {
                    return Err(self.unexpected("@", "timestamp"));
                }
            } else {
                return Ok(());
            }
        }
    }

    fn duration(&mut self, context: &str) -> Result<(), SyntaxError> {
        let t = self.peek();
        if matches!(t.kind, Kind::Duration | Kind::Number) {
            // Prometheus' durations are int64 nanoseconds (about 292 years); the parser
            // panics on a float it cannot convert (`up[1e308]`)
            if !duration_seconds(t.text).is_some_and(|s| s <= MAX_DURATION_SECONDS) {
                return Err(SyntaxError {
                    pos: t.pos,
                    message: format!("duration out of range: {}", t.text),
                    limit: true,
                });
            }
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(context, "duration"))
        }
    }

    fn primary(&mut self) -> Result<(), SyntaxError> {
        let t = self.peek();
        match t.kind {
            Kind::Number | Kind::Str => {
                self.next();
                Ok(())
            }
            Kind::Punct if t.text == "(" => {
                self.next();
                self.expr()?;
                self.expect(")", "paren expression")
            }
            Kind::Punct if t.text == "{" => self.matchers(),
            Kind::Ident if is_aggregator(t.text) => self.aggregate(),
            Kind::Ident if is_keyword(t.text) && !self.followed_by("(") => {
                Err(self.unexpected("", ""))
            }
            Kind::Ident => {
                let name = self.next();
                if self.is("(") {
                    self.call_args(name)
                } else if self.is("{") {
                    self.matchers()
                } else {
                    Ok(())
                }
            }
            Kind::Eof => Err(self.unexpected("", "")),
            _ => Err(self.unexpected("", "")),
        }
    }

    fn followed_by(&self, text: &str) -> bool {
        self.toks
            .get(self.at + 1)
            .is_some_and(|t| t.text == text && t.kind == Kind::Punct)
    }

    /// `name` is the token before the parenthesis (a function's or an aggregation's).
    fn call_args(&mut self, name: Tok<'a>) -> Result<(), SyntaxError> {
        self.enter()?;
        self.expect("(", "function call")?;
        let mut args = Vec::new();
        if !self.is(")") {
            loop {
                let start = self.peek().pos;
                self.expr()?;
                args.push((start, self.prev_end()));
                if self.is(",") {
                    self.next();
                    continue;
                }
                break;
            }
        }
        if !self.is(")") {
            return Err(self.unexpected("function call", "\",\" or \")\""));
        }
        self.next();
        self.depth -= 1;
        self.calls.push(CallSite {
            name: name.text.to_string(),
            pos: name.pos,
            args,
        });
        Ok(())
    }

    /// Where the last consumed token ends.
    fn prev_end(&self) -> usize {
        let t = self.toks[self.at.saturating_sub(1)];
        t.pos + t.text.len()
    }

    fn aggregate(&mut self) -> Result<(), SyntaxError> {
        let name = self.next();
        let mut modifier = false;
        if self.is("by") || self.is("without") {
            self.next();
            self.label_list("grouping opts")?;
            modifier = true;
        }
        if !self.is("(") {
            return Err(self.unexpected("aggregation", "\"(\""));
        }
        self.call_args(name)?;
        if !modifier && (self.is("by") || self.is("without")) {
            self.next();
            self.label_list("grouping opts")?;
        }
        Ok(())
    }

    fn label_list(&mut self, context: &str) -> Result<(), SyntaxError> {
        self.expect("(", context)?;
        loop {
            let t = self.peek();
            if self.is(")") {
                break;
            }
            if !matches!(t.kind, Kind::Ident | Kind::Str) {
                return Err(self.unexpected(context, "label"));
            }
            self.next();
            if self.is(",") {
                self.next();
            } else if !self.is(")") {
                return Err(self.unexpected(context, "\",\" or \")\""));
            }
        }
        self.next();
        Ok(())
    }

    fn matchers(&mut self) -> Result<(), SyntaxError> {
        self.expect("{", "label matching")?;
        loop {
            if self.is("}") {
                break;
            }
            let name = self.peek();
            if !matches!(name.kind, Kind::Ident | Kind::Str) {
                return Err(self.unexpected("label matching", "label matching"));
            }
            self.next();
            // `{"my.metric"}`: a quoted name alone selects by metric name
            if name.kind == Kind::Str && (self.is(",") || self.is("}")) {
                if self.is(",") {
                    self.next();
                }
                continue;
            }
            let op = self.peek();
            if !(op.kind == Kind::Op && matches!(op.text, "=" | "!=" | "=~" | "!~")) {
                return Err(self.unexpected("label matching", "label matching operator"));
            }
            self.next();
            if self.peek().kind != Kind::Str {
                return Err(self.unexpected("label matching", "string"));
            }
            self.next();
            if self.is(",") {
                self.next();
            } else if !self.is("}") {
                return Err(self.unexpected("label matching", "\",\" or \"}\""));
            }
        }
        self.next();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_beyond_prometheus_range_are_refused() {
        for e in [
            "up[1e308]",
            "up[5m:1e308]",
            "up offset 1e308",
            "up[300000000y]",
        ] {
            let err = check(e).unwrap_err();
            assert!(
                err.limit && err.message.starts_with("duration out of range"),
                "{e}: {err:?}"
            );
            assert!(crate::promql::parse(e).is_err(), "{e}");
        }
        for e in ["up[300]", "up[5m:1e3]", "up offset 1h30m", "up[1.5]"] {
            assert!(check(e).is_ok(), "{e}");
        }
    }

    fn msg(input: &str) -> String {
        check(input).map_err(|e| e.render(input)).unwrap_err()
    }

    #[test]
    fn accepts_what_prometheus_accepts() {
        for ok in [
            "up",
            "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m])) / on(job) group_left(team) x",
            "-1 + +2 ^ -3",
            "topk(3, x) without (a)",
            "max_over_time(rate(x[5m])[1h:5m] offset -5m) @ start()",
            "x @ 1700000000 offset 1h",
            "{\"my.metric\", a=\"b\"}",
            "count(up) by (job) > bool 1 and on() vector(1) unless x or y atan2 z",
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
            "0x1f + 1e-3 + .5 + Inf - NaN",
            "x[1h30m] # a comment",
            "label_replace(up, \"a\", \"$1\", 'b', `(.*)`)",
            "up{job=\"a\",}",
            "time()",
            "sum without() (x)",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
    }

    #[test]
    fn errors_say_where_and_what_as_promtool() {
        // promtool 2.42's messages for the same inputs (see tests/rules.rs)
        assert_eq!(msg("sum(up"), "1:7: parse error: unclosed left parenthesis");
        assert_eq!(msg("up +"), "1:5: parse error: unexpected end of input");
        assert_eq!(
            msg("up{a=}"),
            "1:6: parse error: unexpected \"}\" in label matching, expected string"
        );
        assert_eq!(
            msg("foo bar"),
            "1:5: parse error: unexpected identifier \"bar\""
        );
        assert_eq!(msg("1 +"), "1:4: parse error: unexpected end of input");
        assert_eq!(msg("up[5m"), "1:6: parse error: unclosed left bracket");
        assert_eq!(
            msg("sum by(a b) (x)"),
            "1:10: parse error: unexpected identifier \"b\" in grouping opts, expected \",\" or \")\""
        );
        assert_eq!(msg("\"abc"), "1:1: parse error: unterminated quoted string");
        assert_eq!(
            msg("x offset"),
            "1:9: parse error: unexpected end of input in offset, expected duration"
        );
        assert_eq!(
            msg(")"),
            "1:2: parse error: unexpected right parenthesis ')'"
        );
        assert_eq!(msg("a\n  + "), "2:5: parse error: unexpected end of input");
        assert_eq!(
            msg("up offset 5x"),
            "1:11: parse error: bad number or duration syntax: \"5\""
        );
    }

    #[test]
    fn type_errors_placed_and_worded_as_promtool() {
        // promtool 2.42's messages for the same inputs (see tests/rules.rs)
        let explain_of = |input: &str| {
            let shape = check(input).expect("well-formed");
            let m = promql_parser::parser::parse(input).unwrap_err();
            explain(input, &shape, &m)
        };
        assert_eq!(
            explain_of("rate(up)"),
            "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector"
        );
        assert_eq!(
            explain_of("sum(up) + nosuch(x)"),
            "1:11: parse error: unknown function with name \"nosuch\""
        );
        assert_eq!(
            explain_of("x + rate(up[5m]) + abs(up[5m])"),
            "1:24: parse error: expected type instant vector in call to function \"abs\", got range vector"
        );
        assert_eq!(
            explain_of("topk(x, up)"),
            "1:6: parse error: expected type scalar in aggregation parameter, got instant vector"
        );
        assert_eq!(
            explain_of("up and 1"),
            "1:1: parse error: set operator \"and\" not allowed in binary scalar expression"
        );
    }

    #[test]
    fn limits_bound_the_work() {
        // 32,000 terms (promtool 2.42: 4.4 s), 100,000 terms, 50,000 nested parentheses: each is
        // refused by a linear scan, with what was exceeded.
        let sum = vec!["1"; 32_000].join("+");
        let e = check(&sum).unwrap_err();
        assert!(
            e.limit && e.message.contains("more than 20000 tokens"),
            "{e:?}"
        );
        let e = check(&vec!["1"; 100_000].join("+")).unwrap_err();
        assert!(e.limit, "{e:?}");
        let nested = format!("{}1{}", "(".repeat(50_000), ")".repeat(50_000));
        assert!(check(&nested).unwrap_err().limit);
        let nested = format!("{}1{}", "(".repeat(300), ")".repeat(300));
        let e = check(&nested).unwrap_err();
        assert!(e.limit && e.message.contains("nested too deeply"), "{e:?}");
        // a long chain of operators is as deep as it is long
        let e = check(&vec!["1"; 300].join("+")).unwrap_err();
        assert!(e.limit && e.message.contains("nested too deeply"), "{e:?}");
        // within the limits: fine
        assert!(check(&vec!["x"; 200].join(" + ")).is_ok());
        let nested = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(check(&nested).is_ok());
    }

    #[test]
    fn the_deepest_accepted_expression_is_walked_on_a_small_stack() {
        // What the limit is for: every recursive walk (parse, support check, evaluation,
        // retention) over the deepest tree the limits let through fits a 2 MiB thread stack
        // (tokio's default), in a debug build.
        let parens = format!("{}x{}", "(".repeat(250), ")".repeat(250));
        let calls = format!("{}x{}", "abs(".repeat(120), ")".repeat(120));
        let chain = vec!["x"; 250].join(" + ");
        let unary = format!("{}x", "-".repeat(250));
        for text in [parens, calls, chain, unary] {
            let t = text.clone();
            let r = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    let store = crate::store::Store::new(i64::MAX / 4);
                    let expr = crate::promql::parse(&t).map_err(|e| e.to_string())?;
                    crate::promql::check_supported(&expr).map_err(|e| e.to_string())?;
                    let _ = crate::promql::max_lookback_ms(&expr);
                    crate::promql::eval_instant(&store, &expr, 0).map_err(|e| e.to_string())?;
                    Ok::<(), String>(())
                })
                .unwrap()
                .join()
                .expect("no stack overflow");
            assert_eq!(r, Ok(()), "{}", &text[..40]);
        }
        // one level more than the limit is refused
        let over = format!("{}x{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(check(&over).unwrap_err().limit);
    }

    #[test]
    fn mutated_expressions_never_panic() {
        // 5,000 mutations: every one is accepted or refused with a placed message.
        let seeds = [
            "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m] offset 1m)) / on(job) group_left x",
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m:1m] @ start())))",
            "label_replace(up, \"a\", \"$1\", 'b', `(.*)`) > bool 0x1f and {\"my.metric\"}",
            "-1e-3 ^ +Inf % count_values(\"v\", x) without (a) unless topk(3, y)",
        ];
        for m in crate::common::mutate::mutations(&seeds, 5_000) {
            if let Err(e) = crate::promql::parse(&m) {
                let text = e.to_string();
                assert!(text.contains("parse error: "), "{m:?}: {text}");
            }
        }
    }
}

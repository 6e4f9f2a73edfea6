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
            let unit = t.trim_start_matches(|ch: char| ch.is_ascii_digit() || ch == '.');
            if !t.starts_with("0x") && !unit.is_empty() && !unit.starts_with(['e', 'E']) {
                Kind::Duration
            } else {
                Kind::Number
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

/// Checks `input` against PromQL's grammar and the limits.
pub fn check(input: &str) -> Result<(), SyntaxError> {
    let toks = tokenize(input)?;
    if toks.len() == 1 {
        return Err(err(input.len() + 1, "no expression found in input"));
    }
    let mut p = Parser {
        toks,
        at: 0,
        depth: 0,
    };
    p.expr()?;
    let t = p.peek();
    if t.kind != Kind::Eof {
        return Err(p.unexpected("", ""));
    }
    Ok(())
}

struct Parser<'a> {
    toks: Vec<Tok<'a>>,
    at: usize,
    depth: usize,
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
                self.next();
                if self.is("(") {
                    self.call_args()
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

    fn call_args(&mut self) -> Result<(), SyntaxError> {
        self.enter()?;
        self.expect("(", "function call")?;
        if !self.is(")") {
            loop {
                self.expr()?;
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
        Ok(())
    }

    fn aggregate(&mut self) -> Result<(), SyntaxError> {
        self.next();
        let mut modifier = false;
        if self.is("by") || self.is("without") {
            self.next();
            self.label_list("grouping opts")?;
            modifier = true;
        }
        if !self.is("(") {
            return Err(self.unexpected("aggregation", "\"(\""));
        }
        self.call_args()?;
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
            assert_eq!(check(ok), Ok(()), "{ok}");
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
    }

    #[test]
    fn limits_bound_the_work() {
        // 32,000 terms (promtool: 9.5 s), 100,000 terms, 50,000 nested parentheses: each is
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
        assert_eq!(check(&vec!["x"; 200].join(" + ")), Ok(()));
        let nested = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(check(&nested), Ok(()));
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
}

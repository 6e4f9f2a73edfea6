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
//! `safeHtml`, `graphLink`, `tableLink`, `externalURL`, `pathPrefix`, `now` (the evaluation
//! time in seconds, Prometheus 3.6) and `urlQueryEscape` (Prometheus 3.8).
//!
//! Parse once with [`Template::parse`] (done when rules load, so bad templates, undefined
//! functions and undefined variables are reported by `medic check`, as Go reports them at
//! parse time), render many times with [`Template::render`] or, where a store is at hand
//! for `query`, [`Template::render_in`]. [`render`] does both.

mod ast;
mod exec;
mod format;
mod parse;

pub(crate) use format::go_duration;

use std::collections::BTreeMap;

pub use ast::{QueryFn, RenderContext, TemplateData, TemplateError};

use ast::{Node, Val};

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
        let (nodes, defs) = parse::parse(text)?;
        Ok(Template {
            nodes,
            defs,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Labels, Sample};

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
        let ctx = RenderContext {
            query: Some(&hook),
            now_ms: None,
        };
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
            "ERR template: 1:21: executing at <first>: error calling first: first() called on vector with no elements"
        );
        assert!(rq(r#"{{ query "bad(" }}"#).contains("error calling query: 1:1: parse error"));
        // without a store, query fails the render
        assert!(
            r(r#"{{ query "up" }}"#, 0.0).starts_with(
                "ERR template: 1:3: executing at <query \"up\">: error calling query: "
            )
        );
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
            "ERR template: 1:3: executing at <parseDuration \"soon\">: error calling parseDuration: not a valid duration string: \"soon\""
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
                .starts_with("ERR template: 1:3: executing at <toTime \"x\">: error calling toTime: strconv.ParseFloat")
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

    #[test]
    fn go_comparisons_with_nan_now_and_url_query_escape() {
        // Go's text/template: `gt` is "not le", `ge` is "not lt"; NaN is neither < nor ==
        assert_eq!(
            r("{{ gt $value 1000.0 }} {{ ge $value 1.0 }}", f64::NAN),
            "true true"
        );
        assert_eq!(
            r("{{ lt $value 1000.0 }} {{ le $value 1.0 }}", f64::NAN),
            "false false"
        );
        assert_eq!(
            r("{{ eq $value $value }} {{ ne $value 1.0 }}", f64::NAN),
            "false true"
        );
        assert_eq!(r("{{ gt $value 1000.0 }}", 5.0), "false");
        // Prometheus 3.8's urlQueryEscape is Go's url.QueryEscape
        assert_eq!(r("{{ urlQueryEscape \"a b&c/d\" }}", 0.0), "a+b%26c%2Fd");
        // Prometheus 3.6's now: the evaluation time in seconds
        let labels = Labels::default();
        let d = TemplateData {
            labels: &labels,
            external_labels: &labels,
            external_url: "",
            value: 0.0,
        };
        let ctx = RenderContext {
            query: None,
            now_ms: Some(1_700_000_000_500),
        };
        let t = Template::parse("{{ now }} {{ now | humanizeTimestamp }}").unwrap();
        assert_eq!(
            t.render_in(&d, &ctx).unwrap(),
            "1.7000000005e+09 2023-11-14 22:13:20.5 +0000 UTC"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        // 50,000 nested parentheses, ifs or else-ifs: an error, not a crashed stack
        let deep = |open: &str, mid: &str, close: &str, n: usize| {
            format!("{}{mid}{}", open.repeat(n), close.repeat(n))
        };
        for text in [
            deep(
                "{{ ",
                &format!("{}1{}", "(".repeat(50_000), ")".repeat(50_000)),
                " }}",
                1,
            ),
            deep("{{ if true }}", "x", "{{ end }}", 50_000),
            format!(
                "{{{{ if false }}}}{}{{{{ end }}}}",
                "{{ else if false }}".repeat(50_000)
            ),
        ] {
            let e = Template::parse(&text).unwrap_err();
            assert!(
                e.to_string().contains("max expression depth exceeded"),
                "{e}"
            );
        }
        // within the bound: fine
        let ok = format!("{{{{ {}1{} }}}}", "(".repeat(50), ")".repeat(50));
        assert_eq!(r(&ok, 0.0), "1");
        // and long flat templates stay linear (100,000 terms)
        let flat = format!("{{{{ print {} }}}}", vec!["1"; 100_000].join(" "));
        assert_eq!(r(&flat, 0.0).len(), 199_999);
    }

    #[test]
    fn mutated_templates_never_panic() {
        let seeds = [
            "{{ range query \"up == 1\" | sortByLabel \"instance\" }}{{ .Labels.instance }} {{ end }}",
            "{{ if gt $value 1.0 }}{{ $value | humanize }}{{ else if lt $value 0.5 }}low{{ else }}-{{ end }}",
            "{{ define \"x\" }}{{ printf \"%.2f\" . }}{{ end }}{{ template \"x\" $value }} {{- $labels.job -}}",
            "{{ with $x := (index $labels \"a\") }}{{ $x | toUpper }}{{ end }}{{/* c */}}",
        ];
        for m in crate::common::mutate::mutations(&seeds, 5_000) {
            if let Ok(t) = Template::parse(&m) {
                let _ = r(&m, 1.5);
                let _ = t.render(&TemplateData {
                    labels: &Labels::default(),
                    external_labels: &Labels::default(),
                    external_url: "",
                    value: f64::NAN,
                });
            }
        }
    }
}

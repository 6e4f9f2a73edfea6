//! The parsed form of a template and the values it works on, shared by the parser, the
//! executor and the formatter.

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
    /// `now`: the evaluation time, milliseconds since the epoch (the wall clock when None).
    pub now_ms: Option<i64>,
}

impl fmt::Debug for RenderContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderContext")
            .field("query", &self.query.map(|_| "<fn>"))
            .field("now_ms", &self.now_ms)
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
    /// An execution error at a command: `line` 1-based, `col0` 0-based bytes (Go's way),
    /// `node` the command as Go prints it.
    #[error("template: {line}:{col0}: executing at <{node}>: {msg}")]
    ExecAt {
        line: usize,
        col0: usize,
        node: String,
        msg: String,
    },
}

/// The definitions Prometheus puts before an alert's template text (`{{$labels :=
/// .Labels}}...`): what shifts Go's columns on the first line.
const ALERT_DEFS_LEN: usize = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}".len();

impl TemplateError {
    /// The error as Prometheus words it for an alert's template named `name`
    /// (`__alert_NAME`): `error executing template __alert_A: template: __alert_A:1:115:
    /// executing "__alert_A" at <query "sum(">: error calling query: ...`.
    pub fn for_alert_template(&self, name: &str) -> String {
        match self {
            TemplateError::ExecAt {
                line,
                col0,
                node,
                msg,
            } => {
                let col = if *line == 1 {
                    ALERT_DEFS_LEN + col0
                } else {
                    *col0
                };
                format!(
                    "error executing template {name}: template: {name}:{line}:{col}: executing {name:?} at <{node}>: {msg}"
                )
            }
            TemplateError::Exec(msg) => {
                format!("error executing template {name}: template: {name}: {msg}")
            }
            TemplateError::Parse { line, column, msg } => {
                let col0 = column.saturating_sub(1);
                let col = if *line == 1 {
                    ALERT_DEFS_LEN + col0
                } else {
                    col0
                };
                format!("error parsing template {name}: template: {name}:{line}:{col}: {msg}")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Node {
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
pub(super) struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`) by this pipeline.
    pub(super) decl: Vec<String>,
    /// `=`: the variables exist and are overwritten (in whichever scope declared them).
    pub(super) assign: bool,
    pub(super) cmds: Vec<Cmd>,
}

/// One command of a pipeline: a function with arguments, or a single operand.
#[derive(Debug, Clone)]
pub(super) struct Cmd {
    pub(super) args: Vec<Operand>,
    /// Where its first token is: 1-based line, 0-based byte in the line (as Go's
    /// `ErrorContext` counts), for execution errors.
    pub(super) line: usize,
    pub(super) col0: usize,
}

impl fmt::Display for Cmd {
    /// Go's `CommandNode.String()`: the arguments, space-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            let op = if self.assign { "=" } else { ":=" };
            write!(f, "{} {op} ", self.decl.join(", "))?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = |f: &mut fmt::Formatter<'_>, fs: &[String]| -> fmt::Result {
            for x in fs {
                write!(f, ".{x}")?;
            }
            Ok(())
        };
        match self {
            Operand::Dot(fs) if fs.is_empty() => f.write_str("."),
            Operand::Dot(fs) => fields(f, fs),
            Operand::Var(n, fs) => {
                f.write_str(n)?;
                fields(f, fs)
            }
            Operand::Func(n) => f.write_str(n),
            Operand::Str(s) => write!(f, "{s:?}"),
            Operand::Num(n) => write!(f, "{n}"),
            Operand::Int(n) => write!(f, "{n}"),
            Operand::Bool(b) => write!(f, "{b}"),
            Operand::Nil => f.write_str("nil"),
            Operand::Paren(p, fs) => {
                write!(f, "({p})")?;
                fields(f, fs)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Operand {
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
pub(super) enum Val {
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
pub(super) struct SampleVal {
    pub(super) labels: BTreeMap<String, String>,
    pub(super) value: f64,
}

pub(super) fn map_of(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

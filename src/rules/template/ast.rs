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

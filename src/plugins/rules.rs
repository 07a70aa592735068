//! The rules DSL (`chancy.rule`): small conditions on job rows used by the [`Pruner`] and
//! [`Reprioritize`] plugins.
//!
//! Python renders values as quoted SQL literals; here every value is a **bound parameter**
//! (`$n` with an explicit cast), so user text never becomes SQL. The SQL shape is otherwise
//! upstream's: `(a) AND (b)`, `EXTRACT(EPOCH FROM (NOW() - created_at)) > $1::int8`, ...
//!
//! ```
//! use chancy::plugins::Rule;
//! let rule = Rule::queue().eq("default").and(Rule::age().gt(60));
//! let rendered = rule.render(1);
//! assert_eq!(
//!     rendered.sql,
//!     r#"("queue" = $1::text) AND (EXTRACT(EPOCH FROM (NOW() - created_at)) > $2::int8)"#
//! );
//! assert_eq!(rendered.params.len(), 2);
//! ```
//!
//! [`Pruner`]: crate::plugins::Pruner
//! [`Reprioritize`]: crate::plugins::Reprioritize

use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use uuid::Uuid;

use crate::job::JobState;

/// A bound value of a rule.
pub type RuleParam = Box<dyn ToSql + Sync + Send>;

/// A field of a job row a rule can test (upstream's `JobRules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// Seconds since the job was created: `EXTRACT(EPOCH FROM (NOW() - created_at))`.
    Age,
    /// The queue name (`queue`).
    Queue,
    /// The job function name (`func`).
    Job,
    /// The job state (`state`).
    State,
    /// When the job was created (`created_at`).
    CreatedAt,
    /// When the job is (or was) due (`scheduled_at`).
    ScheduledAt,
    /// The job id (`id`).
    Id,
    /// The job priority (`priority`).
    Priority,
    /// Attempts made so far (`attempts`).
    Attempts,
}

impl Field {
    /// The SQL expression of the field (a quoted column, or the age expression).
    pub fn sql(self) -> &'static str {
        match self {
            Field::Age => "EXTRACT(EPOCH FROM (NOW() - created_at))",
            Field::Queue => "\"queue\"",
            Field::Job => "\"func\"",
            Field::State => "\"state\"",
            Field::CreatedAt => "\"created_at\"",
            Field::ScheduledAt => "\"scheduled_at\"",
            Field::Id => "\"id\"",
            Field::Priority => "\"priority\"",
            Field::Attempts => "\"attempts\"",
        }
    }

    fn cond(self, op: Op, value: impl Into<Value>) -> Rule {
        Rule::Condition {
            field: self,
            op,
            value: value.into(),
        }
    }

    /// `field = value`.
    pub fn eq(self, value: impl Into<Value>) -> Rule {
        self.cond(Op::Eq, value)
    }

    /// `field != value`.
    pub fn ne(self, value: impl Into<Value>) -> Rule {
        self.cond(Op::Ne, value)
    }

    /// `field < value`.
    pub fn lt(self, value: impl Into<Value>) -> Rule {
        self.cond(Op::Lt, value)
    }

    /// `field <= value`.
    pub fn le(self, value: impl Into<Value>) -> Rule {
        self.cond(Op::Le, value)
    }

    /// `field > value`.
    pub fn gt(self, value: impl Into<Value>) -> Rule {
        self.cond(Op::Gt, value)
    }

    /// `field >= value`.
    pub fn ge(self, value: impl Into<Value>) -> Rule {
        self.cond(Op::Ge, value)
    }

    /// `field ILIKE '%text%'`: case-insensitive substring match; `%`, `_` and `\` in `text`
    /// match themselves.
    pub fn contains(self, text: impl Into<String>) -> Rule {
        let text: String = text.into();
        let mut pattern = String::with_capacity(text.len() + 2);
        pattern.push('%');
        for c in text.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        self.cond(Op::ILike, Value::Text(pattern))
    }

    /// `field ILIKE pattern`, with the pattern's `%` and `_` wildcards active.
    pub fn ilike(self, pattern: impl Into<String>) -> Rule {
        self.cond(Op::ILike, Value::Text(pattern.into()))
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `ILIKE`
    ILike,
}

impl Op {
    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::ILike => "ILIKE",
        }
    }
}

/// A value compared against a field; bound as a parameter with the cast shown.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer (`$n::int8`).
    Int(i64),
    /// A float (`$n::float8`).
    Float(f64),
    /// Text (`$n::text`).
    Text(String),
    /// A timestamp (`$n::timestamptz`).
    Time(DateTime<Utc>),
    /// A job id (`$n::uuid`).
    Uuid(Uuid),
}

impl Value {
    fn cast(&self) -> &'static str {
        match self {
            Value::Int(_) => "int8",
            Value::Float(_) => "float8",
            Value::Text(_) => "text",
            Value::Time(_) => "timestamptz",
            Value::Uuid(_) => "uuid",
        }
    }

    fn param(&self) -> RuleParam {
        match self {
            Value::Int(v) => Box::new(*v),
            Value::Float(v) => Box::new(*v),
            Value::Text(v) => Box::new(v.clone()),
            Value::Time(v) => Box::new(*v),
            Value::Uuid(v) => Box::new(*v),
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident via $conv:expr),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant($conv(v))
            }
        })*
    };
}

value_from! {
    i64 => Int via |v| v,
    i32 => Int via i64::from,
    u32 => Int via i64::from,
    f64 => Float via |v| v,
    &str => Text via String::from,
    String => Text via |v| v,
    DateTime<Utc> => Time via |v| v,
    Uuid => Uuid via |v| v,
    JobState => Text via |s: JobState| s.as_str().to_string(),
}

/// A condition on job rows, combinable with [`Rule::and`] and [`Rule::or`].
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// `<field> <op> <value>`.
    Condition {
        /// The field.
        field: Field,
        /// The operator.
        op: Op,
        /// The bound value.
        value: Value,
    },
    /// `(a) AND (b)`.
    And(Box<Rule>, Box<Rule>),
    /// `(a) OR (b)`.
    Or(Box<Rule>, Box<Rule>),
}

/// A rule rendered for embedding in a statement: SQL text with `$n` placeholders and the
/// values to bind to them, in order.
#[non_exhaustive]
pub struct Rendered {
    /// The SQL fragment.
    pub sql: String,
    /// The values of the placeholders, numbered from the `first` given to [`Rule::render`].
    pub params: Vec<RuleParam>,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("sql", &self.sql)
            .field("params", &self.params)
            .finish()
    }
}

impl Rendered {
    /// The parameters as the references `postgres` query methods take.
    pub fn param_refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

impl Rule {
    /// Seconds since creation.
    pub fn age() -> Field {
        Field::Age
    }

    /// The queue name.
    pub fn queue() -> Field {
        Field::Queue
    }

    /// The job function name (upstream's `Job()`).
    pub fn job() -> Field {
        Field::Job
    }

    /// The job state.
    pub fn state() -> Field {
        Field::State
    }

    /// The creation time.
    pub fn created_at() -> Field {
        Field::CreatedAt
    }

    /// The scheduled time.
    pub fn scheduled_at() -> Field {
        Field::ScheduledAt
    }

    /// The job id.
    pub fn id() -> Field {
        Field::Id
    }

    /// The priority.
    pub fn priority() -> Field {
        Field::Priority
    }

    /// The attempts made.
    pub fn attempts() -> Field {
        Field::Attempts
    }

    /// Both rules: `(self) AND (other)`.
    #[must_use]
    pub fn and(self, other: Rule) -> Rule {
        Rule::And(Box::new(self), Box::new(other))
    }

    /// Either rule: `(self) OR (other)`.
    #[must_use]
    pub fn or(self, other: Rule) -> Rule {
        Rule::Or(Box::new(self), Box::new(other))
    }

    /// Renders the rule with placeholders numbered from `first` (`$first`, `$first+1`, ...),
    /// so it can be embedded in a statement that already binds `first - 1` parameters.
    pub fn render(&self, first: usize) -> Rendered {
        let mut params = Vec::new();
        let sql = self.render_into(first, &mut params);
        Rendered { sql, params }
    }

    fn render_into(&self, first: usize, params: &mut Vec<RuleParam>) -> String {
        match self {
            Rule::Condition { field, op, value } => {
                let n = first + params.len();
                params.push(value.param());
                format!("{} {} ${n}::{}", field.sql(), op.sql(), value.cast())
            }
            Rule::And(a, b) | Rule::Or(a, b) => {
                let joiner = if matches!(self, Rule::And(..)) {
                    "AND"
                } else {
                    "OR"
                };
                let left = a.render_into(first, params);
                let right = b.render_into(first, params);
                format!("({left}) {joiner} ({right})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debug_params(r: &Rendered) -> Vec<String> {
        r.params.iter().map(|p| format!("{p:?}")).collect()
    }

    #[test]
    fn every_field_renders_its_column() {
        let cases = [
            (Rule::age(), "EXTRACT(EPOCH FROM (NOW() - created_at))"),
            (Rule::queue(), "\"queue\""),
            (Rule::job(), "\"func\""),
            (Rule::state(), "\"state\""),
            (Rule::created_at(), "\"created_at\""),
            (Rule::scheduled_at(), "\"scheduled_at\""),
            (Rule::id(), "\"id\""),
            (Rule::priority(), "\"priority\""),
            (Rule::attempts(), "\"attempts\""),
        ];
        for (field, sql) in cases {
            assert_eq!(field.eq(1).render(1).sql, format!("{sql} = $1::int8"));
        }
    }

    #[test]
    fn operators_and_casts() {
        let r = |rule: Rule| rule.render(1).sql;
        assert_eq!(r(Rule::priority().ne(1)), "\"priority\" != $1::int8");
        assert_eq!(r(Rule::priority().lt(1)), "\"priority\" < $1::int8");
        assert_eq!(r(Rule::priority().le(1)), "\"priority\" <= $1::int8");
        assert_eq!(
            r(Rule::age().gt(1.5)),
            format!("{} > $1::float8", Field::Age.sql())
        );
        assert_eq!(r(Rule::attempts().ge(2)), "\"attempts\" >= $1::int8");
        assert_eq!(
            r(Rule::state().eq(JobState::Failed)),
            "\"state\" = $1::text"
        );
        assert_eq!(r(Rule::id().eq(Uuid::nil())), "\"id\" = $1::uuid");
        assert_eq!(
            r(Rule::created_at().lt(Utc::now())),
            "\"created_at\" < $1::timestamptz"
        );
    }

    #[test]
    fn contains_escapes_wildcards_and_ilike_does_not() {
        let rule = Rule::job().contains("50%_a\\b");
        let rendered = rule.render(1);
        assert_eq!(rendered.sql, "\"func\" ILIKE $1::text");
        assert_eq!(debug_params(&rendered), vec![r#""%50\\%\\_a\\\\b%""#]);
        let rendered = Rule::job().ilike("app.%").render(1);
        assert_eq!(rendered.sql, "\"func\" ILIKE $1::text");
        assert_eq!(debug_params(&rendered), vec![r#""app.%""#]);
    }

    #[test]
    fn combinators_nest_and_number_from_the_offset() {
        let rule = Rule::queue()
            .eq("a")
            .or(Rule::queue().eq("b"))
            .and(Rule::age().gt(10));
        let rendered = rule.render(3);
        assert_eq!(
            rendered.sql,
            "((\"queue\" = $3::text) OR (\"queue\" = $4::text)) AND \
             (EXTRACT(EPOCH FROM (NOW() - created_at)) > $5::int8)"
        );
        assert_eq!(debug_params(&rendered), vec!["\"a\"", "\"b\"", "10"]);
        assert_eq!(rendered.param_refs().len(), 3);
    }

    #[test]
    fn hostile_text_stays_a_parameter() {
        let rendered = Rule::queue().eq("x'; DROP TABLE jobs; --").render(1);
        assert_eq!(rendered.sql, "\"queue\" = $1::text");
        assert!(!rendered.sql.contains("DROP"));
    }
}

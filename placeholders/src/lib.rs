//! Eclipse Ditto's placeholders and placeholder functions, as connections use them: target addresses
//! (`telemetry/{{ thing:namespace }}/{{ thing:name }}`), header mappings (`{{ header:correlation-id }}`),
//! enforcement, reply targets, payload mapping conditions (`fn:filter(header:x,'eq','true')`) and
//! acknowledgement request filters.
//!
//! A [`Template`] is parsed once (when a connection is created or loaded), checked with [`Template::validate`]
//! against the placeholders the place allows, and resolved per message with a [`Resolver`] that knows the
//! message. Resolution follows Ditto's `ExpressionResolver.substitute`:
//!
//! * literal text is kept, each `{{ ... }}` expression (and Ditto's legacy `${...}`) is a pipeline;
//! * if any expression is unresolved, the whole template is [`Resolution::Unresolved`];
//! * deleted expressions (`fn:delete()`) are left out; if every part of the template is deleted, it is
//!   [`Resolution::Deleted`];
//! * an expression with several values (`fn:split(' ')`, multi-valued placeholders) expands the template to
//!   the cartesian product of all values, in order.
//!
//! Errors carry Ditto's error codes, messages and descriptions ([`PlaceholderError`]).
//!
//! Differences from Ditto, all in cases where Ditto throws while resolving a message or has no limit:
//!
//! * everything Ditto reports when validating a template (malformed expressions, unknown functions, wrong
//!   parameters, too many functions) is reported by [`Template::parse`]; unknown placeholders by
//!   [`Template::validate`]; resolving a message never fails: an unknown placeholder, an unresolved RQL function
//!   of `fn:filter`, an unresolved `to` of `fn:replace`, invalid input to `fn:url-decode` / `fn:base64-decode`
//!   resolve as unresolved instead of throwing;
//! * `fn:split` splits at the literal separator (Ditto passes it to Java's `String.split` as a regular expression);
//! * `time:` truncation to weeks, months and years uses UTC (Ditto the JVM's default zone);
//! * nesting function parameters deeper than 16 levels is "too complex"; a template expanding to more than
//!   [`MAX_RESOLVED_VALUES`] strings, or to more than [`MAX_RESOLVED_BYTES`] bytes, is unresolved, and so is a
//!   function whose result would (`fn:split`, `fn:replace`, `fn:join`, `fn:format`);
//! * `fn:format` sections nest at most 16 levels deep (deeper is an invalid signature);
//! * `fn:filter`'s `like` does not match when the pattern's length times the value's exceeds 16,777,216 (the
//!   match costs that many steps).
//!
//! No input drives a recursion deeper than these limits, and parsing and resolving take time linear in the
//! template and the values (the `like` of `fn:filter` within its limit).

mod element;
mod error;
mod filter;
mod format;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz;
mod pipeline;
mod resolver;
mod syntax;
mod time;

use chrono::{DateTime, Utc};

pub use error::{
    CODE_FUNCTION_SIGNATURE_INVALID, CODE_FUNCTION_TOO_COMPLEX, CODE_FUNCTION_UNKNOWN,
    CODE_PLACEHOLDER_NOT_RESOLVABLE, CODE_UNRESOLVED, MAX_PIPELINE_FUNCTIONS, PlaceholderError,
};
pub use resolver::{MapResolver, MapResolverBuilder};

use element::Element;
use pipeline::{Pipeline, PlaceholderRef};
use syntax::RawSegment;

/// What a placeholder name resolves to for one message. Implemented by the host.
pub trait Resolver {
    /// `prefix` e.g. "header", `name` e.g. "correlation-id". None = unresolvable.
    ///
    /// Several values (e.g. an array) make the template resolve to several strings. The name is passed as
    /// written in the template: header names are to be compared case-insensitively by the resolver.
    fn resolve(&self, prefix: &str, name: &str) -> Option<Vec<String>>;

    /// The clock for `time:` placeholders, which this crate resolves itself when [`Resolver::resolve`]
    /// returns `None` for them.
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The result of resolving a template or expression for one message (Ditto's `PipelineElement` types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// One or more strings (never empty).
    Resolved(Vec<String>),
    /// A placeholder could not be resolved (and no `fn:default` applied).
    Unresolved,
    /// `fn:delete()` removed it: the header mapping entry, target etc. is to be dropped.
    Deleted,
}

impl Resolution {
    /// The first resolved value (Ditto's `PlaceholderFilter.applyOrElseDelete`).
    pub fn first(&self) -> Option<&str> {
        self.values().first().map(String::as_str)
    }

    /// All resolved values; empty when unresolved or deleted.
    pub fn values(&self) -> &[String] {
        match self {
            Resolution::Resolved(values) => values,
            _ => &[],
        }
    }

    /// Whether at least one value was resolved.
    pub fn is_resolved(&self) -> bool {
        matches!(self, Resolution::Resolved(_))
    }
}

impl From<Element> for Resolution {
    fn from(element: Element) -> Self {
        match element {
            Element::Resolved(values) => Resolution::Resolved(values),
            Element::Unresolved => Resolution::Unresolved,
            Element::Deleted => Resolution::Deleted,
        }
    }
}

/// The placeholder prefixes available in connections (Ditto's docs, "Scope: Connections", plus `thing-json`
/// and `source`, which connection targets and sources use).
pub const CONNECTION_PLACEHOLDERS: &[&str] = &[
    "entity",
    "thing",
    "policy",
    "connection",
    "feature",
    "header",
    "request",
    "resource",
    "topic",
    "time",
    "thing-json",
    "source",
];

/// A template expanding to more strings than this resolves as [`Resolution::Unresolved`] (a guard against
/// messages that multiply values, e.g. with `fn:split`; Ditto has no such limit).
pub const MAX_RESOLVED_VALUES: usize = 10_000;

/// A template, or a function of it, whose values would hold more bytes than this together resolves as
/// [`Resolution::Unresolved`]: a message cannot make it build gigabytes (a 1 MB header repeated by
/// `fn:split`, `fn:replace('', …)` or `fn:format`). Ditto has no such limit.
pub const MAX_RESOLVED_BYTES: usize = 8 * 1024 * 1024;

/// Every `result` followed by every `value`, in order; `None` when that would be more than
/// [`MAX_RESOLVED_VALUES`] strings or [`MAX_RESOLVED_BYTES`] bytes (nothing is built then).
pub(crate) fn product(results: Vec<String>, values: &[String]) -> Option<Vec<String>> {
    let bytes = |strings: &[String]| strings.iter().map(String::len).sum::<usize>();
    let total = bytes(&results)
        .saturating_mul(values.len())
        .saturating_add(bytes(values).saturating_mul(results.len()));
    if results.len().saturating_mul(values.len()) > MAX_RESOLVED_VALUES
        || total > MAX_RESOLVED_BYTES
    {
        return None;
    }
    Some(
        results
            .iter()
            .flat_map(|result| {
                values.iter().map(move |value| {
                    // Put together without the formatting machinery: this runs per message.
                    let mut joined = String::with_capacity(result.len() + value.len());
                    joined.push_str(result);
                    joined.push_str(value);
                    joined
                })
            })
            .collect(),
    )
}

/// Whether `values` stay within [`MAX_RESOLVED_VALUES`] strings and [`MAX_RESOLVED_BYTES`] bytes.
pub(crate) fn within_budget(values: &[String]) -> bool {
    values.len() <= MAX_RESOLVED_VALUES
        && values.iter().map(String::len).sum::<usize>() <= MAX_RESOLVED_BYTES
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Expression(Pipeline),
}

/// A string with placeholder expressions, parsed once and resolved per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    segments: Vec<Segment>,
}

impl Template {
    /// Parses a template. Fails with Ditto's errors for malformed expressions, unknown functions
    /// (`placeholder:function.unknown`), wrong function parameters (`placeholder:function.signature.invalid`),
    /// more than [`MAX_PIPELINE_FUNCTIONS`] chained functions (`placeholder:function.too.complex`) and
    /// expressions that are neither a placeholder `prefix:name` nor a function (`placeholder:unresolved`).
    /// Text without a closing `}}` stays literal text.
    pub fn parse(text: &str) -> Result<Template, PlaceholderError> {
        let segments = syntax::scan_template(text)
            .into_iter()
            .map(|segment| match segment {
                RawSegment::Literal(literal) => Ok(Segment::Literal(literal.to_string())),
                RawSegment::Expression(expression) => {
                    Pipeline::parse(expression).map(Segment::Expression)
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Template {
            text: text.to_string(),
            segments,
        })
    }

    /// Checks every placeholder prefix/name against the allowed ones; `allowed` lists prefixes like "thing", "header" ...
    ///
    /// Names are checked for the known prefixes (e.g. `thing:id|namespace|name`, `time:now[h]`); other allowed
    /// prefixes accept any non-empty name. Fails with `placeholder:unresolved` like Ditto's validation.
    pub fn validate(&self, allowed: &[&str]) -> Result<(), PlaceholderError> {
        for placeholder in self.placeholder_refs() {
            validate_placeholder(placeholder, allowed)?;
        }
        Ok(())
    }

    /// Resolves the template for one message.
    pub fn resolve(&self, resolver: &dyn Resolver) -> Resolution {
        // Each expression is folded into the results as soon as it is evaluated, so at most one
        // expression's values exist beside results within the budgets.
        let mut results = vec![String::new()];
        let mut all_deleted = !self.segments.is_empty();
        for segment in &self.segments {
            let element = match segment {
                Segment::Literal(literal) => Element::single(literal.as_str()),
                Segment::Expression(pipeline) => pipeline.evaluate(resolver),
            };
            match element {
                Element::Deleted => {}
                Element::Unresolved => return Resolution::Unresolved,
                Element::Resolved(values) => {
                    all_deleted = false;
                    match product(results, &values) {
                        Some(next) => results = next,
                        None => return Resolution::Unresolved,
                    }
                }
            }
        }
        if all_deleted {
            Resolution::Deleted
        } else {
            Resolution::Resolved(results)
        }
    }

    /// Whether the template contains no expression at all.
    pub fn is_literal(&self) -> bool {
        self.segments
            .iter()
            .all(|segment| matches!(segment, Segment::Literal(_)))
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The placeholders used (including those in function parameters) as `prefix:name`, in order.
    pub fn placeholders(&self) -> Vec<String> {
        self.placeholder_refs()
            .into_iter()
            .map(|p| format!("{}:{}", p.prefix, p.name))
            .collect()
    }

    fn placeholder_refs(&self) -> Vec<&PlaceholderRef> {
        let mut out = Vec::new();
        for segment in &self.segments {
            if let Segment::Expression(pipeline) = segment {
                pipeline.placeholders(&mut out);
            }
        }
        out
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Template {
    type Err = PlaceholderError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Template::parse(text)
    }
}

fn validate_placeholder(
    placeholder: &PlaceholderRef,
    allowed: &[&str],
) -> Result<(), PlaceholderError> {
    let PlaceholderRef { prefix, name } = placeholder;
    if allowed.contains(&prefix.as_str()) && supports(prefix, name) {
        Ok(())
    } else {
        Err(PlaceholderError::unresolved(&format!("{prefix}:{name}")))
    }
}

/// The names Ditto's placeholders support (`supports(name)` of each `Placeholder` implementation).
fn supports(prefix: &str, name: &str) -> bool {
    match prefix {
        "thing" | "entity" | "policy" => matches!(name, "id" | "namespace" | "name"),
        "feature" | "connection" => name == "id",
        "topic" => matches!(
            name,
            "full"
                | "namespace"
                | "entityName"
                | "group"
                | "channel"
                | "criterion"
                | "action"
                | "subject"
                | "action-subject"
        ),
        "resource" => matches!(name, "type" | "path"),
        "request" => name == "subjectId",
        "source" => name == "address",
        "time" => time::parse(name).is_some(),
        _ => !name.is_empty(),
    }
}

/// Resolves one pipeline expression without braces, e.g. `header:qos | fn:default('0')`
/// (Ditto's `ExpressionResolver.resolveAsPipelineElement`). A pipeline starting with a function gets an
/// unresolved input. The acknowledgement request filter of a source is resolved like Ditto's
/// `RequestedAcksFilter`: `resolve_expression("fn:default('<requested-acks>')|" + filter, resolver)`.
pub fn resolve_expression(
    expression: &str,
    resolver: &dyn Resolver,
) -> Result<Resolution, PlaceholderError> {
    Ok(Pipeline::parse(expression)?.evaluate(resolver).into())
}

fn condition_template(expression: &str) -> String {
    format!("{{{{ fn:default('true') | {expression} }}}}")
}

/// A standalone function expression, e.g. `fn:filter(header:a,'eq','b')` used in mapping conditions and
/// acknowledgementRequests.filter: true when the filter passes.
///
/// Like Ditto's `AbstractMappingProcessor.resolveConditions`, the expression is resolved as
/// `{{ fn:default('true') | <expression> }}` and passes when that resolves to a value.
pub fn evaluate_condition(
    expression: &str,
    resolver: &dyn Resolver,
) -> Result<bool, PlaceholderError> {
    Ok(Template::parse(&condition_template(expression))?
        .resolve(resolver)
        .is_resolved())
}

/// Checks a condition for [`evaluate_condition`] when a connection is created: syntax, functions and the
/// placeholders against `allowed`.
pub fn validate_condition(expression: &str, allowed: &[&str]) -> Result<(), PlaceholderError> {
    Template::parse(&condition_template(expression))?.validate(allowed)
}

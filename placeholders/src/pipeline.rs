//! Parsed pipelines (`thing:name | fn:substring-before(':') | fn:default('x')`) and Ditto's function library
//! (`ImmutableFunctionExpression`, `PipelineFunction*`).

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::element::Element;
use crate::error::{MAX_PIPELINE_FUNCTIONS, PlaceholderError};
use crate::syntax::{RawParam, java_trim, match_empty_params, match_params, split_stages};
use crate::{MAX_RESOLVED_BYTES, MAX_RESOLVED_VALUES, Resolver};
use crate::{filter, format, time};

/// Placeholders as function arguments may nest (`fn:default(fn:default(header:a))`); deeper nesting is
/// rejected as too complex (Ditto has no such limit, it would overflow its stack eventually).
const MAX_NESTING: usize = 16;

/// The prefix of function stages.
const FUNCTION_PREFIX: &str = "fn:";

/// A placeholder reference `prefix:name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlaceholderRef {
    pub(crate) prefix: String,
    pub(crate) name: String,
}

/// One `{{ ... }}` expression: an optional starting placeholder and the functions applied to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pipeline {
    source: Option<PlaceholderRef>,
    functions: Vec<FunctionCall>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FunctionCall {
    function: Function,
    params: Vec<Param>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Param {
    /// A quoted constant, as written between the quotes (Ditto does not unescape `\'`).
    Constant(String),
    /// A placeholder or function expression, resolved like a pipeline of its own.
    Expression(Pipeline),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Filter,
    Default,
    SubstringBefore,
    SubstringAfter,
    Lower,
    Upper,
    Delete,
    Replace,
    Split,
    Join,
    Trim,
    UrlEncode,
    UrlDecode,
    Base64Encode,
    Base64Decode,
    Format,
}

/// How a function's parameters are written (`PipelineFunctionParameterResolverFactory`).
#[derive(Debug, Clone, Copy)]
enum ParamSpec {
    /// `()`
    Empty,
    /// one quoted constant
    OneString,
    /// one quoted constant or placeholder
    OneStringOrPlaceholder,
    /// two or three quoted constants or placeholders
    TwoOrThreeStringsOrPlaceholders,
}

impl Function {
    /// In the order of Ditto's `ImmutableFunctionExpression.SUPPORTED`.
    const ALL: [Function; 16] = [
        Function::Filter,
        Function::Default,
        Function::SubstringBefore,
        Function::SubstringAfter,
        Function::Lower,
        Function::Upper,
        Function::Delete,
        Function::Replace,
        Function::Split,
        Function::Join,
        Function::Trim,
        Function::UrlEncode,
        Function::UrlDecode,
        Function::Base64Encode,
        Function::Base64Decode,
        Function::Format,
    ];

    fn name(self) -> &'static str {
        match self {
            Function::Filter => "filter",
            Function::Default => "default",
            Function::SubstringBefore => "substring-before",
            Function::SubstringAfter => "substring-after",
            Function::Lower => "lower",
            Function::Upper => "upper",
            Function::Delete => "delete",
            Function::Replace => "replace",
            Function::Split => "split",
            Function::Join => "join",
            Function::Trim => "trim",
            Function::UrlEncode => "url-encode",
            Function::UrlDecode => "url-decode",
            Function::Base64Encode => "base64-encode",
            Function::Base64Decode => "base64-decode",
            Function::Format => "format",
        }
    }

    fn param_spec(self) -> ParamSpec {
        match self {
            Function::Filter | Function::Replace => ParamSpec::TwoOrThreeStringsOrPlaceholders,
            Function::Default => ParamSpec::OneStringOrPlaceholder,
            Function::SubstringBefore
            | Function::SubstringAfter
            | Function::Split
            | Function::Join
            | Function::Format => ParamSpec::OneString,
            Function::Lower
            | Function::Upper
            | Function::Delete
            | Function::Trim
            | Function::UrlEncode
            | Function::UrlDecode
            | Function::Base64Encode
            | Function::Base64Decode => ParamSpec::Empty,
        }
    }

    /// (name, description) of each parameter, as in Ditto's `*FunctionSignature` classes.
    fn parameters(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Function::Filter => &[
                (
                    "filterValue",
                    "Specifies the optional value that should be taken into account for filtering. It may be a \
                     constant in single or double quotes or a placeholder or may be omitted completely in order to \
                     apply the filtering on the previous pipeline element instead.",
                ),
                (
                    "rqlFunction",
                    "Specifies the rql function that should be applied for comparison.",
                ),
                (
                    "comparedValue",
                    "The param that contains the value that should compared to the filter value.",
                ),
            ],
            Function::Default => &[(
                "defaultValue",
                "Specifies the default/fallback value and may be a constant in single or double quotes or a placeholder",
            )],
            Function::SubstringBefore => &[(
                "givenString",
                "Specifies the string to use in order to determine the substring before the first occurrence of that \
                 given string",
            )],
            Function::SubstringAfter => &[(
                "givenString",
                "Specifies the string to use in order to determine the substring after the first occurrence of that \
                 given string",
            )],
            Function::Replace => &[
                ("from", "Specifies the string to search for and replace"),
                (
                    "to",
                    "Specifies the replace string to be inserted for all matching 'from' strings",
                ),
            ],
            Function::Split => &[(
                "separator",
                "Specifies the string to use in order to determine where to split",
            )],
            Function::Join => &[(
                "delimiter",
                "Specifies the string to use as delimiter when joining elements of an array to a string",
            )],
            Function::Format => &[(
                "template",
                "The format template with {fieldName}, {/json/pointer}, or {#arrayField}...{/arrayField} section \
                 references to extract from each JSON object",
            )],
            _ => &[],
        }
    }

    /// Ditto's `Signature.renderSignature()`, e.g. `(String givenString /* ... */)`.
    fn signature(self) -> String {
        let params = self
            .parameters()
            .iter()
            .map(|(name, description)| format!("String {name} /* {description} */"))
            .collect::<Vec<_>>()
            .join(" , ");
        format!("({params})")
    }

    fn signature_invalid(self, params: &str) -> PlaceholderError {
        PlaceholderError::signature_invalid(self.name(), params, &self.signature())
    }
}

impl Pipeline {
    /// Parses a pipeline expression like Ditto's `ImmutableExpressionResolver.resolveAsPipelineElement`, reporting
    /// everything Ditto reports on resolution in validation mode.
    pub(crate) fn parse(expression: &str) -> Result<Pipeline, PlaceholderError> {
        Self::parse_nested(expression, 0)
    }

    fn parse_nested(expression: &str, depth: usize) -> Result<Pipeline, PlaceholderError> {
        if depth > MAX_NESTING {
            return Err(PlaceholderError::too_complex(MAX_PIPELINE_FUNCTIONS));
        }
        let stages =
            split_stages(expression).ok_or_else(|| PlaceholderError::unresolved(expression))?;
        // +1 for the starting placeholder
        if stages.len() > MAX_PIPELINE_FUNCTIONS + 1 {
            return Err(PlaceholderError::too_complex(MAX_PIPELINE_FUNCTIONS));
        }
        let first = java_trim(stages[0]);
        let (source, function_stages) = if first.starts_with(FUNCTION_PREFIX) {
            (None, &stages[..])
        } else {
            let colon = first
                .find(':')
                .ok_or_else(|| PlaceholderError::unresolved(first))?;
            let source = PlaceholderRef {
                prefix: first[..colon].to_string(),
                name: first[colon + 1..].to_string(),
            };
            (Some(source), &stages[1..])
        };
        let functions = function_stages
            .iter()
            .map(|stage| FunctionCall::parse(java_trim(stage), depth))
            .collect::<Result<_, _>>()?;
        Ok(Pipeline { source, functions })
    }

    /// All placeholders, including those in function parameters.
    pub(crate) fn placeholders<'a>(&'a self, out: &mut Vec<&'a PlaceholderRef>) {
        out.extend(self.source.iter());
        for function in &self.functions {
            for param in &function.params {
                if let Param::Expression(pipeline) = param {
                    pipeline.placeholders(out);
                }
            }
        }
    }

    /// Resolves the pipeline for one message.
    ///
    /// Every stage's values stay within [`MAX_RESOLVED_VALUES`] strings and [`MAX_RESOLVED_BYTES`]
    /// bytes, else the stage is unresolved: no function gets more input than that (and grows it at
    /// most threefold, `fn:replace` checked beforehand).
    pub(crate) fn evaluate(&self, resolver: &dyn Resolver) -> Element {
        let input = match &self.source {
            Some(source) => bounded(resolve_placeholder(source, resolver)),
            // a pipeline starting with a function gets an unresolved input
            None => Element::Unresolved,
        };
        self.functions.iter().fold(input, |element, function| {
            bounded(function.apply(element, resolver))
        })
    }
}

/// `element`, or unresolved when its values exceed the budgets.
fn bounded(element: Element) -> Element {
    match &element {
        Element::Resolved(values) if !crate::within_budget(values) => Element::Unresolved,
        _ => element,
    }
}

fn resolve_placeholder(source: &PlaceholderRef, resolver: &dyn Resolver) -> Element {
    match resolver.resolve(&source.prefix, &source.name) {
        Some(values) => Element::resolved(values),
        None if source.prefix == "time" => {
            time::resolve(&source.name, resolver.now()).map_or(Element::Unresolved, Element::single)
        }
        None => Element::Unresolved,
    }
}

impl FunctionCall {
    fn parse(stage: &str, depth: usize) -> Result<FunctionCall, PlaceholderError> {
        let unknown = || PlaceholderError::function_unknown(stage);
        let rest = stage.strip_prefix(FUNCTION_PREFIX).ok_or_else(unknown)?;
        let function = Function::ALL
            .into_iter()
            .find(|f| {
                rest.strip_prefix(f.name())
                    .is_some_and(|params| params.starts_with('('))
            })
            .ok_or_else(unknown)?;
        let params_text = java_trim(&rest[function.name().len()..]);
        let raw = match function.param_spec() {
            ParamSpec::Empty => match_empty_params(params_text).then(Vec::new),
            ParamSpec::OneString => match_params(params_text, 1, 0, false),
            ParamSpec::OneStringOrPlaceholder => match_params(params_text, 1, 0, true),
            ParamSpec::TwoOrThreeStringsOrPlaceholders => match_params(params_text, 2, 1, true),
        }
        .ok_or_else(|| function.signature_invalid(params_text))?;
        let params = raw
            .into_iter()
            .map(|param| match param {
                RawParam::Constant(value) => Ok(Param::Constant(value.to_string())),
                RawParam::Placeholder(expression) => {
                    Pipeline::parse_nested(expression, depth + 1).map(Param::Expression)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if function == Function::Format {
            // Ditto fails on every resolution with an unclosed section; reject it up front.
            let template = constant(&params, 0);
            if format::parse_template(template).is_none() {
                return Err(function.signature_invalid(params_text));
            }
        }
        Ok(FunctionCall { function, params })
    }

    fn apply(&self, input: Element, resolver: &dyn Resolver) -> Element {
        let params: Vec<Element> = self
            .params
            .iter()
            .map(|param| match param {
                Param::Constant(value) => Element::single(value.as_str()),
                Param::Expression(pipeline) => pipeline.evaluate(resolver),
            })
            .collect();
        let constant = |index| constant(&self.params, index);
        match self.function {
            Function::Filter => filter::apply(input, &params),
            // deleted stays deleted, resolved stays resolved
            Function::Default => {
                input.on_unresolved(|| params.into_iter().next().unwrap_or(Element::Unresolved))
            }
            Function::Delete => Element::Deleted,
            Function::SubstringBefore => {
                let given = constant(0);
                input.on_resolved(|value| {
                    value
                        .find(given)
                        .map_or(Element::Unresolved, |i| Element::single(&value[..i]))
                })
            }
            Function::SubstringAfter => {
                let given = constant(0);
                input.on_resolved(|value| {
                    value.find(given).map_or(Element::Unresolved, |i| {
                        Element::single(&value[i + given.len()..])
                    })
                })
            }
            Function::Lower => input.map(str::to_lowercase),
            Function::Upper => input.map(str::to_uppercase),
            Function::Trim => input.map(|value| java_trim(value).to_string()),
            Function::UrlEncode => input.map(url_encode),
            Function::UrlDecode => input.on_resolved(|value| {
                url_decode(value).map_or(Element::Unresolved, Element::single)
            }),
            Function::Base64Encode => input.map(|value| STANDARD.encode(value)),
            Function::Base64Decode => input.on_resolved(|value| {
                base64_decode(value).map_or(Element::Unresolved, Element::single)
            }),
            Function::Replace => {
                let from = params
                    .first()
                    .and_then(Element::first)
                    .unwrap_or("")
                    .to_string();
                // Ditto throws PlaceholderFunctionSignatureInvalidException if `to` does not resolve.
                let Some(to) = params.get(1).and_then(Element::first).map(str::to_string) else {
                    return Element::Unresolved;
                };
                let replaced = input.values().iter().fold(0usize, |sum, v| {
                    sum.saturating_add(replaced_len(v, &from, &to))
                });
                if replaced > MAX_RESOLVED_BYTES {
                    return Element::Unresolved;
                }
                input.map(|value| value.replace(&from, &to))
            }
            Function::Split => {
                let separator = constant(0);
                let mut parts = Vec::new();
                for value in input.values() {
                    match java_split(value, separator, MAX_RESOLVED_VALUES - parts.len()) {
                        Some(more) => parts.extend(more),
                        None => return Element::Unresolved,
                    }
                }
                Element::resolved(parts)
            }
            Function::Join => {
                let values = input.values();
                let delimiter = constant(0);
                let joined_len = values
                    .iter()
                    .map(String::len)
                    .sum::<usize>()
                    .saturating_add(
                        delimiter
                            .len()
                            .saturating_mul(values.len().saturating_sub(1)),
                    );
                if values.is_empty() || joined_len > MAX_RESOLVED_BYTES {
                    Element::Unresolved
                } else {
                    Element::single(values.join(delimiter))
                }
            }
            Function::Format => {
                let parts = format::parse_template(constant(0)).unwrap_or_default();
                let Some(results) = format::format_values(input.values(), &parts) else {
                    return Element::Unresolved;
                };
                if !results.is_empty() {
                    Element::Resolved(results)
                } else if input == Element::Unresolved {
                    Element::Unresolved
                } else {
                    Element::single("")
                }
            }
        }
    }
}

/// The constant parameter at `index` of a function that only takes constants.
fn constant(params: &[Param], index: usize) -> &str {
    match params.get(index) {
        Some(Param::Constant(value)) => value,
        _ => "",
    }
}

/// Java's `String.split` for a literal separator, as `PipelineFunctionSplit` applies it: values without the
/// separator stay whole, trailing empty strings are removed. (Ditto passes the separator to `String.split` as a
/// regular expression; here it is always literal, so `fn:split('.')` splits at dots.) `None` when there would be
/// more than `at_most` parts: they are counted first and not made then.
fn java_split(value: &str, separator: &str, at_most: usize) -> Option<Vec<String>> {
    if !value.contains(separator) || value.is_empty() {
        return (at_most > 0).then(|| vec![value.to_string()]);
    }
    let pieces = || -> Box<dyn Iterator<Item = &str> + '_> {
        if separator.is_empty() {
            Box::new(
                value
                    .char_indices()
                    .map(|(i, c)| &value[i..i + c.len_utf8()]),
            )
        } else {
            Box::new(value.split(separator))
        }
    };
    let (mut total, mut trailing_empty) = (0, 0);
    for piece in pieces() {
        total += 1;
        trailing_empty = if piece.is_empty() {
            trailing_empty + 1
        } else {
            0
        };
    }
    let kept = total - trailing_empty;
    (kept <= at_most).then(|| pieces().take(kept).map(str::to_string).collect())
}

/// The length of `value.replace(from, to)`, computed without building it.
fn replaced_len(value: &str, from: &str, to: &str) -> usize {
    let Some(grows) = to.len().checked_sub(from.len()).filter(|g| *g > 0) else {
        return value.len();
    };
    let count = if from.is_empty() {
        value.chars().count() + 1
    } else {
        value.matches(from).count()
    };
    value.len().saturating_add(count.saturating_mul(grows))
}

/// `java.net.URLEncoder.encode(value, UTF-8)`: keeps `a-zA-Z0-9.-*_`, space becomes `+`.
const URL_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'*')
    .remove(b'_');

fn url_encode(value: &str) -> String {
    utf8_percent_encode(value, URL_ENCODE_SET)
        .to_string()
        .replace("%20", "+")
}

/// `java.net.URLDecoder.decode(value, UTF-8)`: `+` is a space; a `%` not followed by two hex digits is an error
/// (Ditto throws `IllegalArgumentException`, here the value is unresolved).
fn url_decode(value: &str) -> Option<String> {
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Some(
        percent_decode_str(&value.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// `Base64.getDecoder()`: standard alphabet, padding optional; invalid input is unresolved (Ditto throws).
const BASE64_DECODER: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn base64_decode(value: &str) -> Option<String> {
    BASE64_DECODER
        .decode(value)
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

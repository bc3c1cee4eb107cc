//! Errors with Ditto's error codes, messages and descriptions (package `org.eclipse.ditto.placeholders`).

/// Error code of Ditto's `UnresolvedPlaceholderException`.
pub const CODE_UNRESOLVED: &str = "placeholder:unresolved";
/// Error code of Ditto's `PlaceholderFunctionUnknownException`.
pub const CODE_FUNCTION_UNKNOWN: &str = "placeholder:function.unknown";
/// Error code of Ditto's `PlaceholderFunctionSignatureInvalidException`.
pub const CODE_FUNCTION_SIGNATURE_INVALID: &str = "placeholder:function.signature.invalid";
/// Error code of Ditto's `PlaceholderFunctionTooComplexException`.
pub const CODE_FUNCTION_TOO_COMPLEX: &str = "placeholder:function.too.complex";
/// Error code of Ditto's `PlaceholderNotResolvableException`.
pub const CODE_PLACEHOLDER_NOT_RESOLVABLE: &str = "placeholder:placeholder.notresolvable";

/// Ditto's limit of chained functions in one pipeline (`ImmutableExpressionResolver.MAX_COUNT_PIPELINE_FUNCTIONS`).
pub const MAX_PIPELINE_FUNCTIONS: usize = 10;

/// A placeholder error as Ditto reports it: `code`, `message` and `description` are Ditto's texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlaceholderError {
    /// Ditto's error code, e.g. `placeholder:function.unknown`.
    pub code: &'static str,
    /// Ditto's message.
    pub message: String,
    /// Ditto's description.
    pub description: String,
}

impl PlaceholderError {
    /// `UnresolvedPlaceholderException`: a placeholder is unknown, unsupported, or the expression is malformed.
    pub fn unresolved(placeholder: &str) -> Self {
        PlaceholderError {
            code: CODE_UNRESOLVED,
            message: format!("The placeholder '{placeholder}' could not be resolved."),
            description: "Some placeholders could not be resolved. Check the spelling of the placeholder and \
                          make sure all required headers are set."
                .to_string(),
        }
    }

    /// `PlaceholderFunctionUnknownException` for the function expression as written (e.g. `fn:foo()`).
    pub fn function_unknown(function_expression: &str) -> Self {
        PlaceholderError {
            code: CODE_FUNCTION_UNKNOWN,
            message: format!("The function <{function_expression}> is not known."),
            description:
                "Ensure to only use supported functions. Check if you maybe just forgot to use \
                          parentheses for a function with empty parameters."
                    .to_string(),
        }
    }

    /// `PlaceholderFunctionSignatureInvalidException`: `params` as invoked incl. parentheses, `signature` as
    /// Ditto renders it (e.g. `(String givenString /* ... */)`).
    pub fn signature_invalid(function_name: &str, params: &str, signature: &str) -> Self {
        PlaceholderError {
            code: CODE_FUNCTION_SIGNATURE_INVALID,
            message: format!(
                "The function signature <fn:{function_name}{params}> could not be parsed."
            ),
            description: format!(
                "Ensure to conform to the function's signature: <fn:{function_name}{signature}>"
            ),
        }
    }

    /// `PlaceholderFunctionTooComplexException` with the maximum of chained functions.
    pub fn too_complex(max_functions: usize) -> Self {
        PlaceholderError {
            code: CODE_FUNCTION_TOO_COMPLEX,
            message: "The placeholder functions are not accepted as they are too complex."
                .to_string(),
            description: format!(
                "Please reduce the complexity (e.g. amount of chained functions below the maximum of \
                 '{max_functions}') of the functions."
            ),
        }
    }

    /// `PlaceholderNotResolvableException` for an unknown placeholder, listing the supported ones.
    pub fn unknown_placeholder(placeholder: &str, supported: &[&str]) -> Self {
        let supported = supported
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        PlaceholderError {
            code: CODE_PLACEHOLDER_NOT_RESOLVABLE,
            message: format!("The placeholder '{placeholder}' is unknown."),
            description: format!("Please use one of the supported placeholders: {supported}."),
        }
    }

    /// `PlaceholderNotResolvableException` for input with placeholders that cannot be resolved (e.g. braces).
    pub fn not_resolvable_input(input: &str) -> Self {
        PlaceholderError {
            code: CODE_PLACEHOLDER_NOT_RESOLVABLE,
            message: format!("The input contains not resolvable placeholders: '{input}'."),
            description: "Please make sure that placeholders are not nested and braces are in the expected order."
                .to_string(),
        }
    }
}

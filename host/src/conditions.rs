//! Conditional requests: `If-Match` and `If-None-Match` against an entity's `"rev:N"` tag, for
//! connections and things alike.

use crate::error::DittoError;
use axum::http::{HeaderMap, StatusCode};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
}

/// Why a precondition stops a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreconditionFailure {
    /// A read whose `If-None-Match` matched: answer 304 with the current tag.
    NotModified(String),
    /// 412: `header` (`if-match` or `if-none-match`) with `value` did not hold for `actual`
    /// (the current tag, or `null` when there is no entity).
    Failed {
        header: &'static str,
        value: String,
        actual: String,
    },
}

fn matches(header: &str, current: Option<&str>) -> bool {
    header.split(',').map(str::trim).any(|tag| match current {
        None => false,
        Some(_) if tag == "*" => true,
        Some(cur) => tag.strip_prefix("W/").unwrap_or(tag) == cur,
    })
}

impl Preconditions {
    /// From Ditto headers (case-insensitive names).
    pub fn from_ditto_headers(headers: &ferrule_protocol::Headers) -> Preconditions {
        Preconditions {
            if_match: headers.get_str("if-match"),
            if_none_match: headers.get_str("if-none-match"),
        }
    }

    pub fn from_headers(headers: &HeaderMap) -> Preconditions {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Preconditions {
            if_match: get("if-match"),
            if_none_match: get("if-none-match"),
        }
    }

    /// `current` is the entity tag of the existing connection, `None` when there is none.
    /// Ditto skips the checks for reads and deletes of a connection that does not exist (they
    /// answer 404 instead).
    pub fn check(&self, current: Option<&str>, read: bool) -> Result<(), PreconditionFailure> {
        if current.is_none() && read {
            return Ok(());
        }
        let actual = current.unwrap_or("null");
        if let Some(h) = &self.if_match
            && !matches(h, current)
        {
            return Err(PreconditionFailure::Failed {
                header: "if-match",
                value: h.clone(),
                actual: actual.to_string(),
            });
        }
        if let Some(h) = &self.if_none_match
            && matches(h, current)
        {
            if read {
                return Err(PreconditionFailure::NotModified(actual.to_string()));
            }
            return Err(PreconditionFailure::Failed {
                header: "if-none-match",
                value: h.clone(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }
}

impl PreconditionFailure {
    /// The error of a connection resource.
    pub fn into_error(self) -> DittoError {
        match self {
            PreconditionFailure::Failed {
                header,
                value,
                actual,
            } => DittoError::precondition_failed(header, &value, &actual),
            PreconditionFailure::NotModified(tag) => DittoError::new(
                StatusCode::NOT_MODIFIED,
                "connectivity:precondition.notmodified",
                format!(
                    "The comparison of precondition header 'if-none-match' for the requested connection resource evaluated to false. Expected: '{tag}' not to match actual: '{tag}'."
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(if_match: Option<&str>, if_none_match: Option<&str>) -> Preconditions {
        Preconditions {
            if_match: if_match.map(String::from),
            if_none_match: if_none_match.map(String::from),
        }
    }

    #[test]
    fn if_match() {
        let cur = Some("\"rev:2\"");
        assert!(p(Some("*"), None).check(cur, false).is_ok());
        assert!(
            p(Some("\"rev:1\", \"rev:2\""), None)
                .check(cur, false)
                .is_ok()
        );
        assert!(p(Some("W/\"rev:2\""), None).check(cur, false).is_ok());
        let Err(failure) = p(Some("\"rev:1\""), None).check(cur, false) else {
            panic!()
        };
        let e = failure.into_error();
        assert_eq!(e.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            e.message,
            "The comparison of precondition header 'if-match' for the requested connection resource evaluated to false. Header value: '\"rev:1\"', actual entity-tag: '\"rev:2\"'."
        );
        assert!(p(Some("*"), None).check(None, false).is_err());
        assert!(p(Some("*"), None).check(None, true).is_ok());
    }

    #[test]
    fn if_none_match() {
        let cur = Some("\"rev:2\"");
        assert!(p(None, Some("*")).check(None, false).is_ok());
        assert!(p(None, Some("*")).check(cur, false).is_err());
        assert!(p(None, Some("\"rev:1\"")).check(cur, false).is_ok());
        assert_eq!(
            p(None, Some("\"rev:2\"")).check(cur, true),
            Err(PreconditionFailure::NotModified("\"rev:2\"".into()))
        );
    }
}

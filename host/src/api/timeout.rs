//! The `timeout` of a connection request (spec §2.1), as Ditto's gateway reads it: the query
//! parameter or the header of that name (`10s`, `250ms`, `1m`, plain seconds), at most one
//! minute, one minute when absent.
//!
//! - A value that is no duration: 400 `timeout.invalid`; over a minute: 400
//!   `gateway:timeout.invalid`.
//! - A command that has not answered within the timeout: 408 `command.timeout`. The command is
//!   not cut off: it runs to its end (a connection half written is never left), only its answer
//!   is not awaited.
//! - `timeout=0` (Ditto's fire-and-forget): an error that comes within three seconds is
//!   answered; otherwise 202 Accepted without a body, and the command goes on.

use crate::error::DittoError;
use crate::hub::acks::parse_timeout;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Ditto's `ditto.gateway.command.max-timeout`, and its `default-timeout` (the HTTP request
/// timeout, 60 s).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Ditto's `fire-and-forget-enforcement-timeout`: how long a `timeout=0` request waits for an
/// error before it is answered with 202.
pub const FIRE_AND_FORGET_WAIT: Duration = Duration::from_secs(3);

/// The request's timeout: `Ok(None)` when it names none.
fn requested(req: &Request) -> Result<Option<Duration>, DittoError> {
    let from_query = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "timeout")
            .map(|(_, v)| v.into_owned())
    });
    let raw = match from_query {
        Some(raw) => raw,
        None => match req.headers().get("timeout") {
            Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            None => return Ok(None),
        },
    };
    let timeout = parse_timeout(&raw).ok_or_else(|| DittoError::timeout_unreadable(&raw))?;
    if timeout > MAX_TIMEOUT {
        return Err(DittoError::timeout_out_of_bounds(timeout, MAX_TIMEOUT));
    }
    Ok(Some(timeout))
}

/// The middleware of the connection routes.
pub async fn command_timeout(req: Request, next: Next) -> Response {
    let timeout = match requested(&req) {
        Ok(t) => t.unwrap_or(MAX_TIMEOUT),
        Err(e) => return e.into_response(),
    };
    // The handler runs on a task of its own, so that giving up on its answer does not cut it
    // off halfway.
    let mut handler = tokio::spawn(next.run(req));
    let wait = if timeout.is_zero() {
        FIRE_AND_FORGET_WAIT
    } else {
        timeout
    };
    match tokio::time::timeout(wait, &mut handler).await {
        Ok(Ok(response)) if timeout.is_zero() && response.status().is_success() => {
            StatusCode::ACCEPTED.into_response()
        }
        Ok(Ok(response)) => response,
        Ok(Err(e)) => DittoError::internal(format!("the request failed: {e}")).into_response(),
        Err(_) if timeout.is_zero() => StatusCode::ACCEPTED.into_response(),
        Err(_) => DittoError::command_timeout(timeout).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(uri: &str, header: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder().uri(uri);
        if let Some(h) = header {
            b = b.header("timeout", h);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn the_query_parameter_wins_over_the_header() {
        let t = requested(&request("/x?timeout=250ms", Some("5s"))).unwrap();
        assert_eq!(t, Some(Duration::from_millis(250)));
        let t = requested(&request("/x", Some("5"))).unwrap();
        assert_eq!(t, Some(Duration::from_secs(5)));
        assert_eq!(requested(&request("/x?dry-run=true", None)).unwrap(), None);
        assert_eq!(
            requested(&request("/x?timeout=1m", None)).unwrap(),
            Some(MAX_TIMEOUT)
        );
    }

    #[test]
    fn unreadable_and_too_long_timeouts_are_refused() {
        let e = requested(&request("/x?timeout=soon", None)).unwrap_err();
        assert_eq!(e.error, "timeout.invalid");
        let e = requested(&request("/x?timeout=-1s", None)).unwrap_err();
        assert_eq!(e.error, "timeout.invalid");
        let e = requested(&request("/x", Some("61s"))).unwrap_err();
        assert_eq!(e.error, "gateway:timeout.invalid");
        assert_eq!(
            e.message,
            "The timeout <61000ms> is not inside its allowed bounds <0ms - 60000ms>"
        );
    }
}

//! HTTP Basic authentication of the `devops` user, compared in constant time.

use crate::error::DittoError;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub const DEVOPS_USER: &str = "devops";

/// The expected credentials, kept only as a digest.
pub struct DevopsAuth {
    digest: [u8; 32],
}

fn digest(user: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0u8]);
    h.update(password.as_bytes());
    h.finalize().into()
}

impl DevopsAuth {
    pub fn new(password: &str) -> DevopsAuth {
        DevopsAuth {
            digest: digest(DEVOPS_USER, password),
        }
    }

    /// `Ok` for the right credentials; the error says whether any were supplied. The comparison
    /// of digests takes the same time whatever the input.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), DittoError> {
        let Some(value) = authorization else {
            return Err(DittoError::unauthorized(false));
        };
        let decoded = std::str::from_utf8(value)
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(token.trim())
            })
            .and_then(|token| base64::engine::general_purpose::STANDARD.decode(token).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let (user, password) = decoded
            .as_deref()
            .and_then(|d| d.split_once(':'))
            .unwrap_or(("", ""));
        let ok: bool = digest(user, password).ct_eq(&self.digest).into();
        if ok && decoded.is_some() {
            Ok(())
        } else {
            Err(DittoError::unauthorized(true))
        }
    }
}

pub async fn require_devops(
    State(auth): State<Arc<DevopsAuth>>,
    request: Request,
    next: Next,
) -> Response {
    match auth.check(request.headers().get(AUTHORIZATION).map(|v| v.as_bytes())) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// A request of a script (`X-Requested-With: XMLHttpRequest`, as the web console and many
/// JavaScript clients send it) gets its 401 without `WWW-Authenticate`, so the browser answers it
/// to the script instead of opening its own login dialog.
pub async fn no_challenge_for_scripts(request: Request, next: Next) -> Response {
    let script = request
        .headers()
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    let mut response = next.run(request).await;
    if script {
        response.headers_mut().remove(WWW_AUTHENTICATE);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
        .into_bytes()
    }

    #[test]
    fn checks_user_and_password() {
        let auth = DevopsAuth::new("s3cret:with:colons");
        assert!(
            auth.check(Some(&basic("devops:s3cret:with:colons")))
                .is_ok()
        );
        assert!(auth.check(Some(&basic("devops:wrong"))).is_err());
        assert!(
            auth.check(Some(&basic("admin:s3cret:with:colons")))
                .is_err()
        );
        assert!(auth.check(Some(b"Bearer abc")).is_err());
        assert!(auth.check(Some(b"Basic !!!")).is_err());
        let missing = auth.check(None).unwrap_err();
        assert!(missing.message.contains("not supplied"));
        let wrong = auth.check(Some(&basic("devops:x"))).unwrap_err();
        assert_eq!(wrong.message, "The supplied authentication is invalid.");
    }
}

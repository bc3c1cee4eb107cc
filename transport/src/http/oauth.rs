//! OAuth 2.0 bearer tokens for HTTP push (`oauth-client-credentials`, `oauth-password`), as
//! Ditto fetches them (`OAuthFlowVisitor`, `AsyncJwtLoader`): a form POST to the token endpoint,
//! the `access_token` of its JSON answer, kept until its expiry less the clock skew (60 s). The
//! expiry is the JWT's `exp` claim as in Ditto; a token that is not a JWT is taken when the
//! answer has `expires_in` (Ditto refuses it).

use crate::{ErrorKind, TransportError};
use base64::Engine;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Ditto's `http-push.oauth2.max-clock-skew`.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub(crate) struct OAuth {
    endpoint: String,
    form: Vec<(&'static str, String)>,
}

fn misconfigured(message: impl Into<String>) -> TransportError {
    TransportError::new(ErrorKind::Misconfigured, message)
}

fn field<'a>(
    credentials: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<&'a str> {
    credentials.get(name).and_then(|v| v.as_str())
}

impl OAuth {
    /// The flow of `oauth-client-credentials` or `oauth-password` credentials.
    pub(crate) fn from_credentials(
        credentials: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<OAuth, TransportError> {
        let kind = field(credentials, "type").unwrap_or_default();
        let required = |name: &str| {
            field(credentials, name)
                .map(str::to_string)
                .ok_or_else(|| misconfigured(format!("The {kind} credentials lack '{name}'.")))
        };
        let endpoint = required("tokenEndpoint")?;
        let mut form = Vec::new();
        if kind == "oauth-password" {
            form.push(("grant_type", "password".to_string()));
            form.push(("client_id", required("clientId")?));
            form.push(("scope", required("requestedScopes")?));
            if let Some(secret) = field(credentials, "clientSecret") {
                form.push(("client_secret", secret.to_string()));
            }
        } else {
            form.push(("grant_type", "client_credentials".to_string()));
            form.push(("client_id", required("clientId")?));
            form.push(("client_secret", required("clientSecret")?));
            form.push(("scope", required("requestedScopes")?));
        }
        if let Some(audience) = field(credentials, "audience") {
            form.push(("audience", audience.to_string()));
        }
        if kind == "oauth-password" {
            form.push(("username", required("username")?));
            form.push(("password", required("password")?));
        }
        Ok(OAuth { endpoint, form })
    }
}

/// The token of one client, fetched when first needed and again after it expired.
pub(crate) struct TokenCache {
    oauth: OAuth,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl TokenCache {
    pub(crate) fn new(oauth: OAuth, http: reqwest::Client) -> TokenCache {
        TokenCache {
            oauth,
            http,
            token: Mutex::new(None),
        }
    }

    /// A valid token: the kept one, or a new one from the endpoint.
    pub(crate) async fn token(&self) -> Result<String, TransportError> {
        let mut kept = self.token.lock().await;
        if let Some((token, until)) = kept.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        *kept = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(CLOCK_SKEW),
        ));
        Ok(token)
    }

    async fn fetch(&self) -> Result<(String, Duration), TransportError> {
        let endpoint = &self.oauth.endpoint;
        let response = self
            .http
            .post(endpoint)
            .header("accept", "application/json")
            .form(&self.oauth.form)
            .send()
            .await
            .map_err(|e| {
                TransportError::new(
                    ErrorKind::Unreachable,
                    format!(
                        "Request to token endpoint {endpoint} failed: {}",
                        super::error_chain(&e)
                    ),
                )
            })?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        let body = response.bytes().await.unwrap_or_default();
        let invalid = |detail: String| {
            misconfigured(format!(
                "Received invalid JSON web token response from {endpoint}. {detail}"
            ))
        };
        if !(200..300).contains(&status) || !content_type.starts_with("application/json") {
            return Err(invalid(format!(
                "Response status is {status} and content type is {content_type}."
            )));
        }
        let preview = || {
            let text = String::from_utf8_lossy(&body);
            format!(
                "Response body: {}...",
                text.chars().take(100).collect::<String>()
            )
        };
        let answer: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| invalid(preview()))?;
        let token = answer
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| invalid(preview()))?
            .to_string();
        let lifetime = match jwt_expiry(&token) {
            Some(exp) => {
                let now = chrono::Utc::now().timestamp();
                Duration::from_secs(exp.saturating_sub(now).max(0) as u64)
            }
            None => answer
                .get("expires_in")
                .and_then(|e| e.as_u64())
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    invalid(
                        "The access token is no JWT with an 'exp' claim and the answer has no 'expires_in'."
                            .into(),
                    )
                })?,
        };
        Ok((token, lifetime))
    }
}

/// The `exp` claim of a JWT (seconds since the epoch); `None` when `token` is no JWT.
fn jwt_expiry(token: &str) -> Option<i64> {
    let mut parts = token.split('.');
    let (_, claims, _) = (parts.next()?, parts.next()?, parts.next()?);
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    claims.get("exp")?.as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_forms_are_dittos() {
        let flow = |c: serde_json::Value| OAuth::from_credentials(c.as_object().unwrap());
        let client = flow(json!({"type": "oauth-client-credentials",
            "tokenEndpoint": "https://idp/token", "clientId": "id", "clientSecret": "s3cret",
            "requestedScopes": "a b", "audience": "aud"}))
        .unwrap();
        let names: Vec<&str> = client.form.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "grant_type",
                "client_id",
                "client_secret",
                "scope",
                "audience"
            ]
        );
        assert_eq!(client.form[0].1, "client_credentials");
        let password = flow(json!({"type": "oauth-password",
            "tokenEndpoint": "https://idp/token", "clientId": "id",
            "requestedScopes": "a", "username": "u", "password": "p"}))
        .unwrap();
        let names: Vec<&str> = password.form.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            ["grant_type", "client_id", "scope", "username", "password"]
        );
        let missing = flow(json!({"type": "oauth-client-credentials",
            "tokenEndpoint": "https://idp/token", "clientId": "id", "requestedScopes": "a"}))
        .unwrap_err();
        assert!(
            missing.message.contains("'clientSecret'"),
            "{}",
            missing.message
        );
    }

    #[test]
    fn the_expiry_is_read_from_the_jwt() {
        let claims =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp":1700000000}"#);
        assert_eq!(
            jwt_expiry(&format!("e30.{claims}.sig")),
            Some(1_700_000_000)
        );
        assert_eq!(jwt_expiry("opaque-token"), None);
        assert_eq!(jwt_expiry("a.b.c"), None);
    }
}

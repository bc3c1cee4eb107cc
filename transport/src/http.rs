//! HTTP push client (reqwest), as Ditto's `http-push` connections send requests
//! (`HttpPublisherActor`, `DefaultHttpPushFactory`).
//!
//! # Connection
//! `http://[user:password@]host[:port][/prefix]` or `https://...`: a user and password in the URI
//! are sent as `Authorization: Basic`; `https` uses [`crate::tls::client_config`] (`ca`, client
//! certificate, `validateCertificates`). Opening is a TCP connect to the host within 2 s, as
//! Ditto's; a connection test also makes the TLS handshake (`https`) and fetches the OAuth token.
//! There are no sources: an HTTP push connection only publishes.
//!
//! # Requests
//! A target address is `METHOD:path` (resolved by the host): the method is `PUT`, `PATCH`,
//! `POST`, `GET` or `DELETE`, the path is appended to the URI (a `/` is put between them when
//! the path starts with none of `/`, `?`, `#`). The headers `http.path` and `http.query` replace
//! the whole path and query and are not sent; every other header is. The body is the payload
//! (bytes win over text), with the `content-type` header, else the message's content type, else
//! `text/plain; charset=UTF-8` for text and `application/octet-stream` for bytes; methods of
//! `omitRequestBody` (default `GET,DELETE`) send none. `hmac` credentials sign each request
//! ([`sign`]), OAuth credentials add a bearer token ([`oauth`]).
//!
//! # specificConfig
//! * `parallelism` (default 1, rounded up to a power of two as Ditto does): requests in flight at
//!   once. With 1, each request waits for the previous response (strict order).
//! * `idleTimeout` (default 60 s, at most 60 s; a bare number is milliseconds): how long a
//!   request waits for the response's head.
//! * `omitRequestBody`: comma-separated methods that are sent without a body (`""` for none).
//!
//! # Responses
//! Every response (any status) confirms its publish with a [`Reply`]: status, headers, content
//! type, and the body read within 10 s and up to 100,000 bytes (Ditto's `issued-max-bytes`). A
//! request that gets no response (refused, TLS, timeout, a body over the limit) fails its publish,
//! and the client reports itself disconnected, as Ditto escalates the failure: the host
//! connects again with its backoff.

mod oauth;
pub(crate) mod sign;

use crate::specific;
use crate::{
    BoxFuture, BrokerClient, ClientConfig, ClientEvent, Confirmation, Connected, ErrorKind,
    Publish, Reply, TransportError,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Ditto's `http-push.request-timeout`, also the most `idleTimeout` may be.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a response's body may take once its head arrived (Ditto's `READ_BODY_TIMEOUT_MS`).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a response's body that is read (Ditto's `acknowledgement.issued-max-bytes`).
pub const MAX_RESPONSE_BODY: usize = 100_000;
/// How long opening may take to reach the host (Ditto's socket check).
const SOCKET_CHECK: Duration = Duration::from_secs(2);
/// The methods a target address may name.
pub const METHODS: [&str; 5] = ["PUT", "PATCH", "POST", "GET", "DELETE"];
/// The methods `omitRequestBody` may name (every method Pekko knows).
const KNOWN_METHODS: [&str; 9] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// What the client reads of `specificConfig`.
#[derive(Debug, Clone)]
struct Settings {
    parallelism: usize,
    timeout: Duration,
    omit_body: Vec<String>,
}

fn misconfigured(message: impl Into<String>) -> TransportError {
    TransportError::new(ErrorKind::Misconfigured, message)
}

fn settings(config: &ClientConfig) -> Result<Settings, TransportError> {
    let parallelism = match config.specific_config.get("parallelism") {
        None => 1,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(misconfigured(format!(
                    "The configured value '{raw}' of 'parallelism' is invalid. It must be a positive integer."
                )));
            }
        },
    };
    let parallelism = (parallelism.min(1 << 16) as usize).next_power_of_two();
    let timeout = match config.specific_config.get("idleTimeout") {
        None => MAX_IDLE_TIMEOUT,
        Some(raw) => {
            let negative = raw.trim().starts_with('-');
            let parsed =
                specific::duration(raw.trim().trim_start_matches('-'), Duration::from_millis(1))
                    .ok_or_else(|| specific::invalid("idleTimeout", raw))?;
            if negative || parsed > MAX_IDLE_TIMEOUT {
                let secs = parsed.as_secs() as i64 * if negative { -1 } else { 1 };
                return Err(misconfigured(format!(
                    "Idle timeout '{secs}' is not within the allowed range of [0, 60] seconds."
                )));
            }
            parsed
        }
    };
    let omit_body = match config.specific_config.get("omitRequestBody") {
        None => vec!["GET".to_string(), "DELETE".to_string()],
        Some(raw) => {
            let list: Vec<String> = raw
                .split(',')
                .map(|m| m.trim().trim_matches('"').to_string())
                .filter(|m| !m.is_empty())
                .collect();
            if let Some(bad) = list.iter().find(|m| !KNOWN_METHODS.contains(&m.as_str())) {
                return Err(misconfigured(format!(
                    "The configured value '{raw}' of 'omitRequestBody' is invalid. It contains an invalid HTTP method: {bad}"
                )));
            }
            list
        }
    };
    Ok(Settings {
        parallelism,
        timeout,
        omit_body,
    })
}

/// How requests authenticate beyond the URI's user and password.
enum Auth {
    None,
    Sign(sign::Signer),
    Bearer(oauth::TokenCache),
}

/// The credentials as read from the connection (checked at create, used at connect).
enum Credentials {
    None,
    Sign(sign::Signer),
    OAuth(oauth::OAuth),
}

fn credentials_of(config: &ClientConfig) -> Result<Credentials, TransportError> {
    let Some(credentials) = config.credentials.as_ref().and_then(|c| c.as_object()) else {
        return Ok(Credentials::None);
    };
    match credentials.get("type").and_then(|t| t.as_str()) {
        Some("hmac") => Ok(Credentials::Sign(sign::Signer::from_credentials(
            credentials,
        )?)),
        Some("oauth-client-credentials" | "oauth-password") => Ok(Credentials::OAuth(
            oauth::OAuth::from_credentials(credentials)?,
        )),
        _ => Ok(Credentials::None),
    }
}

fn auth_of(config: &ClientConfig, http: &reqwest::Client) -> Result<Auth, TransportError> {
    Ok(match credentials_of(config)? {
        Credentials::None => Auth::None,
        Credentials::Sign(signer) => Auth::Sign(signer),
        Credentials::OAuth(flow) => Auth::Bearer(oauth::TokenCache::new(flow, http.clone())),
    })
}

/// The URI without user and password (they go into `Authorization: Basic`), and the basic
/// credentials when the URI has a user with a password.
fn base_uri(config: &ClientConfig) -> Result<(url::Url, Option<(String, String)>), TransportError> {
    let mut url = url::Url::parse(&config.uri)
        .map_err(|e| misconfigured(format!("The URI is not valid: {e}")))?;
    let basic = url.password().map(|password| {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(url.username()), decode(password))
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url, basic))
}

/// What can be checked without the server: `specificConfig`, the credentials, the URI.
pub fn check_config(config: &ClientConfig) -> Result<(), TransportError> {
    settings(config)?;
    base_uri(config)?;
    credentials_of(config)?;
    Ok(())
}

/// Splits a resolved target address into method and path (Ditto's `HttpPublishTarget`: an
/// unknown method is a POST of the whole address).
pub fn method_and_path(address: &str) -> (&str, &str) {
    match address.split_once(':') {
        Some((method, path)) if METHODS.contains(&method) => (method, path),
        _ => ("POST", address),
    }
}

/// The request's URL: the base with the address's path appended, then `http.path` and
/// `http.query` replacing path and query.
fn request_url(base: &url::Url, path: &str, publish: &Publish) -> Result<url::Url, TransportError> {
    let mut text = base.as_str().to_string();
    if text.ends_with('/') {
        text.pop();
    }
    if !(path.starts_with('/') || path.starts_with('?') || path.starts_with('#')) {
        text.push('/');
    }
    text.push_str(path);
    let mut url = url::Url::parse(&text).map_err(|e| {
        TransportError::new(
            ErrorKind::Rejected,
            format!("The request URI '{text}' is not valid: {e}"),
        )
    })?;
    if let Some(p) = publish.message.headers.get_str("http.path") {
        url.set_path(&if p.starts_with('/') {
            p
        } else {
            format!("/{p}")
        });
    }
    if let Some(q) = publish.message.headers.get_str("http.query") {
        url.set_query(Some(&q));
    }
    Ok(url)
}

/// A queued publish and where its confirmation goes.
type Job = (
    Publish,
    oneshot::Sender<Result<Option<Reply>, TransportError>>,
);

/// A connected HTTP push client.
struct HttpClient {
    jobs: mpsc::UnboundedSender<Job>,
    worker: tokio::task::JoinHandle<()>,
}

impl BrokerClient for HttpClient {
    fn publish(&self, publish: Publish) -> Confirmation {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send((publish, tx)).is_err() {
            return crate::decided(Err(TransportError::new(
                ErrorKind::Closed,
                "The HTTP client is closed.",
            )));
        }
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(TransportError::new(
                    ErrorKind::Closed,
                    "The HTTP client closed before the request was answered.",
                ))
            })
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        let HttpClient { jobs, worker } = *self;
        drop(jobs);
        Box::pin(async move {
            // Requests in flight get a short time to finish.
            let abort = worker.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), worker)
                .await
                .is_err()
            {
                abort.abort();
            }
        })
    }
}

/// Everything a request needs, shared by the requests of one client.
struct Sender {
    http: reqwest::Client,
    base: url::Url,
    basic: Option<(String, String)>,
    auth: Auth,
    settings: Settings,
    events: mpsc::Sender<ClientEvent>,
}

/// The messages of an error and its sources, for the user.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

impl Sender {
    async fn send(&self, publish: Publish) -> Result<Reply, TransportError> {
        let (method, path) = method_and_path(&publish.address);
        let url = request_url(&self.base, path, &publish)?;
        let message = &publish.message;
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in message.headers.iter() {
            if name.eq_ignore_ascii_case("http.path") || name.eq_ignore_ascii_case("http.query") {
                continue;
            }
            headers.push((
                name.to_string(),
                ferrule_protocol::headers::value_to_header_string(value),
            ));
        }
        let omit = self.settings.omit_body.iter().any(|m| m == method);
        let body: &[u8] = if omit { &[] } else { message.payload() };
        let content_type = if omit {
            None
        } else {
            Some(
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                    .map(|(_, v)| v.clone())
                    .or_else(|| message.content_type.clone())
                    .unwrap_or_else(|| {
                        if message.bytes.is_some() {
                            "application/octet-stream".into()
                        } else {
                            "text/plain; charset=UTF-8".into()
                        }
                    }),
            )
        };
        if omit {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        }
        match &self.auth {
            Auth::None => {}
            Auth::Sign(signer) => {
                let request = sign::Request {
                    method,
                    url: &url,
                    headers: &headers,
                    body,
                    content_type: content_type.as_deref(),
                };
                let added = signer.sign(&request, chrono::Utc::now());
                headers.extend(added);
            }
            Auth::Bearer(tokens) => {
                let token = tokens.token().await?;
                headers.push(("authorization".into(), format!("Bearer {token}")));
            }
        }
        let method_value = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| TransportError::new(ErrorKind::Rejected, "Bad method"))?;
        let mut request = self.http.request(method_value, url.clone());
        if let Some((user, password)) = &self.basic {
            request = request.basic_auth(user, Some(password));
        }
        let mut header_map = reqwest::header::HeaderMap::new();
        for (name, value) in &headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                TransportError::new(
                    ErrorKind::Rejected,
                    format!("The header name '{name}' is not valid in HTTP."),
                )
            })?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                TransportError::new(
                    ErrorKind::Rejected,
                    format!("The value of the header '{name}' is not valid in HTTP."),
                )
            })?;
            header_map.append(name, value);
        }
        if let Some(ct) = &content_type
            && !header_map.contains_key(reqwest::header::CONTENT_TYPE)
            && let Ok(v) = reqwest::header::HeaderValue::from_str(ct)
        {
            header_map.insert(reqwest::header::CONTENT_TYPE, v);
        }
        request = request.headers(header_map);
        if !omit {
            request = request.body(body.to_vec());
        }
        let shown = url.as_str().to_string();
        let response = match tokio::time::timeout(self.settings.timeout, request.send()).await {
            Err(_) => {
                return Err(TransportError::new(
                    ErrorKind::Timeout,
                    format!("Request timed out: {shown}"),
                ));
            }
            Ok(Err(e)) => {
                let kind = if e.is_connect() {
                    ErrorKind::Unreachable
                } else {
                    ErrorKind::Other
                };
                let error = crate::tls::classify(&e).unwrap_or_else(|| {
                    TransportError::new(
                        kind,
                        format!(
                            "Failed to send HTTP request to {shown}: {}",
                            error_chain(&e)
                        ),
                    )
                });
                return Err(error);
            }
            Ok(Ok(r)) => r,
        };
        read_reply(response, &shown).await
    }

    /// A failed request: the client is disconnected (Ditto escalates it), once.
    fn escalate(&self, error: &TransportError) {
        let _ = self
            .events
            .try_send(ClientEvent::Disconnected(error.clone()));
    }
}

async fn read_reply(mut response: reqwest::Response, shown: &str) -> Result<Reply, TransportError> {
    let status = response.status().as_u16();
    let mut headers = ferrule_protocol::Headers::new();
    for (name, value) in response.headers() {
        if let Ok(v) = value.to_str() {
            headers.insert(name.as_str(), v);
        }
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    let read = async {
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            TransportError::new(
                ErrorKind::Other,
                format!(
                    "Reading the response of {shown} failed: {}",
                    error_chain(&e)
                ),
            )
        })? {
            if body.len() + chunk.len() > MAX_RESPONSE_BODY {
                return Err(TransportError::new(
                    ErrorKind::Rejected,
                    format!("The response of {shown} is larger than {MAX_RESPONSE_BODY} bytes."),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => {
            return Err(TransportError::new(
                ErrorKind::Timeout,
                format!("Reading the response of {shown} timed out."),
            ));
        }
        Ok(result) => result?,
    }
    Ok(Reply {
        status,
        headers,
        content_type,
        body,
    })
}

/// Takes the queued publishes in order and sends each when one of `parallelism` slots is free.
async fn run(sender: Arc<Sender>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let slots = Arc::new(Semaphore::new(sender.settings.parallelism));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some((publish, done)) = jobs.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let sender = sender.clone();
        tasks.spawn(async move {
            let result = sender.send(publish).await;
            drop(permit);
            if let Err(e) = &result
                && e.kind != ErrorKind::Rejected
            {
                sender.escalate(e);
            }
            let _ = done.send(result.map(Some));
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// The TLS configuration of an `https` connection (`ca`, client certificate,
/// `validateCertificates`).
fn tls_config(config: &ClientConfig) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let ca = config.ca.as_deref().filter(|c| !c.trim().is_empty());
    crate::tls::client_config(
        ca,
        config
            .client_cert
            .as_ref()
            .map(|(c, k)| (c.as_str(), k.as_str())),
        config.validate_certificates,
    )
}

fn build_http(
    config: &ClientConfig,
    settings: &Settings,
) -> Result<reqwest::Client, TransportError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(settings.parallelism)
        .connect_timeout(config.connect_timeout.min(MAX_IDLE_TIMEOUT))
        .user_agent(concat!("ferrule/", env!("CARGO_PKG_VERSION")));
    if config.uri.starts_with("https:") {
        let tls = tls_config(config)?;
        // reqwest takes a `rustls::ClientConfig` by value (it checks the type at run time).
        builder = builder.use_preconfigured_tls((*tls).clone());
    }
    builder
        .build()
        .map_err(|e| misconfigured(format!("The HTTP client cannot be built: {e}")))
}

/// The TCP check of opening (and, for a connection test over `https`, the TLS handshake).
async fn check_reachable(config: &ClientConfig, base: &url::Url) -> Result<(), TransportError> {
    let host = base.host_str().unwrap_or_default().to_string();
    let port = base.port_or_known_default().unwrap_or(80);
    let unreachable = |detail: String| {
        TransportError::new(
            ErrorKind::Unreachable,
            format!(
                "Could not establish a connection on '{host}:{port}'. Make sure the endpoint is reachable and that no firewall prevents the connection. ({detail})"
            ),
        )
    };
    let stream = match tokio::time::timeout(
        SOCKET_CHECK,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Err(_) => return Err(unreachable("no answer within 2 s".into())),
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Ok(Ok(s)) => s,
    };
    if config.dry_run && base.scheme() == "https" {
        let tls = tls_config(config)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
            misconfigured(format!("The host '{host}' is not a valid TLS name: {e}"))
        })?;
        let connector = tokio_rustls::TlsConnector::from(tls);
        match tokio::time::timeout(config.connect_timeout, connector.connect(name, stream)).await {
            Err(_) => {
                return Err(TransportError::new(
                    ErrorKind::Timeout,
                    format!("The TLS handshake with '{host}:{port}' timed out."),
                ));
            }
            Ok(Err(e)) => {
                return Err(crate::tls::classify(&e).unwrap_or_else(|| {
                    misconfigured(format!(
                        "The TLS handshake with '{host}:{port}' failed: {e}"
                    ))
                }));
            }
            Ok(Ok(_)) => {}
        }
    }
    Ok(())
}

/// Connects: checks the configuration and that the host is reachable, then starts the sender.
pub fn connect(config: ClientConfig) -> BoxFuture<'static, Result<Connected, TransportError>> {
    Box::pin(async move {
        let settings = settings(&config)?;
        let (base, basic) = base_uri(&config)?;
        let http = build_http(&config, &settings)?;
        let auth = auth_of(&config, &http)?;
        check_reachable(&config, &base).await?;
        if config.dry_run
            && let Auth::Bearer(tokens) = &auth
        {
            tokens.token().await?;
        }
        let (events_tx, events) = mpsc::channel(4);
        let (_deliveries_tx, deliveries) = mpsc::channel(1);
        let sender = Arc::new(Sender {
            http,
            base,
            basic,
            auth,
            settings,
            events: events_tx,
        });
        let (jobs, queued) = mpsc::unbounded_channel();
        let worker = tokio::spawn(async move {
            // The deliveries' sender lives as long as the client: no source ever delivers.
            let _deliveries = _deliveries_tx;
            run(sender, queued).await;
        });
        Ok(Connected {
            client: Box::new(HttpClient { jobs, worker }),
            deliveries,
            events,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    fn config(specific: &[(&str, &str)]) -> ClientConfig {
        ClientConfig::for_test(
            Protocol::HttpPush,
            "http://user:p%40ss@127.0.0.1:8080/prefix/",
            specific,
        )
    }

    #[test]
    fn specific_config_is_read_as_ditto_reads_it() {
        let s = settings(&config(&[])).unwrap();
        assert_eq!(s.parallelism, 1);
        assert_eq!(s.timeout, Duration::from_secs(60));
        assert_eq!(s.omit_body, ["GET", "DELETE"]);
        for (given, rounded) in [
            ("1", 1),
            ("2", 2),
            ("3", 4),
            ("5", 8),
            ("9", 16),
            ("10", 16),
        ] {
            let s = settings(&config(&[("parallelism", given)])).unwrap();
            assert_eq!(s.parallelism, rounded, "{given}");
        }
        for bad in ["0", "-1", "many"] {
            let e = settings(&config(&[("parallelism", bad)])).unwrap_err();
            assert_eq!(
                e.message,
                format!(
                    "The configured value '{bad}' of 'parallelism' is invalid. It must be a positive integer."
                )
            );
        }
        let s = settings(&config(&[("idleTimeout", "3s")])).unwrap();
        assert_eq!(s.timeout, Duration::from_secs(3));
        let s = settings(&config(&[("idleTimeout", "1500")])).unwrap();
        assert_eq!(s.timeout, Duration::from_millis(1500));
        for (bad, shown) in [("-3s", "-3"), ("61s", "61"), ("2m", "120")] {
            let e = settings(&config(&[("idleTimeout", bad)])).unwrap_err();
            assert_eq!(
                e.message,
                format!(
                    "Idle timeout '{shown}' is not within the allowed range of [0, 60] seconds."
                )
            );
        }
        let s = settings(&config(&[("omitRequestBody", "")])).unwrap();
        assert!(s.omit_body.is_empty());
        let s = settings(&config(&[("omitRequestBody", "POST, HEAD")])).unwrap();
        assert_eq!(s.omit_body, ["POST", "HEAD"]);
        let e = settings(&config(&[("omitRequestBody", "GET,FETCH")])).unwrap_err();
        assert!(
            e.message
                .ends_with("It contains an invalid HTTP method: FETCH"),
            "{}",
            e.message
        );
    }

    #[test]
    fn urls_are_built_as_dittos() {
        let (base, basic) = base_uri(&config(&[])).unwrap();
        assert_eq!(basic, Some(("user".to_string(), "p@ss".to_string())));
        assert_eq!(base.as_str(), "http://127.0.0.1:8080/prefix/");
        let publish = |headers: &[(&str, &str)]| {
            let mut message = ferrule_protocol::ExternalMessage::text("x");
            for (k, v) in headers {
                message.headers.insert(*k, *v);
            }
            Publish {
                target: 0,
                address: String::new(),
                message,
            }
        };
        let url = |path: &str, p: &Publish| request_url(&base, path, p).unwrap().to_string();
        assert_eq!(
            url("/path/appendage/", &publish(&[])),
            "http://127.0.0.1:8080/prefix/path/appendage/"
        );
        assert_eq!(
            url("events", &publish(&[])),
            "http://127.0.0.1:8080/prefix/events"
        );
        assert_eq!(
            url("?a=b", &publish(&[])),
            "http://127.0.0.1:8080/prefix?a=b"
        );
        assert_eq!(
            url(
                "/x",
                &publish(&[
                    ("http.path", "my/awesome/path"),
                    ("http.query", "a=b&c=d&e=f")
                ])
            ),
            "http://127.0.0.1:8080/my/awesome/path?a=b&c=d&e=f"
        );
        assert_eq!(method_and_path("PUT:/a:b"), ("PUT", "/a:b"));
        assert_eq!(method_and_path("DELETE:"), ("DELETE", ""));
        assert_eq!(method_and_path("events"), ("POST", "events"));
    }
}

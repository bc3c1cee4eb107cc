//! HTTP push connections of the real binary against an HTTP server the test runs (hyper on
//! loopback): twin events become requests (method, path, query, headers, body, basic auth,
//! HMAC signing, OAuth bearer tokens), responses become live responses, and a server that
//! answers 5xx, is slow or refuses connections shows in the metrics, logs and status.

mod common;

use common::{Ferrule, json, wait_for_live_status};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(15);

/// One request the server received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the server answers: status, content type, body, and how long it waits first.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    delay: Duration,
}

impl Answer {
    fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            content_type,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
}

type Behaviour = Arc<dyn Fn(&Received) -> Answer + Send + Sync>;

/// An HTTP/1.1 server on a free loopback port: every request goes to the returned receiver and
/// is answered as `behaviour` says.
async fn server(behaviour: Behaviour) -> (u16, mpsc::UnboundedReceiver<Received>) {
    serve(behaviour, None).await
}

/// The same server over TLS, with the test server certificate (for 127.0.0.1 and localhost,
/// signed by the test CA; see [`common::tls_file`]).
async fn https_server(behaviour: Behaviour) -> (u16, mpsc::UnboundedReceiver<Received>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(common::tls_file("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(common::tls_file("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    serve(
        behaviour,
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
    )
    .await
}

async fn serve(
    behaviour: Behaviour,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (u16, mpsc::UnboundedReceiver<Received>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let (tx, behaviour, tls) = (tx.clone(), behaviour.clone(), tls.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (tx, behaviour) = (tx.clone(), behaviour.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let received = Received {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_string(),
                                query: parts.uri.query().map(str::to_string),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_string())
                                    })
                                    .collect(),
                                body,
                            };
                            let answer = behaviour(&received);
                            let _ = tx.send(received);
                            tokio::time::sleep(answer.delay).await;
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(answer.status)
                                    .header("content-type", answer.content_type)
                                    .header("x-served-by", "test-server")
                                    .body(http_body_util::Full::new(bytes::Bytes::from(
                                        answer.body,
                                    )))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }
                    Some(acceptor) => {
                        // A client that refuses the certificate ends the handshake.
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = http
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        }
                    }
                }
            });
        }
    });
    (port, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    timeout(WAIT, rx.recv())
        .await
        .expect("the server received no request in time")
        .unwrap()
}

fn unique(test: &str) -> String {
    common::unique(test, '-')
}

async fn put_thing(f: &Ferrule, id: &str, body: Value) {
    let resp = f.put_json(&format!("/api/2/things/{id}"), &body).await;
    assert!(resp.status().is_success(), "{}", resp.status());
}

/// Polls the connection's logs until a failure entry's message passes `wanted`.
async fn wait_for_failure_log(f: &Ferrule, id: &str, wanted: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let logs = json(f.get(&format!("/api/2/connections/{id}/logs")).await).await;
        let logged = logs["connectionLogs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["level"] == "failure" && e["message"].as_str().is_some_and(&wanted));
        if logged {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such failure logged: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn twin_events_are_pushed_as_requests_with_path_headers_body_and_basic_auth() {
    let (_d, f) = common::live_server();
    let (port, mut received) = server(Arc::new(|_| Answer::new(204, "text/plain", ""))).await;
    let ns = unique("push").replace('-', "_");
    let connection = json!({
        "connectionType": "http-push",
        "connectionStatus": "open",
        "uri": format!("http://ditto:s%40cret@127.0.0.1:{port}/prefix/"),
        "targets": [
            {"address": "PUT:/things/{{ thing:id }}", "topics": ["_/_/things/twin/events"],
             "authorizationContext": ["ditto:outbound"],
             "headerMapping": {"x-thing": "{{ thing:id }}", "http.query": "source=ferrule&ns={{ thing:namespace }}"}},
            {"address": "GET:seen", "topics": ["_/_/things/twin/events"],
             "authorizationContext": ["ditto:outbound"]}
        ]
    });
    common::create_open(&f, "push-events", &connection).await;
    let thing = format!("{ns}:lamp");
    put_thing(&f, &thing, json!({"attributes": {"on": true}})).await;
    let mut requests = [next(&mut received).await, next(&mut received).await];
    requests.sort_by(|a, b| a.method.cmp(&b.method));
    let (get, put) = (&requests[0], &requests[1]);

    assert_eq!(put.method, "PUT");
    assert_eq!(put.path, format!("/prefix/things/{thing}"));
    assert_eq!(
        put.query.as_deref(),
        Some(format!("source=ferrule&ns={ns}").as_str())
    );
    assert_eq!(put.header("x-thing"), Some(thing.as_str()));
    assert_eq!(
        put.header("http.query"),
        None,
        "reserved headers are not sent"
    );
    assert_eq!(put.header("authorization"), Some("Basic ZGl0dG86c0BjcmV0"));
    assert_eq!(
        put.header("content-type"),
        Some("application/vnd.eclipse.ditto+json")
    );
    let event = put.json();
    assert_eq!(
        event["topic"],
        format!("{ns}/lamp/things/twin/events/created")
    );
    assert_eq!(event["value"]["attributes"]["on"], true);

    assert_eq!(get.method, "GET");
    assert_eq!(get.path, "/prefix/seen");
    assert!(get.body.is_empty(), "GET is sent without a body");

    // The second response is counted once it arrived.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = json(f.get("/api/2/connections/push-events/metrics").await).await;
        let published = &metrics["connectionMetrics"]["outbound"]["published"];
        if published["success"]["PT1M"] == 2 {
            assert_eq!(published["failure"]["PT1M"], 0, "{metrics}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_live_message_is_answered_with_the_servers_response() {
    let (_d, f) = common::live_server();
    let (port, mut received) = server(Arc::new(|r: &Received| {
        // The Ditto mapper sends the message as Ditto Protocol: its value is the question.
        let question = r.json()["value"].as_str().unwrap_or_default().to_string();
        Answer::new(
            418,
            "application/json",
            json!({"answer": format!("{question}?")}).to_string(),
        )
    }))
    .await;
    let u = unique("live");
    common::create_open(
        &f,
        "push-live",
        &json!({
            "connectionType": "http-push",
            "connectionStatus": "open",
            "uri": format!("http://127.0.0.1:{port}"),
            "targets": [{"address": "POST:/inbox/{{ thing:id }}/{{ topic:subject }}",
                         "topics": ["_/_/things/live/messages"],
                         "authorizationContext": ["ditto:outbound"]}]
        }),
    )
    .await;
    common::create_open(
        &f,
        "push-live-device",
        &json!({
            "connectionType": "mqtt",
            "connectionStatus": "open",
            "uri": "tcp://127.0.0.1:1883",
            "sources": [{"addresses": [format!("ferrule-e2e/{u}/ask")], "qos": 1,
                         "authorizationContext": ["ditto:inbound"],
                         "replyTarget": {"enabled": true, "address": format!("ferrule-e2e/{u}/answers"),
                                         "expectedResponseTypes": ["response", "error"]}}]
        }),
    )
    .await;
    let mut o = rumqttc::MqttOptions::new(format!("{u}-device"), "127.0.0.1", 1883);
    o.set_clean_session(true);
    let (device, mut events) = rumqttc::AsyncClient::new(o, 10);
    device
        .subscribe(
            format!("ferrule-e2e/{u}/answers"),
            rumqttc::QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    let (answers_tx, mut answers) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    subscribed_tx.take().map(|t| t.send(()));
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = answers_tx.send(p.payload.to_vec());
                }
                Ok(_) => {}
                Err(e) => panic!("the test's MQTT client failed: {e}"),
            }
        }
    });
    timeout(WAIT, subscribed).await.unwrap().unwrap();
    let thing = format!("org.push:{u}");
    // The device asks the thing a question: a live message with these headers.
    let ask = |headers: Value, question: &str| {
        let message = json!({
            "topic": format!("org.push/{u}/things/live/messages/ask"),
            "headers": headers, "path": "/inbox/messages/ask", "value": question
        });
        device.publish(
            format!("ferrule-e2e/{u}/ask"),
            rumqttc::QoS::AtLeastOnce,
            false,
            message.to_string(),
        )
    };
    ask(
        json!({"correlation-id": format!("{u}-q1"), "content-type": "text/plain",
               "requested-acks": ["live-response"], "response-required": true, "timeout": "10s"}),
        "why",
    )
    .await
    .unwrap();
    let request = next(&mut received).await;
    assert_eq!(request.path, format!("/inbox/{thing}/ask"));
    assert_eq!(
        request.header("content-type"),
        Some("application/vnd.eclipse.ditto+json")
    );
    assert_eq!(request.json()["value"], "why");

    let answer = timeout(WAIT, answers.recv())
        .await
        .expect("no answer reached the device")
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        answer["topic"],
        format!("org.push/{u}/things/live/messages/ask")
    );
    assert_eq!(answer["status"], 418, "{answer}");
    assert_eq!(answer["value"], json!({"answer": "why?"}));
    assert_eq!(answer["headers"]["correlation-id"], format!("{u}-q1"));
    assert_eq!(answer["headers"]["x-served-by"], "test-server");

    // As in Ditto, a live message waits for its response without asking for it: no
    // `requested-acks`, no `response-required`, no `timeout` (the implicit `live-response`).
    ask(
        json!({"correlation-id": format!("{u}-q2"), "content-type": "text/plain"}),
        "how",
    )
    .await
    .unwrap();
    assert_eq!(next(&mut received).await.json()["value"], "how");
    let answer = timeout(WAIT, answers.recv())
        .await
        .expect("no answer to a message that did not ask for one explicitly")
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["status"], 418, "{answer}");
    assert_eq!(answer["value"], json!({"answer": "how?"}));
    assert_eq!(answer["headers"]["correlation-id"], format!("{u}-q2"));
}

#[tokio::test]
async fn hmac_and_oauth_credentials_authenticate_each_request() {
    let (_d, f) = common::live_server();
    let token_requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = token_requests.clone();
    let (port, mut received) = server(Arc::new(move |r: &Received| {
        if r.path == "/token" {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Answer::new(
                200,
                "application/json",
                json!({"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600})
                    .to_string(),
            );
        }
        Answer::new(200, "text/plain", "ok")
    }))
    .await;
    let ns = unique("auth").replace('-', "_");
    let target = json!([{"address": "POST:/events", "topics": ["_/_/things/twin/events"],
                         "authorizationContext": ["ditto:outbound"]}]);
    common::create_open(
        &f,
        "push-aws",
        &json!({
            "connectionType": "http-push", "connectionStatus": "open",
            "uri": format!("http://127.0.0.1:{port}"),
            "credentials": {"type": "hmac", "algorithm": "aws4-hmac-sha256", "parameters": {
                "region": "us-east-1", "service": "iam", "accessKey": "MyAwesomeAccessKey",
                "secretKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "canonicalHeaders": ["host", "x-amz-date"]}},
            "targets": target
        }),
    )
    .await;
    common::create_open(
        &f,
        "push-oauth",
        &json!({
            "connectionType": "http-push", "connectionStatus": "open",
            "uri": format!("http://127.0.0.1:{port}"),
            "credentials": {"type": "oauth-password",
                "tokenEndpoint": format!("http://127.0.0.1:{port}/token"),
                "clientId": "ferrule", "requestedScopes": "push", "username": "u", "password": "p"},
            "targets": target
        }),
    )
    .await;
    for n in 0..3 {
        put_thing(&f, &format!("{ns}:t{n}"), json!({"attributes": {"n": n}})).await;
    }
    let (mut signed, mut bearer) = (0, 0);
    let mut form = None;
    while signed < 3 || bearer < 3 {
        let r = next(&mut received).await;
        if r.path == "/token" {
            form = Some(String::from_utf8_lossy(&r.body).to_string());
            continue;
        }
        let auth = r.header("authorization").unwrap_or_default().to_string();
        if auth.starts_with("AWS4-HMAC-SHA256 Credential=MyAwesomeAccessKey/") {
            assert!(auth.contains(
                "/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature="
            ));
            assert!(r.header("x-amz-date").is_some_and(|d| d.len() == 16));
            signed += 1;
        } else if auth == "Bearer tok-1" {
            bearer += 1;
        } else {
            panic!("a request without the expected authorization: {r:?}");
        }
    }
    let form = form.expect("no token was requested");
    assert!(form.contains("grant_type=password"), "{form}");
    assert!(
        form.contains("username=u") && form.contains("client_id=ferrule"),
        "{form}"
    );
    assert_eq!(
        token_requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the token is kept until it expires"
    );
}

#[tokio::test]
async fn failures_of_the_server_show_in_metrics_logs_and_status() {
    let (_d, f) = common::live_server();
    let (port, mut received) = server(Arc::new(|r: &Received| {
        if r.path == "/slow" {
            let mut answer = Answer::new(200, "text/plain", "late");
            answer.delay = Duration::from_secs(3);
            return answer;
        }
        Answer::new(503, "text/plain", "busy")
    }))
    .await;
    let ns = unique("fail").replace('-', "_");
    common::create_open(
        &f,
        "push-fail",
        &json!({
            "connectionType": "http-push", "connectionStatus": "open",
            "uri": format!("http://127.0.0.1:{port}"),
            "specificConfig": {"idleTimeout": "1s"},
            "targets": [{"address": "POST:/busy", "topics": ["_/_/things/twin/events"],
                         "authorizationContext": ["ditto:outbound"]}]
        }),
    )
    .await;
    put_thing(&f, &format!("{ns}:a"), json!({})).await;
    assert_eq!(next(&mut received).await.path, "/busy");
    wait_for_failure_log(&f, "push-fail", |m| {
        m == "Got non success status code: 503 and body: busy"
    })
    .await;
    let metrics = json(f.get("/api/2/connections/push-fail/metrics").await).await;
    assert_eq!(
        metrics["connectionMetrics"]["outbound"]["published"]["failure"]["PT1M"], 1,
        "{metrics}"
    );

    // A slow server: the request times out, the client reconnects and goes on.
    let mut slow = json(f.get("/api/2/connections/push-fail").await).await;
    slow["targets"][0]["address"] = json!("POST:/slow");
    let resp = f.put_json("/api/2/connections/push-fail", &slow).await;
    assert!(resp.status().is_success());
    wait_for_live_status(&f, "push-fail", "open").await;
    put_thing(&f, &format!("{ns}:b"), json!({})).await;
    assert_eq!(next(&mut received).await.path, "/slow");
    wait_for_failure_log(&f, "push-fail", |m| {
        m.contains("Request timed out: http://127.0.0.1")
    })
    .await;
    wait_for_live_status(&f, "push-fail", "open").await;

    // A server that is not there: a connection test says so, opening fails.
    let closed = common::free_port();
    let mut gone = slow.clone();
    gone["uri"] = json!(format!("http://127.0.0.1:{closed}"));
    gone.as_object_mut().unwrap().remove("id");
    let resp = f.post_json("/api/2/connections?dry-run=true", &gone).await;
    let status = resp.status();
    let body = json(resp).await;
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status} {body}"
    );
    assert!(
        body["description"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("127.0.0.1:{closed}"))
            || body["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("127.0.0.1:{closed}")),
        "{body}"
    );
}

#[tokio::test]
async fn http_push_connections_are_validated_as_ditto_validates_them() {
    let (_d, f) = common::live_server();
    let base = json!({
        "connectionType": "http-push",
        "connectionStatus": "closed",
        "uri": "http://127.0.0.1:8080",
        "targets": [{"address": "POST:/api", "topics": ["_/_/things/twin/events"],
                     "authorizationContext": ["ditto:outbound"]}]
    });
    let refused = |change: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        change(&mut c);
        c
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            refused(&|c| {
                c["sources"] = json!([{"addresses": ["a"], "authorizationContext": ["x"]}])
            }),
            "A connection of type 'http-push' may not have any source.",
        ),
        (
            refused(&|c| c["targets"][0]["address"] = json!("events")),
            "Target of address 'events' of connection 'push-v': Target address has invalid format. Expect '<VERB>:/<path>', for example 'POST:/api'.",
        ),
        (
            refused(&|c| c["targets"][0]["address"] = json!("OPTIONS:/bar")),
            "Target of address 'OPTIONS:/bar' of connection 'push-v': The method 'OPTIONS' is not supported",
        ),
        (
            refused(&|c| c["specificConfig"] = json!({"parallelism": "0"})),
            "The configured value '0' of 'parallelism' is invalid. It must be a positive integer.",
        ),
        (
            refused(&|c| c["specificConfig"] = json!({"idleTimeout": "61s"})),
            "Idle timeout '61' is not within the allowed range of [0, 60] seconds.",
        ),
        (
            refused(&|c| {
                c["credentials"] = json!({"type": "oauth-client-credentials",
            "tokenEndpoint": "http://idp/token", "clientId": "c", "clientSecret": "s", "requestedScopes": "a"})
            }),
            "The OAuth2 token endpoint must be accessed via HTTPS in order not to transmit the client secret in plain text.",
        ),
        (
            refused(&|c| {
                c["credentials"] = json!({"type": "oauth-client-credentials",
            "tokenEndpoint": "https://idp/token", "clientId": "c", "clientSecret": "s", "requestedScopes": "a  b"})
            }),
            "Invalid format of requested scopes: a  b",
        ),
    ];
    for (connection, message) in cases {
        let resp = f.put_json("/api/2/connections/push-v", &connection).await;
        let status = resp.status();
        let body = json(resp).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let text = body["message"].as_str().unwrap_or_default();
        assert!(text.starts_with(message), "{message}: {body}");
    }
    for address in [
        "POST:events",
        "PUT:ditto/{{thing:id}}",
        "DELETE:ditto/{{entity:id}}",
        "POST:",
        "GET:foo",
    ] {
        let mut c = base.clone();
        c["targets"][0]["address"] = json!(address);
        let resp = f.put_json("/api/2/connections/push-ok", &c).await;
        assert!(
            resp.status().is_success(),
            "{address}: {}",
            json(resp).await
        );
        let resp = f.delete("/api/2/connections/push-ok").await;
        assert!(resp.status().is_success());
    }
}

#[tokio::test]
async fn the_http_push_example_connection_passes_a_test_and_delivers() {
    let (_d, f) = common::live_server();
    let (port, mut received) = server(Arc::new(|_| Answer::new(200, "text/plain", "ok"))).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/connections/http-push-webhook.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let example: Value = serde_json::from_str(&text).unwrap();
    let resp = f
        .post_json("/api/2/connections?dry-run=true", &example)
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", json(resp).await);
    common::create_open(&f, "webhook", &example).await;
    let ns = unique("hook").replace('-', "_");
    put_thing(
        &f,
        &format!("{ns}:door"),
        json!({"attributes": {"open": false}}),
    )
    .await;
    let request = next(&mut received).await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/hooks/ditto/{ns}/door"));
    assert_eq!(
        request.header("x-thing-id"),
        Some(format!("{ns}:door").as_str())
    );
    assert!(request.header("x-correlation-id").is_some());
    assert_eq!(request.json()["value"]["attributes"]["open"], false);
}

/// HTTPS: events reach a server whose certificate the connection's `ca` vouches for; a
/// connection without that `ca` refuses the certificate, sends nothing, and says why.
#[tokio::test]
async fn events_are_pushed_over_https_to_a_server_the_ca_vouches_for() {
    let (_d, f) = common::live_server();
    let (port, mut received) = https_server(Arc::new(|_| Answer::new(204, "text/plain", ""))).await;
    let ns = unique("tls").replace('-', "_");
    let ca = std::fs::read_to_string(common::tls_file("ca.pem")).unwrap();
    let connection = |ca: Option<&str>| {
        let mut c = json!({
            "connectionType": "http-push",
            "connectionStatus": "open",
            "uri": format!("https://localhost:{port}"),
            "validateCertificates": true,
            "targets": [{"address": "POST:/events/{{ thing:id }}",
                         "topics": [format!("_/_/things/twin/events?namespaces={ns}")],
                         "authorizationContext": ["ditto:outbound"]}]
        });
        if let Some(ca) = ca {
            c["ca"] = json!(ca);
        }
        c
    };
    common::create_open(&f, "push-https", &connection(Some(&ca))).await;
    common::create_open(&f, "push-https-untrusted", &connection(None)).await;
    let thing = format!("{ns}:valve");
    put_thing(&f, &thing, json!({"attributes": {"open": false}})).await;
    let request = next(&mut received).await;
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/events/{thing}"));
    assert_eq!(request.json()["value"]["attributes"]["open"], false);
    wait_for_failure_log(&f, "push-https-untrusted", |m| {
        m.to_ascii_lowercase().contains("certificate")
    })
    .await;
    assert!(
        timeout(Duration::from_millis(500), received.recv())
            .await
            .is_err(),
        "the connection that does not trust the server sent nothing"
    );
}

/// A source that requests the HTTP target's acknowledgement settles its message with the web
/// server's answer: a 503 has the broker redeliver the message (RabbitMQ), and the 200 that
/// answers the redelivery acknowledges it, so it leaves the queue; the server saw the change
/// twice.
#[tokio::test]
async fn a_source_waits_for_the_web_servers_answer_and_redelivers_after_a_5xx() {
    use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};
    let (_d, f) = common::live_server();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = answered.clone();
    // The first request of the modification (value 1) is answered 503, everything else 200.
    let (port, mut received) = server(Arc::new(move |r: &Received| {
        let first_of_modify = r.json()["value"] == 1
            && counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        if first_of_modify {
            Answer::new(503, "text/plain", "busy")
        } else {
            Answer::new(200, "application/json", r#"{"stored": true}"#)
        }
    }))
    .await;
    let u = unique("acked");
    let ns = u.replace('-', "_");
    let push = format!("push-ack-{u}");
    common::create_open(
        &f,
        &push,
        &json!({
            "connectionType": "http-push",
            "connectionStatus": "open",
            "uri": format!("http://127.0.0.1:{port}"),
            "targets": [{"address": "PUT:/store/{{ thing:id }}",
                         "topics": [format!("_/_/things/twin/events?namespaces={ns}")],
                         "authorizationContext": ["ditto:outbound"],
                         "issuedAcknowledgementLabel": "{{connection:id}}:stored"}]
        }),
    )
    .await;
    let thing = format!("{ns}:meter");
    put_thing(&f, &thing, json!({"attributes": {"n": 0}})).await;
    let created = next(&mut received).await;
    assert!(created.path.ends_with(&thing), "{created:?}");

    let rabbit = lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        lapin::ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ on 127.0.0.1:5672 must be reachable");
    let channel = rabbit.create_channel().await.unwrap();
    let queue = format!("ferrule-push-ack-{u}");
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongInt(120_000));
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            arguments,
        )
        .await
        .unwrap();
    common::create_open(
        &f,
        &format!("push-ack-src-{u}"),
        &json!({
            "connectionType": "amqp-091",
            "connectionStatus": "open",
            "uri": "amqp://guest:guest@127.0.0.1:5672/%2f",
            "sources": [{"addresses": [queue.clone()],
                         "authorizationContext": ["ditto:inbound"],
                         "acknowledgementRequests": {"includes": [format!("{push}:stored")]}}]
        }),
    )
    .await;
    let command = json!({"topic": format!("{ns}/meter/things/twin/commands/modify"),
        "headers": {"correlation-id": format!("{u}-1"), "timeout": "10s"},
        "path": "/attributes/n", "value": 1});
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            command.to_string().as_bytes(),
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let first = next(&mut received).await;
    let second = next(&mut received).await;
    for r in [&first, &second] {
        assert_eq!(r.path, format!("/store/{thing}"));
        assert_eq!(r.json()["value"], 1, "{r:?}");
    }
    // The second answer (200) acknowledges the message: it leaves the queue for good.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let metrics = json(
            f.get(&format!("/api/2/connections/push-ack-src-{u}/metrics"))
                .await,
        )
        .await;
        let acknowledged = &metrics["connectionMetrics"]["inbound"]["acknowledged"];
        if declared.message_count() == 0 && acknowledged["success"]["PT1M"] == 1 {
            assert_eq!(acknowledged["failure"]["PT1M"], 1, "the 503: {metrics}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        timeout(Duration::from_millis(500), received.recv())
            .await
            .is_err(),
        "no third request: the message was acknowledged"
    );
}

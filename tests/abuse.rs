//! REST abuse is answered with Ditto errors, not crashes: bodies over the limit (with and without
//! a Content-Length), deeply nested JSON, invalid UTF-8, slow and silent clients, and ten
//! thousand connections. After each the server still serves.

mod common;

use common::{Ferrule, json, start, start_with_config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `host:port` of the server.
fn addr(f: &Ferrule) -> String {
    f.base.trim_start_matches("http://").to_string()
}

fn basic_auth(f: &Ferrule) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("devops:{}", f.password))
}

async fn assert_serving(f: &Ferrule) {
    let resp = reqwest::get(f.url("/health"))
        .await
        .expect("the server still answers");
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = f.get("/api/2/connections?ids-only=true").await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// A Ditto error of `status` (and `error`, when given).
async fn assert_ditto_error(resp: reqwest::Response, status: u16, error: Option<&str>) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body = json(resp).await;
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
    if let Some(error) = error {
        assert_eq!(body["error"], error, "{body}");
    }
    body
}

/// Sends a raw HTTP/1.1 request and reads the answer until the server closes or 10 s pass.
async fn raw_exchange(f: &Ferrule, head: &str, body_chunks: &[Vec<u8>]) -> String {
    let mut stream = TcpStream::connect(addr(f)).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in body_chunks {
        // The server may answer (and close) before it has read everything.
        if stream.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn chunked(data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = data
        .chunks(chunk)
        .map(|c| {
            let mut v = format!("{:x}\r\n", c.len()).into_bytes();
            v.extend_from_slice(c);
            v.extend_from_slice(b"\r\n");
            v
        })
        .collect();
    out.push(b"0\r\n\r\n".to_vec());
    out
}

const LIMIT: usize = 65_536;

/// A JSON object of exactly `len` bytes.
fn json_of_len(len: usize) -> Vec<u8> {
    let mut v = b"{\"name\":\"".to_vec();
    v.resize(len - 2, b'a');
    v.extend_from_slice(b"\"}");
    v
}

/// The body-taking routes: (method, path, content type).
const BODY_ROUTES: [(&str, &str, &str); 6] = [
    ("POST", "/api/2/connections", "application/json"),
    ("PUT", "/api/2/connections/abuse", "application/json"),
    ("POST", "/api/2/connections/abuse/command", "text/plain"),
    ("PUT", "/api/2/things/org.abuse:t", "application/json"),
    (
        "PATCH",
        "/api/2/things/org.abuse:t/attributes",
        "application/merge-patch+json",
    ),
    (
        "PUT",
        "/api/2/things/org.abuse:t/attributes/a",
        "application/json",
    ),
];

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_or_without_a_content_length() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_with_config(dir.path(), &format!("[http]\nmax_body_bytes = {LIMIT}\n"));
    f.put_json("/api/2/connections/abuse", &common::mqtt_connection())
        .await;
    let over = json_of_len(LIMIT + 1);
    for (method, path, content_type) in BODY_ROUTES {
        let method: Method = method.parse().unwrap();
        // With a Content-Length.
        let resp = f
            .req(method.clone(), path)
            .header("content-type", content_type)
            .body(over.clone())
            .send()
            .await
            .unwrap();
        assert_ditto_error(resp, 413, Some("gateway:request.entity.toolarge")).await;
        // Chunked, no Content-Length: the limit is counted while reading.
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\
             Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            basic_auth(&f)
        );
        let answer = raw_exchange(&f, &head, &chunked(&over, 4096)).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{method} {path}: {answer}"
        );
        assert!(
            answer.contains("\"error\":\"gateway:request.entity.toolarge\""),
            "{answer}"
        );
        // Exactly at the limit passes the size check (whatever the handler then says).
        let at = f
            .req(method.clone(), path)
            .header("content-type", content_type)
            .body(json_of_len(LIMIT))
            .send()
            .await
            .unwrap();
        assert_ne!(
            at.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path}"
        );
    }
    // A chunked body that never ends: answered 413 after the limit, the connection closed.
    let head = format!(
        "POST /api/2/connections HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        basic_auth(&f)
    );
    let endless: Vec<Vec<u8>> = (0..16_384)
        .map(|_| {
            let mut v = b"2000\r\n".to_vec();
            v.extend(std::iter::repeat_n(b' ', 0x2000));
            v.extend_from_slice(b"\r\n");
            v
        })
        .collect(); // 128 MiB if it were all read
    let started = Instant::now();
    let answer = raw_exchange(&f, &head, &endless).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A declared length far over the limit is refused before the body is read.
    let head = format!(
        "POST /api/2/connections HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\
         Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{{}}",
        basic_auth(&f)
    );
    let answer = raw_exchange(&f, &head, &[]).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_serving(&f).await;
}

/// Requests without credentials whose 64 KiB body follows the head a moment later, in chunks
/// (as clients that write the head and the body separately do), 32 at once: every client reads
/// its 401. The server used to answer before reading the body and close the socket with the
/// body unread, so the client's next write was answered with a reset, which discards the 401
/// the client had not read yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_with_bodies_all_get_their_401() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    let address = addr(&f);
    let body = json_of_len(64 * 1024);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (address, body) = (address.clone(), body.clone());
        clients.spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..10 {
                let mut stream = TcpStream::connect(&address).await.unwrap();
                let head = format!(
                    "POST /api/2/connections HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                for chunk in body.chunks(16 * 1024) {
                    if stream.write_all(chunk).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let mut answer = Vec::new();
                let read = tokio::time::timeout(
                    Duration::from_secs(10),
                    stream.read_to_end(&mut answer),
                )
                .await;
                let text = String::from_utf8_lossy(&answer).into_owned();
                answers.push(match read {
                    Ok(Ok(_)) | Ok(Err(_)) if text.starts_with("HTTP/1.1 401") => Ok(()),
                    other => Err(format!("{other:?}: {text:?}")),
                });
            }
            answers
        });
    }
    let (mut unauthorized, mut failed) = (0, Vec::new());
    while let Some(answers) = clients.join_next().await {
        for answer in answers.unwrap() {
            match answer {
                Ok(()) => unauthorized += 1,
                Err(e) => failed.push(e),
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} clients did not read their 401: {:?}",
        failed.len(),
        unauthorized + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert_serving(&f).await;
}

#[tokio::test]
async fn deeply_nested_json_is_400_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    let open_arrays = "[".repeat(100_000);
    let closed_arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    for body in [&open_arrays, &closed_arrays, &objects] {
        for (method, path, content_type) in BODY_ROUTES {
            if path.ends_with("/command") {
                continue;
            }
            let resp = f
                .req(method.parse().unwrap(), path)
                .header("content-type", content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let error = assert_ditto_error(resp, 400, Some("json.invalid")).await;
            let message = error["message"].as_str().unwrap();
            assert!(
                message.contains("recursion limit"),
                "{method} {path}: the message says why: {message}"
            );
            assert!(
                message.len() < 1000,
                "the message is short: {}",
                message.len()
            );
        }
        assert_serving(&f).await;
    }
}

/// The deepest values the API accepts are stored and load again after a restart (the stored
/// record wraps them in one more level): a thing or connection nested deeper than 100 levels is
/// refused, also when a path-level PUT would deepen a thing step by step.
#[tokio::test]
async fn the_deepest_accepted_values_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = start(dir.path());
    let resp = f
        .put_json("/api/2/things/org.abuse:deep", &json!({"attributes": {}}))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    // The deepest attribute value a PUT of the attribute accepts.
    let mut accepted_depth = 0;
    for depth in (90..=130).rev() {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let resp = f
            .req(Method::PUT, "/api/2/things/org.abuse:deep/attributes/a")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        if resp.status().is_success() {
            accepted_depth = depth;
            break;
        }
        let error = assert_ditto_error(resp, 400, Some("json.invalid")).await;
        assert!(
            error["message"].as_str().unwrap().contains("levels deep")
                || error["message"]
                    .as_str()
                    .unwrap()
                    .contains("recursion limit"),
            "{error}"
        );
    }
    assert_eq!(
        accepted_depth, 98,
        "thing 1 + attributes 1 + the value: 100 levels"
    );
    // Deepening the thing one path-level PUT at a time stops at the same limit.
    let nested = |n: usize| {
        let mut v = json!(0);
        for _ in 0..n {
            v = json!({ "o": v });
        }
        v
    };
    let resp = f
        .put_json("/api/2/things/org.abuse:deep/attributes/b", &nested(60))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let deeper = format!(
        "/api/2/things/org.abuse:deep/attributes/b{}",
        "/o".repeat(59)
    );
    let resp = f.put_json(&deeper, &nested(60)).await;
    assert_ditto_error(resp, 400, Some("json.invalid")).await;
    let merge = f
        .req(Method::PATCH, &deeper)
        .header("content-type", "application/merge-patch+json")
        .json(&nested(60))
        .send()
        .await
        .unwrap();
    assert_ditto_error(merge, 400, Some("json.invalid")).await;
    // A connection as deep as a connection body may be: root, mappingDefinitions, deep, options.
    let mut connection = common::mqtt_connection();
    connection["specificConfig"] = json!({"x": "y"});
    connection["mappingDefinitions"] =
        json!({"deep": {"mappingEngine": "Normalized", "options": nested(97)}});
    let resp = f.put_json("/api/2/connections/deep", &connection).await;
    let status = resp.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    connection["mappingDefinitions"]["deep"]["options"] = nested(98);
    let resp = f.put_json("/api/2/connections/deep2", &connection).await;
    let error = assert_ditto_error(resp, 400, Some("json.invalid")).await;
    assert!(
        error["message"].as_str().unwrap().contains("at most 100"),
        "{error}"
    );
    f.stop();
    let f = common::try_start(dir.path(), common::Options::default())
        .unwrap_or_else(|(code, err)| panic!("the restart failed ({code}): {err}"));
    let thing = f.get("/api/2/things/org.abuse:deep/attributes/a").await;
    assert_eq!(thing.status(), StatusCode::OK);
    let conn = f.get("/api/2/connections/deep").await;
    assert_eq!(conn.status(), StatusCode::OK);
}

#[tokio::test]
async fn invalid_utf8_is_400() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    f.put_json("/api/2/connections/abuse", &common::mqtt_connection())
        .await;
    let bodies: [&[u8]; 3] = [
        b"\xff\xfe\xfd",
        b"{\"name\":\"\xc3\x28\"}",
        b"{\"name\":\"ok\", \"\xed\xa0\x80\": 1}",
    ];
    for body in bodies {
        for (method, path, content_type) in BODY_ROUTES {
            let resp = f
                .req(method.parse().unwrap(), path)
                .header("content-type", content_type)
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            assert_ditto_error(resp, 400, None).await;
        }
    }
    // Invalid UTF-8 in percent-encoded path segments.
    for path in [
        "/api/2/connections/%FF%FE",
        "/api/2/connections/%C3%28/status",
        "/api/2/things/org.abuse:%FF",
        "/api/2/things/org.abuse:t/attributes/%FF",
        "/api/2/mappers/%FF",
    ] {
        let resp = f.get(path).await;
        let status = resp.status().as_u16();
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert_ditto_error(resp, status, None).await;
    }
    // Invalid UTF-8 in header values the API reads.
    let resp = f
        .req(Method::PUT, "/api/2/connections/abuse")
        .header(
            "if-match",
            reqwest::header::HeaderValue::from_bytes(b"\"\xff\"").unwrap(),
        )
        .json(&common::mqtt_connection())
        .send()
        .await
        .unwrap();
    assert!(resp.status().as_u16() < 500, "{}", resp.status());
    let resp = f
        .req(Method::POST, "/api/2/connections")
        .header(
            "content-type",
            reqwest::header::HeaderValue::from_bytes(b"application/\xff").unwrap(),
        )
        .json(&common::mqtt_connection())
        .send()
        .await
        .unwrap();
    assert!(resp.status().as_u16() < 500, "{}", resp.status());
    assert_serving(&f).await;
}

/// A slowloris client: a request line, then header bytes one at a time, never finishing.
async fn slow_client(address: String, byte_every: Duration) -> Duration {
    let started = Instant::now();
    let stream = TcpStream::connect(&address).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        if write
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .is_err()
        {
            return;
        }
        for b in b"X-Slow: ".iter().cycle() {
            tokio::time::sleep(byte_every).await;
            if write.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    });
    let mut sink = Vec::new();
    // Returns when the server closes the connection (or resets it).
    let _ = tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut sink)).await;
    writer.abort();
    started.elapsed()
}

/// A client that connects and sends nothing.
async fn silent_client(address: String) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut sink)).await;
    started.elapsed()
}

#[tokio::test]
async fn slow_and_silent_clients_are_disconnected_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_with_config(dir.path(), "[http]\nheader_read_timeout_ms = 1000\n");
    let mut clients = Vec::new();
    for i in 0..100 {
        let address = addr(&f);
        clients.push(if i % 2 == 0 {
            tokio::spawn(slow_client(address, Duration::from_millis(100)))
        } else {
            tokio::spawn(silent_client(address))
        });
    }
    // Meanwhile other clients are served promptly.
    let mut served = 0;
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let started = Instant::now();
        let resp = f.get("/api/2/connections").await;
        assert_eq!(resp.status(), StatusCode::OK);
        slowest = slowest.max(started.elapsed());
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut longest = Duration::ZERO;
    for c in clients {
        let held = c.await.unwrap();
        assert!(
            held < Duration::from_secs(5),
            "a slow client held its connection for {held:?} (timeout 1 s)"
        );
        longest = longest.max(held);
    }
    println!(
        "slowloris: 50 slow + 50 silent clients disconnected after at most {longest:?} \
         (header_read_timeout 1 s); meanwhile {served} requests served, the slowest in {slowest:?}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "others waited {slowest:?}"
    );
    assert_serving(&f).await;
}

/// A client that sends a whole request head and then its body one byte every `byte_every`;
/// returns the answer's first line and body and how long it took.
async fn slow_body_client(
    address: String,
    auth: String,
    byte_every: Duration,
) -> (String, Duration) {
    let started = Instant::now();
    let stream = TcpStream::connect(&address).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = format!(
            "PUT /api/2/connections/slow-body HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        );
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..1000 {
            tokio::time::sleep(byte_every).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), read.read_to_end(&mut answer)).await;
    writer.abort();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_body_trickled_in_is_408_after_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let f = start_with_config(dir.path(), "[http]\nbody_read_timeout_ms = 1000\n");
    let clients: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(slow_body_client(
                addr(&f),
                basic_auth(&f),
                Duration::from_millis(100),
            ))
        })
        .collect();
    let mut longest = Duration::ZERO;
    for c in clients {
        let (answer, took) = c.await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "a trickled body is answered 408: {answer}"
        );
        assert!(
            answer.contains("\"error\":\"gateway:request.timeout\""),
            "{answer}"
        );
        assert!(answer.contains("body_read_timeout_ms"), "{answer}");
        assert!(took < Duration::from_secs(5), "answered after {took:?}");
        longest = longest.max(took);
    }
    println!(
        "slow bodies: 20 clients trickling a body answered 408 after at most {longest:?} (timeout 1 s)"
    );
    assert_eq!(
        f.get("/api/2/connections/slow-body").await.status(),
        StatusCode::NOT_FOUND,
        "nothing was created"
    );
    assert_serving(&f).await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Ten thousand connections created one after another (closed, so no broker is needed): every
/// create is 201, the list and ids-only return all of them, before and after a restart. Prints the
/// time and the server's RSS (not asserted beyond a generous ceiling).
#[tokio::test]
async fn ten_thousand_connections() {
    const N: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let mut f = start_with_config(dir.path(), "[http]\nconnections_retrieve_limit = 20000\n");
    let rss_start = rss_kib(f.pid());
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(&common::mqtt_connection()).unwrap();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(N);
    for _ in 0..N {
        let resp = client
            .post(f.url("/api/2/connections"))
            .basic_auth("devops", Some(&f.password))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        ids.push(json(resp).await["id"].as_str().unwrap().to_string());
    }
    let created_in = started.elapsed();
    let rss_created = rss_kib(f.pid());

    let started = Instant::now();
    let listed: Vec<String> =
        serde_json::from_value(json(f.get("/api/2/connections?ids-only=true").await).await)
            .unwrap();
    let ids_only_in = started.elapsed();
    ids.sort();
    assert_eq!(
        listed, ids,
        "ids-only lists every connection, ordered by id"
    );
    let started = Instant::now();
    let all = json(f.get("/api/2/connections").await).await;
    let list_in = started.elapsed();
    assert_eq!(all.as_array().unwrap().len(), N);
    let rss_listed = rss_kib(f.pid());
    f.stop();

    let started = Instant::now();
    let f = start_with_config(dir.path(), "[http]\nconnections_retrieve_limit = 20000\n");
    let restart_in = started.elapsed();
    let rss_restarted = rss_kib(f.pid());
    let listed: Vec<String> =
        serde_json::from_value(json(f.get("/api/2/connections?ids-only=true").await).await)
            .unwrap();
    assert_eq!(listed.len(), N);
    let store_bytes = std::fs::metadata(
        dir.path()
            .join("data")
            .join(ferrule_host::store::redb_store::FILE_NAME),
    )
    .unwrap()
    .len();
    println!(
        "10,000 connections: created in {created_in:?} ({:.0}/s); ids-only in {ids_only_in:?}, \
         full list in {list_in:?}; RSS {} MiB at start, {} MiB after the creates, {} MiB after \
         the list; restart to listening in {restart_in:?} at {} MiB; store file {} MiB",
        N as f64 / created_in.as_secs_f64(),
        rss_start / 1024,
        rss_created / 1024,
        rss_listed / 1024,
        rss_restarted / 1024,
        store_bytes / (1024 * 1024),
    );
    assert!(rss_listed < 1024 * 1024, "RSS {rss_listed} KiB");
}

//! The things API of the real binary: Ditto's twin commands over HTTP.

mod common;

use common::{Ferrule, json, start};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn server() -> (tempfile::TempDir, Ferrule) {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    (dir, f)
}

async fn error_code(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status().as_u16(), status);
    let body = json(resp).await;
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["message"].is_string() && body["description"].is_string(),
        "{body}"
    );
    body["error"].as_str().unwrap().to_string()
}

async fn merge(f: &Ferrule, path: &str, body: serde_json::Value) -> reqwest::Response {
    f.req(Method::PATCH, path)
        .header("content-type", "application/merge-patch+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn thing_lifecycle_over_http() {
    let (_d, f) = server();
    let base = "/api/2/things/org.acme:sensor-1";
    let resp = f
        .put_json(base, &json!({"attributes": {"room": "kitchen"}, "features": {"temp": {"properties": {"value": 20}}}}))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["location"], base);
    assert_eq!(resp.headers()["etag"], "\"rev:1\"");
    let created = json(resp).await;
    assert_eq!(created["thingId"], "org.acme:sensor-1");
    assert_eq!(created["policyId"], "org.acme:sensor-1");

    let resp = f.get(base).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["etag"], "\"rev:1\"");
    assert_eq!(json(resp).await, created);

    // Attributes and properties at every level.
    let resp = f
        .put_json(&format!("{base}/attributes/floor"), &json!(3))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(json(resp).await, json!(3));
    let resp = f
        .put_json(&format!("{base}/attributes/floor"), &json!(4))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["etag"], "\"rev:3\"");
    assert_eq!(
        json(f.get(&format!("{base}/attributes")).await).await,
        json!({"room": "kitchen", "floor": 4})
    );
    let resp = f
        .put_json(
            &format!("{base}/features/temp/properties/value"),
            &json!(21.5),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        json(
            f.get(&format!("{base}/features/temp/properties/value"))
                .await
        )
        .await,
        json!(21.5)
    );

    // Merge patch.
    let resp = merge(&f, base, json!({"attributes": {"room": null, "zone": "b"}})).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        json(f.get(&format!("{base}/attributes")).await).await,
        json!({"floor": 4, "zone": "b"})
    );
    let resp = f
        .req(Method::PATCH, base)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Field selection with the special fields.
    let selected = json(
        f.get(&format!("{base}?fields=thingId,_revision,attributes/zone"))
            .await,
    )
    .await;
    assert_eq!(
        selected,
        json!({"thingId": "org.acme:sensor-1", "attributes": {"zone": "b"}, "_revision": 5})
    );

    // Conditional requests.
    let resp = f
        .req(Method::PUT, &format!("{base}/attributes/floor"))
        .header("if-match", "\"rev:1\"")
        .json(&json!(9))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp, 412).await, "things:precondition.failed");
    let resp = f
        .req(Method::GET, base)
        .header("if-none-match", "\"rev:5\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    // Not found, per level.
    assert_eq!(
        error_code(f.get(&format!("{base}/attributes/nope")).await, 404).await,
        "things:attribute.notfound"
    );
    assert_eq!(
        error_code(f.get(&format!("{base}/features/nope")).await, 404).await,
        "things:feature.notfound"
    );
    assert_eq!(
        error_code(
            f.get(&format!("{base}/features/temp/properties/nope"))
                .await,
            404
        )
        .await,
        "things:feature.property.notfound"
    );
    assert_eq!(
        error_code(f.get("/api/2/things/org.acme:absent").await, 404).await,
        "things:thing.notfound"
    );

    // Delete a sub-resource, then the thing.
    assert_eq!(
        f.delete(&format!("{base}/attributes/zone")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(f.delete(base).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        error_code(f.get(base).await, 404).await,
        "things:thing.notfound"
    );
}

#[tokio::test]
async fn bad_requests() {
    let (_d, f) = server();
    assert_eq!(
        error_code(
            f.put_json("/api/2/things/no-namespace-colon", &json!({}))
                .await,
            400
        )
        .await,
        "things:id.invalid"
    );
    let resp = f
        .req(Method::PUT, "/api/2/things/org.acme:x")
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp, 400).await, "json.invalid");
    f.put_json("/api/2/things/org.acme:x", &json!({})).await;
    assert_eq!(
        error_code(
            f.put_json("/api/2/things/org.acme:x/attributes", &json!(5))
                .await,
            400
        )
        .await,
        "json.invalid"
    );
    assert_eq!(
        error_code(f.get("/api/2/things/org.acme:x/unknown").await, 404).await,
        "things.protocol.adapter:unknown.path"
    );
    let resp = f
        .req(Method::POST, "/api/2/things/org.acme:x")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp, 405).await, "gateway:method.notallowed");
    let unauthenticated = reqwest::get(f.url("/api/2/things/org.acme:x"))
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn things_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = start(dir.path());
    f.put_json(
        "/api/2/things/org.acme:kept",
        &json!({"attributes": {"a": 1}}),
    )
    .await;
    merge(
        &f,
        "/api/2/things/org.acme:kept/attributes",
        json!({"b": 2}),
    )
    .await;
    f.put_json("/api/2/things/org.acme:gone", &json!({})).await;
    f.delete("/api/2/things/org.acme:gone").await;
    let before = json(
        f.get("/api/2/things/org.acme:kept?fields=thingId,attributes,_revision,_modified")
            .await,
    )
    .await;
    f.stop();
    let f = start(dir.path());
    assert_eq!(
        json(
            f.get("/api/2/things/org.acme:kept?fields=thingId,attributes,_revision,_modified")
                .await
        )
        .await,
        before
    );
    assert_eq!(before["_revision"], 2);
    assert_eq!(
        f.get("/api/2/things/org.acme:gone").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// Ditto's server-sent events: each twin change arrives as the thing the event shows, only for
/// the ids, namespaces and filter asked, projected with `fields`; extra fields enrich it.
#[tokio::test]
async fn twin_changes_stream_as_server_sent_events() {
    let (_d, f) = server();
    let mut watched = common::Events::open(
        &f,
        "?ids=org.acme:watched,org.acme:other-watched&fields=thingId,attributes,_revision",
    )
    .await;
    let mut filtered = common::Events::open(
        &f,
        "?namespaces=org.acme&filter=gt(attributes/level,5)&extraFields=attributes/room",
    )
    .await;
    let put = |path: &str, value: serde_json::Value| {
        let f = &f;
        let path = path.to_string();
        async move {
            let resp = f.put_json(&path, &value).await;
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
        }
    };
    put(
        "/api/2/things/org.other:x",
        json!({"attributes": {"level": 9}}),
    )
    .await;
    put(
        "/api/2/things/org.acme:unwatched",
        json!({"attributes": {"level": 1}}),
    )
    .await;
    put(
        "/api/2/things/org.acme:watched",
        json!({"attributes": {"room": "hall", "level": 1}}),
    )
    .await;
    put("/api/2/things/org.acme:watched/attributes/level", json!(7)).await;
    put("/api/2/things/org.acme:other-watched", json!({})).await;
    assert_eq!(
        watched.next().await.unwrap(),
        json!({"thingId": "org.acme:watched", "attributes": {"room": "hall", "level": 1}, "_revision": 1})
    );
    assert_eq!(
        watched.next().await.unwrap(),
        json!({"thingId": "org.acme:watched", "attributes": {"level": 7}, "_revision": 2})
    );
    assert_eq!(
        watched.next().await.unwrap(),
        json!({"thingId": "org.acme:other-watched", "_revision": 1})
    );
    // The filter sees the extra field and the changed level; the other namespace and the low
    // levels never arrive.
    assert_eq!(
        filtered.next().await.unwrap(),
        json!({"thingId": "org.acme:watched", "attributes": {"level": 7, "room": "hall"}})
    );
    let resp = f
        .req(
            Method::DELETE,
            "/api/2/things/org.acme:watched/attributes/room",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        watched.next().await.unwrap(),
        json!({"thingId": "org.acme:watched", "_revision": 3})
    );
    // Bad parameters are refused before the stream starts, with Ditto's errors.
    let bad = f
        .req(Method::GET, "/api/2/things?filter=eq(attributes/x")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bad, 400).await, "rql.expression.invalid");
    let bad = f
        .req(Method::GET, "/api/2/things?extraFields=nonsense")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

/// Server-sent events of one thing (`/api/2/things/{id}`) and of one path of it, as Ditto's:
/// the path's stream sends the value there, and only for the changes that show one.
#[tokio::test]
async fn one_thing_and_one_path_of_it_stream_their_changes() {
    let (_d, f) = server();
    let thing = "/api/2/things/org.acme:single";
    let mut whole = common::Events::open_at(&f, thing).await;
    let mut location = common::Events::open_at(&f, &format!("{thing}/attributes/location")).await;
    let put = |path: String, value: serde_json::Value| {
        let f = &f;
        async move {
            let resp = f.put_json(&path, &value).await;
            assert!(resp.status().is_success(), "{path}: {}", resp.status());
        }
    };
    put("/api/2/things/org.acme:other".into(), json!({})).await;
    put(thing.into(), json!({"attributes": {"location": "hall"}})).await;
    put(format!("{thing}/attributes/level"), json!(3)).await;
    put(format!("{thing}/attributes/location"), json!("kitchen")).await;
    assert_eq!(
        whole.next().await.unwrap(),
        json!({"thingId": "org.acme:single", "policyId": "org.acme:single", "attributes": {"location": "hall"}})
    );
    assert_eq!(
        whole.next().await.unwrap(),
        json!({"thingId": "org.acme:single", "attributes": {"level": 3}})
    );
    assert_eq!(location.next().await.unwrap(), json!("hall"));
    // The level's change shows no location: the path's stream skips it.
    assert_eq!(location.next().await.unwrap(), json!("kitchen"));
}

/// A watcher that does not read never holds the twin back: writes go on at their pace, a
/// watcher that reads gets every event in order, and the one that fell behind is disconnected
/// (its stream ends) instead of being served an unbounded backlog.
#[tokio::test]
async fn a_watcher_that_does_not_read_holds_nothing_back() {
    let (_d, f) = server();
    const WRITES: u64 = 2000;
    let mut stuck = common::Events::open(&f, "?ids=org.acme:big").await;
    let mut reader = common::Events::open(&f, "?ids=org.acme:big&fields=_revision").await;
    let read_all = tokio::spawn(async move {
        let mut revisions = Vec::new();
        while (revisions.len() as u64) < WRITES {
            let event = reader
                .next()
                .await
                .expect("the reading watcher stays connected");
            revisions.push(event["_revision"].as_u64().unwrap());
        }
        revisions
    });
    // 16 KiB per event: 2,000 events are far more than the socket buffers hold.
    let filler = "x".repeat(16 * 1024);
    for i in 0..WRITES {
        let resp = f
            .put_json(
                "/api/2/things/org.acme:big",
                &json!({"attributes": {"i": i, "filler": filler}}),
            )
            .await;
        assert!(resp.status().is_success());
    }
    let revisions = read_all.await.unwrap();
    assert_eq!(revisions, (1..=WRITES).collect::<Vec<_>>());
    let mut received = 0;
    while stuck.next().await.is_some() {
        received += 1;
    }
    assert!(
        received < WRITES,
        "the watcher that did not read was served all {received} events"
    );
}

/// `GET /api/2/things?ids=...`: the things that exist, in the order asked; without ids, a page
/// of things in id order.
#[tokio::test]
async fn things_are_listed_by_ids_or_in_id_order() {
    let (_d, f) = server();
    for id in ["org.acme:b", "org.acme:a", "org.other:c"] {
        let resp = f
            .put_json(
                &format!("/api/2/things/{id}"),
                &json!({"attributes": {"n": id}}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let listed = json(
        f.get("/api/2/things?ids=org.acme:b,org.acme:missing,org.acme:a&fields=thingId")
            .await,
    )
    .await;
    assert_eq!(
        listed,
        json!([{"thingId": "org.acme:b"}, {"thingId": "org.acme:a"}])
    );
    let page = json(
        f.get("/api/2/things?namespaces=org.acme&option=size(1)&fields=thingId")
            .await,
    )
    .await;
    assert_eq!(page, json!([{"thingId": "org.acme:a"}]));
    let all = json(f.get("/api/2/things?fields=thingId").await).await;
    assert_eq!(
        all,
        json!([{"thingId": "org.acme:a"}, {"thingId": "org.acme:b"}, {"thingId": "org.other:c"}])
    );
    assert_eq!(
        error_code(f.get("/api/2/things?option=size(500)").await, 400).await,
        "thing-search:option.invalid"
    );
}

/// A graceful stop (SIGTERM) ends the event streams instead of waiting for their clients, which
/// would watch forever.
#[tokio::test]
async fn a_graceful_stop_ends_the_event_streams() {
    let (_d, mut f) = server();
    let mut watcher = common::Events::open(&f, "?ids=org.acme:watched").await;
    let stopped = tokio::task::spawn_blocking(move || f.stop());
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), stopped)
        .await
        .expect("the service stopped within 20 s while a client watched")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(watcher.next().await.is_none(), "the stream ended");
}

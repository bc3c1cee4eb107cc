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

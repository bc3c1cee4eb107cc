//! The OpenAPI document at `/api/2/openapi.json` is kept true: every route the service has is in
//! it, every documented operation is routed, and every method it leaves out of a path is refused
//! with 405.

mod common;

use reqwest::Method;
use serde_json::Value;

/// The route paths registered in the router's source files, as OpenAPI paths.
fn routed_paths() -> Vec<String> {
    let sources = [
        include_str!("../host/src/api/mod.rs"),
        include_str!("../host/src/api/connections.rs"),
        include_str!("../host/src/api/things.rs"),
        include_str!("../host/src/api/mappers.rs"),
    ];
    let mut paths = Vec::new();
    for source in sources {
        for part in source.split(".route(").skip(1) {
            let arg = part.trim_start();
            let path = if let Some(rest) = arg.strip_prefix('"') {
                rest.split('"').next().unwrap().to_string()
            } else if arg.starts_with("OPENAPI_PATH") {
                "/api/2/openapi.json".to_string()
            } else {
                panic!(
                    "a route whose path this test cannot read: {}",
                    &arg[..40.min(arg.len())]
                );
            };
            paths.push(path.replace("{*", "{"));
        }
    }
    paths
}

fn concrete(path: &str) -> String {
    let id = if path.starts_with("/api/2/things") {
        "org.openapi:probe"
    } else {
        "openapi-probe"
    };
    path.replace("{id}", id).replace("{path}", "attributes")
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

#[tokio::test]
async fn the_document_covers_every_route_and_every_documented_operation_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start(dir.path());
    let resp = reqwest::get(f.url("/api/2/openapi.json")).await.unwrap();
    assert_eq!(resp.status(), 200, "served without credentials");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();

    for routed in routed_paths() {
        assert!(
            paths.contains_key(&routed),
            "the route {routed} is not in the OpenAPI document"
        );
    }

    for (path, item) in paths {
        let url = concrete(path);
        for method in METHODS {
            let documented = item.get(method).is_some();
            let resp = f
                .req(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    &url,
                )
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if documented {
                assert_ne!(
                    status, 405,
                    "{method} {path} is documented but not allowed: {body}"
                );
                assert_ne!(
                    body["error"], "gateway:route.notfound",
                    "{method} {path} is documented but not routed"
                );
                for code in item[method]["responses"].as_object().unwrap().keys() {
                    assert!(code.len() == 3, "{method} {path}: response {code}");
                }
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is not documented but answers: {body}"
                );
            }
        }
    }
}

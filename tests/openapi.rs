//! The OpenAPI document at `/api/2/openapi.json` is kept true: it lists exactly the operations of
//! the router's route table (`ferrule_host::api::ROUTES`, the only routes the router registers),
//! with the same authentication, every documented operation is routed, and every method it leaves
//! out of a path is refused with 405.

mod common;

use ferrule_host::api::{Access, ROUTES};
use reqwest::Method;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The routes of the router's table, as OpenAPI paths with their methods (lower case).
fn routed() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .flat_map(|route| {
            route.methods.iter().map(|verb| {
                (
                    route.path.replace("{*", "{"),
                    verb.as_str().to_ascii_lowercase(),
                )
            })
        })
        .collect()
}

/// The operations of the OpenAPI document, with whether each needs credentials.
fn documented(doc: &Value) -> BTreeMap<(String, String), bool> {
    let global_security = doc["security"].as_array().is_some_and(|s| !s.is_empty());
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                let secured = match op.get("security") {
                    Some(s) => s.as_array().is_some_and(|s| !s.is_empty()),
                    None => global_security,
                };
                out.insert((path.clone(), method.to_string()), secured);
            }
        }
    }
    out
}

/// The router registers the routes of `ROUTES` and nothing else, so the table is every route the
/// service has; the document lists exactly the table's operations, and says an operation needs
/// credentials exactly when the table puts the devops authentication in front of it.
#[test]
fn the_route_table_and_the_document_list_the_same_operations() {
    let doc: Value = serde_json::from_str(ferrule_host::api::OPENAPI).unwrap();
    let documented = documented(&doc);
    let in_doc: BTreeSet<_> = documented.keys().cloned().collect();
    let in_table = routed();
    let missing: Vec<_> = in_table.difference(&in_doc).collect();
    let unrouted: Vec<_> = in_doc.difference(&in_table).collect();
    assert!(missing.is_empty(), "routed but not documented: {missing:?}");
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    for route in ROUTES {
        for verb in route.methods {
            let key = (
                route.path.replace("{*", "{"),
                verb.as_str().to_ascii_lowercase(),
            );
            let secured = documented[&key];
            match route.access {
                Access::Devops => assert!(secured, "{key:?} needs devops but is documented public"),
                // Public by design; /metrics needs credentials only with require_auth.
                Access::Public | Access::Metrics => {
                    assert!(!secured, "{key:?} is public but documented secured")
                }
            }
        }
    }
    // The router adds routes only from the table: no module registers one of its own.
    let sources = [
        include_str!("../host/src/api/mod.rs"),
        include_str!("../host/src/api/connections.rs"),
        include_str!("../host/src/api/things.rs"),
        include_str!("../host/src/api/mappers.rs"),
        include_str!("../host/src/api/auth.rs"),
        include_str!("../host/src/server.rs"),
    ];
    let count = |needle: &str| {
        sources
            .iter()
            .map(|s| s.matches(needle).count())
            .sum::<usize>()
    };
    assert_eq!(
        count(".route("),
        1,
        "one registration: api::router's loop over ROUTES"
    );
    assert_eq!(count(".nest("), 0, "no nested routers");
    assert_eq!(
        count(".merge("),
        1,
        "the one merge joins a table route's methods"
    );
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

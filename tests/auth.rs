//! Every route of the connection API requires the devops user; the password is configured or
//! generated once, and never logged.

mod common;

use common::{Options, json, start, try_start};
use reqwest::{Method, StatusCode};

/// The routes that answer without credentials, by design.
/// The routes served without credentials: none of them carries data (the console's files are the
/// same for everyone; the console calls the API with the devops credentials).
const PUBLIC: [&str; 7] = [
    "/health",
    "/api/2/openapi.json",
    "/metrics",
    "/ui",
    "/ui/",
    "/ui/app.js",
    "/ui/app.css",
];

/// Every operation of the OpenAPI document (which `tests/openapi.rs` proves lists exactly the
/// router's routes), with its path parameters filled with sample values.
async fn documented_operations(f: &common::Ferrule) -> Vec<(Method, String, String)> {
    let doc = json(reqwest::get(f.url("/api/2/openapi.json")).await.unwrap()).await;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let sample = if path.starts_with("/api/2/things") {
            path.replace("{id}", "org.acme:t")
                .replace("{path}", "features/f/properties/p")
        } else {
            path.replace("{id}", "some-id").replace("{version}", "1")
        };
        assert!(
            !sample.contains('{'),
            "a path parameter without a sample: {path}"
        );
        for method in ["get", "put", "post", "patch", "delete"] {
            if item.get(method).is_some() {
                let method: Method = method.to_uppercase().parse().unwrap();
                out.push((method, path.clone(), sample.clone()));
            }
        }
    }
    assert!(
        out.len() >= 25,
        "the document lists every operation: {out:?}"
    );
    out
}

async fn assert_unauthorized(resp: reqwest::Response, supplied: bool) {
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    let body = json(resp).await;
    assert_eq!(body["status"], 401);
    assert_eq!(body["error"], "gateway:authentication.failed");
    let expected = if supplied {
        "The supplied authentication is invalid."
    } else {
        "The resource requires authentication, which was not supplied with the request."
    };
    assert_eq!(body["message"], expected);
}

/// Walks every documented operation: each answers 401 with Ditto's error JSON without
/// credentials, with a wrong password, another user, an empty password or another scheme, and
/// reaches its handler with the devops credentials; only the public routes answer without.
#[tokio::test]
async fn every_documented_operation_requires_the_devops_user() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(&common::mqtt_connection()).unwrap();
    let operations = documented_operations(&f).await;
    let mut walked = 0;
    for (method, path, url) in &operations {
        if PUBLIC.contains(&path.as_str()) {
            let resp = client
                .request(method.clone(), f.url(url))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{method} {path} is public");
            continue;
        }
        walked += 1;
        let plain = client
            .request(method.clone(), f.url(url))
            .body(body.clone());
        assert_unauthorized(plain.send().await.unwrap(), false).await;
        for (user, pass) in [
            ("devops", "wrong"),
            ("admin", common::PASSWORD),
            ("devops", ""),
            ("DEVOPS", common::PASSWORD),
        ] {
            let req = client
                .request(method.clone(), f.url(url))
                .basic_auth(user, Some(pass))
                .body(body.clone());
            assert_unauthorized(req.send().await.unwrap(), true).await;
        }
        let bearer = client
            .request(method.clone(), f.url(url))
            .bearer_auth(common::PASSWORD);
        assert_unauthorized(bearer.send().await.unwrap(), true).await;
        // With the right credentials the request reaches its handler (not a 401).
        let ok = f.req(method.clone(), url).send().await.unwrap();
        assert_ne!(ok.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    assert_eq!(walked, operations.len() - PUBLIC.len());
    // Query parameters do not open a route.
    for url in [
        "/api/2/connections?dry-run=true",
        "/api/2/connections?ids-only=true",
    ] {
        let resp = client
            .post(f.url(url))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_unauthorized(resp, false).await;
    }
    // Nothing was created by the refused requests.
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        serde_json::json!([])
    );
    assert_eq!(
        json(f.get("/api/2/mappers").await).await,
        serde_json::json!([])
    );
}

/// A script's request (`X-Requested-With: XMLHttpRequest`, as the web console sends it) gets its
/// 401 without the Basic challenge, so a browser does not open its own login dialog; every
/// other client is still challenged. The console's files need no credentials and carry no data.
#[tokio::test]
async fn scripts_are_not_challenged_and_the_console_files_are_public() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    let client = reqwest::Client::new();
    let script = client
        .get(f.url("/api/2/connections"))
        .basic_auth("devops", Some("wrong"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::UNAUTHORIZED);
    assert!(script.headers().get("www-authenticate").is_none());
    assert_eq!(json(script).await["error"], "gateway:authentication.failed");
    let plain = client
        .get(f.url("/api/2/connections"))
        .basic_auth("devops", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_unauthorized(plain, true).await;
    let page = client.get(f.url("/ui")).send().await.unwrap();
    assert_eq!(page.url().path(), "/ui/");
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    for asset in ["/ui/app.js", "/ui/app.css"] {
        assert!(html.contains(asset), "{html}");
        let resp = client.get(f.url(asset)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        assert!(!resp.bytes().await.unwrap().is_empty(), "{asset}");
    }
}

/// With `[prometheus] require_auth = true`, `/metrics` joins the walk.
#[tokio::test]
async fn metrics_need_the_devops_user_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start_with_config(dir.path(), "[prometheus]\nrequire_auth = true\n");
    let resp = reqwest::get(f.url("/metrics")).await.unwrap();
    assert_unauthorized(resp, false).await;
    let resp = reqwest::Client::new()
        .get(f.url("/metrics"))
        .basic_auth("devops", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_unauthorized(resp, true).await;
    assert_eq!(f.get("/metrics").await.status(), StatusCode::OK);
    for public in ["/health", "/api/2/openapi.json"] {
        let resp = reqwest::get(f.url(public)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{public}");
    }
}

#[tokio::test]
async fn a_generated_password_is_printed_once_stored_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = try_start(
        dir.path(),
        Options {
            password: None,
            ..Default::default()
        },
    )
    .unwrap();
    let stored = std::fs::read_to_string(dir.path().join("devops-password")).unwrap();
    let password = stored.trim().to_string();
    assert!(password.len() >= 32, "a strong password: {password}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("devops-password"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let printed = f.stdout.lock().unwrap().join("\n");
    assert!(
        printed.contains(&password),
        "printed at first start: {printed}"
    );
    let resp = f.get("/api/2/connections").await;
    assert_eq!(resp.status(), StatusCode::OK);
    f.put_json("/api/2/connections/c", &common::mqtt_connection())
        .await;
    f.stop();
    let logs = f.stderr.lock().unwrap().join("\n");
    assert!(!logs.contains(&password), "the password is in the logs");

    // The second start uses the stored password and does not print it.
    let f2 = try_start(
        dir.path(),
        Options {
            password: None,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(f2.password, password);
    assert_eq!(
        f2.get("/api/2/connections/c").await.status(),
        StatusCode::OK
    );
    let printed = f2.stdout.lock().unwrap().join("\n");
    assert!(!printed.contains(&password), "printed again: {printed}");
    assert!(!f2.stderr.lock().unwrap().join("\n").contains(&password));
}

#[tokio::test]
async fn a_configured_password_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = start(dir.path());
    f.get("/api/2/connections").await;
    let wrong = reqwest::Client::new()
        .get(f.url("/api/2/connections"))
        .basic_auth("devops", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    f.stop();
    let out = format!(
        "{}\n{}",
        f.stdout.lock().unwrap().join("\n"),
        f.stderr.lock().unwrap().join("\n")
    );
    assert!(!out.contains(common::PASSWORD));
    assert!(
        !dir.path().join("devops-password").exists(),
        "a configured password is not stored"
    );
}

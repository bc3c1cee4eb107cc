//! Every route of the connection API requires the devops user; the password is configured or
//! generated once, and never logged.

mod common;

use common::{Options, json, start, try_start};
use reqwest::{Method, StatusCode};

/// Every route and method of the connection and things APIs.
const ROUTES: [(&str, &str); 15] = [
    ("GET", "/api/2/things/org.acme:t"),
    ("PUT", "/api/2/things/org.acme:t"),
    ("PATCH", "/api/2/things/org.acme:t/attributes"),
    ("DELETE", "/api/2/things/org.acme:t/features/f"),
    ("GET", "/api/2/connections"),
    ("POST", "/api/2/connections"),
    ("GET", "/api/2/connections/some-id"),
    ("PUT", "/api/2/connections/some-id"),
    ("DELETE", "/api/2/connections/some-id"),
    ("GET", "/api/2/connections/some-id/status"),
    ("GET", "/api/2/connections/some-id/metrics"),
    ("GET", "/api/2/connections/some-id/logs"),
    ("POST", "/api/2/connections/some-id/command"),
    ("POST", "/api/2/connections?dry-run=true"),
    ("GET", "/api/2/connections?ids-only=true"),
];

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

#[tokio::test]
async fn every_route_requires_the_devops_user() {
    let dir = tempfile::tempdir().unwrap();
    let f = start(dir.path());
    let client = reqwest::Client::new();
    for (method, path) in ROUTES {
        let method: Method = method.parse().unwrap();
        let body = serde_json::to_vec(&common::mqtt_connection()).unwrap();
        let plain = client
            .request(method.clone(), f.url(path))
            .body(body.clone());
        assert_unauthorized(plain.send().await.unwrap(), false).await;
        for (user, pass) in [
            ("devops", "wrong"),
            ("admin", common::PASSWORD),
            ("devops", ""),
        ] {
            let req = client
                .request(method.clone(), f.url(path))
                .basic_auth(user, Some(pass))
                .body(body.clone());
            assert_unauthorized(req.send().await.unwrap(), true).await;
        }
        let bearer = client
            .request(method.clone(), f.url(path))
            .bearer_auth(common::PASSWORD);
        assert_unauthorized(bearer.send().await.unwrap(), true).await;
        // With the right credentials the request reaches its handler (not a 401).
        let ok = f.req(method.clone(), path).send().await.unwrap();
        assert_ne!(ok.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // Nothing was created by the refused requests.
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        serde_json::json!([])
    );
    // Health needs no credentials.
    assert_eq!(
        reqwest::get(f.url("/health")).await.unwrap().status(),
        StatusCode::OK
    );
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

//! Secrets of connections: credentials encrypted at rest in the store (`[encryption]`, Ditto's
//! `ditto.connectivity.connection.encryption`), decrypted for the REST API, a store with
//! encrypted entries refused without the right key, and passwords in connection URIs never in the
//! service's log output.

mod common;

use common::{Options, json, try_start};
use ferrule_host::store::{ConnectionStore, RedbStore};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// A 256-bit key (base64) and another one.
const KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
const OTHER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Every secret the connections below hold; none may be in the store file or the logs.
/// The secrets of [`connections`]: a URI password, an SSH tunnel password and a piece of a
/// client key (a real one: the key is read at create).
fn secrets() -> [&'static str; 3] {
    let key_body = common::TEST_CLIENT_KEY.lines().nth(1).unwrap();
    ["UriPassw0rd-7c1", "TunnelPassw0rd-5a3", &key_body[8..48]]
}

/// Connections with secrets at Ditto's default pointers (HMAC and OAuth credentials are refused
/// at create, see `model::validate`; `store::encryption`'s unit tests encrypt their pointers).
fn connections() -> Vec<(&'static str, Value)> {
    vec![
        (
            "enc-amqp",
            json!({
                "connectionType": "amqp-091", "connectionStatus": "closed",
                "uri": "amqp://sensor:UriPassw0rd-7c1@127.0.0.1:5672/%2f",
                "sources": [{"addresses": ["telemetry"], "authorizationContext": ["ditto:inbound"]}],
                "sshTunnel": {"enabled": false, "uri": "ssh://tunnel.example:22",
                              "credentials": {"type": "password", "username": "tunnel",
                                              "password": "TunnelPassw0rd-5a3"}}
            }),
        ),
        (
            "enc-mqtt",
            json!({
                "connectionType": "mqtt", "connectionStatus": "closed",
                "uri": "ssl://127.0.0.1:8883",
                "sources": [{"addresses": ["devices/#"], "qos": 1,
                             "authorizationContext": ["ditto:inbound"]}],
                "credentials": {"type": "client-cert",
                                "cert": common::TEST_CLIENT_CERT,
                                "key": common::TEST_CLIENT_KEY}
            }),
        ),
    ]
}

fn encryption_config(enabled: bool, key: Option<&str>) -> String {
    let mut toml = format!("[encryption]\nenabled = {enabled}\n");
    if let Some(key) = key {
        toml.push_str(&format!("symmetrical_key = \"{key}\"\n"));
    }
    toml
}

fn start_at(dir: &Path, config: &str) -> Result<common::Ferrule, (i32, String)> {
    let cfg = dir.join("ferrule.toml");
    std::fs::write(&cfg, config).unwrap();
    try_start(
        &dir.join("data"),
        Options {
            args: vec!["--config".into(), cfg.display().to_string()],
            ..Default::default()
        },
    )
}

fn store_file(dir: &Path) -> Vec<u8> {
    std::fs::read(
        dir.join("data")
            .join(ferrule_host::store::redb_store::FILE_NAME),
    )
    .unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The connections as the API returns them: the secret members as the user sent them.
async fn assert_read_back(f: &common::Ferrule) {
    for (id, sent) in connections() {
        let got = json(f.get(&format!("/api/2/connections/{id}")).await).await;
        for key in ["uri", "credentials", "sshTunnel"] {
            assert_eq!(got[key], sent[key], "{id}: {key} as the user wrote it");
        }
    }
}

#[tokio::test]
async fn credentials_are_encrypted_in_the_store_and_read_back_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = start_at(dir.path(), &encryption_config(true, Some(KEY))).unwrap();
    for (id, body) in connections() {
        let resp = f.put_json(&format!("/api/2/connections/{id}"), &body).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{id}");
        let created = json(resp).await;
        assert_eq!(
            created["uri"], body["uri"],
            "the answer shows the plaintext"
        );
    }
    assert_read_back(&f).await;
    f.stop();

    // No secret in any byte of the database file; the values are there, encrypted.
    let bytes = store_file(dir.path());
    for secret in secrets() {
        assert!(!contains(&bytes, secret), "{secret} is in the store file");
    }
    assert!(contains(&bytes, "amqp://sensor:encrypted_"));
    assert!(contains(&bytes, "\"key\":\"encrypted_"));
    assert!(
        contains(&bytes, "-----BEGIN CERTIFICATE-----"),
        "the certificate is not secret"
    );
    // Nor in the log output.
    for secret in secrets() {
        assert!(!f.output().contains(secret), "{secret} was logged");
    }
    // The store without a key refuses to hand out ciphertext.
    {
        let store = RedbStore::open(&dir.path().join("data")).unwrap();
        let e = store.load_all().await.unwrap_err().to_string();
        assert!(e.contains("symmetrical_key"), "{e}");
    }

    // A restart with the key reads them back as written.
    let f = start_at(dir.path(), &encryption_config(true, Some(KEY))).unwrap();
    assert_read_back(&f).await;
    let list = json(f.get("/api/2/connections").await).await.to_string();
    assert!(
        !list.contains("encrypted_"),
        "ciphertext in the list: {list}"
    );
    for secret in secrets() {
        assert!(list.contains(secret), "{secret} is not in the list");
    }
}

#[tokio::test]
async fn encrypted_entries_without_the_key_or_with_another_key_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = start_at(dir.path(), &encryption_config(true, Some(KEY))).unwrap();
    let (id, body) = connections().remove(0);
    f.put_json(&format!("/api/2/connections/{id}"), &body).await;
    f.stop();

    for (what, config) in [
        ("no key", encryption_config(false, None)),
        ("another key", encryption_config(true, Some(OTHER_KEY))),
    ] {
        let Err((code, err)) = start_at(dir.path(), &config) else {
            panic!("started with {what}")
        };
        assert_ne!(code, 0, "{what}");
        assert!(
            err.contains("symmetrical_key") && err.contains("FERRULE_ENCRYPTION__SYMMETRICAL_KEY"),
            "{what}: the error names the setting: {err}"
        );
        assert!(
            err.contains(&format!("'{id}'")),
            "{what}: names the connection: {err}"
        );
        for secret in secrets() {
            assert!(!err.contains(secret));
        }
        assert!(!err.contains(KEY) && !err.contains(OTHER_KEY));
    }
    // A key that is not 256 bits, and enabled without a key, are refused before anything else.
    for (what, config) in [
        ("short key", encryption_config(true, Some("c2hvcnQga2V5"))),
        ("enabled without key", encryption_config(true, None)),
    ] {
        let Err((code, err)) = start_at(dir.path(), &config) else {
            panic!("started with {what}")
        };
        assert_ne!(code, 0);
        assert!(err.contains("symmetrical_key"), "{what}: {err}");
        assert!(
            !err.contains("c2hvcnQga2V5"),
            "{what}: the key is not shown: {err}"
        );
    }
    // The key from the environment, encryption off: the entries are read (and would be written
    // back in plaintext).
    let cfg = dir.path().join("plain.toml");
    std::fs::write(&cfg, "[encryption]\nenabled = false\n").unwrap();
    let f = try_start(
        &dir.path().join("data"),
        Options {
            args: vec!["--config".into(), cfg.display().to_string()],
            env: vec![("FERRULE_ENCRYPTION__SYMMETRICAL_KEY".into(), KEY.into())],
            ..Default::default()
        },
    )
    .unwrap_or_else(|(code, err)| panic!("exited {code}: {err}"));
    let got = json(f.get(&format!("/api/2/connections/{id}")).await).await;
    assert_eq!(got["uri"], body["uri"]);
    assert_eq!(got["credentials"], body["credentials"]);
}

#[tokio::test]
async fn plaintext_entries_load_and_are_encrypted_on_their_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = start_at(dir.path(), "").unwrap();
    for (id, body) in connections() {
        f.put_json(&format!("/api/2/connections/{id}"), &body).await;
    }
    f.stop();
    assert!(
        contains(&store_file(dir.path()), "UriPassw0rd-7c1"),
        "plaintext before"
    );

    let mut f = start_at(dir.path(), &encryption_config(true, Some(KEY))).unwrap();
    assert_read_back(&f).await;
    assert!(
        f.output().contains("written before encryption was enabled"),
        "the start reports the plaintext entries"
    );
    // The next write of each encrypts it.
    for (id, mut body) in connections() {
        body["name"] = json!("rewritten");
        let resp = f.put_json(&format!("/api/2/connections/{id}"), &body).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    f.stop();
    // redb is copy-on-write: the page of the old plaintext record is freed, not wiped.
    let leftover = contains(&store_file(dir.path()), "UriPassw0rd-7c1");
    println!("after the encrypted rewrite the old plaintext is in the file: {leftover}");
    // Without a key the store now refuses every record: each one is encrypted.
    let store = RedbStore::open(&dir.path().join("data")).unwrap();
    let e = store.load_all().await.unwrap_err().to_string();
    assert!(e.contains("encrypted fields"), "{e}");
    drop(store);
    let f = start_at(dir.path(), &encryption_config(true, Some(KEY))).unwrap();
    for (id, body) in connections() {
        let got = json(f.get(&format!("/api/2/connections/{id}")).await).await;
        assert_eq!(got["uri"], body["uri"]);
        assert_eq!(got["credentials"], body["credentials"]);
        assert_eq!(got["name"], "rewritten");
    }
}

#[tokio::test]
async fn a_new_key_with_the_old_one_re_encrypts_the_store_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = start_at(dir.path(), &encryption_config(true, Some(KEY))).unwrap();
    for (id, body) in connections() {
        f.put_json(&format!("/api/2/connections/{id}"), &body).await;
    }
    f.stop();

    // The new key in the file, the old one from the environment: every connection is read, and
    // the start writes them again under the new key.
    let cfg = dir.path().join("rotate.toml");
    std::fs::write(&cfg, encryption_config(true, Some(OTHER_KEY))).unwrap();
    let mut f = try_start(
        &dir.path().join("data"),
        Options {
            args: vec!["--config".into(), cfg.display().to_string()],
            env: vec![("FERRULE_ENCRYPTION__OLD_SYMMETRICAL_KEY".into(), KEY.into())],
            ..Default::default()
        },
    )
    .unwrap_or_else(|(code, err)| panic!("exited {code}: {err}"));
    assert_read_back(&f).await;
    assert!(
        f.output()
            .contains("were written again encrypted with the current key"),
        "the start reports the re-encryption: {}",
        f.output()
    );
    assert!(!f.output().contains(KEY) && !f.output().contains(OTHER_KEY));
    f.stop();
    let bytes = store_file(dir.path());
    for secret in secrets() {
        assert!(!contains(&bytes, secret), "{secret} is in the store file");
    }

    // The old key is no longer needed: the new key alone reads every connection, and nothing
    // is left to rewrite ...
    let mut f = start_at(dir.path(), &encryption_config(true, Some(OTHER_KEY))).unwrap();
    assert_read_back(&f).await;
    assert!(!f.output().contains("written again"), "{}", f.output());
    f.stop();
    // ... and the old key alone no longer reads them.
    let Err((_, err)) = start_at(dir.path(), &encryption_config(true, Some(KEY))) else {
        panic!("the old key still reads the store")
    };
    assert!(err.contains("cannot be decrypted"), "{err}");
}

/// A password in a connection URI is never in the service's log output (debug level), whatever
/// happens to the connection: created, dry-run, refused by the broker, unreachable, invalid.
/// Needs RabbitMQ on 5672 and Mosquitto on 1883.
#[tokio::test]
async fn a_password_in_a_connection_uri_is_never_logged() {
    const PW: &str = "NeverL0gged-Pw-6d2";
    let dir = tempfile::tempdir().unwrap();
    let mut f = common::start_with_config(
        dir.path(),
        "[runtime]\nmin_backoff_ms = 100\nmax_backoff_ms = 300\nconnect_timeout_ms = 2000\n",
    );
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cases = [
        // refused by RabbitMQ (wrong password), AMQP 0.9.1 and 1.0
        (
            "pw-amqp091",
            "amqp-091",
            format!("amqp://guest:{PW}@127.0.0.1:5672/%2f"),
        ),
        (
            "pw-amqp10",
            "amqp-10",
            format!("amqp://guest:{PW}@127.0.0.1:5672"),
        ),
        // accepted by Mosquitto (anonymous allowed) with a username and password
        ("pw-mqtt", "mqtt", format!("tcp://user:{PW}@127.0.0.1:1883")),
        // nobody listening
        (
            "pw-refused",
            "mqtt",
            format!("tcp://user:{PW}@127.0.0.1:{closed_port}"),
        ),
    ];
    for (id, kind, uri) in &cases {
        let mut body = json!({
            "connectionType": kind, "connectionStatus": "open", "uri": uri,
            "sources": [{"addresses": ["pw-test"], "authorizationContext": ["ditto:inbound"]}]
        });
        if *kind == "mqtt" {
            body["sources"][0]["addresses"] = json!(["pw-test/#"]);
            body["sources"][0]["qos"] = json!(1);
        }
        let dry = f.post_json("/api/2/connections?dry-run=true", &body).await;
        let dry_text = dry.text().await.unwrap();
        assert!(!dry_text.contains(PW), "{id}: dry-run answer: {dry_text}");
        let resp = f.put_json(&format!("/api/2/connections/{id}"), &body).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{id}");
    }
    // An invalid URI with a password.
    let invalid = json!({"connectionType": "mqtt", "connectionStatus": "closed",
                         "uri": format!("tcp://user:{PW}@:notaport"),
                         "sources": [{"addresses": ["a"], "qos": 1,
                                      "authorizationContext": ["x"]}]});
    let resp = f.put_json("/api/2/connections/pw-invalid", &invalid).await;
    let text = resp.text().await.unwrap();
    assert!(!text.contains(PW), "the error answer: {text}");
    // Let them connect, fail and retry a few times.
    common::wait_for_live_status(&f, "pw-mqtt", "open").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (id, _, _) in &cases {
        let status = f.get(&format!("/api/2/connections/{id}/status")).await;
        let status = status.text().await.unwrap();
        assert!(!status.contains(PW), "{id}: status: {status}");
        let logs = f.get(&format!("/api/2/connections/{id}/logs")).await;
        let logs = logs.text().await.unwrap();
        assert!(!logs.contains(PW), "{id}: connection logs: {logs}");
        f.command(id, "connectivity.commands:closeConnection").await;
        f.delete(&format!("/api/2/connections/{id}")).await;
    }
    f.stop();
    let out = f.output();
    assert!(out.contains("pw-amqp091"), "the log covers the connections");
    assert!(!out.contains(PW), "the URI password is in the log output");
}

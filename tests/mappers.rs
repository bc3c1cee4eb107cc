//! WebAssembly mapper modules through the real binary: the `/api/2/mappers` API, connections
//! that use a module, trials, restart from the precompiled cache, `ferrule mapper test`, and a
//! module mapping real MQTT traffic.

mod common;

use common::{Ferrule, json, wait_for_live_status};
use ferrule_test_guests as guests;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

async fn upload(f: &Ferrule, id: &str, bytes: Vec<u8>) -> reqwest::Response {
    f.req(Method::PUT, &format!("/api/2/mappers/{id}"))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

fn wasm_connection(options: Value) -> Value {
    let mut c = common::mqtt_connection();
    c["mappingDefinitions"] = json!({"wasm": {"mappingEngine": "WebAssembly", "options": options}});
    c["sources"][0]["payloadMapping"] = json!(["wasm"]);
    c
}

#[tokio::test]
async fn upload_list_read_replace_and_delete_a_module() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start(dir.path());
    let bytes = guests::bytes(guests::BEHAVE);

    let resp = upload(&f, "behave", bytes.clone()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["location"], "/api/2/mappers/behave");
    let meta = json(resp).await;
    assert_eq!(meta["id"], "behave");
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["size"], bytes.len());
    assert_eq!(meta["witVersion"], "0.1.0");
    assert_eq!(meta["sha256"].as_str().unwrap().len(), 64);

    let list = json(f.get("/api/2/mappers").await).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], "behave");

    let one = json(f.get("/api/2/mappers/behave").await).await;
    assert_eq!(one["usedBy"], json!([]));
    assert_eq!(one["statistics"]["calls"], 0);

    let resp = f.get("/api/2/mappers/behave/module").await;
    assert_eq!(resp.headers()["content-type"], "application/wasm");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), bytes);

    // The same bytes again change nothing (issue 20: they were a new version).
    let resp = upload(&f, "behave", bytes.clone()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let one = json(f.get("/api/2/mappers/behave").await).await;
    assert_eq!(one["version"], 1);
    assert_eq!(one["modified"], meta["modified"]);
    // Other bytes are the next version.
    let resp = upload(&f, "behave", guests::bytes(guests::STRICT)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let one = json(f.get("/api/2/mappers/behave").await).await;
    assert_eq!(one["version"], 2);
    assert_eq!(one["created"], meta["created"]);
    assert_ne!(one["sha256"], meta["sha256"]);

    let resp = f.delete("/api/2/mappers/behave").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = f.get("/api/2/mappers/behave").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(resp).await["error"], "mappers:mapper.notfound");
    assert_eq!(
        f.delete("/api/2/mappers/behave").await.status(),
        StatusCode::NOT_FOUND
    );
}

/// The files of the data directory's `cache/wasm` (precompiled artifacts).
/// One message through a `WebAssembly` mapping definition naming `module` (no `site` option:
/// behave maps it, strict refuses it).
async fn try_module(f: &Ferrule, module: &str) -> Value {
    let body = json!({
        "mappingDefinition": {"mappingEngine": "WebAssembly",
                              "options": {"module": module, "feature": "v"}},
        "inbound": {"headers": {"device_id": "org.v:d"}, "textPayload": "5"}
    });
    json(f.post_json("/api/2/mappings/test", &body).await).await
}

fn version_numbers(list: &Value) -> Vec<u64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect()
}

/// Issue 20, versions: every upload of new bytes is a kept, immutable version; a definition
/// pins one with `id@N` (and keeps it while newer ones come); a rollback is one request; the
/// newest `keep_versions` are kept besides the current and the pinned ones; numbers are never
/// given twice; all of it survives a restart.
#[tokio::test]
async fn versions_are_kept_pinned_rolled_back_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[mappers]\nkeep_versions = 2\n";
    let f = common::start_with_config(dir.path(), config);
    assert_eq!(
        upload(&f, "m", guests::bytes(guests::BEHAVE))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        upload(&f, "m", guests::bytes(guests::STRICT))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let list = json(f.get("/api/2/mappers/m/versions").await).await;
    assert_eq!(version_numbers(&list), vec![2, 1], "newest first: {list}");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[1]["current"], false);
    assert_eq!(list[1]["size"], guests::bytes(guests::BEHAVE).len());
    assert_eq!(list[1]["usedBy"], json!([]));
    assert!(list[1]["created"].as_str().unwrap() <= list[0]["created"].as_str().unwrap());
    let one = json(f.get("/api/2/mappers/m/versions/1").await).await;
    assert_eq!(one, list[1]);
    let bytes = f.get("/api/2/mappers/m/versions/1/module").await;
    assert_eq!(bytes.headers()["content-type"], "application/wasm");
    assert_eq!(
        bytes.bytes().await.unwrap().to_vec(),
        guests::bytes(guests::BEHAVE)
    );
    for missing in ["9", "x"] {
        let resp = f.get(&format!("/api/2/mappers/m/versions/{missing}")).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(json(resp).await["error"], "mappers:version.notfound");
    }

    // Pinned and current, side by side: version 1 (behave) maps without `site`, the current
    // version 2 (strict) refuses it.
    let pinned = try_module(&f, "m@1").await;
    assert_eq!(
        pinned["outputs"][0]["path"], "/features/v/properties/value",
        "{pinned}"
    );
    let latest = try_module(&f, "m@latest").await;
    assert!(
        latest.to_string().contains("missing field `site`"),
        "{latest}"
    );
    assert_eq!(
        try_module(&f, "m").await["error"]["description"],
        latest["error"]["description"]
    );
    let unknown = try_module(&f, "m@9").await;
    assert!(
        unknown.to_string().contains("has no version 9"),
        "{unknown}"
    );
    let bad = try_module(&f, "m@v1").await;
    assert!(bad.to_string().contains("names no version"), "{bad}");

    // A connection pins version 1; one that follows the current version is refused by it.
    let create = |id: &'static str, module: &'static str| {
        let f = &f;
        async move {
            f.put_json(
                &format!("/api/2/connections/{id}"),
                &wasm_connection(json!({"module": module, "feature": "v"})),
            )
            .await
        }
    };
    assert_eq!(create("pin", "m@1").await.status(), StatusCode::CREATED);
    assert_eq!(
        create("follow", "m").await.status(),
        StatusCode::BAD_REQUEST
    );
    // Rollback: version 1 is current again, and the follower is accepted.
    let resp = f
        .req(Method::POST, "/api/2/mappers/m/rollback")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let meta = json(resp).await;
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["latestVersion"], 2);
    assert_eq!(meta["sha256"], list[1]["sha256"]);
    assert_eq!(create("follow", "m").await.status(), StatusCode::CREATED);
    // No version before 1.
    let resp = f
        .req(Method::POST, "/api/2/mappers/m/rollback")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(resp).await["error"], "mappers:version.notfound");
    // Back to 2 would break the follower: refused, naming it and not the pinned connection.
    for resp in [
        f.req(Method::POST, "/api/2/mappers/m/rollback?version=2")
            .send()
            .await
            .unwrap(),
        upload(&f, "m", guests::bytes(guests::STRICT)).await,
    ] {
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        let e = json(resp).await;
        assert_eq!(e["error"], "mappers:module.incompatible");
        assert!(e["message"].as_str().unwrap().contains("[follow]"), "{e}");
    }
    assert_eq!(json(f.get("/api/2/mappers/m").await).await["version"], 1);
    let list = json(f.get("/api/2/mappers/m/versions").await).await;
    assert_eq!(list[1]["usedBy"], json!(["follow", "pin"]), "{list}");
    assert_eq!(list[0]["usedBy"], json!([]), "{list}");

    // The current version and a pinned one cannot be deleted; another can, and its number is
    // never given again.
    let resp = f.delete("/api/2/mappers/m/versions/1").await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(json(resp).await["error"], "mappers:version.inuse");
    assert_eq!(
        f.delete("/api/2/mappers/m/versions/2").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        f.get("/api/2/mappers/m/versions/2").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        f.delete("/api/2/connections/follow").await.status(),
        StatusCode::NO_CONTENT
    );
    let resp = f.delete("/api/2/mappers/m/versions/1").await;
    assert_eq!(resp.status(), StatusCode::CONFLICT, "current and pinned");
    // Three more uploads, keep_versions 2: version 3 goes, the pinned version 1 stays.
    for (n, guest) in [
        (3, guests::JSON_RESHAPER),
        (4, guests::TELEMETRY_DECODER),
        (5, guests::CLOUDEVENTS_OUT),
    ] {
        let resp = upload(&f, "m", guests::bytes(guest)).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(json(f.get("/api/2/mappers/m").await).await["version"], n);
    }
    let list = json(f.get("/api/2/mappers/m/versions").await).await;
    assert_eq!(version_numbers(&list), vec![5, 4, 1], "{list}");
    assert_eq!(list[2]["usedBy"], json!(["pin"]));
    let kept = |data: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(data.join("mappers/m.versions"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        kept(&f.data_dir),
        ["1.json", "1.wasm", "4.json", "4.wasm", "5.json", "5.wasm"]
    );
    assert_eq!(
        artifacts(&f.data_dir).len(),
        3,
        "{:?}",
        artifacts(&f.data_dir)
    );

    // After a restart: the same versions, the pin still maps, numbers go on from 5.
    let data = f.data_dir.clone();
    drop(f);
    let f = common::start_with_config(dir.path(), config);
    assert_eq!(f.data_dir, data);
    let list = json(f.get("/api/2/mappers/m/versions").await).await;
    assert_eq!(version_numbers(&list), vec![5, 4, 1], "{list}");
    let pinned = try_module(&f, "m@1").await;
    assert_eq!(
        pinned["outputs"][0]["path"], "/features/v/properties/value",
        "{pinned}"
    );
    let resp = upload(&f, "m", guests::bytes(guests::STRICT)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let meta = json(f.get("/api/2/mappers/m").await).await;
    assert_eq!(
        (meta["version"].as_u64(), meta["latestVersion"].as_u64()),
        (Some(6), Some(6))
    );
    // The module goes with all its versions once nothing names it.
    assert_eq!(
        f.delete("/api/2/mappers/m").await.status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        f.delete("/api/2/connections/pin").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        f.delete("/api/2/mappers/m").await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(!data.join("mappers/m.versions").exists());
    assert_eq!(artifacts(&data), Vec::<String>::new());
}

fn artifacts(data: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("cache/wasm"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A module's precompiled artifact goes when no module has its bytes any more: replaced by other
/// bytes, or deleted. Nothing temporary is left in the data directory.
#[tokio::test]
async fn replaced_and_deleted_modules_leave_no_artifacts_behind() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start(dir.path());
    let sha = |meta: &Value| meta["sha256"].as_str().unwrap().to_string();
    let first = json(upload(&f, "m", guests::bytes(guests::BEHAVE)).await).await;
    let twin = json(upload(&f, "same-bytes", guests::bytes(guests::BEHAVE)).await).await;
    assert_eq!(sha(&first), sha(&twin));
    let cached = artifacts(&f.data_dir);
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].starts_with(&sha(&first)), "{cached:?}");
    // Replaced by other bytes: the old artifact stays while a kept version has those bytes.
    let resp = upload(&f, "m", guests::bytes(guests::JSON_RESHAPER)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let second = json(f.get("/api/2/mappers/m").await).await;
    assert_eq!(artifacts(&f.data_dir).len(), 2);
    assert_eq!(
        f.delete("/api/2/mappers/same-bytes").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(artifacts(&f.data_dir).len(), 2, "m keeps version 1");
    // Version 1 deleted: its artifact goes.
    assert_eq!(
        f.delete("/api/2/mappers/m/versions/1").await.status(),
        StatusCode::NO_CONTENT
    );
    let cached = artifacts(&f.data_dir);
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].starts_with(&sha(&second)), "{cached:?}");
    assert_eq!(
        f.delete("/api/2/mappers/m").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(artifacts(&f.data_dir), Vec::<String>::new());
    let leftovers: Vec<_> = std::fs::read_dir(f.data_dir.join("mappers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// An upload whose code is past a limit of `[mappers]` is refused before it is compiled: 413
/// naming the limit and its setting; within the limits the same module is accepted.
#[tokio::test]
async fn modules_past_the_compile_limits_are_413_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start_with_config(dir.path(), "[mappers]\nmax_function_bytes = 4096\n");
    let started = std::time::Instant::now();
    let resp = upload(&f, "big", guests::bytes(guests::BEHAVE)).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let e = json(resp).await;
    assert_eq!(e["error"], "mappers:module.toolarge", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("at most 4096 are compiled"),
        "{e}"
    );
    assert!(
        e["description"]
            .as_str()
            .unwrap()
            .contains("[mappers] max_function_bytes"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused before compiling"
    );
    assert_eq!(
        f.get("/api/2/mappers/big").await.status(),
        StatusCode::NOT_FOUND
    );
    let dir = tempfile::tempdir().unwrap();
    let f = common::start(dir.path());
    let resp = upload(&f, "big", guests::bytes(guests::BEHAVE)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn bad_uploads_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start_with_config(dir.path(), "[mappers]\nmax_module_bytes = 200000\n");

    let resp = f
        .req(Method::PUT, "/api/2/mappers/m")
        .header("content-type", "application/octet-stream")
        .body(guests::bytes(guests::BEHAVE))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let resp = upload(&f, "m", b"not wasm at all".to_vec()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let e = json(resp).await;
    assert_eq!(e["error"], "mappers:module.invalid");
    assert_eq!(e["message"], "The uploaded bytes are not WebAssembly.");

    let e = json(upload(&f, "m", guests::bytes(guests::OTHER_WORLD)).await).await;
    assert_eq!(e["status"], 400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("<ferrule:mapper/mapping>"),
        "{e}"
    );

    // A module that imports wasi:filesystem loads, and finds no file.
    let resp = upload(&f, "file-open", guests::bytes(guests::FILE_OPEN)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let answer = json(
        f.post_json(
            "/api/2/mappers/file-open/test",
            &json!({"inbound": {"textPayload": "x"}}),
        )
        .await,
    )
    .await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("No such file or directory"),
        "{answer}"
    );
    assert_eq!(
        f.delete("/api/2/mappers/file-open").await.status(),
        StatusCode::NO_CONTENT
    );

    let resp = upload(&f, "m", vec![0u8; 300_000]).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let resp = upload(&f, "bad%20id", guests::bytes(guests::BEHAVE)).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(resp).await["error"], "mappers:mapper.id.invalid");

    assert_eq!(
        json(f.get("/api/2/mappers").await).await,
        json!([]),
        "nothing was stored"
    );
    let resp = reqwest::Client::new()
        .put(f.url("/api/2/mappers/m"))
        .header("content-type", "application/wasm")
        .body(guests::bytes(guests::BEHAVE))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "uploads need the devops user"
    );
}

#[tokio::test]
async fn connections_name_modules_that_exist_with_options_they_accept() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start(dir.path());

    let resp = f
        .put_json(
            "/api/2/connections/c1",
            &wasm_connection(json!({"module": "behave"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let e = json(resp).await;
    assert_eq!(e["error"], "connectivity:connection.configuration.invalid");
    assert!(
        e["description"]
            .as_str()
            .unwrap()
            .contains("<behave> is not uploaded"),
        "{e}"
    );

    assert_eq!(
        upload(&f, "behave", guests::bytes(guests::BEHAVE))
            .await
            .status(),
        StatusCode::CREATED
    );
    let e = json(
        f.put_json(
            "/api/2/connections/c1",
            &wasm_connection(json!({"module": "behave", "fail": true})),
        )
        .await,
    )
    .await;
    assert_eq!(e["status"], 400);
    assert!(
        e["description"]
            .as_str()
            .unwrap()
            .contains("configure was asked to fail"),
        "{e}"
    );
    // Said once (issue 20: "Check the options ..." came twice in other words).
    let text = e.to_string();
    assert!(text.matches("Check the").count() <= 1, "{e}");
    assert!(
        text.contains("configure was asked to fail. The behave"),
        "{e}"
    );

    let e = json(
        f.put_json(
            "/api/2/connections/c1",
            &wasm_connection(json!({"module": "behave", "timeoutMs": 999999})),
        )
        .await,
    )
    .await;
    assert!(
        e["description"]
            .as_str()
            .unwrap()
            .contains("<timeoutMs> may be at most"),
        "{e}"
    );

    let resp = f
        .put_json(
            "/api/2/connections/c1",
            &wasm_connection(json!({"module": "behave"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let one = json(f.get("/api/2/mappers/behave").await).await;
    assert_eq!(one["usedBy"], json!(["c1"]));

    let resp = f.delete("/api/2/mappers/behave").await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let e = json(resp).await;
    assert_eq!(e["error"], "mappers:mapper.inuse");
    assert!(e["description"].as_str().unwrap().contains("c1"), "{e}");

    assert_eq!(
        f.delete("/api/2/connections/c1").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        f.delete("/api/2/mappers/behave").await.status(),
        StatusCode::NO_CONTENT
    );
}

/// Building a connection's mappers (here a `configure` that loops until its 2 s deadline) runs
/// on blocking threads: while three such creates are under way, more than the server's async
/// workers, the REST API answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_answers_while_a_mapper_configures_until_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start(dir.path());
    assert_eq!(
        upload(&f, "behave", guests::bytes(guests::BEHAVE))
            .await
            .status(),
        StatusCode::CREATED
    );
    let creates: Vec<_> = (0..3)
        .map(|i| {
            let h = f.clone_handle();
            tokio::spawn(async move {
                let body = wasm_connection(
                    json!({"module": "behave", "loopForever": true, "timeoutMs": 2000}),
                );
                let started = std::time::Instant::now();
                let status = h
                    .try_put(&format!("/api/2/connections/loop-{i}"), &body)
                    .await;
                (status, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    while creates.iter().any(|c| !c.is_finished()) {
        let started = std::time::Instant::now();
        let resp = f.get("/api/2/connections?ids-only=true").await;
        assert_eq!(resp.status(), StatusCode::OK);
        slowest = slowest.max(started.elapsed());
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in creates {
        let (status, took) = c.await.unwrap();
        assert_eq!(status, Some(400), "the configure timed out");
        assert!(took >= Duration::from_secs(2), "{took:?}");
    }
    assert!(answered >= 10, "{answered} requests answered meanwhile");
    assert!(
        slowest < Duration::from_millis(500),
        "the API waited {slowest:?} for the mappers"
    );
}

/// Issue 20: any mapping definition can be tried without a connection, as a connection would
/// build it (`POST /api/2/mappings/test`).
#[tokio::test]
async fn a_mapping_definition_of_any_engine_can_be_tried() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start(dir.path());
    let try_it = |body: Value| {
        let f = &f;
        async move { f.post_json("/api/2/mappings/test", &body).await }
    };
    // JavaScript, inbound.
    let script = r#"function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
        return Ditto.buildDittoProtocolMsg("org.acme", headers["device"], "things", "twin",
            "commands", "modify", "/attributes/t", headers, JSON.parse(textPayload).t);
    }"#;
    let answer = json(
        try_it(json!({
            "mappingDefinition": {"mappingEngine": "JavaScript",
                                  "options": {"incomingScript": script}},
            "inbound": {"headers": {"device": "d1"}, "textPayload": "{\"t\": 21.5}"}
        }))
        .await,
    )
    .await;
    assert_eq!(answer["direction"], "inbound", "{answer}");
    assert_eq!(
        answer["outputs"][0]["topic"],
        "org.acme/d1/things/twin/commands/modify"
    );
    assert_eq!(answer["outputs"][0]["value"], 21.5);
    // A script that does not compile: the error names line and column, as at create.
    let answer = json(
        try_it(json!({
            "mappingDefinition": {"mappingEngine": "JavaScript",
                                  "options": {"incomingScript": "function mapToDittoProtocolMsg() {\n return ;;( \n}"}},
            "inbound": {"textPayload": "x"}
        }))
        .await,
    )
    .await;
    assert_eq!(
        answer["error"]["error"], "connectivity:message.mapper.config.failed",
        "{answer}"
    );
    assert!(answer.to_string().contains("line/column #3/1"), "{answer}");
    // Rhai, outbound.
    let answer = json(
        try_it(json!({
            "mappingDefinition": {"mappingEngine": "Rhai", "options": {"outgoingScript":
                "fn mapFromDittoProtocolMsg(namespace, name, group, channel, criterion, action, path, headers, value, status, extra) { external_message(#{}, `${name}=${value}`, (), \"text/plain\") }"}},
            "outbound": {"topic": "org.acme/d1/things/twin/events/modified",
                         "headers": {}, "path": "/attributes/t", "value": 7}
        }))
        .await,
    )
    .await;
    assert_eq!(answer["direction"], "outbound", "{answer}");
    assert_eq!(answer["outputs"][0]["textPayload"], "d1=7", "{answer}");
    // The Ditto mapper with a payload that is no Ditto Protocol message.
    let answer = json(
        try_it(json!({"mappingDefinition": {"mappingEngine": "Ditto"},
                      "inbound": {"textPayload": "{}"}}))
        .await,
    )
    .await;
    assert_eq!(answer["error"]["status"], 400, "{answer}");
    // WebAssembly: the uploaded module, with its log lines.
    upload(&f, "behave", guests::bytes(guests::BEHAVE)).await;
    let answer = json(
        try_it(json!({
            "mappingDefinition": {"mappingEngine": "WebAssembly",
                                  "options": {"module": "behave", "feature": "temp"}},
            "inbound": {"headers": {"device_id": "org.acme:s1"}, "textPayload": "5"}
        }))
        .await,
    )
    .await;
    assert_eq!(
        answer["outputs"][0]["path"], "/features/temp/properties/value",
        "{answer}"
    );
    assert!(!answer["logs"].as_array().unwrap().is_empty(), "{answer}");
    let meta = json(f.get("/api/2/mappers/behave").await).await;
    assert_eq!(meta["statistics"]["calls"], 0, "trials do not count");
    // Not a trial.
    let resp = try_it(json!({"inbound": {"textPayload": "x"}})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(resp).await["error"], "json.field.missing");
    let resp = try_it(json!({"mappingDefinition": {"mappingEngine": "Ditto"}})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json(f.get("/api/2/connections?ids-only=true").await).await,
        json!([])
    );
}

#[tokio::test]
async fn a_trial_maps_one_message_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start(dir.path());
    upload(&f, "behave", guests::bytes(guests::BEHAVE)).await;

    let answer = json(
        f.post_json(
            "/api/2/mappers/behave/test",
            &json!({"options": {"feature": "temp"},
                    "inbound": {"headers": {"device_id": "org.acme:s1"}, "textPayload": "log:2"}}),
        )
        .await,
    )
    .await;
    assert_eq!(answer["direction"], "inbound");
    assert_eq!(
        answer["outputs"][0]["topic"],
        "org.acme/s1/things/twin/commands/modify"
    );
    assert_eq!(
        answer["outputs"][0]["path"],
        "/features/temp/properties/value"
    );
    assert_eq!(answer["logs"].as_array().unwrap().len(), 3, "{answer}");
    assert_eq!(
        answer["logs"][2],
        json!({"level": "warn", "message": "line 1"})
    );
    assert!(answer["durationMicros"].as_f64().unwrap() > 0.0);

    let answer = json(
        f.post_json(
            "/api/2/mappers/behave/test",
            &json!({"options": {"timeoutMs": 20}, "inbound": {"textPayload": "loop"}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        answer["error"]["error"],
        "connectivity:message.mapping.failed"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within 20 ms"),
        "{answer}"
    );

    let answer = json(
        f.post_json(
            "/api/2/mappers/behave/test",
            &json!({"outbound": {"topic": "a/b/things/twin/events/modified",
                                 "path": "/attributes/x", "value": 5}}),
        )
        .await,
    )
    .await;
    assert_eq!(answer["outputs"][0]["textPayload"], "5");
    assert_eq!(
        answer["outputs"][0]["headers"]["x-topic"],
        "a/b/things/twin/events/modified"
    );

    let resp = f
        .post_json(
            "/api/2/mappers/behave/test",
            &json!({"inbound": {}, "outbound": {}}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let stats = json(f.get("/api/2/mappers/behave").await).await;
    assert_eq!(
        stats["statistics"]["calls"], 0,
        "trials do not count in the module's figures"
    );
}

#[tokio::test]
async fn modules_survive_a_restart_and_load_from_the_precompiled_cache() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut f = common::start(dir.path());
        upload(&f, "behave", guests::bytes(guests::BEHAVE)).await;
        let resp = f
            .put_json(
                "/api/2/connections/c1",
                &wasm_connection(json!({"module": "behave"})),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        f.stop();
    }
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache/wasm"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].ends_with(".cwasm"));
    let modified = std::fs::metadata(dir.path().join("cache/wasm").join(&cached[0]))
        .unwrap()
        .modified()
        .unwrap();

    let f = common::start(dir.path());
    let one = json(f.get("/api/2/mappers/behave").await).await;
    assert_eq!(one["version"], 1);
    assert_eq!(one["usedBy"], json!(["c1"]));
    let after = std::fs::metadata(dir.path().join("cache/wasm").join(&cached[0]))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(after, modified, "the artifact was used, not rewritten");
}

/// `ferrule mapper new` (issue 20): the project builds, passes its own tests, compiles to a
/// component and passes its cases in the host's sandbox, as it is.
#[test]
fn a_new_mapper_project_builds_tests_and_maps_as_it_is() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("demo");
    common::mapper_new("demo-mapper", "rust", &dir);
    // A second time into the same directory: refused, nothing overwritten.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_ferrule"))
        .args(["mapper", "new", "demo-mapper", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // Built outside this workspace's lock, from the crates cargo has here (no network); the
    // target directory is kept between runs.
    let target = concat!(env!("CARGO_TARGET_TMPDIR"), "/mapper-new");
    let cargo = |args: &[&str]| {
        let args = [args, &["--offline"]].concat();
        common::run_ok(&dir, env!("CARGO"), &args, &[("CARGO_TARGET_DIR", target)])
    };
    let tests = cargo(&["test"]);
    assert!(tests.contains("test result: ok. 2 passed"), "{tests}");
    cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
    let module = format!("{target}/wasm32-wasip2/release/demo_mapper.wasm");
    let report = common::mapper_test_cases(
        std::path::Path::new(&module),
        r#"{"namespace": "org.acme"}"#,
        &dir.join("cases.jsonl"),
        None,
    );
    assert!(report.contains("4 passed, 0 failed"), "{report}");
}

/// `ferrule mapper watch` (issue 20): the project's component is uploaded at start, and again
/// after a change of its source; the new version maps as the changed source says.
#[tokio::test]
async fn watch_uploads_the_project_at_start_and_after_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let f = common::start(dir.path());
    let project = dir.path().join("watched");
    common::mapper_new("watched", "rust", &project);
    // The same target directory as the `mapper new` test: the SDK's build is shared.
    let target = concat!(env!("CARGO_TARGET_TMPDIR"), "/mapper-new");
    /// Stops the watch however the test ends.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let watch = std::process::Command::new(env!("CARGO_BIN_EXE_ferrule"))
        .args([
            "mapper",
            "watch",
            "--id",
            "watched",
            "--interval-ms",
            "200",
            "--dir",
        ])
        .arg(&project)
        .args(["--url", &f.base])
        .env("FERRULE_DEVOPS_PASSWORD", &f.password)
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_NET_OFFLINE", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let watch = Stop(watch);
    let version = |v: u64| {
        let f = &f;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(180);
            loop {
                let resp = f.get("/api/2/mappers/watched").await;
                if resp.status() == StatusCode::OK && json(resp).await["version"] == v {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no version {v} uploaded"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let try_it = || {
        let f = &f;
        async move {
            json(
                f.post_json(
                    "/api/2/mappers/watched/test",
                    &json!({"options": {"namespace": "org.acme"},
                            "inbound": {"headers": {"device_id": "s1"}, "textPayload": "{\"t\": 1}"}}),
                )
                .await,
            )
            .await
        }
    };
    version(1).await;
    assert_eq!(
        try_it().await["outputs"][0]["path"],
        "/features/environment/properties"
    );
    let lib = project.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        source.replace("\"environment\".into()", "\"climate\".into()"),
    )
    .unwrap();
    version(2).await;
    let answer = try_it().await;
    drop(watch);
    assert_eq!(
        answer["outputs"][0]["path"], "/features/climate/properties",
        "{answer}"
    );
}

#[test]
fn the_command_line_tries_a_module() {
    let dir = tempfile::tempdir().unwrap();
    let inbound = dir.path().join("in.json");
    std::fs::write(
        &inbound,
        r#"{"headers":{"device_id":"a:b"},"textPayload":"7"}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrule"))
        .args([
            "mapper",
            "test",
            "--module",
            guests::BEHAVE,
            "--options",
            r#"{"feature":"f"}"#,
        ])
        .arg("--inbound")
        .arg(&inbound)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["outputs"][0]["path"], "/features/f/properties/value");
    assert_eq!(answer["outputs"][0]["value"], 7);

    std::fs::write(&inbound, r#"{"textPayload":"trap"}"#).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrule"))
        .args(["mapper", "test", "--module", guests::BEHAVE, "--inbound"])
        .arg(&inbound)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        answer["error"]["description"]
            .as_str()
            .unwrap()
            .contains("asked to trap")
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrule"))
        .args([
            "mapper",
            "test",
            "--module",
            guests::OTHER_WORLD,
            "--inbound",
        ])
        .arg(&inbound)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ferrule:mapper/mapping"));

    // A file of cases (issue 20): a line per case, the failed one with expected and got.
    let cases = dir.path().join("cases.jsonl");
    std::fs::write(
        &cases,
        [
            r#"# behave's cases"#,
            r#"{"name": "a number", "inbound": {"headers": {"device_id": "a:b"}, "textPayload": "7"}, "expect": [{"path": "/features/f/properties/value", "value": 7}]}"#,
            r#"{"name": "a trap", "inbound": {"textPayload": "trap"}, "expectError": "asked to trap"}"#,
            r#"{"name": "wrong", "inbound": {"headers": {"device_id": "a:b"}, "textPayload": "8"}, "expect": [{"value": 9}]}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrule"))
        .args(["mapper", "test", "--module", guests::BEHAVE])
        .args(["--options", r#"{"feature":"f"}"#, "--cases"])
        .arg(&cases)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("ok      a number"), "{report}");
    assert!(report.contains("ok      a trap"), "{report}");
    assert!(report.contains("FAILED  wrong"), "{report}");
    assert!(report.contains(r#"expected: [{"value":9}]"#), "{report}");
    assert!(report.contains("2 passed, 1 failed"), "{report}");

    // The same runner for a JavaScript mapping definition.
    let definition = dir.path().join("definition.json");
    std::fs::write(
        &definition,
        json!({"mappingEngine": "JavaScript", "options": {"incomingScript":
            "function mapToDittoProtocolMsg(headers, textPayload) { return Ditto.buildDittoProtocolMsg('org.acme', 'd', 'things', 'twin', 'commands', 'modify', '/attributes/t', headers, parseInt(textPayload)); }"}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        &cases,
        r#"{"name": "js", "inbound": {"textPayload": "42"}, "expect": [{"topic": "org.acme/d/things/twin/commands/modify", "value": 42}]}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrule"))
        .args(["mapper", "test", "--definition"])
        .arg(&definition)
        .arg("--cases")
        .arg(&cases)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("1 passed, 0 failed"), "{report}");
}

/// An MQTT subscriber that collects payloads arriving on `filter`.
async fn subscriber(
    id: &str,
    filter: &str,
) -> (
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", 1883);
    o.set_clean_session(true);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 100);
    client
        .subscribe(filter, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    tokio::spawn(async move {
        use rumqttc::{Event, Packet};
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    ready.take().map(|r| r.send(()));
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => panic!("the test's MQTT client failed: {e}"),
            }
        }
    });
    tokio::time::timeout(WAIT, ready_rx).await.unwrap().unwrap();
    (client, rx)
}

#[tokio::test]
async fn a_module_maps_device_messages_into_the_twin_and_events_out() {
    let (_d, f) = common::live_server();
    let u = common::unique("wasm", '-');
    upload(&f, "behave", guests::bytes(guests::BEHAVE)).await;
    let thing = format!("org.wasm:{u}");
    let resp = f
        .put_json(
            &format!("/api/2/things/{thing}"),
            &json!({"features": {"temp": {"properties": {"value": 0}}}}),
        )
        .await;
    assert!(resp.status().is_success(), "{}", resp.status());

    let connection = json!({
        "connectionType": "mqtt",
        "connectionStatus": "open",
        "uri": "tcp://127.0.0.1:1883",
        "mappingDefinitions": {
            "in": {"mappingEngine": "WebAssembly",
                   "options": {"module": "behave", "feature": "temp", "namespace": "org.wasm"}},
            "out": {"mappingEngine": "WebAssembly", "options": {"module": "behave"}}
        },
        "sources": [{"addresses": [format!("ferrule-wasm/{u}/devices/+")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"], "payloadMapping": ["in"]}],
        "targets": [{"address": format!("ferrule-wasm/{u}/events"),
                     "topics": ["_/_/things/twin/events"], "qos": 1,
                     "authorizationContext": ["ditto:outbound"], "payloadMapping": ["out"]}]
    });
    let resp = f
        .put_json("/api/2/connections/wasm-conn", &connection)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", json(resp).await);
    wait_for_live_status(&f, "wasm-conn", "open").await;
    let (_sub, mut events) =
        subscriber(&format!("{u}-sub"), &format!("ferrule-wasm/{u}/events")).await;

    let mut o = rumqttc::MqttOptions::new(format!("{u}-dev"), "127.0.0.1", 1883);
    o.set_clean_session(true);
    let (device, mut eventloop) = rumqttc::AsyncClient::new(o, 100);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let device_topic = format!("ferrule-wasm/{u}/devices/{u}");
    let send = |payload: &'static str| {
        let device = device.clone();
        let topic = device_topic.clone();
        async move {
            device
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                .await
                .unwrap()
        }
    };

    send("21.5").await;
    let (_, payload) = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8(payload).unwrap(),
        "21.5",
        "the outbound module published the value"
    );
    let twin = json(
        f.get(&format!(
            "/api/2/things/{thing}/features/temp/properties/value"
        ))
        .await,
    )
    .await;
    assert_eq!(twin, json!(21.5));

    // A trap fails that message only; the next one maps on a fresh instance.
    send("trap").await;
    send("22.5").await;
    let (_, payload) = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8(payload).unwrap(), "22.5");

    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let m = json(f.get("/api/2/connections/wasm-conn/metrics").await).await;
        if m["connectionMetrics"]["inbound"]["mapped"]["failure"]["PT1M"] == 1 {
            assert_eq!(
                m["connectionMetrics"]["inbound"]["mapped"]["success"]["PT1M"],
                2
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "metrics: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = json(f.get("/api/2/connections/wasm-conn/logs").await).await;
    let entries = logs["connectionLogs"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["level"] == "failure"
                && e["message"].as_str().unwrap().contains("asked to trap")),
        "the trap and its panic message are in the logs: {logs}"
    );
    assert!(
        entries.iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .contains("configured with feature temp")),
        "the module's own log lines are in the logs: {logs}"
    );
    let stats = json(f.get("/api/2/mappers/behave").await).await;
    assert!(
        stats["statistics"]["failures"]["trap"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(
        stats["statistics"]["succeeded"].as_u64().unwrap() >= 4,
        "{stats}"
    );
}

/// Publishes `payload` on `topic` at QoS 1.
async fn publish(dev: &rumqttc::AsyncClient, topic: String, payload: impl Into<Vec<u8>>) {
    dev.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
        .await
        .unwrap();
}

/// A device that publishes at QoS 1.
fn device(id: &str) -> rumqttc::AsyncClient {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", 1883);
    o.set_clean_session(true);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 100);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
}

async fn wait_for_twin(f: &Ferrule, path: &str, expected: Value) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let resp = f.get(path).await;
        let status = resp.status();
        if status == StatusCode::OK {
            let got = json(resp).await;
            if got == expected {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{path}: {got}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never appeared: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_sdk_mappers_decode_bytes_reshape_json_and_publish_cloudevents_through_mosquitto() {
    let (_d, f) = common::live_server();
    let u = common::unique("sdk", '-');
    for (id, file) in [
        ("telemetry-decoder", guests::TELEMETRY_DECODER),
        ("json-reshaper", guests::JSON_RESHAPER),
        ("cloudevents-out", guests::CLOUDEVENTS_OUT),
    ] {
        let resp = upload(&f, id, guests::bytes(file)).await;
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "{id}: {}",
            json(resp).await
        );
    }
    for name in ["bin-1", "json-1"] {
        let resp = f
            .put_json(&format!("/api/2/things/org.sdk:{u}-{name}"), &json!({}))
            .await;
        assert!(resp.status().is_success());
    }
    let base = format!("ferrule-sdk/{u}");
    let connection = json!({
        "connectionType": "mqtt",
        "connectionStatus": "open",
        "uri": "tcp://127.0.0.1:1883",
        "mappingDefinitions": {
            "decode": {"mappingEngine": "WebAssembly", "options": {
                "module": "telemetry-decoder", "namespace": "org.sdk",
                "topicPattern": format!("{base}/bin/{{name}}/up"),
                "fields": [
                    {"name": "temperature", "type": "i16le", "scale": 0.01, "feature": "environment"},
                    {"name": "humidity", "type": "u8", "feature": "environment"},
                    {"name": "voltage", "type": "u16be", "scale": 0.001, "decimals": 3, "feature": "power"},
                    {"name": "charging", "type": "bool", "feature": "power", "property": "state/charging"}
                ]}},
            "reshape": {"mappingEngine": "WebAssembly", "options": {
                "module": "json-reshaper", "namespace": "org.sdk", "thingIdPointer": "/device/id",
                "mappings": [
                    {"from": "/readings/t", "to": "/features/environment/properties/temperature"},
                    {"from": "/fw", "to": "/attributes/firmware", "required": true}
                ]}},
            "cloudevents": {"mappingEngine": "WebAssembly", "options": {
                "module": "cloudevents-out", "source": "urn:test:{namespace}", "typePrefix": "org.test.thing"}}
        },
        "sources": [
            {"addresses": [format!("{base}/bin/+/up")], "qos": 1,
             "authorizationContext": ["ditto:inbound"], "payloadMapping": ["decode"]},
            {"addresses": [format!("{base}/json")], "qos": 1,
             "authorizationContext": ["ditto:inbound"], "payloadMapping": ["reshape"]}
        ],
        "targets": [{"address": format!("{base}/cloudevents"),
                     "topics": ["_/_/things/twin/events"], "qos": 1,
                     "authorizationContext": ["ditto:outbound"], "payloadMapping": ["cloudevents"]}]
    });
    let resp = f.put_json("/api/2/connections/sdk-conn", &connection).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{}", json(resp).await);
    wait_for_live_status(&f, "sdk-conn", "open").await;
    let (_sub, mut events) = subscriber(&format!("{u}-sub"), &format!("{base}/cloudevents")).await;
    let dev = device(&format!("{u}-dev"));

    publish(
        &dev,
        format!("{base}/bin/{u}-bin-1/up"),
        vec![0x6c, 0x08, 0x30, 0x0e, 0x80, 0x01],
    )
    .await;
    let thing = format!("/api/2/things/org.sdk:{u}-bin-1");
    wait_for_twin(
        &f,
        &format!("{thing}/features/environment/properties"),
        json!({"temperature": 21.56, "humidity": 48}),
    )
    .await;
    wait_for_twin(
        &f,
        &format!("{thing}/features/power/properties"),
        json!({"voltage": 3.712, "state": {"charging": true}}),
    )
    .await;

    let (_, payload) = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["source"], "urn:test:org.sdk");
    assert_eq!(event["type"], "org.test.thing.merged");
    assert_eq!(event["subject"], format!("org.sdk:{u}-bin-1"));
    assert_eq!(
        event["data"]["environment"]["properties"]["temperature"],
        21.56
    );
    assert!(
        event["time"].is_string(),
        "events carry their timestamp: {event}"
    );

    publish(
        &dev,
        format!("{base}/json"),
        json!({"device": {"id": format!("{u}-json-1")}, "readings": {"t": 19.5}, "fw": "1.2"})
            .to_string(),
    )
    .await;
    let thing = format!("/api/2/things/org.sdk:{u}-json-1");
    wait_for_twin(&f, &format!("{thing}/attributes/firmware"), json!("1.2")).await;
    wait_for_twin(
        &f,
        &format!("{thing}/features/environment/properties/temperature"),
        json!(19.5),
    )
    .await;
    let (_, payload) = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(event["subject"], format!("org.sdk:{u}-json-1"));

    // A short frame fails with the reason in the connection logs; the next one maps.
    publish(&dev, format!("{base}/bin/{u}-bin-1/up"), vec![1u8, 2]).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let logs = json(f.get("/api/2/connections/sdk-conn/logs").await).await;
        if logs["connectionLogs"].as_array().unwrap().iter().any(|e| {
            e["level"] == "failure" && e["message"].as_str().unwrap().contains("does not fit")
        }) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn replacing_a_module_swaps_it_in_a_running_connection() {
    let (_d, f) = common::live_server();
    let u = common::unique("swap", '-');
    upload(&f, "swap", guests::bytes(guests::BEHAVE)).await;
    let resp = f
        .put_json(
            &format!("/api/2/things/org.swap:{u}"),
            &json!({"features": {"n": {"properties": {"value": 0}}}}),
        )
        .await;
    assert!(resp.status().is_success());
    let base = format!("ferrule-swap/{u}");
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "mappingDefinitions": {"in": {"mappingEngine": "WebAssembly",
            "options": {"module": "swap", "namespace": "org.swap", "feature": "n", "site": "s"}}},
        "sources": [{"addresses": [format!("{base}/+")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"], "payloadMapping": ["in"]}]
    });
    assert_eq!(
        f.put_json("/api/2/connections/swap-conn", &connection)
            .await
            .status(),
        StatusCode::CREATED
    );
    wait_for_live_status(&f, "swap-conn", "open").await;
    let dev = device(&format!("{u}-dev"));
    let path = format!("/api/2/things/org.swap:{u}/features/n/properties/value");
    for i in 1..=60u32 {
        publish(&dev, format!("{base}/{u}"), i.to_string()).await;
        // behave and strict swap under traffic, both take these options: a new version (2),
        // a rollback (to 1), and the bytes of a kept version uploaded again (2 again).
        match i {
            20 | 60 => {
                let resp = upload(&f, "swap", guests::bytes(guests::STRICT)).await;
                assert_eq!(resp.status(), StatusCode::NO_CONTENT);
            }
            40 => {
                let resp = f
                    .req(Method::POST, "/api/2/mappers/swap/rollback")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                assert_eq!(json(resp).await["version"], 1);
            }
            _ => {}
        }
    }
    // Every message was mapped once, in order: the last value is the last one sent.
    wait_for_twin(&f, &path, json!(60)).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let m = json(f.get("/api/2/connections/swap-conn/metrics").await).await;
        let mapped = &m["connectionMetrics"]["inbound"]["mapped"];
        if mapped["success"]["PT1M"] == 60 {
            assert_eq!(mapped["failure"]["PT1M"], 0, "{m}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let meta = json(f.get("/api/2/mappers/swap").await).await;
    assert_eq!(meta["version"], 2);
    assert_eq!(meta["latestVersion"], 2);
    assert!(
        meta["statistics"]["instancesStarted"].as_u64().unwrap() >= 2,
        "{meta}"
    );
}

/// A running connection that pins a version keeps it while new versions are uploaded: strict
/// (version 2) would refuse its options, and no message fails or is lost.
#[tokio::test]
async fn a_pinned_connection_keeps_its_version_under_traffic() {
    let (_d, f) = common::live_server();
    let u = common::unique("pin", '-');
    let module = format!("pin-{u}");
    upload(&f, &module, guests::bytes(guests::BEHAVE)).await;
    let thing = format!("org.pin:{u}");
    let resp = f
        .put_json(
            &format!("/api/2/things/{thing}"),
            &json!({"features": {"n": {"properties": {"value": 0}}}}),
        )
        .await;
    assert!(resp.status().is_success());
    let base = format!("ferrule-pin/{u}");
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "mappingDefinitions": {"in": {"mappingEngine": "WebAssembly",
            "options": {"module": format!("{module}@1"), "namespace": "org.pin", "feature": "n"}}},
        "sources": [{"addresses": [format!("{base}/+")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"], "payloadMapping": ["in"]}]
    });
    let id = format!("pin-conn-{u}");
    assert_eq!(
        f.put_json(&format!("/api/2/connections/{id}"), &connection)
            .await
            .status(),
        StatusCode::CREATED
    );
    wait_for_live_status(&f, &id, "open").await;
    let dev = device(&format!("{u}-dev"));
    for i in 1..=40u32 {
        publish(&dev, format!("{base}/{u}"), i.to_string()).await;
        if i == 20 {
            // Nothing follows the current version: strict is accepted without force.
            let resp = upload(&f, &module, guests::bytes(guests::STRICT)).await;
            assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        }
    }
    wait_for_twin(
        &f,
        &format!("/api/2/things/{thing}/features/n/properties/value"),
        json!(40),
    )
    .await;
    let m = json(f.get(&format!("/api/2/connections/{id}/metrics")).await).await;
    let mapped = &m["connectionMetrics"]["inbound"]["mapped"];
    assert_eq!(mapped["success"]["PT1M"], 40, "{m}");
    assert_eq!(mapped["failure"]["PT1M"], 0, "{m}");
    let meta = json(f.get(&format!("/api/2/mappers/{module}")).await).await;
    assert_eq!(meta["version"], 2);
    // The pinned version's calls count in the module's statistics.
    assert!(
        meta["statistics"]["calls"].as_u64().unwrap() >= 40,
        "{meta}"
    );
    let list = json(f.get(&format!("/api/2/mappers/{module}/versions")).await).await;
    assert_eq!(list[1]["usedBy"], json!([id]), "{list}");
    assert_eq!(list[0]["usedBy"], json!([]), "{list}");
}

/// Issue 20, defect 1: a new version that refuses the options of a connection that uses the
/// module is refused (409, nothing changes) unless forced; forced, the connection's messages
/// are not settled as handled: the connection fails and shows why, the broker keeps them, and
/// once a version that takes the options is uploaded they reach the twin. Nothing is lost.
#[tokio::test]
async fn a_replacement_that_refuses_a_connections_options_loses_no_message() {
    let (_d, f) = common::live_server();
    let u = common::unique("strict", '-');
    upload(&f, "codec", guests::bytes(guests::BEHAVE)).await;
    let thing = format!("org.strict:{u}");
    let resp = f
        .put_json(
            &format!("/api/2/things/{thing}"),
            &json!({"features": {"n": {"properties": {"value": 0}}}}),
        )
        .await;
    assert!(resp.status().is_success());
    let base = format!("ferrule-strict/{u}");
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "specificConfig": {"clientId": format!("ferrule-{u}")},
        "mappingDefinitions": {"in": {"mappingEngine": "WebAssembly",
            "options": {"module": "codec", "namespace": "org.strict", "feature": "n"}}},
        "sources": [{"addresses": [format!("{base}/+")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"], "payloadMapping": ["in"]}]
    });
    let resp = f
        .put_json("/api/2/connections/strict-conn", &connection)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for_live_status(&f, "strict-conn", "open").await;
    let dev = device(&format!("{u}-dev"));
    let path = format!("/api/2/things/{thing}/features/n/properties/value");
    publish(&dev, format!("{base}/{u}"), "1").await;
    wait_for_twin(&f, &path, json!(1)).await;

    // Refused: 409 naming the connection and the module's reason; nothing changed.
    let resp = upload(&f, "codec", guests::bytes(guests::STRICT)).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let e = json(resp).await;
    assert_eq!(e["error"], "mappers:module.incompatible");
    assert!(
        e["message"].as_str().unwrap().contains("[strict-conn]"),
        "{e}"
    );
    assert!(
        e["description"]
            .as_str()
            .unwrap()
            .contains("missing field `site`"),
        "{e}"
    );
    let meta = json(f.get("/api/2/mappers/codec").await).await;
    assert_eq!(meta["version"], 1);
    let module = f
        .get("/api/2/mappers/codec/module")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(module.to_vec(), guests::bytes(guests::BEHAVE));
    publish(&dev, format!("{base}/{u}"), "2").await;
    wait_for_twin(&f, &path, json!(2)).await;

    // Forced: the connection's next messages are not mapped and not lost.
    let resp = f
        .req(Method::PUT, "/api/2/mappers/codec?force=true")
        .header("content-type", "application/wasm")
        .body(guests::bytes(guests::STRICT))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for value in 3..=5 {
        publish(&dev, format!("{base}/{u}"), value.to_string()).await;
    }
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = json(f.get("/api/2/connections/strict-conn/status").await).await;
        let logs = json(f.get("/api/2/connections/strict-conn/logs").await).await;
        let logged = logs["connectionLogs"].as_array().unwrap().iter().any(|l| {
            l["level"] == "failure"
                && l["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("missing field `site`")
        });
        if status["liveStatus"] != "open" && logged {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status} {logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let meta = json(f.get("/api/2/mappers/codec").await).await;
    assert!(
        meta["statistics"]["failures"]["configuration"]
            .as_u64()
            .unwrap()
            >= 1,
        "{meta}"
    );
    let twin = json(f.get(&path).await).await;
    assert_eq!(
        twin,
        json!(2),
        "nothing was applied with the refusing version"
    );

    // A version that takes the options again: the messages the broker kept arrive, in order.
    let resp = upload(&f, "codec", guests::bytes(guests::BEHAVE)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    wait_for_live_status(&f, "strict-conn", "open").await;
    wait_for_twin(&f, &path, json!(5)).await;
    // Created, then 1 to 5 applied once each.
    let revision = json(
        f.get(&format!("/api/2/things/{thing}?fields=_revision"))
            .await,
    )
    .await;
    assert_eq!(revision["_revision"], 6, "{revision}");
}

#[tokio::test]
async fn a_slow_mapper_holds_back_only_its_own_connection() {
    // Three calls that each run until their 1.5 s deadline keep the slow connection's one
    // processor busy for 4.5 s.
    slow_connection_is_isolated(
        "wasm",
        json!({"mappingEngine": "WebAssembly",
               "options": {"module": "behave", "namespace": "org.slow", "feature": "n", "timeoutMs": 1500}}),
    )
    .await;
}

#[tokio::test]
async fn a_slow_script_holds_back_only_its_own_connection() {
    // JavaScript's deadline is 500 ms per call: three loops keep the processor busy 1.5 s.
    let script = r#"function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {
        if (textPayload === "loop") { while (true) {} }
        var name = headers["mqtt.topic"].split("/").pop();
        return Ditto.buildDittoProtocolMsg("org.slow", name, "things", "twin", "commands",
            "modify", "/features/n/properties/value", headers, parseFloat(textPayload));
    }"#;
    slow_connection_is_isolated(
        "js",
        json!({"mappingEngine": "JavaScript",
               "options": {"incomingScript": script, "outgoingScript": ""}}),
    )
    .await;
}

/// A slow connection (mapping definition `slow`) and a fast one (the `behave` module) on one
/// server: the fast one maps while the slow one is busy, and the slow one catches up in order.
/// Connection ids are unique per run: they are the MQTT client ids, and the broker lets only one
/// client of an id connect at a time.
async fn slow_connection_is_isolated(test: &str, slow: Value) {
    let (_d, f) = common::live_server();
    let u = common::unique(&format!("slow-{test}"), '-');
    upload(&f, "behave", guests::bytes(guests::BEHAVE)).await;
    for name in ["slow", "fast"] {
        let resp = f
            .put_json(
                &format!("/api/2/things/org.slow:{u}-{name}"),
                &json!({"features": {"n": {"properties": {"value": 0}}}}),
            )
            .await;
        assert!(resp.status().is_success());
    }
    let base = format!("ferrule-slow/{u}");
    let fast = json!({"mappingEngine": "WebAssembly",
        "options": {"module": "behave", "namespace": "org.slow", "feature": "n"}});
    for (name, definition) in [("slow", slow), ("fast", fast)] {
        let connection = json!({
            "connectionType": "mqtt", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
            "mappingDefinitions": {"in": definition},
            "sources": [{"addresses": [format!("{base}/{name}/+")], "qos": 1,
                         "authorizationContext": ["ditto:inbound"], "payloadMapping": ["in"]}]
        });
        let resp = f
            .put_json(&format!("/api/2/connections/{u}-{name}"), &connection)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{}", json(resp).await);
        wait_for_live_status(&f, &format!("{u}-{name}"), "open").await;
    }
    let dev = device(&format!("{u}-dev"));
    for _ in 0..3 {
        publish(&dev, format!("{base}/slow/{u}-slow"), "loop").await;
    }
    publish(&dev, format!("{base}/slow/{u}-slow"), "7").await;
    publish(&dev, format!("{base}/fast/{u}-fast"), "42").await;
    wait_for_twin(
        &f,
        &format!("/api/2/things/org.slow:{u}-fast/features/n/properties/value"),
        json!(42),
    )
    .await;
    let m = json(f.get(&format!("/api/2/connections/{u}-slow/metrics")).await).await;
    let failed = m["connectionMetrics"]["inbound"]["mapped"]["failure"]["PT1M"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        failed < 3,
        "the fast connection mapped while the slow one was still busy: {m}"
    );
    // The slow connection gets through its backlog in order.
    let path = format!("/api/2/things/org.slow:{u}-slow/features/n/properties/value");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if json(f.get(&path).await).await == json!(7) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slow connection never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = json(f.get(&format!("/api/2/connections/{u}-slow/metrics")).await).await;
    assert_eq!(
        m["connectionMetrics"]["inbound"]["mapped"]["failure"]["PT1M"],
        3
    );
}

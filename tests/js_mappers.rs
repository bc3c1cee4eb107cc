//! Mappers written in JavaScript (issue 20): the example of `mapper-sdk-js` built into a
//! component with componentize-js (`mapper-sdk-js/node_modules`, installed by `scripts/test`),
//! tried with `ferrule mapper test`, uploaded and mapping real MQTT traffic into the twin.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::json;
use std::path::{Path, PathBuf};

fn sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mapper-sdk-js")
}

/// Builds the mapper `app` (an ES module) into a component with `mapper-sdk-js/build.mjs`.
fn build(app: &Path, out: &Path) {
    let result = std::process::Command::new("node")
        .arg(sdk().join("build.mjs"))
        .arg(app)
        .arg(out)
        .output()
        .expect("node runs");
    assert!(
        result.status.success(),
        "componentize-js failed (scripts/test runs npm ci in mapper-sdk-js): {}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}

#[tokio::test]
async fn the_javascript_example_maps_mqtt_messages_into_the_twin() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("kv.wasm");
    build(&sdk().join("examples/kv/app.js"), &module);

    // Tried locally: the default limits take a JavaScript component.
    let cases = dir.path().join("cases.jsonl");
    std::fs::write(
        &cases,
        concat!(
            r#"{"name": "values", "inbound": {"headers": {"device_id": "s1"}, "textPayload": "t=21.5;h=40"}, "expect": [{"topic": "org.js/s1/things/twin/commands/merge", "path": "/features/measurements/properties", "value": {"t": 21.5, "h": 40}}]}"#,
            "\n",
            r#"{"name": "not a number", "inbound": {"headers": {"device_id": "s1"}, "textPayload": "t=warm"}, "expectError": "is not a number"}"#,
            "\n",
            r#"{"name": "a bad option", "options": {"namespace": "org.js", "site": 1}, "inbound": {"textPayload": "t=1"}, "expectError": "Unknown options: site"}"#,
            "\n"
        ),
    )
    .unwrap();
    let report = common::mapper_test_cases(&module, r#"{"namespace": "org.js"}"#, &cases, None);
    assert!(report.contains("3 passed, 0 failed"), "{report}");

    let (_d, f) = common::live_server();
    let resp = f
        .req(Method::PUT, "/api/2/mappers/kv-js")
        .header("content-type", "application/wasm")
        .body(std::fs::read(&module).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    common::kv_module_maps_mqtt_traffic(&f, "kv-js", "org.js", json!({"t": 20, "h": 40})).await;
}

/// `ferrule mapper new --lang js`: the project's tests pass, it builds with its npm script, and
/// its cases pass in the host's sandbox, as it is.
#[test]
fn a_new_javascript_project_tests_builds_and_maps_as_it_is() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("js-demo");
    common::mapper_new("js-demo", "js", &dir);
    let run = |program: &str, args: &[&str]| common::run_ok(&dir, program, args, &[]);
    let tests = run("npm", &["test"]);
    assert!(tests.contains("# pass 2"), "{tests}");
    run("npm", &["run", "build"]);
    let report = run(
        env!("CARGO_BIN_EXE_ferrule"),
        &[
            "mapper",
            "test",
            "--module",
            "js_demo.wasm",
            "--options",
            r#"{"namespace": "org.acme"}"#,
            "--cases",
            "cases.jsonl",
        ],
    );
    assert!(report.contains("4 passed, 0 failed"), "{report}");
}

//! Mappers written in Python (issue 20): the example of `mapper-sdk-py` built into a component
//! with componentize-py (installed by `scripts/test`), tried with `ferrule mapper test`, uploaded
//! and mapping real MQTT traffic into the twin; and a Python mapper that tries to read a file
//! and open a socket gets neither.

mod common;

use common::{Ferrule, json};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::path::{Path, PathBuf};

/// What a Python mapper needs of `[mappers]`: its CPython is ~36 MB, and its largest function
/// (the interpreter's loop) ~740 KB.
const PYTHON_LIMITS: &str =
    "[mappers]\nmax_module_bytes = 67108864\nmax_function_bytes = 1048576\n";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds `app` (a module on `paths`) into a component with componentize-py.
fn componentize(paths: &[PathBuf], app: &str, out: &Path) {
    let mut cmd = std::process::Command::new("python3");
    cmd.args([
        "-c",
        "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; \
         sys.exit(script())",
    ])
    .arg("-d")
    .arg(repo().join("wit"))
    .args(["-w", "mapper", "componentize"]);
    for p in paths {
        cmd.arg("-p").arg(p);
    }
    let result = cmd.arg(app).arg("-o").arg(out).output().unwrap();
    assert!(
        result.status.success(),
        "componentize-py failed (scripts/test installs it: pip install componentize-py): {}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}

fn example(dir: &Path) -> PathBuf {
    let out = dir.join("kv.wasm");
    let sdk = repo().join("mapper-sdk-py");
    componentize(&[sdk.clone(), sdk.join("examples/kv")], "app", &out);
    out
}

async fn upload(f: &Ferrule, id: &str, bytes: Vec<u8>) -> reqwest::Response {
    f.req(Method::PUT, &format!("/api/2/mappers/{id}"))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_python_example_maps_mqtt_messages_into_the_twin() {
    let dir = tempfile::tempdir().unwrap();
    let module = example(dir.path());

    // Tried locally with the host's limits, from a configuration file.
    let config = dir.path().join("python.toml");
    std::fs::write(&config, PYTHON_LIMITS).unwrap();
    let cases = dir.path().join("cases.jsonl");
    std::fs::write(
        &cases,
        concat!(
            r#"{"name": "values", "inbound": {"headers": {"device_id": "s1"}, "textPayload": "t=21.5;h=40"}, "expect": [{"topic": "org.py/s1/things/twin/commands/merge", "path": "/features/measurements/properties", "value": {"t": 21.5, "h": 40.0}}]}"#,
            "\n",
            r#"{"name": "not a number", "inbound": {"headers": {"device_id": "s1"}, "textPayload": "t=warm"}, "expectError": "is not a number"}"#,
            "\n"
        ),
    )
    .unwrap();
    let report =
        common::mapper_test_cases(&module, r#"{"namespace": "org.py"}"#, &cases, Some(&config));
    assert!(report.contains("2 passed, 0 failed"), "{report}");

    // With the default limits it is refused, naming the setting to raise.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrule"))
        .args(["mapper", "test", "--module"])
        .arg(&module)
        .args(["--options", r#"{"namespace": "org.py"}"#, "--cases"])
        .arg(&cases)
        .env_remove("FERRULE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[mappers] max_"), "{stderr}");
    let bytes = std::fs::read(&module).unwrap();

    // Uploaded to a host with the limits a Python mapper needs, it maps device messages.
    let f = common::start_with_config(
        dir.path(),
        &format!(
            "{PYTHON_LIMITS}[runtime]\nmin_backoff_ms = 200\nmax_backoff_ms = 1000\nconnect_timeout_ms = 3000\n"
        ),
    );
    assert_eq!(upload(&f, "kv", bytes).await.status(), StatusCode::CREATED);
    common::kv_module_maps_mqtt_traffic(&f, "kv", "org.py", json!({"t": 20.0, "h": 40.0})).await;
}

/// A Python mapper imports wasi:filesystem and wasi:sockets (CPython does); the host gives it
/// no directory and refuses every socket.
#[tokio::test]
async fn a_python_mapper_reads_no_file_and_opens_no_socket() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("nosy.py"),
        r#"
import socket
import ferrule_mapper as fm

class Nosy(fm.Mapper):
    def map_inbound(self, message):
        what = fm.text(message)
        if what == "file":
            with open("/etc/passwd") as f:
                return [fm.ThingId("x", "y").modify("/attributes/leak", f.read()).build()]
        if what == "socket":
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.connect(("127.0.0.1", 1883))
            return [fm.ThingId("x", "y").modify("/attributes/leak", "connected").build()]
        return []

Mapping = fm.export(Nosy)
"#,
    )
    .unwrap();
    let module = dir.path().join("nosy.wasm");
    componentize(&[repo().join("mapper-sdk-py"), src], "nosy", &module);
    let f = common::start_with_config(dir.path(), PYTHON_LIMITS);
    assert_eq!(
        upload(&f, "nosy", std::fs::read(&module).unwrap())
            .await
            .status(),
        StatusCode::CREATED
    );
    let meta = json(f.get("/api/2/mappers/nosy").await).await;
    let imports = meta["imports"].to_string();
    assert!(
        imports.contains("wasi:filesystem/") && imports.contains("wasi:sockets/"),
        "{meta}"
    );
    for (what, expected) in [
        (
            "file",
            "FileNotFoundError: [Errno 44] No such file or directory",
        ),
        ("socket", "PermissionError"),
    ] {
        let answer = json(
            f.post_json(
                "/api/2/mappers/nosy/test",
                &json!({"inbound": {"textPayload": what}}),
            )
            .await,
        )
        .await;
        let error = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{what}: {answer}");
        assert!(answer["outputs"].is_null(), "{what}: {answer}");
    }
}

/// `ferrule mapper new --lang python`: the project's tests pass, it builds, and its cases pass
/// in the host's sandbox with the limits it brings (`python.toml`), as it is.
#[test]
fn a_new_python_project_tests_builds_and_maps_as_it_is() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("py-demo");
    common::mapper_new("py-demo", "python", &dir);
    let run = |program: &str, args: &[&str]| {
        common::run_ok(&dir, program, args, &[("PYTHONDONTWRITEBYTECODE", "1")])
    };
    let tests = run("python3", &["-m", "pytest", "-q", "-p", "no:cacheprovider"]);
    assert!(tests.contains("2 passed"), "{tests}");
    // build.sh calls componentize-py as pip installs it; the test calls it the same way as the
    // other tests here (python3 -c), so a shell without pip's scripts on PATH works too.
    let build = std::fs::read_to_string(dir.join("build.sh")).unwrap();
    assert!(build.contains("componentize-py -d"), "{build}");
    componentize(
        &[repo().join("mapper-sdk-py"), dir.clone()],
        "app",
        &dir.join("py_demo.wasm"),
    );
    let report = run(
        env!("CARGO_BIN_EXE_ferrule"),
        &[
            "mapper",
            "test",
            "--config",
            "python.toml",
            "--module",
            "py_demo.wasm",
            "--options",
            r#"{"namespace": "org.acme"}"#,
            "--cases",
            "cases.jsonl",
        ],
    );
    assert!(report.contains("4 passed, 0 failed"), "{report}");
}

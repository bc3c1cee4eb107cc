//! The README's quick start, run as it is written: the shell block under "## Quick start" with
//! the released binary replaced by the one under test, and the port and data directory by ones
//! of this test. Needs Mosquitto on 127.0.0.1:1883 and mosquitto-clients (scripts/test has both).

use std::process::Command;

fn quick_start_block() -> String {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Quick start\n")
        .nth(1)
        .expect("the README has a Quick start section");
    let start = section.find("```sh\n").expect("a shell block") + "```sh\n".len();
    let end = start + section[start..].find("\n```").expect("the block ends");
    section[start..end].to_string()
}

#[test]
fn the_readme_quick_start_works_as_written() {
    let block = quick_start_block();
    for needle in [
        "cargo run --release -p ferrule-host --",
        "127.0.0.1:8080",
        "./quickstart-data",
    ] {
        assert!(block.contains(needle), "the block uses {needle}");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let script = block
        .replace(
            "cargo run --release -p ferrule-host --",
            env!("CARGO_BIN_EXE_ferrule"),
        )
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace(
            "serve --data-dir",
            &format!("serve --bind 127.0.0.1:{port} --data-dir"),
        )
        .replace("./quickstart-data", data.path().to_str().unwrap());
    let out = Command::new("timeout")
        .args(["120", "bash", "-e", "-c"])
        .arg(format!("set -m\n{script}"))
        .current_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/..")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the quick start failed:\n{stdout}\n{stderr}"
    );
    let event_line = stdout
        .lines()
        .find(|l| l.contains("things/twin/events/modified"))
        .unwrap_or_else(|| panic!("no event arrived:\n{stdout}\n{stderr}"));
    let event: serde_json::Value = serde_json::from_str(event_line).unwrap();
    assert_eq!(
        event["topic"],
        "org.quickstart/sensor-1/things/twin/events/modified"
    );
    assert_eq!(
        event["path"],
        "/features/environment/properties/temperature"
    );
    assert_eq!(event["value"], 21.5);
    assert_eq!(
        stdout.lines().last().map(str::trim),
        Some("21.5"),
        "{stdout}"
    );
}

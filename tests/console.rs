//! The web console (issue 21) in a real browser: the browser tests of `tests/ui/` (pytest with
//! Playwright for Python, driving Debian's Chromium; `scripts/test` installs both) against the
//! real binary, the local Mosquitto and an uploaded WebAssembly mapper. Each browser test fails on
//! any console error of the page. The screenshots go to `target/ui-screenshots`, or with
//! `FERRULE_UI_SCREENSHOTS=docs/screenshots` to the README's.

mod common;

use std::path::Path;

#[test]
fn the_console_works_in_a_real_browser() {
    let (_dir, f) = common::live_server();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let screenshots = std::env::var("FERRULE_UI_SCREENSHOTS")
        .map(|d| repo.join(d))
        .unwrap_or_else(|_| repo.join("target/ui-screenshots"));
    let status = std::process::Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ui"])
        .current_dir(&repo)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("FERRULE_URL", f.url(""))
        .env("FERRULE_USER", "devops")
        .env("FERRULE_PASSWORD", common::PASSWORD)
        .env("MQTT_HOST", "127.0.0.1")
        .env("MQTT_PORT", "1883")
        .env("FERRULE_UI_MODULE", ferrule_test_guests::JSON_RESHAPER)
        .env("FERRULE_UI_SCREENSHOTS", &screenshots)
        .env("FERRULE_TEST_ID", common::unique("ui", '-'))
        .status()
        .expect("python3 runs (scripts/test installs pytest and playwright)");
    assert!(status.success(), "the browser tests failed: {status}");
}

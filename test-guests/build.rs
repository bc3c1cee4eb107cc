//! Builds the guest components of `guests/` to `wasm32-wasip2` and writes their paths into
//! `guests.rs` (the wasmtime `test-programs` pattern). Every guest must be listed in `GUESTS`
//! with what it is for: an unlisted one fails the build, so nothing is silently left out.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate directory, constant name, what the guest is for)
const GUESTS: &[(&str, &str, &str)] = &[
    (
        "behave",
        "BEHAVE",
        "A mapper whose message chooses what it does: map, loop, allocate, trap, fail, fan out, log.",
    ),
    (
        "strict",
        "STRICT",
        "behave whose configure also requires the option site: a new version that refuses options behave takes.",
    ),
    (
        "file-open",
        "FILE_OPEN",
        "A mapper that reads a file: imports wasi:filesystem, loads, and finds no file (no directory is preopened).",
    ),
    (
        "other-world",
        "OTHER_WORLD",
        "A component of another world: refused at upload, naming the missing export.",
    ),
];

/// Mappers of `../mappers` (built with the SDK from the main workspace): (package, constant).
const MAPPERS: &[(&str, &str)] = &[
    ("ferrule-mapper-telemetry-decoder", "TELEMETRY_DECODER"),
    ("ferrule-mapper-json-reshaper", "JSON_RESHAPER"),
    ("ferrule-mapper-cloudevents-out", "CLOUDEVENTS_OUT"),
];

fn wasm_build(cargo: &str, manifest: &Path, target_dir: &Path, packages: &[&str]) {
    let mut cmd = Command::new(cargo);
    // What the SDK README recommends to mapper authors: whole-program optimisation, no debug
    // info (set here for this build only; the workspace's release profile is the host's).
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    cmd.args([
        "build",
        "--release",
        "--locked",
        "--target",
        "wasm32-wasip2",
    ])
    .arg("--manifest-path")
    .arg(manifest)
    .arg("--target-dir")
    .arg(target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cargo could not be started");
    assert!(
        status.success(),
        "building {} for wasm32-wasip2 failed; is the target installed? \
         (`rustup target add wasm32-wasip2`; scripts/test installs it)",
        manifest.display()
    );
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let guests = manifest.join("guests");
    let wit = manifest.join("../wit");
    println!("cargo:rerun-if-changed={}", guests.display());
    println!("cargo:rerun-if-changed={}", wit.display());

    for entry in std::fs::read_dir(&guests).unwrap() {
        let path = entry.unwrap().path();
        if path.join("Cargo.toml").exists() {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            assert!(
                GUESTS.iter().any(|(dir, _, _)| *dir == name),
                "test-guests/guests/{name} is not listed in test-guests/build.rs GUESTS"
            );
        }
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let shared = shared_target_dir(&out_dir);
    let target_dir = shared.join("wasm-guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let guest_packages: Vec<&str> = GUESTS.iter().map(|(dir, _, _)| *dir).collect();
    wasm_build(
        &cargo,
        &guests.join("Cargo.toml"),
        &target_dir,
        &guest_packages,
    );

    let workspace = manifest.join("..");
    for dir in [
        "mappers",
        "mapper-sdk/src",
        "mapper-sdk/Cargo.toml",
        "protocol/src",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    let mappers_dir = shared.join("wasm-mappers");
    let packages: Vec<&str> = MAPPERS.iter().map(|(p, _)| *p).collect();
    wasm_build(
        &cargo,
        &workspace.join("Cargo.toml"),
        &mappers_dir,
        &packages,
    );

    let release = target_dir.join("wasm32-wasip2/release");
    let mut code = String::new();
    for (dir, constant, doc) in GUESTS {
        let file = release.join(format!("{}.wasm", dir.replace('-', "_")));
        assert!(file.exists(), "{} was not built", file.display());
        code.push_str(&format!(
            "/// {doc}\npub const {constant}: &str = {:?};\n",
            file.display().to_string()
        ));
    }
    let release = mappers_dir.join("wasm32-wasip2/release");
    for (package, constant) in MAPPERS {
        let name = package
            .trim_start_matches("ferrule-mapper-")
            .replace('-', "_");
        let file = release.join(format!("ferrule_mapper_{name}.wasm"));
        assert!(file.exists(), "{} was not built", file.display());
        code.push_str(&format!(
            "/// The `{package}` mapper of `mappers/`, as a component.\npub const {constant}: &str = {:?};\n",
            file.display().to_string()
        ));
    }
    std::fs::write(out_dir.join("guests.rs"), code).unwrap();
}

/// The workspace's target directory: the ancestor of `OUT_DIR` above `<profile>/build/`, so the
/// guests are built once per checkout, not once per build-script hash.
fn shared_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent())
        .and_then(|profile| profile.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("target"))
}

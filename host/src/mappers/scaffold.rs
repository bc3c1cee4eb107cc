//! `ferrule mapper new`: a mapper project that builds and tests as it is, from the templates in
//! `host/templates/` (compiled into the binary).

use std::path::{Path, PathBuf};

/// The languages a project can be made in.
pub const LANGUAGES: &[&str] = &["rust"];

/// The Rust project: (file, template).
const RUST: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/mapper-rust/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/mapper-rust/src/lib.rs.tmpl"),
    ),
    (
        "cases.jsonl",
        include_str!("../../templates/mapper-rust/cases.jsonl.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/mapper-rust/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/mapper-rust/gitignore.tmpl"),
    ),
];

/// Where the SDK of the checkout this binary was built from is, if it is still there.
pub fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mapper-sdk");
    sdk.join("Cargo.toml").is_file().then_some(sdk)
}

/// A project name: a cargo package name that is also a mapper id (1-64 of lower-case letters,
/// digits, `-` and `_`, starting with a letter).
pub fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
}

/// The mapper's Rust type: `demo-mapper` → `DemoMapper`, `telemetry` → `TelemetryMapper`.
fn type_name(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    if camel.ends_with("Mapper") && camel != "Mapper" {
        camel
    } else {
        camel + "Mapper"
    }
}

/// A TOML basic string's content.
fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Writes the project `name` in `lang` into `dir` (which must not exist or be empty), its SDK
/// dependency on `sdk`; answers the files written.
pub fn create(name: &str, lang: &str, dir: &Path, sdk: &Path) -> Result<Vec<PathBuf>, String> {
    if !valid_name(name) {
        return Err(format!(
            "<{name}> is not a project name: 1 to 64 lower-case letters, digits, '-' and '_', starting with a letter"
        ));
    }
    let templates = match lang {
        "rust" => RUST,
        "python" | "js" => {
            return Err(format!(
                "mappers in {lang} are not available in this version of Ferrule yet; --lang rust is"
            ));
        }
        other => return Err(format!("unknown language <{other}>; one of: rust")),
    };
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!("{} exists and is not empty", dir.display()));
    }
    let sdk = std::fs::canonicalize(sdk)
        .ok()
        .filter(|s| s.join("Cargo.toml").is_file())
        .ok_or_else(|| {
            format!(
                "the mapper SDK is not at {}: give --sdk with the mapper-sdk directory of a Ferrule checkout",
                sdk.display()
            )
        })?;
    let sdk = sdk.to_string_lossy();
    let values = [
        ("{{name}}", name.to_string()),
        ("{{crate}}", name.replace('-', "_")),
        ("{{type}}", type_name(name)),
        ("{{sdk}}", toml_escape(&sdk)),
    ];
    let mut written = Vec::new();
    for (file, template) in templates {
        let text = values
            .iter()
            .fold(template.to_string(), |t, (k, v)| t.replace(k, v));
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types() {
        for good in ["demo", "demo-mapper", "a1_b2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Demo", "1demo", "-x", "a b", "a.b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(type_name("demo-mapper"), "DemoMapper");
        assert_eq!(type_name("telemetry"), "TelemetryMapper");
        assert_eq!(type_name("mapper"), "MapperMapper");
        assert_eq!(type_name("a_b-c"), "ABCMapper");
    }

    #[test]
    fn a_project_is_written_whole_and_only_into_an_empty_directory() {
        let root = tempfile::tempdir().unwrap();
        let sdk = default_sdk().expect("the checkout's SDK");
        let dir = root.path().join("demo-mapper");
        let files = create("demo-mapper", "rust", &dir, &sdk).unwrap();
        assert_eq!(files.len(), RUST.len());
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(!text.contains("{{"), "{}: {text}", file.display());
        }
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"demo-mapper\""), "{manifest}");
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export!(DemoMapper)"), "{lib}");
        let e = create("demo-mapper", "rust", &dir, &sdk).unwrap_err();
        assert!(e.contains("not empty"), "{e}");
        let e = create("other", "python", &root.path().join("p"), &sdk).unwrap_err();
        assert!(e.contains("not available"), "{e}");
        let e = create("other", "rust", &root.path().join("q"), root.path()).unwrap_err();
        assert!(e.contains("--sdk"), "{e}");
        assert!(!root.path().join("q").exists());
    }
}

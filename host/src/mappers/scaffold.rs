//! `ferrule mapper new`: a mapper project that builds and tests as it is, from the templates in
//! `host/templates/` (compiled into the binary).

use std::path::{Path, PathBuf};

/// The languages a project can be made in.
pub const LANGUAGES: &[&str] = &["rust", "python", "js"];

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

/// The Python project (on `mapper-sdk-py`, built with componentize-py).
const PYTHON: &[(&str, &str)] = &[
    (
        "app.py",
        include_str!("../../templates/mapper-python/app.py.tmpl"),
    ),
    (
        "test_app.py",
        include_str!("../../templates/mapper-python/test_app.py.tmpl"),
    ),
    (
        "conftest.py",
        include_str!("../../templates/mapper-python/conftest.py.tmpl"),
    ),
    (
        "build.sh",
        include_str!("../../templates/mapper-python/build.sh.tmpl"),
    ),
    (
        "python.toml",
        include_str!("../../templates/mapper-python/python.toml.tmpl"),
    ),
    (
        "cases.jsonl",
        include_str!("../../templates/mapper-python/cases.jsonl.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/mapper-python/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/mapper-python/gitignore.tmpl"),
    ),
];

/// The JavaScript project (on `mapper-sdk-js`, built with componentize-js); `ferrule-mapper.js`
/// is copied from the SDK.
const JS: &[(&str, &str)] = &[
    (
        "app.js",
        include_str!("../../templates/mapper-js/app.js.tmpl"),
    ),
    (
        "app.test.js",
        include_str!("../../templates/mapper-js/app.test.js.tmpl"),
    ),
    (
        "package.json",
        include_str!("../../templates/mapper-js/package.json.tmpl"),
    ),
    (
        "cases.jsonl",
        include_str!("../../templates/mapper-js/cases.jsonl.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/mapper-js/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/mapper-js/gitignore.tmpl"),
    ),
];

/// The SDK directory of `lang` in a Ferrule checkout, and the file that marks it.
fn sdk_dir(lang: &str) -> (&'static str, &'static str) {
    match lang {
        "python" => ("mapper-sdk-py", "ferrule_mapper/__init__.py"),
        "js" => ("mapper-sdk-js", "ferrule-mapper.js"),
        _ => ("mapper-sdk", "Cargo.toml"),
    }
}

/// Where the SDK of `lang` of the checkout this binary was built from is, if it is still there.
pub fn default_sdk(lang: &str) -> Option<PathBuf> {
    let (dir, marker) = sdk_dir(lang);
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    sdk.join(marker).is_file().then_some(sdk)
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
        "python" => PYTHON,
        "js" => JS,
        other => {
            return Err(format!(
                "unknown language <{other}>; one of: rust, python, js"
            ));
        }
    };
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!("{} exists and is not empty", dir.display()));
    }
    let (sdk_name, marker) = sdk_dir(lang);
    let sdk = std::fs::canonicalize(sdk)
        .ok()
        .filter(|s| s.join(marker).is_file())
        .ok_or_else(|| {
            format!(
                "the mapper SDK is not at {}: give --sdk with the {sdk_name} directory of a Ferrule checkout",
                sdk.display()
            )
        })?;
    let wit = sdk.join("../wit");
    let wit = std::fs::canonicalize(&wit).unwrap_or(wit);
    let values = [
        ("{{name}}", name.to_string()),
        ("{{crate}}", name.replace('-', "_")),
        ("{{type}}", type_name(name)),
        ("{{sdk}}", toml_escape(&sdk.to_string_lossy())),
        ("{{wit}}", toml_escape(&wit.to_string_lossy())),
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
    if lang == "js" {
        let helpers = dir.join("ferrule-mapper.js");
        std::fs::copy(sdk.join("ferrule-mapper.js"), &helpers)
            .map_err(|e| format!("cannot copy ferrule-mapper.js: {e}"))?;
        written.push(helpers);
    }
    if lang == "python" {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("build.sh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot make {} executable: {e}", script.display()))?;
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
        let sdk = default_sdk("rust").expect("the checkout's SDK");
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
        let e = create("other", "cobol", &root.path().join("p"), &sdk).unwrap_err();
        assert!(e.contains("one of: rust, python, js"), "{e}");
        let e = create("other", "python", &root.path().join("p"), &sdk).unwrap_err();
        assert!(
            e.contains("mapper-sdk-py"),
            "the Rust SDK is not the Python one: {e}"
        );
        let e = create("other", "rust", &root.path().join("q"), root.path()).unwrap_err();
        assert!(e.contains("--sdk"), "{e}");
        assert!(!root.path().join("q").exists());
    }
}

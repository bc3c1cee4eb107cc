//! `ferrule mapper watch`: rebuilds a mapper project when one of its files changes and uploads
//! the component to a running Ferrule, which swaps it into the connections that use it.

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What to watch and where to upload.
pub struct Watch {
    pub dir: PathBuf,
    /// The mapper id to upload as.
    pub id: String,
    /// The service, `http://host:port`.
    pub url: String,
    pub user: String,
    pub password: String,
    /// A shell command that builds the component, instead of the project's own build.
    pub build: Option<String>,
    /// The component the build writes, when it cannot be found from the build's output.
    pub module: Option<PathBuf>,
    pub interval: Duration,
}

/// How a project builds, from the files it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Cargo.toml`: `cargo build --release --target wasm32-wasip2`.
    Rust,
    /// `package.json`: `npm run build`.
    JavaScript,
    /// `build.sh` (as `ferrule mapper new --lang python` writes it).
    Script,
}

pub fn detect(dir: &Path) -> Result<Kind, String> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Kind::Rust)
    } else if dir.join("package.json").is_file() {
        Ok(Kind::JavaScript)
    } else if dir.join("build.sh").is_file() {
        Ok(Kind::Script)
    } else {
        Err(format!(
            "{} has no Cargo.toml, package.json or build.sh: give --build with the command that builds the component",
            dir.display()
        ))
    }
}

/// Directories a build writes (or tools keep) and that do not change the mapper.
const SKIPPED: &[&str] = &[
    "target",
    "node_modules",
    ".git",
    "__pycache__",
    ".pytest_cache",
];

/// A fingerprint of the project's files (paths, sizes, modification times), without what the
/// build writes, so a build does not trigger the next one.
pub fn fingerprint(dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if !SKIPPED.contains(&name.as_ref()) {
                    stack.push(path);
                }
            } else if !name.ends_with(".wasm") {
                files.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    files.sort();
    files.hash(&mut hasher);
    hasher.finish()
}

fn run(dir: &Path, program: &str, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{program} cannot run: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed:\n{}{}",
            args.join(" "),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// The newest `.wasm` file directly in `dir`.
fn newest_wasm(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max_by_key(|(t, _): &(SystemTime, PathBuf)| *t)
        .map(|(_, p)| p)
}

impl Watch {
    /// Builds the component; answers its path.
    pub fn build(&self) -> Result<PathBuf, String> {
        if let Some(command) = &self.build {
            run(&self.dir, "sh", &["-c", command])?;
        } else {
            match detect(&self.dir)? {
                Kind::Rust => {
                    let out = run(
                        &self.dir,
                        "cargo",
                        &[
                            "build",
                            "--release",
                            "--target",
                            "wasm32-wasip2",
                            "--message-format=json-render-diagnostics",
                        ],
                    )?;
                    if self.module.is_none() {
                        // The artifact cargo reports last (the project's own crate).
                        let wasm = out
                            .lines()
                            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                            .filter(|m| m["reason"] == "compiler-artifact")
                            .flat_map(|m| {
                                m["filenames"]
                                    .as_array()
                                    .cloned()
                                    .unwrap_or_default()
                                    .into_iter()
                                    .filter_map(|f| f.as_str().map(PathBuf::from))
                            })
                            .rfind(|f| f.extension().is_some_and(|x| x == "wasm"));
                        return wasm.ok_or_else(|| {
                            "cargo built no .wasm: is the crate a cdylib?".to_string()
                        });
                    }
                }
                Kind::JavaScript => {
                    run(&self.dir, "npm", &["run", "build"])?;
                }
                Kind::Script => {
                    run(&self.dir, "sh", &["build.sh"])?;
                }
            }
        }
        match &self.module {
            Some(m) => Ok(self.dir.join(m)),
            None => newest_wasm(&self.dir).ok_or_else(|| {
                format!(
                    "the build wrote no .wasm in {}: give --module",
                    self.dir.display()
                )
            }),
        }
    }

    /// `PUT /api/2/mappers/{id}` with the component; answers the status and the body.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<(u16, String), String> {
        let url = url::Url::parse(&self.url).map_err(|e| format!("--url {}: {e}", self.url))?;
        if url.scheme() != "http" {
            return Err(format!(
                "--url {}: watch uploads over plain http to a Ferrule it can reach directly",
                self.url
            ));
        }
        let host = url.host_str().ok_or("--url has no host")?.to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("{}: {e}", self.url))?;
        tokio::spawn(connection);
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        let request = hyper::Request::put(format!(
            "{}/api/2/mappers/{}",
            self.url.trim_end_matches('/'),
            self.id
        ))
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::CONTENT_TYPE, "application/wasm")
        .header(hyper::header::AUTHORIZATION, format!("Basic {credentials}"))
        .body(Full::new(hyper::body::Bytes::from(bytes)))
        .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// One build and upload; the line to print.
    pub async fn once(&self) -> Result<String, String> {
        let module = self.build()?;
        let bytes =
            std::fs::read(&module).map_err(|e| format!("cannot read {}: {e}", module.display()))?;
        let size = bytes.len();
        let (status, body) = self.upload(bytes).await?;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        match status {
            201 => Ok(format!(
                "uploaded {} ({size} bytes): {} version {}",
                module.display(),
                self.id,
                json["version"]
            )),
            204 => Ok(format!(
                "uploaded {} ({size} bytes): {} replaced (GET /api/2/mappers/{} has the version)",
                module.display(),
                self.id,
                self.id
            )),
            _ => Err(format!(
                "the upload was refused ({status}): {} {}",
                json["message"].as_str().unwrap_or(&body),
                json["description"].as_str().unwrap_or_default()
            )),
        }
    }

    /// Builds and uploads at start and after every change, until stopped.
    pub async fn run(&self) {
        let mut last = None;
        loop {
            let now = fingerprint(&self.dir);
            if last != Some(now) {
                last = Some(now);
                match self.once().await {
                    Ok(line) => println!("ferrule: {line}"),
                    Err(e) => eprintln!("ferrule: {e}"),
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_are_told_apart_by_their_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(detect(dir.path()).unwrap_err().contains("--build"));
        std::fs::write(dir.path().join("build.sh"), "").unwrap();
        assert_eq!(detect(dir.path()).unwrap(), Kind::Script);
        std::fs::write(dir.path().join("package.json"), "{}").unwrap();
        assert_eq!(detect(dir.path()).unwrap(), Kind::JavaScript);
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert_eq!(detect(dir.path()).unwrap(), Kind::Rust);
    }

    #[test]
    fn the_fingerprint_moves_with_sources_not_with_what_a_build_writes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.py"), "a").unwrap();
        let first = fingerprint(dir.path());
        std::fs::create_dir_all(dir.path().join("target/x")).unwrap();
        std::fs::write(dir.path().join("target/x/out.o"), "o").unwrap();
        std::fs::write(dir.path().join("app.wasm"), "w").unwrap();
        assert_eq!(fingerprint(dir.path()), first);
        std::fs::write(dir.path().join("app.py"), "ab").unwrap();
        assert_ne!(fingerprint(dir.path()), first);
    }
}

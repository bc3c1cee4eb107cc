//! The web console at `/ui/`: three files built from `ui/` by `scripts/build-ui` into `host/ui/`
//! and embedded in the binary, so the console needs no second process, no CDN and no Node.js at
//! run time. The files carry no data: the console signs in with the devops user and calls the
//! public REST API like any other client, so they are served without credentials.

use super::{Handlers, Verb, no_handler, on};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

/// Where the console is served.
pub const UI_PATH: &str = "/ui/";

const INDEX_HTML: &[u8] = include_bytes!("../../ui/index.html");
const APP_JS: &[u8] = include_bytes!("../../ui/app.js");
const APP_CSS: &[u8] = include_bytes!("../../ui/app.css");

/// Scripts and styles only from the console itself, no frames, no other origins: a page that
/// holds the devops credentials runs nothing it did not ship with.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change with the binary; the browser asks again each time (cheap: three files).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

pub(super) fn root_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, || async { Redirect::permanent(UI_PATH) }),
        other => no_handler(other),
    }
}

pub(super) fn index_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, || async {
            asset("text/html; charset=utf-8", INDEX_HTML)
        }),
        other => no_handler(other),
    }
}

pub(super) fn script_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, || async {
            asset("text/javascript; charset=utf-8", APP_JS)
        }),
        other => no_handler(other),
    }
}

pub(super) fn style_route(verb: Verb) -> Handlers {
    match verb {
        Verb::Get => on(verb, || async { asset("text/css; charset=utf-8", APP_CSS) }),
        other => no_handler(other),
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};
    use std::path::Path;

    /// The embedded files were built from the sources in `ui/` as they are: `scripts/build-ui`
    /// records the digest of those sources in `host/ui/SOURCES.sha256` (as `ui/build.mjs`
    /// computes it: each file's path, a NUL, its bytes and a NUL, in path order).
    #[test]
    fn the_embedded_console_is_built_from_the_sources_in_ui() {
        let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui");
        let mut files: Vec<String> = [
            "build.mjs",
            "index.html",
            "package-lock.json",
            "package.json",
        ]
        .iter()
        .map(|f| f.to_string())
        .collect();
        for entry in std::fs::read_dir(ui.join("src")).unwrap() {
            files.push(format!(
                "src/{}",
                entry.unwrap().file_name().to_string_lossy()
            ));
        }
        files.sort();
        let mut digest = Sha256::new();
        for file in &files {
            digest.update(file.as_bytes());
            digest.update([0]);
            digest.update(std::fs::read(ui.join(file)).unwrap());
            digest.update([0]);
        }
        let digest: String = digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let recorded = include_str!("../../ui/SOURCES.sha256").trim();
        assert_eq!(
            digest, recorded,
            "ui/ changed after host/ui/ was built: run scripts/build-ui and commit host/ui/"
        );
    }
}

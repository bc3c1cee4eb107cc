//! Request signing with a connection's `hmac` credentials, as Ditto signs HTTP push requests
//! (`AwsRequestSigning`, `AzMonitorRequestSigning`, `AzSaslSigning`): each signer adds headers
//! to a request computed from its method, URI, headers and body at a given time. The unit tests
//! are Ditto's test vectors.

use crate::{ErrorKind, TransportError};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the signers read of a request.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub url: &'a url::Url,
    /// The headers as they will be sent, in order (names as given).
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// The body's content type as sent (`content-type` header or the default of the body).
    pub content_type: Option<&'a str>,
}

/// Everything but `A-Za-z0-9-._~` (RFC 3986's unreserved characters), as Ditto's
/// `encodeAllButUnreserved`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');
/// What a path segment may hold unescaped (RFC 3986 `pchar`): unreserved, sub-delims, `:`, `@`.
const PCHAR: &AsciiSet = &UNRESERVED
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn misconfigured(message: impl Into<String>) -> TransportError {
    TransportError::new(ErrorKind::Misconfigured, message)
}

/// Base64 as Java's basic decoder reads it: padding optional, leftover bits ignored.
fn lenient_base64(text: &str) -> Option<Vec<u8>> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(text.trim()).ok()
}

/// `xAmzContentSha256`: whether and how the body's hash is sent in `x-amz-content-sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentSha {
    Included,
    Excluded,
    Unsigned,
}

/// A configured signer.
#[derive(Debug, Clone)]
pub(crate) enum Signer {
    Aws {
        region: String,
        service: String,
        access_key: String,
        secret_key: String,
        double_encode: bool,
        canonical_headers: Vec<String>,
        content_sha: ContentSha,
    },
    AzMonitor {
        workspace_id: String,
        shared_key: Vec<u8>,
    },
    AzSasl {
        key_name: String,
        shared_key: Vec<u8>,
        endpoint: String,
        ttl: Duration,
    },
}

fn param<'a>(
    parameters: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<&'a str, TransportError> {
    parameters
        .get(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            misconfigured(format!(
                "The HMAC credentials parameter '{name}' is missing or not a string."
            ))
        })
}

impl Signer {
    /// The signer of `hmac` credentials (`algorithm`, `parameters`); a missing or bad parameter
    /// is a misconfiguration naming it.
    pub(crate) fn from_credentials(
        credentials: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Signer, TransportError> {
        let algorithm = credentials
            .get("algorithm")
            .and_then(|a| a.as_str())
            .unwrap_or_default();
        let empty = serde_json::Map::new();
        let parameters = credentials
            .get("parameters")
            .and_then(|p| p.as_object())
            .unwrap_or(&empty);
        match algorithm {
            "aws4-hmac-sha256" => {
                let double_encode = match parameters.get("doubleEncode") {
                    None => true,
                    Some(v) => v.as_bool().ok_or_else(|| {
                        misconfigured(
                            "The HMAC credentials parameter 'doubleEncode' must be a boolean.",
                        )
                    })?,
                };
                let canonical_headers = match parameters.get("canonicalHeaders") {
                    None => vec!["host".to_string()],
                    Some(v) => v
                        .as_array()
                        .and_then(|a| {
                            a.iter()
                                .map(|h| h.as_str().map(str::to_string))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| {
                            misconfigured(
                                "The HMAC credentials parameter 'canonicalHeaders' must be an array of strings.",
                            )
                        })?,
                };
                let content_sha = match parameters
                    .get("xAmzContentSha256")
                    .map(|v| v.as_str().unwrap_or_default().to_ascii_uppercase())
                    .as_deref()
                {
                    None | Some("EXCLUDED") => ContentSha::Excluded,
                    Some("INCLUDED") => ContentSha::Included,
                    Some("UNSIGNED") => ContentSha::Unsigned,
                    Some(_) => {
                        return Err(misconfigured(
                            "The HMAC credentials parameter 'xAmzContentSha256' must have one of the following as value: 'INCLUDED', 'EXCLUDED', 'UNSIGNED'.",
                        ));
                    }
                };
                Ok(Signer::Aws {
                    region: param(parameters, "region")?.to_string(),
                    service: param(parameters, "service")?.to_string(),
                    access_key: param(parameters, "accessKey")?.to_string(),
                    secret_key: param(parameters, "secretKey")?.to_string(),
                    double_encode,
                    canonical_headers,
                    content_sha,
                })
            }
            "az-monitor-2016-04-01" => Ok(Signer::AzMonitor {
                workspace_id: param(parameters, "workspaceId")?.to_string(),
                shared_key: lenient_base64(param(parameters, "sharedKey")?).ok_or_else(|| {
                    misconfigured(
                        "Failed to sign HTTP request to Azure Monitor: the shared key is not in Base64 scheme.",
                    )
                })?,
            }),
            "az-sasl" => {
                let ttl = match parameters.get("ttl").and_then(|t| t.as_str()) {
                    None => Duration::from_secs(7 * 86_400),
                    Some(t) => crate::specific::duration(t.trim(), Duration::from_millis(1))
                        .ok_or_else(|| {
                            misconfigured(format!(
                                "The HMAC credentials parameter 'ttl' is not a duration: {t}"
                            ))
                        })?,
                };
                Ok(Signer::AzSasl {
                    key_name: param(parameters, "sharedKeyName")?.to_string(),
                    shared_key: lenient_base64(param(parameters, "sharedKey")?).ok_or_else(
                        || misconfigured("The shared key of 'az-sasl' is not in Base64 scheme."),
                    )?,
                    endpoint: param(parameters, "endpoint")?.to_string(),
                    ttl,
                })
            }
            other => Err(misconfigured(format!(
                "The configured algorithm '{other}' does not exist."
            ))),
        }
    }

    /// The headers to add to `request` signed at `now`.
    pub(crate) fn sign(&self, request: &Request<'_>, now: DateTime<Utc>) -> Vec<(String, String)> {
        match self {
            Signer::Aws {
                region,
                service,
                access_key,
                secret_key,
                double_encode,
                canonical_headers,
                content_sha,
            } => {
                let date_time = now.format("%Y%m%dT%H%M%SZ").to_string();
                let date = now.format("%Y%m%d").to_string();
                let payload_hash = match content_sha {
                    ContentSha::Unsigned => "UNSIGNED-PAYLOAD".to_string(),
                    _ => hex(&Sha256::digest(request.body)),
                };
                let mut names: Vec<String> = canonical_headers
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect();
                if *content_sha != ContentSha::Excluded {
                    names.push("x-amz-content-sha256".into());
                }
                names.sort();
                names.dedup();
                let canonical = aws_canonical_request(
                    request,
                    *double_encode,
                    &names,
                    &date_time,
                    &payload_hash,
                );
                let scope = format!("{date}/{region}/{service}/aws4_request");
                let to_sign = format!(
                    "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
                    hex(&Sha256::digest(canonical.as_bytes()))
                );
                let k_date = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
                let k_region = hmac_sha256(&k_date, region.as_bytes());
                let k_service = hmac_sha256(&k_region, service.as_bytes());
                let k_signing = hmac_sha256(&k_service, b"aws4_request");
                let signature = hex(&hmac_sha256(&k_signing, to_sign.as_bytes()));
                let mut added = vec![("x-amz-date".to_string(), date_time)];
                if *content_sha != ContentSha::Excluded {
                    added.push(("x-amz-content-sha256".into(), payload_hash));
                }
                added.push((
                    "authorization".into(),
                    format!(
                        "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={}, Signature={signature}",
                        names.join(";")
                    ),
                ));
                added
            }
            Signer::AzMonitor {
                workspace_id,
                shared_key,
            } => {
                let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
                let to_sign = format!(
                    "{}\n{}\n{}\nx-ms-date:{date}\n{}",
                    request.method,
                    request.body.len(),
                    request.content_type.unwrap_or_default(),
                    request.url.path()
                );
                let signature = base64::engine::general_purpose::STANDARD
                    .encode(hmac_sha256(shared_key, to_sign.as_bytes()));
                vec![
                    ("x-ms-date".into(), date),
                    (
                        "authorization".into(),
                        format!("SharedKey {workspace_id}:{signature}"),
                    ),
                ]
            }
            Signer::AzSasl {
                key_name,
                shared_key,
                endpoint,
                ttl,
            } => vec![(
                "authorization".into(),
                az_sasl_token(key_name, shared_key, endpoint, now, *ttl),
            )],
        }
    }
}

/// `SharedAccessSignature sr=..&sig=..&se=..&skn=..`, valid until `now + ttl`.
fn az_sasl_token(
    key_name: &str,
    key: &[u8],
    endpoint: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> String {
    let expiry = now.timestamp() + ttl.as_secs() as i64;
    let resource = encode(endpoint);
    let signature = base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(key, format!("{resource}\n{expiry}").as_bytes()));
    format!(
        "SharedAccessSignature sr={resource}&sig={}&se={expiry}&skn={key_name}",
        encode(&signature)
    )
}

fn aws_canonical_request(
    request: &Request<'_>,
    double_encode: bool,
    names: &[String],
    date_time: &str,
    payload_hash: &str,
) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{payload_hash}",
        request.method,
        aws_canonical_uri(request.url, double_encode),
        aws_canonical_query(request.url),
        aws_canonical_headers(request, names, date_time, payload_hash),
        names.join(";"),
    )
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn aws_canonical_uri(url: &url::Url, double_encode: bool) -> String {
    // The path's segments, still percent-encoded as given; the URL parser has removed its dot
    // segments (RFC 3986).
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    if double_encode {
        let parts: Vec<String> = segments
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| encode(&encode(&decode(s))))
            .collect();
        if parts.is_empty() {
            return "/".into();
        }
        let mut path = format!("/{}", parts.join("/"));
        if url.path().ends_with('/') {
            path.push('/');
        }
        path
    } else {
        // Pekko normalises the path: known escapes of unreserved characters are decoded and
        // the others are written in upper case; then the path is encoded once more.
        let normalised: Vec<String> = segments
            .iter()
            .map(|s| utf8_percent_encode(&decode(s), PCHAR).to_string())
            .collect();
        let path = format!("/{}", normalised.join("/"));
        if path == "/" {
            return path;
        }
        utf8_percent_encode(&path, UNRESERVED_AND_SLASH).to_string()
    }
}

fn aws_canonical_query(url: &url::Url) -> String {
    let Some(query) = url.query() else {
        return String::new();
    };
    let mut pairs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        pairs.entry(decode(key)).or_default().push(decode(value));
    }
    let mut out = Vec::new();
    for (key, mut values) in pairs {
        values.sort();
        for value in values {
            out.push(format!(
                "{}={}",
                encode(&key),
                encode(&value.replace('=', "%3D"))
            ));
        }
    }
    out.join("&")
}

fn aws_canonical_headers(
    request: &Request<'_>,
    names: &[String],
    date_time: &str,
    payload_hash: &str,
) -> String {
    let mut out = String::new();
    for name in names {
        let value = match name.as_str() {
            "host" => request.url.host_str().unwrap_or_default().to_string(),
            "content-type" => request.content_type.unwrap_or_default().to_string(),
            "x-amz-date" => date_time.to_string(),
            "x-amz-content-sha256" => payload_hash.to_string(),
            _ => request
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(","),
        };
        out.push_str(name);
        out.push(':');
        out.push_str(&value);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn aws(canonical: &[&str], double_encode: bool, sha: &str) -> Signer {
        let credentials = json!({
            "algorithm": "aws4-hmac-sha256",
            "parameters": {
                "region": "us-east-1", "service": "iam", "accessKey": "MyAwesomeAccessKey",
                "secretKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "doubleEncode": double_encode, "canonicalHeaders": canonical,
                "xAmzContentSha256": sha
            }
        });
        Signer::from_credentials(credentials.as_object().unwrap()).unwrap()
    }

    fn request<'a>(
        method: &'a str,
        url: &'a url::Url,
        headers: &'a [(String, String)],
        body: &'a [u8],
        content_type: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            method,
            url,
            headers,
            body,
            content_type,
        }
    }

    #[test]
    fn aws_signatures_are_dittos() {
        let url = url::Url::parse("https://www.example.com/p/a/t/h?parameter=value").unwrap();
        let headers = vec![
            ("Connection".to_string(), "keep-alive".to_string()),
            ("correlation-id".to_string(), "qwerty".to_string()),
        ];
        let body = b"The quick brown fox jumped over the lazy dog";
        let signer = aws(&["host", "x-amz-date"], true, "EXCLUDED");
        let req = request(
            "POST",
            &url,
            &headers,
            body,
            Some("text/plain; charset=UTF-8"),
        );
        let names = vec!["host".to_string(), "x-amz-date".to_string()];
        let hash = hex(&Sha256::digest(body));
        assert_eq!(
            aws_canonical_request(&req, true, &names, "20120215T000000Z", &hash),
            "POST\n/p/a/t/h\nparameter=value\nhost:www.example.com\nx-amz-date:20120215T000000Z\n\nhost;x-amz-date\n7d38b5cd25a2baf85ad3bb5b9311383e671a8a142eb302b324d4a5fba8748c69"
        );
        let added = signer.sign(&req, at("2012-02-15T00:00:00Z"));
        assert_eq!(added[0], ("x-amz-date".into(), "20120215T000000Z".into()));
        assert_eq!(
            added[1].1,
            "AWS4-HMAC-SHA256 Credential=MyAwesomeAccessKey/20120215/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature=eda3fcc970a1d0cd3a3c3b8e7c80e876eec16d3b44459ce3e48fffd8226e4dca"
        );
        let empty = request("POST", &url, &headers, b"", None);
        assert!(
            signer.sign(&empty, at("2012-02-15T00:00:00Z"))[1]
                .1
                .ends_with(
                    "Signature=230756d9a8acdfa5fac97c3d598799e40735714e847111a949f25704cc52d0b5"
                )
        );
    }

    #[test]
    fn aws_canonical_queries_are_dittos() {
        let query =
            |q: &str| aws_canonical_query(&url::Url::parse(&format!("https://h/{q}")).unwrap());
        assert_eq!(
            query(
                "?Action=ListUsers&X-Amz-Date=20150830T123600Z&X-Amz-Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=content-type;host;x-amz-date&Version=2010-05-08&Order-by-Value=2&Order-by-Value=3&Order-by-Value=1&order-by-case-sensitivity=foo&Double-Encode-Equality=a=b"
            ),
            "Action=ListUsers&Double-Encode-Equality=a%253Db&Order-by-Value=1&Order-by-Value=2&Order-by-Value=3&Version=2010-05-08&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fiam%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=content-type%3Bhost%3Bx-amz-date&order-by-case-sensitivity=foo"
        );
        assert_eq!(query(""), "");
        assert_eq!(
            query("?List-of-unreserved-characters=Aa0-_.~"),
            "List-of-unreserved-characters=Aa0-_.~"
        );
        assert_eq!(
            query("?List-of-unreserved-characters=="),
            "List-of-unreserved-characters=%253D"
        );
        assert_eq!(
            query("?parameter-without-value"),
            "parameter-without-value="
        );
    }

    #[test]
    fn aws_canonical_headers_and_content_hashes_are_dittos() {
        let url = url::Url::parse("https://iam.amazonaws.com").unwrap();
        let headers = vec![
            ("Host".to_string(), "iam.amazonaws.com".to_string()),
            ("My-header1".to_string(), "    a   b   c  ".to_string()),
            ("My-Header2".to_string(), "    \"a   b   c\"  ".to_string()),
            ("My-header2".to_string(), "def".to_string()),
        ];
        let req = request(
            "POST",
            &url,
            &headers,
            b"",
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
        );
        let mut names: Vec<String> = [
            "Host",
            "My-header1",
            "X-Amz-Date",
            "my-headER2",
            "CONTENT-TYPE",
            "nonexistent-header",
        ]
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
        names.sort();
        assert_eq!(
            aws_canonical_headers(&req, &names, "20150830T123600Z", ""),
            "content-type:application/x-www-form-urlencoded; charset=UTF-8\nhost:iam.amazonaws.com\nmy-header1:a b c\nmy-header2:\"a b c\",def\nnonexistent-header:\nx-amz-date:20150830T123600Z\n"
        );
        let url = url::Url::parse("https://www.example.com").unwrap();
        let empty = request("POST", &url, &[], b"", None);
        let signed_headers = |sha: &str| {
            let signer = aws(&["host"], true, sha);
            let added = signer.sign(&empty, at("2015-08-30T12:36:00Z"));
            (
                added
                    .iter()
                    .find(|(k, _)| k == "x-amz-content-sha256")
                    .map(|(_, v)| v.clone()),
                added.last().unwrap().1.clone(),
            )
        };
        let (included, auth) = signed_headers("INCLUDED");
        assert_eq!(
            included.as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert!(auth.contains("SignedHeaders=host;x-amz-content-sha256,"));
        let (excluded, auth) = signed_headers("excluded");
        assert_eq!(excluded, None);
        assert!(auth.contains("SignedHeaders=host,"));
        assert_eq!(
            signed_headers("UNSIGNED").0.as_deref(),
            Some("UNSIGNED-PAYLOAD")
        );
    }

    #[test]
    fn aws_canonical_uris_are_dittos() {
        let uri = |u: &str, double: bool| aws_canonical_uri(&url::Url::parse(u).unwrap(), double);
        assert_eq!(
            uri("https://h/my-object//example//photo.user", false),
            "/my-object//example//photo.user"
        );
        assert_eq!(uri("https://www.example.com", false), "/");
        assert_eq!(uri("https://www.example.com/", false), "/");
        // Dot segments are gone (RFC 3986), also percent-encoded ones.
        assert_eq!(uri("https://h/a/./b/../c", false), "/a/c");
        assert_eq!(uri("https://h/a/%2e%2E/b/c", true), "/b/c");
        assert_eq!(
            uri("https://h///documents%20and%20settings//////", true),
            "/documents%2520and%2520settings/"
        );
        let url = url::Url::parse("https://www.example.com/thing:namespace:name:revision").unwrap();
        let req = request("POST", &url, &[], b"", None);
        assert_eq!(
            aws_canonical_request(
                &req,
                false,
                &["host".to_string()],
                "19700101T000000Z",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            ),
            "POST\n/thing%3Anamespace%3Aname%3Arevision\n\nhost:www.example.com\n\nhost\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn az_monitor_signatures_are_dittos() {
        let credentials = json!({
            "algorithm": "az-monitor-2016-04-01",
            "parameters": {
                "workspaceId": "xxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
                "sharedKey": "SGFsbG8gV2VsdCEgSXN0IGRhcyBhbG"
            }
        });
        let signer = Signer::from_credentials(credentials.as_object().unwrap()).unwrap();
        let url = url::Url::parse(
            "https://xxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.ods.opinsights.azure.com/api/logs?api-version=2016-04-01",
        )
        .unwrap();
        let body = br#"{"name":"log","id":1234}"#;
        let req = request("POST", &url, &[], body, Some("application/json"));
        let added = signer.sign(&req, at("2021-01-01T00:00:00Z"));
        assert_eq!(
            added,
            vec![
                ("x-ms-date".into(), "Fri, 01 Jan 2021 00:00:00 GMT".into()),
                (
                    "authorization".into(),
                    "SharedKey xxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx:026ydk2bCals83UTzd6OoaG7fqKR2NQV+IUuAJcgG8Q=".into()
                )
            ]
        );
    }

    #[test]
    fn az_sasl_tokens_are_dittos() {
        let key = base64::engine::general_purpose::STANDARD.encode("my-awesome-shared-key");
        let token = az_sasl_token(
            "keyName",
            &lenient_base64(&key).unwrap(),
            "resource-name.hostname.domain",
            DateTime::from_timestamp(1_622_480_838, 0).unwrap(),
            Duration::ZERO,
        );
        assert_eq!(
            token,
            "SharedAccessSignature sr=resource-name.hostname.domain&sig=J5XH%2BFoY%2Bo0wGKh3I0m%2BsPVB6CYCFZcQRg95pImtQPA%3D&se=1622480838&skn=keyName"
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let refused = |credentials: serde_json::Value| {
            Signer::from_credentials(credentials.as_object().unwrap())
                .unwrap_err()
                .message
        };
        assert!(
            refused(json!({"algorithm": "aws4-hmac-sha256", "parameters": {"region": "r"}}))
                .contains("'service'")
        );
        assert!(
            refused(json!({"algorithm": "aws4-hmac-sha256", "parameters": {
                "region": "r", "service": "s", "accessKey": "a", "secretKey": "k",
                "xAmzContentSha256": "MAYBE"}}))
            .contains("'INCLUDED', 'EXCLUDED', 'UNSIGNED'")
        );
        assert!(
            refused(json!({"algorithm": "az-monitor-2016-04-01", "parameters": {
                "workspaceId": "w", "sharedKey": "not base64!"}}))
            .contains("Base64")
        );
        assert!(refused(json!({"algorithm": "md5"})).contains("'md5' does not exist"));
    }
}

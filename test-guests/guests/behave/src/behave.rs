// The body of the `behave` guest, also built as `strict` (see `../../strict`).

wit_bindgen::generate!({ path: "../../../wit", world: "ferrule:mapper/mapper" });

use exports::ferrule::mapper::mapping::{DittoMessage, ExternalMessage, Guest, MappingError};
use ferrule::mapper::host::{Level, log};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

static FEATURE: Mutex<String> = Mutex::new(String::new());
static NAMESPACE: Mutex<String> = Mutex::new(String::new());
static CALLS: AtomicU64 = AtomicU64::new(0);
static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

struct Behave;

fn error(message: &str) -> MappingError {
    MappingError {
        message: message.to_string(),
        description: Some("The behave test mapper was asked to fail.".to_string()),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn recurse(n: u64) -> u64 {
    if n == u64::MAX {
        return 0;
    }
    std::hint::black_box(recurse(n + 1)) + 1
}

fn modify(thing: &str, value: &str, calls: u64) -> Result<DittoMessage, MappingError> {
    let (namespace, name) = thing
        .split_once(':')
        .ok_or_else(|| error("The device_id header is not a thing id."))?;
    let feature = FEATURE.lock().unwrap().clone();
    Ok(DittoMessage {
        topic: format!("{namespace}/{name}/things/twin/commands/modify"),
        headers: vec![
            ("x-calls".to_string(), calls.to_string()),
            ("content-type".to_string(), "application/json".to_string()),
        ],
        path: format!("/features/{feature}/properties/value"),
        value: Some(value.to_string()),
        status: None,
        extra: None,
        revision: None,
        timestamp: None,
        fields: None,
    })
}

impl Guest for Behave {
    fn configure(options: String) -> Result<(), MappingError> {
        if options.contains("\"fail\"") {
            return Err(error("configure was asked to fail"));
        }
        if cfg!(feature = "strict") && !options.contains("\"site\"") {
            return Err(MappingError {
                message: "missing field `site`".to_string(),
                description: Some("The strict version of behave needs the option site.".into()),
            });
        }
        if options.contains("\"loopForever\"") {
            // Stopped by the host's deadline (timeoutMs).
            #[allow(clippy::empty_loop)]
            loop {}
        }
        // A tiny reader for {"key":"text"}, to keep this guest free of dependencies.
        let option = |key: &str| {
            options
                .split(&format!("\"{key}\""))
                .nth(1)
                .and_then(|rest| rest.split('"').nth(1))
                .map(str::to_string)
        };
        let feature = option("feature").unwrap_or_else(|| "sensor".into());
        *FEATURE.lock().unwrap() = feature.clone();
        *NAMESPACE.lock().unwrap() = option("namespace").unwrap_or_else(|| "test".into());
        log(Level::Info, &format!("configured with feature {feature}"));
        Ok(())
    }

    fn map_inbound(message: ExternalMessage) -> Result<Vec<DittoMessage>, MappingError> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let text = message.text_payload.clone().unwrap_or_default();
        let thing = match (
            header(&message.headers, "device_id"),
            header(&message.headers, "mqtt.topic"),
        ) {
            (Some(id), _) => id.to_string(),
            (None, Some(topic)) => format!(
                "{}:{}",
                NAMESPACE.lock().unwrap(),
                topic.rsplit('/').next().unwrap_or(topic)
            ),
            (None, None) => "test:device".to_string(),
        };
        let thing = thing.as_str();
        match text.as_str() {
            "loop" => loop {
                std::hint::black_box(calls);
            },
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![7u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("asked to trap"),
            "recurse" => Ok(vec![modify(thing, &recurse(0).to_string(), calls)?]),
            "error" => Err(error("asked to fail")),
            "drop" => Ok(Vec::new()),
            t if t.starts_with("leak:") => {
                // Keeps N KiB for the instance's lifetime, as a leaking runtime would.
                let kib: usize = t[5..].parse().map_err(|_| error("bad size"))?;
                LEAKED.lock().unwrap().push(vec![1u8; kib << 10]);
                Ok(vec![modify(thing, "0", calls)?])
            }
            t if t.starts_with("outputs:") => {
                let n: usize = t[8..].parse().map_err(|_| error("bad count"))?;
                (0..n).map(|i| modify(thing, &i.to_string(), calls)).collect()
            }
            t if t.starts_with("big:") => {
                // One output whose value is a JSON string of N bytes.
                let n: usize = t[4..].parse().map_err(|_| error("bad size"))?;
                let value = format!("\"{}\"", "x".repeat(n));
                Ok(vec![modify(thing, &value, calls)?])
            }
            t if t.starts_with("log:") => {
                let n: usize = t[4..].parse().map_err(|_| error("bad count"))?;
                for i in 0..n {
                    log(Level::Warn, &format!("line {i}"));
                }
                Ok(vec![modify(thing, "0", calls)?])
            }
            value => Ok(vec![modify(thing, value, calls)?]),
        }
    }

    fn map_outbound(message: DittoMessage) -> Result<Vec<ExternalMessage>, MappingError> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        if message.value.as_deref() == Some("\"trap\"") {
            panic!("asked to trap");
        }
        Ok(vec![ExternalMessage {
            headers: vec![
                ("x-topic".to_string(), message.topic),
                ("x-calls".to_string(), calls.to_string()),
            ],
            text_payload: message.value,
            bytes_payload: None,
            content_type: Some("application/json".to_string()),
        }])
    }
}

export!(Behave);

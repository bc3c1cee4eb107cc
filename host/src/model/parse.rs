//! JSON → [`Connection`]: Ditto's error codes for malformed input, and Ditto's on-the-fly
//! migrations (`mappingContext`, the default `replyTarget`).

use super::connection::{
    Connection, ConnectionType, HeaderMapping, ReplyTarget, default_response_types,
};
use crate::error::DittoError;
use serde_json::{Map, Value, json};

/// The deepest nesting of arrays and objects accepted in a document that is stored (a connection,
/// a thing). A stored record wraps the document in one more level and is read back at start with
/// serde_json's limit of 128 levels, so whatever is accepted is also read back.
pub const MAX_JSON_DEPTH: usize = 100;

/// How deeply `value` nests arrays and objects: a scalar 0, `[]` and `{}` 1, `[[1]]` 2. Iterative,
/// so no input can exhaust the stack.
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 1usize)];
    while let Some((v, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(depth);
        pending.extend(children.map(|c| (c, depth + 1)));
    }
    deepest
}

/// Parses a JSON text into an object, with Ditto's `json.invalid` on failure.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, DittoError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        DittoError::json_invalid(format!("The request body is not valid UTF-8: {e}."))
    })?;
    if text.trim().is_empty() {
        return Err(DittoError::json_invalid(
            "The request body is empty; a JSON object was expected.",
        ));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(object @ Value::Object(_)) => {
            let depth = json_depth(&object);
            if depth > MAX_JSON_DEPTH {
                return Err(DittoError::json_invalid(format!(
                    "The JSON nests {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted."
                )));
            }
            let Value::Object(map) = object else {
                unreachable!("matched an object")
            };
            Ok(map)
        }
        Ok(other) => Err(DittoError::json_invalid(format!(
            "<{}> is not a valid JSON object!",
            excerpt(&other.to_string())
        ))),
        Err(e) => Err(DittoError::json_invalid(format!(
            "Failed to parse JSON string '{}'! {e}",
            excerpt(text)
        ))),
    }
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 120;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(MAX).collect();
        s.push_str("...");
        s
    }
}

/// Builds the typed connection from a JSON object whose `id` member is already set.
pub fn connection_from_object(mut obj: Map<String, Value>) -> Result<Connection, DittoError> {
    migrate_mapping_context(&mut obj);
    // The migration moves `mappingContext` one level down: what is returned and stored must
    // still be a body the API accepts.
    let object = Value::Object(obj);
    let depth = json_depth(&object);
    if depth > MAX_JSON_DEPTH {
        return Err(DittoError::json_invalid(format!(
            "The connection would nest {depth} levels deep; at most {MAX_JSON_DEPTH} are stored."
        )));
    }
    let mut connection: Connection =
        serde_path_to_error::deserialize(object).map_err(serde_error)?;
    migrate_reply_targets(&mut connection);
    Ok(connection)
}

fn serde_error(e: serde_path_to_error::Error<serde_json::Error>) -> DittoError {
    let pointer = pointer_of(e.path());
    let inner = e.into_inner().to_string();
    // serde's "missing field `x`" names the field relative to the path's object.
    if let Some(rest) = inner.strip_prefix("missing field `")
        && let Some(field) = rest.split('`').next()
    {
        let full = if pointer.is_empty() {
            format!("/{field}")
        } else {
            format!("{pointer}/{field}")
        };
        return DittoError::json_field_missing(&full);
    }
    let pointer = if pointer.is_empty() { "/" } else { &pointer };
    DittoError::json_invalid(format!("The value at <{pointer}> is not valid: {inner}."))
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => out.push_str(&format!("/{key}")),
            Segment::Enum { variant } => out.push_str(&format!("/{variant}")),
            Segment::Unknown => out.push_str("/?"),
        }
    }
    out
}

/// The deprecated `mappingContext` becomes the mapping definition `javascript`, used by every
/// source and target (Ditto migrates it the same way).
fn migrate_mapping_context(obj: &mut Map<String, Value>) {
    let Some(Value::Object(context)) = obj.remove("mappingContext") else {
        return;
    };
    let definitions = obj
        .entry("mappingDefinitions")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(defs) = definitions {
        defs.entry("javascript").or_insert(Value::Object(context));
    }
    for list in ["sources", "targets"] {
        if let Some(Value::Array(items)) = obj.get_mut(list) {
            for item in items.iter_mut().filter_map(Value::as_object_mut) {
                let mapping = item
                    .entry("payloadMapping")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(ids) = mapping
                    && !ids.iter().any(|v| v == "javascript")
                {
                    ids.push(json!("javascript"));
                }
            }
        }
    }
}

/// A source without a `replyTarget` gets Ditto's default one (`ImmutableSource.migrateReplyTarget`):
/// replies go to `{{header:reply-to}}`; for types with headers (all but MQTT 3.1.1) the source
/// header mapping also captures `correlation-id`, `content-type` and `reply-to` (the user's mapping
/// wins) and the reply target maps `correlation-id` and `content-type` back.
fn migrate_reply_targets(connection: &mut Connection) {
    let with_headers = connection.connection_type != ConnectionType::Mqtt;
    for source in &mut connection.sources {
        if source.reply_target.is_some() {
            continue;
        }
        let mut reply_headers = HeaderMapping::new();
        if with_headers {
            reply_headers.insert("correlation-id".into(), "{{header:correlation-id}}".into());
            reply_headers.insert("content-type".into(), "{{header:content-type}}".into());
            let mut merged = HeaderMapping::new();
            merged.insert("correlation-id".into(), "{{header:correlation-id}}".into());
            merged.insert("content-type".into(), "{{header:content-type}}".into());
            merged.insert("reply-to".into(), "{{header:reply-to}}".into());
            for (k, v) in std::mem::take(&mut source.header_mapping) {
                merged.insert(k, v);
            }
            source.header_mapping = merged;
        }
        source.reply_target = Some(ReplyTarget {
            address: Some("{{header:reply-to}}".into()),
            header_mapping: reply_headers,
            expected_response_types: default_response_types(),
            enabled: true,
        });
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn depth_counts_nesting_and_deep_documents_are_refused() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!([])), 1);
        assert_eq!(json_depth(&json!({"a": [1, {"b": {}}], "c": 2})), 4);
        let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n), "]".repeat(n));
        assert!(parse_object(deep(MAX_JSON_DEPTH - 1).as_bytes()).is_ok());
        let e = parse_object(deep(MAX_JSON_DEPTH).as_bytes()).unwrap_err();
        assert!(e.message.contains("at most 100"), "{}", e.message);
    }

    use super::*;

    fn base() -> Value {
        json!({
            "id": "c1",
            "connectionType": "amqp-091",
            "connectionStatus": "closed",
            "uri": "amqp://guest:guest@localhost:5672/",
            "sources": [{"addresses": ["q"], "authorizationContext": ["ditto:inbound"]}],
            "targets": [{"address": "ex/key", "topics": ["_/_/things/twin/events"],
                         "authorizationContext": ["ditto:outbound"]}]
        })
    }

    fn parse(v: Value) -> Result<Connection, DittoError> {
        connection_from_object(v.as_object().unwrap().clone())
    }

    /// Found by the `connection` fuzz target: a legacy `mappingContext` 99 levels deep was
    /// accepted, moved one level down by the migration, and returned 101 levels deep, a body
    /// that PUT refuses.
    #[test]
    fn a_migrated_mapping_context_stays_within_the_depth_limit() {
        let with_context = |levels: usize| {
            let mut nested = json!(0);
            for _ in 0..levels {
                nested = json!([nested]);
            }
            let mut v = base();
            v["mappingContext"] = json!({"mappingEngine": "JavaScript", "options": {"incomingScript": "", "x": nested}});
            v
        };
        // mappingContext (2) > options (3) > x: 96 arrays reach 99, 97 reach 100.
        let c = parse(with_context(96)).unwrap();
        assert_eq!(
            json_depth(&serde_json::to_value(&c).unwrap()),
            MAX_JSON_DEPTH
        );
        let e = parse(with_context(97)).unwrap_err();
        assert_eq!(e.error, "json.invalid");
        assert_eq!(
            e.message,
            "The connection would nest 101 levels deep; at most 100 are stored."
        );
    }

    #[test]
    fn defaults_are_materialised() {
        let c = parse(base()).unwrap();
        let out = serde_json::to_value(&c).unwrap();
        assert_eq!(out["clientCount"], 1);
        assert_eq!(out["failoverEnabled"], true);
        assert_eq!(out["validateCertificates"], true);
        assert_eq!(out["processorPoolSize"], 1);
        assert_eq!(out["tags"], json!([]));
        assert_eq!(out["sources"][0]["consumerCount"], 1);
        assert_eq!(out["targets"][0]["headerMapping"], json!({}));
        assert!(out.get("specificConfig").is_none());
        assert!(out.get("mappingDefinitions").is_none());
    }

    #[test]
    fn reply_target_migration_matches_ditto() {
        let out = serde_json::to_value(parse(base()).unwrap()).unwrap();
        assert_eq!(
            out["sources"][0]["headerMapping"],
            json!({"correlation-id": "{{header:correlation-id}}",
                   "content-type": "{{header:content-type}}",
                   "reply-to": "{{header:reply-to}}"})
        );
        assert_eq!(
            out["sources"][0]["replyTarget"],
            json!({"address": "{{header:reply-to}}",
                   "headerMapping": {"correlation-id": "{{header:correlation-id}}",
                                     "content-type": "{{header:content-type}}"},
                   "expectedResponseTypes": ["response", "error"],
                   "enabled": true})
        );
        // A user's own mapping wins over the defaults; an explicit reply target is kept.
        let mut v = base();
        v["sources"][0]["headerMapping"] = json!({"reply-to": "fixed"});
        v["sources"][0]["replyTarget"] = json!({"enabled": false});
        let out = serde_json::to_value(parse(v).unwrap()).unwrap();
        assert_eq!(
            out["sources"][0]["headerMapping"],
            json!({"reply-to": "fixed"})
        );
        assert_eq!(
            out["sources"][0]["replyTarget"],
            json!({"expectedResponseTypes": ["response", "error"], "enabled": false})
        );
    }

    #[test]
    fn mqtt_reply_target_migration_adds_no_source_headers() {
        let mut v = base();
        v["connectionType"] = json!("mqtt");
        let out = serde_json::to_value(parse(v).unwrap()).unwrap();
        assert_eq!(out["sources"][0]["headerMapping"], json!({}));
        assert_eq!(
            out["sources"][0]["replyTarget"],
            json!({"address": "{{header:reply-to}}",
                   "expectedResponseTypes": ["response", "error"], "enabled": true})
        );
    }

    #[test]
    fn mapping_context_is_migrated() {
        let mut v = base();
        v["mappingContext"] = json!({"mappingEngine": "JavaScript",
                                     "options": {"incomingScript": "", "outgoingScript": ""}});
        let out = serde_json::to_value(parse(v).unwrap()).unwrap();
        assert_eq!(
            out["mappingDefinitions"]["javascript"]["mappingEngine"],
            "JavaScript"
        );
        assert_eq!(out["sources"][0]["payloadMapping"], json!(["javascript"]));
        assert_eq!(out["targets"][0]["payloadMapping"], json!(["javascript"]));
        assert!(out.get("mappingContext").is_none());
    }

    #[test]
    fn missing_and_invalid_fields_name_their_pointer() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("connectionType");
        let e = parse(v).unwrap_err();
        assert_eq!(e.error, "json.field.missing");
        assert_eq!(
            e.message,
            "JSON did not include required </connectionType> field!"
        );

        let mut v = base();
        v["targets"][0].as_object_mut().unwrap().remove("address");
        let e = parse(v).unwrap_err();
        assert_eq!(
            e.message,
            "JSON did not include required </targets/0/address> field!"
        );

        let mut v = base();
        v["clientCount"] = json!("two");
        let e = parse(v).unwrap_err();
        assert_eq!(e.error, "json.invalid");
        assert!(e.message.contains("</clientCount>"), "{}", e.message);

        let mut v = base();
        v["connectionType"] = json!("carrier-pigeon");
        let e = parse(v).unwrap_err();
        assert!(e.message.contains("carrier-pigeon") && e.message.contains("amqp-091"));
    }

    #[test]
    fn specific_config_scalars_become_strings() {
        let mut v = base();
        v["specificConfig"] = json!({"keepAlive": 30, "cleanSession": true, "clientId": "x"});
        let c = parse(v).unwrap();
        assert_eq!(c.specific_config["keepAlive"], "30");
        assert_eq!(c.specific_config["cleanSession"], "true");
        let mut v = base();
        v["specificConfig"] = json!({"nested": {"a": 1}});
        assert_eq!(parse(v).unwrap_err().error, "json.invalid");
    }

    #[test]
    fn parse_object_errors() {
        assert_eq!(parse_object(b"{").unwrap_err().error, "json.invalid");
        assert_eq!(parse_object(b"[]").unwrap_err().error, "json.invalid");
        assert_eq!(parse_object(b"").unwrap_err().error, "json.invalid");
        assert_eq!(parse_object(b"\xff\xfe").unwrap_err().error, "json.invalid");
        let deep = "[".repeat(10_000);
        assert_eq!(
            parse_object(deep.as_bytes()).unwrap_err().error,
            "json.invalid"
        );
    }
}

//! A connection as it is stored: the document plus revision and timestamps.

use super::connection::Connection;
use super::fields::FieldSelector;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredConnection {
    pub connection: Connection,
    pub revision: u64,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
}

/// ISO-8601 UTC with milliseconds, as Java's `Instant.toString()` prints most instants.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl StoredConnection {
    pub fn id(&self) -> &str {
        &self.connection.id
    }

    /// The entity tag of this revision: `"rev:N"` (quotes included).
    pub fn etag(&self) -> String {
        format!("\"rev:{}\"", self.revision)
    }

    /// The connection JSON as Ditto returns it. `_revision`, `_created` and `_modified` are
    /// special fields: returned only when the selector asks for them.
    pub fn to_json(&self, selector: Option<&FieldSelector>) -> Map<String, Value> {
        let Value::Object(mut doc) =
            serde_json::to_value(&self.connection).expect("a connection serialises to JSON")
        else {
            unreachable!("a connection serialises to a JSON object")
        };
        let Some(selector) = selector else {
            return doc;
        };
        doc.insert("_revision".into(), Value::from(self.revision));
        doc.insert("_created".into(), Value::from(timestamp(&self.created)));
        doc.insert("_modified".into(), Value::from(timestamp(&self.modified)));
        selector.apply(&doc)
    }
}

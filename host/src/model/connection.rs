//! The connection document: every field of Ditto's connection JSON, with Ditto's defaults.
//!
//! Deserialising fills the defaults Ditto materialises (`clientCount`, `failoverEnabled`, ...);
//! serialising writes them, so a GET returns what Ditto would. Unknown members are ignored.

use indexmap::{IndexMap, IndexSet};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub type HeaderMapping = IndexMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConnectionType {
    #[serde(rename = "amqp-091")]
    Amqp091,
    #[serde(rename = "amqp-10")]
    Amqp10,
    #[serde(rename = "mqtt")]
    Mqtt,
    #[serde(rename = "mqtt-5")]
    Mqtt5,
    #[serde(rename = "kafka")]
    Kafka,
    #[serde(rename = "http-push")]
    HttpPush,
    #[serde(rename = "hono")]
    Hono,
}

impl ConnectionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionType::Amqp091 => "amqp-091",
            ConnectionType::Amqp10 => "amqp-10",
            ConnectionType::Mqtt => "mqtt",
            ConnectionType::Mqtt5 => "mqtt-5",
            ConnectionType::Kafka => "kafka",
            ConnectionType::HttpPush => "http-push",
            ConnectionType::Hono => "hono",
        }
    }

    /// The protocol name Ditto uses in messages about URI schemes.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ConnectionType::Amqp091 => "AMQP 0.9.1",
            ConnectionType::Amqp10 => "AMQP 1.0",
            ConnectionType::Mqtt => "MQTT 3.1.1",
            ConnectionType::Mqtt5 => "MQTT 5",
            ConnectionType::Kafka => "Kafka 2.1.1",
            ConnectionType::HttpPush => "HTTP",
            ConnectionType::Hono => "Hono",
        }
    }

    /// `(plain schemes, secure schemes)` accepted in the connection URI.
    pub fn uri_schemes(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            ConnectionType::Amqp091 | ConnectionType::Amqp10 => (&["amqp"], &["amqps"]),
            ConnectionType::Mqtt | ConnectionType::Mqtt5 => (&["tcp"], &["ssl"]),
            ConnectionType::Kafka | ConnectionType::Hono => (&["tcp"], &["ssl"]),
            ConnectionType::HttpPush => (&["http"], &["https"]),
        }
    }

    pub fn is_mqtt(self) -> bool {
        matches!(self, ConnectionType::Mqtt | ConnectionType::Mqtt5)
    }

    /// Types whose broker clients Ferrule has (the others are accepted by Ditto, not by Ferrule).
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            ConnectionType::Amqp091
                | ConnectionType::Amqp10
                | ConnectionType::Mqtt
                | ConnectionType::Mqtt5
                | ConnectionType::HttpPush
                | ConnectionType::Kafka
        )
    }
}

/// Desired status (`connectionStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectivityStatus {
    Open,
    Closed,
    Failed,
    Misconfigured,
    Unknown,
}

impl ConnectivityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectivityStatus::Open => "open",
            ConnectivityStatus::Closed => "closed",
            ConnectivityStatus::Failed => "failed",
            ConnectivityStatus::Misconfigured => "misconfigured",
            ConnectivityStatus::Unknown => "unknown",
        }
    }
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub connection_type: ConnectionType,
    pub connection_status: ConnectivityStatus,
    pub uri: String,
    #[serde(default)]
    pub sources: Vec<Source>,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default = "one")]
    pub client_count: u32,
    #[serde(default = "yes")]
    pub failover_enabled: bool,
    #[serde(default = "yes")]
    pub validate_certificates: bool,
    #[serde(default = "one")]
    pub processor_pool_size: u32,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "string_map"
    )]
    pub specific_config: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub mapping_definitions: IndexMap<String, MappingDefinition>,
    #[serde(default)]
    pub tags: IndexSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_tunnel: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default)]
    pub addresses: IndexSet<String>,
    #[serde(default = "one")]
    pub consumer_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<i64>,
    #[serde(default)]
    pub authorization_context: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledgement_requests: Option<AcknowledgementRequests>,
    #[serde(default, skip_serializing_if = "IndexSet::is_empty")]
    pub declared_acks: IndexSet<String>,
    #[serde(default)]
    pub header_mapping: HeaderMapping,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload_mapping: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_target: Option<ReplyTarget>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enforcement {
    pub input: String,
    #[serde(default)]
    pub filters: IndexSet<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcknowledgementRequests {
    pub includes: IndexSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub header_mapping: HeaderMapping,
    #[serde(default = "default_response_types")]
    pub expected_response_types: IndexSet<ResponseType>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseType {
    Response,
    Error,
    Nack,
}

pub fn default_response_types() -> IndexSet<ResponseType> {
    IndexSet::from([ResponseType::Response, ResponseType::Error])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub address: String,
    pub topics: IndexSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<i64>,
    #[serde(default)]
    pub authorization_context: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_acknowledgement_label: Option<String>,
    #[serde(default)]
    pub header_mapping: HeaderMapping,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload_mapping: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingDefinition {
    pub mapping_engine: String,
    pub options: Map<String, Value>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub incoming_conditions: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub outgoing_conditions: IndexMap<String, String>,
}

/// `specificConfig` values are strings in Ditto; numbers and booleans are accepted and kept as
/// their string form, so `"keepAlive": 30` means what the user meant.
fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, String>, D::Error> {
    let raw = IndexMap::<String, Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            Value::Bool(b) => Ok((k, b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "the value of '{k}' must be a string, not {}",
                json_kind(&other)
            ))),
        })
        .collect()
}

pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

//! Connection validation, in Ditto's order: model rules, then connection rules, then the rules
//! of the connection's protocol. The first failure is returned. Validation also normalises what
//! Ditto normalises (target topics are stored in their canonical form).

use super::connection::{Connection, ConnectionType, Source, Target};
use super::topic::{FilteredTopic, TopicKind};
use crate::error::DittoError;
use crate::mapping;
use indexmap::IndexSet;

/// Limits that the service configuration sets (Ditto's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, rename_all = "snake_case", deny_unknown_fields)]
pub struct ValidationLimits {
    pub max_sources: usize,
    pub max_targets: usize,
    /// `payloadMapping` entries per source or target.
    pub max_mappers: usize,
    /// The largest MQTT packet a broker may send, for connections whose `specificConfig` has no
    /// `maximumPacketSize` (bytes, 1,024 to 268,435,460).
    pub mqtt_maximum_packet_size: u32,
    /// The AMQP 0.9.1 `frame-max` offered, for connections without `frameMax` (4,096 to
    /// 1,048,576).
    pub amqp091_frame_max: u32,
    /// The AMQP 1.0 `max-frame-size`, for connections without `amqp.maxFrameSize` (512 to
    /// 67,108,864).
    pub amqp10_max_frame_size: u32,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        ValidationLimits {
            max_sources: 4,
            max_targets: 4,
            max_mappers: 10,
            mqtt_maximum_packet_size: ferrule_transport::mqtt::DEFAULT_MAXIMUM_PACKET_SIZE,
            amqp091_frame_max: ferrule_transport::amqp091::DEFAULT_FRAME_MAX,
            amqp10_max_frame_size: ferrule_transport::amqp10::DEFAULT_MAX_FRAME_SIZE,
        }
    }
}

impl ValidationLimits {
    /// Checks the transports' size limits against the ranges the transports take, naming the
    /// key of `[limits]` that is out of range.
    pub fn check(&self) -> Result<(), String> {
        use ferrule_transport::{amqp10, amqp091, mqtt};
        for (key, value, range) in [
            (
                "mqtt_maximum_packet_size",
                self.mqtt_maximum_packet_size,
                mqtt::PACKET_SIZES,
            ),
            (
                "amqp091_frame_max",
                self.amqp091_frame_max,
                amqp091::FRAME_MAX_RANGE,
            ),
            (
                "amqp10_max_frame_size",
                self.amqp10_max_frame_size,
                amqp10::FRAME_SIZES,
            ),
        ] {
            if !range.contains(&value) {
                return Err(format!(
                    "[limits] {key} = {value} is outside {} to {} bytes",
                    range.start(),
                    range.end()
                ));
            }
        }
        Ok(())
    }

    /// The `specificConfig` key of the size limit of `protocol`, with this host's default
    /// (HTTP push has none: its responses are read up to a fixed size; Kafka neither: librdkafka
    /// bounds what it fetches, `fetch.max.bytes` 50 MiB).
    pub fn transport_default(
        &self,
        protocol: ferrule_transport::Protocol,
    ) -> Option<(&'static str, u32)> {
        use ferrule_transport::{Protocol, amqp10, amqp091, mqtt};
        match protocol {
            Protocol::Mqtt3 | Protocol::Mqtt5 => {
                Some((mqtt::MAXIMUM_PACKET_SIZE, self.mqtt_maximum_packet_size))
            }
            Protocol::Amqp091 => Some((amqp091::FRAME_MAX, self.amqp091_frame_max)),
            Protocol::Amqp10 => Some((amqp10::MAX_FRAME_SIZE, self.amqp10_max_frame_size)),
            Protocol::HttpPush | Protocol::Kafka => None,
        }
    }
}

/// Connection IDs: `[a-zA-Z0-9-_:]{1,100}`.
pub fn is_valid_connection_id(id: &str) -> bool {
    (1..=100).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'))
}

pub fn validate(c: &mut Connection, limits: &ValidationLimits) -> Result<(), DittoError> {
    if !is_valid_connection_id(&c.id) {
        return Err(DittoError::connection_id_invalid(&c.id));
    }
    model_rules(c)?;
    normalise_topics(c)?;
    connection_rules(c, limits)?;
    protocol_rules(c)?;
    placeholder_rules(c)?;
    mapping_rules(c, limits)
}

/// Placeholders a template may use, by where it stands (Ditto's placeholder scopes).
mod scopes {
    /// Target addresses and target header mappings: the outbound signal.
    pub const TARGET: &[&str] = &[
        "thing",
        "entity",
        "policy",
        "feature",
        "topic",
        "header",
        "connection",
        "time",
        "resource",
        "thing-json",
    ];
    /// Source header mappings, reply target addresses and header mappings: the inbound message
    /// and the signal mapped from it.
    pub const SOURCE: &[&str] = &[
        "header",
        "thing",
        "entity",
        "policy",
        "feature",
        "topic",
        "connection",
        "request",
        "time",
        "source",
        "resource",
    ];
    /// Authorization subjects of sources.
    pub const AUTHORIZATION: &[&str] = &["header", "connection", "source", "request"];
    pub const ENFORCEMENT_INPUT: &[&str] = &["header", "source"];
    pub const AMQP_ENFORCEMENT_INPUT: &[&str] = &["header"];
    /// The values of MQTT 3.1.1 target header mappings (Ditto's `Mqtt3Validator`).
    pub const MQTT3_TARGET_HEADER_VALUES: &[&str] = &["header"];
    pub const ENFORCEMENT_FILTERS: &[&str] = &["thing", "entity", "policy", "feature"];
    /// `acknowledgementRequests.filter`, incoming and outgoing mapping conditions.
    pub const CONDITIONS: &[&str] = &[
        "header",
        "topic",
        "thing",
        "entity",
        "policy",
        "feature",
        "connection",
        "time",
        "request",
        "resource",
        "source",
    ];
}

/// A template the connection may not use: Ditto's `validateTemplate` answers every placeholder
/// error of a connection (unknown placeholder or function, bad syntax) as
/// `connectivity:connection.configuration.invalid` with the placeholder error's message.
fn placeholder_error(e: ferrule_placeholders::PlaceholderError, place: &str) -> DittoError {
    DittoError::configuration_invalid(format!("{place}: {}", e.message)).with_description(
        if e.description.is_empty() {
            "Check the spelling and syntax of the placeholder.".to_string()
        } else {
            e.description
        },
    )
}

fn check_template(text: &str, allowed: &[&str], place: &str) -> Result<(), DittoError> {
    ferrule_placeholders::Template::parse(text)
        .and_then(|t| t.validate(allowed))
        .map_err(|e| placeholder_error(e, place))
}

/// Every template of the connection parses and uses only placeholders known where it stands.
fn placeholder_rules(c: &Connection) -> Result<(), DittoError> {
    use scopes::*;
    for (i, source) in c.sources.iter().enumerate() {
        let at = |what: &str| format!("Source {i} {what}");
        for subject in &source.authorization_context {
            check_template(subject, AUTHORIZATION, &at("authorizationContext"))?;
        }
        for (key, value) in &source.header_mapping {
            check_template(value, SOURCE, &at(&format!("headerMapping '{key}'")))?;
        }
        if let Some(reply) = &source.reply_target {
            if let Some(address) = &reply.address {
                check_template(address, SOURCE, &at("replyTarget address"))?;
            }
            for (key, value) in &reply.header_mapping {
                check_template(
                    value,
                    SOURCE,
                    &at(&format!("replyTarget headerMapping '{key}'")),
                )?;
            }
        }
        if let Some(enforcement) = &source.enforcement {
            // Ditto's `AmqpValidator` and `RabbitMQValidator` take only the headers placeholder
            // as the input; MQTT's rules are in `mqtt_source_rules`.
            let input = match c.connection_type {
                ConnectionType::Amqp091 | ConnectionType::Amqp10 => AMQP_ENFORCEMENT_INPUT,
                _ => ENFORCEMENT_INPUT,
            };
            check_template(&enforcement.input, input, &at("enforcement input"))?;
            for filter in &enforcement.filters {
                check_template(filter, ENFORCEMENT_FILTERS, &at("enforcement filter"))?;
            }
        }
        if let Some(filter) = source
            .acknowledgement_requests
            .as_ref()
            .and_then(|a| a.filter.as_deref())
        {
            ferrule_placeholders::validate_condition(filter, CONDITIONS)
                .map_err(|e| placeholder_error(e, &at("acknowledgementRequests filter")))?;
        }
    }
    for target in &c.targets {
        let at = |what: &str| format!("Target '{}' {what}", target.address);
        check_template(&target.address, TARGET, &at("address"))?;
        for (key, value) in &target.header_mapping {
            check_template(value, TARGET, &at(&format!("headerMapping '{key}'")))?;
        }
    }
    for (id, definition) in &c.mapping_definitions {
        for (name, condition) in definition
            .incoming_conditions
            .iter()
            .chain(&definition.outgoing_conditions)
        {
            ferrule_placeholders::validate_condition(condition, CONDITIONS).map_err(|e| {
                placeholder_error(e, &format!("Mapping definition '{id}' condition '{name}'"))
            })?;
        }
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> DittoError {
    DittoError::configuration_invalid(message)
}

/// `AbstractConnectionBuilder`: what every connection must satisfy.
fn model_rules(c: &Connection) -> Result<(), DittoError> {
    if c.sources.is_empty() && c.targets.is_empty() {
        return Err(invalid(
            "Either a source or a target must be specified in the configuration of a connection!",
        ));
    }
    let sources: Vec<&str> = c
        .sources
        .iter()
        .filter(|s| s.authorization_context.is_empty())
        .flat_map(|s| s.addresses.iter().map(String::as_str))
        .collect();
    let targets: Vec<&str> = c
        .targets
        .iter()
        .filter(|t| t.authorization_context.is_empty())
        .map(|t| t.address.as_str())
        .collect();
    let sources_missing = c.sources.iter().any(|s| s.authorization_context.is_empty());
    if sources_missing || !targets.is_empty() {
        return Err(invalid(format!(
            "The Sources [{}] and Targets [{}] are missing an authorization context.",
            sources.join(", "),
            targets.join(", ")
        )));
    }
    if c.client_count == 0 {
        return Err(invalid("The clientCount must be positive."));
    }
    if c.processor_pool_size == 0 {
        return Err(invalid("The processorPoolSize must be positive."));
    }
    Ok(())
}

fn normalise_topics(c: &mut Connection) -> Result<(), DittoError> {
    let client_count = c.client_count;
    for target in &mut c.targets {
        let mut rendered = IndexSet::new();
        for raw in &target.topics {
            let topic = FilteredTopic::parse(raw)?;
            if topic.kind == TopicKind::ConnectionAnnouncements && client_count > 1 {
                return Err(invalid(
                    "Connection announcements (topic _/_/connections/announcements) can only be used with client count 1.",
                ));
            }
            rendered.insert(topic.render());
        }
        target.topics = rendered;
    }
    Ok(())
}

/// `ConnectionValidator`: rules that do not depend on the protocol.
fn connection_rules(c: &Connection, limits: &ValidationLimits) -> Result<(), DittoError> {
    if !c.connection_type.is_supported() {
        return Err(invalid(format!(
            "The connection type '{}' is not supported by Ferrule.",
            c.connection_type.as_str()
        ))
        .with_description(
            "Ferrule connects to brokers of the types amqp-091, amqp-10, mqtt and mqtt-5, and to HTTP servers (http-push).",
        ));
    }
    if c.sources.len() > limits.max_sources {
        return Err(invalid(format!(
            "The number of sources ({}) exceeds the limit of {}.",
            c.sources.len(),
            limits.max_sources
        )));
    }
    if c.targets.len() > limits.max_targets {
        return Err(invalid(format!(
            "The number of targets ({}) exceeds the limit of {}.",
            c.targets.len(),
            limits.max_targets
        )));
    }
    for (index, source) in c.sources.iter().enumerate() {
        if source.addresses.is_empty() || source.addresses.iter().any(|a| a.trim().is_empty()) {
            return Err(invalid(format!(
                "Source {index} of connection <{}>: addresses may not be empty.",
                c.id
            )));
        }
        if source.consumer_count == 0 {
            return Err(invalid(format!(
                "The consumerCount of source {index} of connection <{}> must be positive.",
                c.id
            )));
        }
        if let Some(reply) = &source.reply_target
            && reply.enabled
            && reply.address.as_deref().is_none_or(|a| a.trim().is_empty())
        {
            return Err(DittoError::json_field_missing(&format!(
                "/sources/{index}/replyTarget/address"
            )));
        }
    }
    for target in &c.targets {
        if target.address.trim().is_empty() {
            return Err(invalid(format!(
                "Targets of connection <{}>: addresses may not be empty.",
                c.id
            )));
        }
    }
    diversion_rules(c)?;
    ack_label_rules(c)?;
    uri_rules(c)?;
    credentials_rules(c)?;
    ssh_tunnel_rules(c)
}

/// Response diversion (Ditto's `ResponseDiversionValidator`, see [`crate::hub::diversion`]).
/// A target without topics is taken (Ditto takes it; a diversion target's targets have none).
fn diversion_rules(c: &Connection) -> Result<(), DittoError> {
    use crate::hub::diversion::{self, DIVERT_TO, DIVERT_TYPES, Settings};
    let settings = Settings::of(&c.specific_config);
    for source in &c.sources {
        if settings.is_source
            && let Some(types) = source.header_mapping.get(DIVERT_TYPES)
            && let Some(bad) = crate::model::topic::comma_list(types)
                .find(|t| diversion::response_type(t).is_none())
        {
            return Err(invalid(format!(
                "Invalid response type in <{DIVERT_TYPES}>: {bad}. Valid types are: response, error, nack"
            )));
        }
        let Some(to) = source.header_mapping.get(DIVERT_TO) else {
            continue;
        };
        if to.trim().is_empty() {
            return Err(invalid(format!(
                "The {DIVERT_TO} in headerMapping must not be empty"
            )));
        }
        if !is_valid_connection_id(to) {
            return Err(invalid(format!(
                "Invalid target connection ID format in {DIVERT_TO}: {to}"
            )));
        }
        if *to == c.id {
            return Err(invalid(format!(
                "It is pointless to divert responses to the originating connection, it will \
                 receive the responses by default. Remove the {DIVERT_TO} from the headerMapping \
                 of connection: {}",
                c.id
            )));
        }
    }
    if let Some(authorized) = &settings.target_of {
        if let Some(bad) = authorized.iter().find(|id| !is_valid_connection_id(id)) {
            return Err(DittoError::connection_id_invalid(bad));
        }
        if let Some(target) = c.targets.iter().find(|t| !t.topics.is_empty()) {
            return Err(invalid(format!(
                "Connection {} has topics configured in target <{}> but isDiversionTarget is \
                 true. When isDiversionTarget is true, no topics must be configured in targets.",
                c.id, target.address
            )));
        }
    }
    Ok(())
}

fn ack_label_rules(c: &Connection) -> Result<(), DittoError> {
    let valid = |label: &str| {
        let suffix = label.strip_prefix(&format!("{}:", c.id)).or_else(|| {
            let rest = label.strip_prefix("{{")?;
            let (inner, suffix) = rest.split_once("}}:")?;
            (inner.trim() == "connection:id").then_some(suffix)
        });
        let resolved_len = suffix.map(|s| c.id.len() + 1 + s.len());
        suffix.is_some_and(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'))
        }) && resolved_len.is_some_and(|n| (3..=100).contains(&n))
    };
    for source in &c.sources {
        if let Some(label) = source.declared_acks.iter().find(|l| !valid(l)) {
            return Err(DittoError::ack_label_invalid(label, &c.id));
        }
    }
    let mut issued = IndexSet::new();
    for target in &c.targets {
        if let Some(label) = &target.issued_acknowledgement_label {
            if label != "live-response" && !valid(label) {
                return Err(DittoError::ack_label_invalid(label, &c.id));
            }
            let resolved = label
                .split_once("}}:")
                .map(|(_, s)| format!("{}:{s}", c.id))
                .unwrap_or_else(|| label.clone());
            if !issued.insert(resolved) {
                return Err(DittoError::ack_label_not_unique());
            }
        }
    }
    Ok(())
}

fn uri_rules(c: &Connection) -> Result<(), DittoError> {
    let url =
        url::Url::parse(&c.uri).map_err(|e| DittoError::uri_invalid(&c.uri, &e.to_string()))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(DittoError::uri_invalid(&c.uri, "it has no host"));
    }
    // Ditto's `ConnectionUri`: an explicit port, no query.
    if url.port().is_none() {
        return Err(DittoError::uri_invalid(&c.uri, "it has no port"));
    }
    if url.query().is_some() {
        return Err(DittoError::uri_invalid(&c.uri, "it has a query"));
    }
    let (plain, secure) = c.connection_type.uri_schemes();
    let scheme = url.scheme();
    if !plain.contains(&scheme) && !secure.contains(&scheme) {
        let accepted: Vec<&str> = plain.iter().chain(secure).copied().collect();
        // Ditto's `validateUriScheme` answers with `ConnectionUriInvalidException`.
        return Err(DittoError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "connectivity:connection.uri.invalid",
            format!(
                "The URI scheme '{scheme}' is not valid for {}.",
                c.connection_type.protocol_name()
            ),
        )
        .with_description(format!("Accepted URI schemes are: {}", accepted.join(", "))));
    }
    if let Some(ca) = &c.ca {
        if !secure.contains(&scheme) {
            return Err(DittoError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "connectivity:connection.uri.invalid",
                "The connection has trusted certificates configured but uses an insecure protocol.",
            )
            .with_description(format!(
                "Either switch to a secure protocol ([{}]) or remove the trusted certificates.",
                secure.join(", ")
            )));
        }
        if !ca.contains("-----BEGIN CERTIFICATE-----") {
            return Err(invalid(
                "The trusted certificates ('ca') contain no PEM certificate.",
            )
            .with_description(
                "Give one or more certificates in PEM form, each starting with -----BEGIN CERTIFICATE-----.",
            ));
        }
    }
    Ok(())
}

fn credentials_rules(c: &Connection) -> Result<(), DittoError> {
    let Some(credentials) = &c.credentials else {
        return Ok(());
    };
    const TYPES: [&str; 4] = [
        "client-cert",
        "hmac",
        "oauth-client-credentials",
        "oauth-password",
    ];
    match credentials.get("type").and_then(|t| t.as_str()) {
        None => Err(DittoError::json_field_missing("/credentials/type")),
        Some(t) if !TYPES.contains(&t) => {
            Err(invalid(format!("The credentials type '{t}' is unknown."))
                .with_description(format!("Use one of: {}.", TYPES.join(", "))))
        }
        Some("client-cert") => {
            for field in ["cert", "key"] {
                if let Some(v) = credentials.get(field)
                    && !v.is_string()
                {
                    return Err(DittoError::json_invalid(format!(
                        "The value at </credentials/{field}> must be a PEM string."
                    )));
                }
            }
            // The PEM itself is read by the transport's check (`Runtime::check`), as Ditto's
            // `validateFormatOfCertificates` builds the SSL context at create.
            Ok(())
        }
        Some("hmac") => hmac_rules(c, credentials),
        Some(kind) => oauth_rules(c, kind, credentials),
    }
}

/// Ditto's `CredentialsValidationVisitor.performOauthCredentialsChecks` and
/// `HttpPushValidator`'s HTTPS rule for the token endpoint of client credentials.
fn oauth_rules(
    c: &Connection,
    kind: &str,
    credentials: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), DittoError> {
    if c.connection_type != ConnectionType::HttpPush {
        return Err(invalid(
            "OAuth client credentials are only supported for HTTP connection type.",
        )
        .with_description("Only HTTP connections support OAuth client credentials."));
    }
    let text = |field: &str| credentials.get(field).and_then(|v| v.as_str());
    let mut required = vec!["tokenEndpoint", "clientId", "requestedScopes"];
    if kind == "oauth-password" {
        required.extend(["username", "password"]);
    } else {
        required.push("clientSecret");
    }
    for field in required {
        if text(field).is_none() {
            return Err(DittoError::json_field_missing(&format!(
                "/credentials/{field}"
            )));
        }
    }
    let endpoint = text("tokenEndpoint").unwrap_or_default();
    let parsed = url::Url::parse(endpoint).map_err(|e| {
        invalid(format!("Invalid token endpoint '{endpoint}' provided: {e}"))
            .with_description("Provide a valid URL as token endpoint.")
    })?;
    let scopes = text("requestedScopes").unwrap_or_default();
    let scope_char = |ch: char| matches!(ch, '\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E');
    if scopes.is_empty()
        || scopes
            .split(' ')
            .any(|s| s.is_empty() || !s.chars().all(scope_char))
    {
        return Err(
            invalid(format!("Invalid format of requested scopes: {scopes}"))
                .with_description("Provide scopes as space separated list (RFC6749 section 3.3)."),
        );
    }
    if kind == "oauth-client-credentials" && parsed.scheme() != "https" {
        return Err(invalid(
            "The OAuth2 token endpoint must be accessed via HTTPS in order not to transmit the client secret in plain text.",
        ));
    }
    Ok(())
}

/// The HMAC algorithms of Ditto's default configuration (`http-push.hmac-algorithms`).
const HMAC_ALGORITHMS: [&str; 3] = ["aws4-hmac-sha256", "az-monitor-2016-04-01", "az-sasl"];

/// Ditto's `CredentialsValidationVisitor.hmac`: HMAC credentials on HTTP and AMQP 1.0 only, not
/// with a user in the URI, with a known algorithm. HTTP push signs its requests with them (the
/// parameters are read by the transport's check); Ferrule does not sign AMQP 1.0 logins
/// (Azure's `az-sasl`), so what Ditto would accept there is refused as unsupported rather than
/// ignored.
fn hmac_rules(
    c: &Connection,
    credentials: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), DittoError> {
    if !matches!(
        c.connection_type,
        ConnectionType::Amqp10 | ConnectionType::HttpPush
    ) {
        return Err(
            invalid("HMAC credentials are not supported for the connection type.")
                .with_description("Only HTTP and AMQP 1.0 connections support HMAC credentials."),
        );
    }
    if url::Url::parse(&c.uri).is_ok_and(|u| !u.username().is_empty() || u.password().is_some()) {
        return Err(
            invalid("There are conflicting authentication mechanisms.").with_description(
                "HMAC credentials and URI userinfo may not be present at the same time.",
            ),
        );
    }
    let algorithm = credentials
        .get("algorithm")
        .and_then(|a| a.as_str())
        .unwrap_or_default();
    if !HMAC_ALGORITHMS.contains(&algorithm) {
        return Err(
            invalid(format!("Unsupported HMAC algorithm: {algorithm}")).with_description(format!(
                "Supported algorithms: {}",
                HMAC_ALGORITHMS.join(", ")
            )),
        );
    }
    if c.connection_type == ConnectionType::HttpPush {
        return Ok(());
    }
    Err(invalid(format!(
        "HMAC credentials ({algorithm}) are not supported by Ferrule."
    ))
    .with_description(
        "Ferrule does not sign AMQP 1.0 logins; give the user and password in the URI instead.",
    ))
}

fn ssh_tunnel_rules(c: &Connection) -> Result<(), DittoError> {
    let Some(tunnel) = &c.ssh_tunnel else {
        return Ok(());
    };
    let enabled = match tunnel.get("enabled") {
        None => return Err(DittoError::json_field_missing("/sshTunnel/enabled")),
        Some(v) => v.as_bool().ok_or_else(|| {
            DittoError::json_invalid("The value at </sshTunnel/enabled> must be a boolean.")
        })?,
    };
    let Some(uri) = tunnel.get("uri").and_then(|u| u.as_str()) else {
        return Err(DittoError::json_field_missing("/sshTunnel/uri"));
    };
    // Ditto's `SshTunnelValidator`.
    if uri.is_empty() {
        return Err(invalid("The URI of the ssh server must not be empty."));
    }
    match url::Url::parse(uri) {
        Ok(u) if u.scheme() == "ssh" && u.host_str().is_some_and(|h| !h.is_empty()) => {}
        Ok(u) if u.scheme() != "ssh" => {
            return Err(invalid(format!(
                "The SSH server URI '{uri}' is not valid: The scheme for the ssh endpoint must be 'ssh'."
            )));
        }
        Ok(_) => {
            return Err(invalid(format!(
                "The SSH server URI '{uri}' is not valid: it has no host."
            )));
        }
        Err(e) => {
            return Err(invalid(format!(
                "The SSH server URI '{uri}' is not valid: {e}"
            )));
        }
    }
    let credentials = tunnel.get("credentials");
    let text = |key: &str| {
        credentials
            .and_then(|c| c.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    match credentials
        .and_then(|c| c.get("type"))
        .and_then(|t| t.as_str())
    {
        // `plain` is Ditto's type (`UserPasswordCredentials.TYPE`); its documentation says
        // `password`, which Ferrule takes too.
        Some("plain") | Some("password") => {
            if text("username").is_empty() {
                return Err(invalid("SSH tunnel username must not be empty."));
            }
            if text("password").is_empty() {
                return Err(invalid("SSH tunnel password must not be empty."));
            }
        }
        Some("public-key") => {}
        Some(t @ ("client-cert" | "hmac" | "oauth-client-credentials" | "oauth-password")) => {
            return Err(invalid(format!(
                "Credentials type {t} cannot be used for an ssh tunnel."
            )));
        }
        Some(other) => {
            return Err(invalid(format!(
                "The SSH tunnel credentials type '{other}' is unknown."
            ))
            .with_description("Use 'plain' or 'public-key'."));
        }
        None => {
            return Err(DittoError::json_field_missing(
                "/sshTunnel/credentials/type",
            ));
        }
    }
    let validate_host = tunnel.get("validateHost").and_then(|v| v.as_bool()) == Some(true);
    let no_fingerprints = tunnel
        .get("knownHosts")
        .and_then(|k| k.as_array())
        .is_none_or(|k| k.is_empty());
    if validate_host && no_fingerprints {
        return Err(invalid(
            "Specify at least one fingerprint if host validation is enabled.",
        ));
    }
    if enabled {
        return Err(invalid("SSH tunnels are not supported by Ferrule.").with_description(
            "Set sshTunnel.enabled to false, or reach the broker directly or through a tunnel set up outside Ferrule.",
        ));
    }
    Ok(())
}

/// The per-protocol validators (`Mqtt3Validator`, `Mqtt5Validator`, ...).
fn protocol_rules(c: &Connection) -> Result<(), DittoError> {
    if c.connection_type == ConnectionType::HttpPush {
        return http_push_rules(c);
    }
    if !c.connection_type.is_mqtt() {
        return Ok(());
    }
    let mqtt3 = c.connection_type == ConnectionType::Mqtt;
    if mqtt3 && c.client_count > 1 {
        return Err(invalid("Client count limited to 1 for MQTT 3.1.1 connections.").with_description(
            "MQTT 3.1.1 does not support load-balancing; starting more than 1 client will only result in duplicate incoming messages.",
        ));
    }
    for (index, source) in c.sources.iter().enumerate() {
        let name = format!("Source of index {index} of connection '{}'", c.id);
        mqtt_source_rules(source, &name, mqtt3)?;
    }
    for target in &c.targets {
        let name = format!(
            "Target of address '{}' of connection '{}'",
            target.address, c.id
        );
        mqtt_target_rules(target, &name, mqtt3)?;
    }
    Ok(())
}

/// Ditto's `HttpPushValidator`: no sources; target addresses `<METHOD>:<path>`.
fn http_push_rules(c: &Connection) -> Result<(), DittoError> {
    if !c.sources.is_empty() {
        return Err(invalid(
            "A connection of type 'http-push' may not have any source.",
        ));
    }
    let methods = ferrule_transport::http::METHODS.join(", ");
    for target in &c.targets {
        let prefix = format!(
            "Target of address '{}' of connection '{}':",
            target.address, c.id
        );
        match target.address.split_once(':') {
            None => {
                return Err(invalid(format!(
                    "{prefix} Target address has invalid format. Expect '<VERB>:/<path>', for example 'POST:/api'."
                ))
                .with_description(format!("Supported methods are: {methods}")));
            }
            Some((method, _)) if !ferrule_transport::http::METHODS.contains(&method) => {
                return Err(
                    invalid(format!("{prefix} The method '{method}' is not supported"))
                        .with_description(format!("Supported methods are: {methods}")),
                );
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_qos(qos: Option<i64>, kind: &str, name: &str) -> Result<(), DittoError> {
    match qos {
        None => Err(invalid(format!(
            "MQTT {kind} <{name}> must contain QoS value."
        ))),
        Some(q) if !(0..=2).contains(&q) => Err(invalid(format!(
            "Invalid value '{q}' for configuration 'qos' in {name}"
        ))
        .with_description("The MQTT QoS must be 0, 1 or 2.")),
        Some(_) => Ok(()),
    }
}

const MQTT3_TARGET_HEADERS: [&str; 3] = ["mqtt.topic", "mqtt.qos", "mqtt.retain"];

fn mqtt_source_rules(source: &Source, name: &str, mqtt3: bool) -> Result<(), DittoError> {
    check_qos(source.qos, "Source", name)?;
    if mqtt3 && source.consumer_count > 1 {
        return Err(invalid(
            "Consumer count limited to 1 for MQTT 3.1.1 connections.",
        ));
    }
    for filter in &source.addresses {
        if let Err(reason) = check_topic_filter(filter) {
            return Err(invalid(format!(
                "The provided topic '{filter}' is not valid: {reason}"
            )));
        }
    }
    if let Some(enforcement) = &source.enforcement
        && compact(&enforcement.input) != "{{source:address}}"
        && (mqtt3 || !compact(&enforcement.input).starts_with("{{header:"))
    {
        return Err(invalid(format!(
            "The enforcement input '{}' of {name} is not supported for MQTT.",
            enforcement.input
        ))
        .with_description(if mqtt3 {
            "MQTT 3.1.1 sources support only the enforcement input {{ source:address }}."
        } else {
            "MQTT 5 sources support the enforcement inputs {{ source:address }} and {{ header:<name> }}."
        }));
    }
    if mqtt3 {
        if let Some(subject) = source
            .authorization_context
            .iter()
            .find(|s| !header_names(s).is_empty())
        {
            return Err(invalid(format!(
                "The authorization subject '{subject}' of {name} uses a header placeholder, but MQTT 3.1.1 messages have no headers."
            )));
        }
        for (key, value) in &source.header_mapping {
            if let Some(header) = header_names(value)
                .into_iter()
                .find(|h| !h.starts_with("mqtt."))
            {
                return Err(invalid(format!(
                    "The source header mapping '{key}' of {name} uses the header '{header}', which MQTT 3.1.1 messages do not have."
                ))
                .with_description("MQTT 3.1.1 messages have only the headers mqtt.topic, mqtt.qos and mqtt.retain."));
            }
        }
        if let Some(reply) = &source.reply_target {
            check_mqtt3_target_headers(reply.header_mapping.keys())?;
            for (key, value) in &reply.header_mapping {
                check_template(
                    value,
                    scopes::MQTT3_TARGET_HEADER_VALUES,
                    &format!("{name} replyTarget headerMapping '{key}'"),
                )?;
            }
        }
    }
    Ok(())
}

fn mqtt_target_rules(target: &Target, name: &str, mqtt3: bool) -> Result<(), DittoError> {
    check_qos(target.qos, "Target", name)?;
    let without_placeholders = strip_placeholders(&target.address);
    for (wildcard, label) in [
        ('#', "multi level wildcard (#)"),
        ('+', "single level wildcard (+)"),
    ] {
        if let Some(i) = without_placeholders.find(wildcard) {
            return Err(invalid(format!(
                "The provided topic '{}' is not valid: Topic [{}] must not contain {label}, found at index {i}.",
                target.address, target.address
            )));
        }
    }
    if mqtt3 {
        check_mqtt3_target_headers(target.header_mapping.keys())?;
        for (key, value) in &target.header_mapping {
            check_template(
                value,
                scopes::MQTT3_TARGET_HEADER_VALUES,
                &format!("{name} headerMapping '{key}'"),
            )?;
        }
    }
    Ok(())
}

fn check_mqtt3_target_headers<'a>(
    mut keys: impl Iterator<Item = &'a String>,
) -> Result<(), DittoError> {
    if let Some(key) = keys.find(|k| !MQTT3_TARGET_HEADERS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "The header '{key}' is not allowed in MQTT 3.1.1 target header mapping."
        ))
        .with_description("The following headers are allowed and are directly applied to the published MQTT message: [mqtt.topic, mqtt.qos, mqtt.retain]"));
    }
    Ok(())
}

/// MQTT topic filter rules: `#` only as the whole last level, `+` only as a whole level.
fn check_topic_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("Topic filter must not be empty.".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let mut index = 0;
    for (n, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || n + 1 != levels.len()) {
            return Err(format!(
                "Topic filter [{filter}] contains misplaced wildcard characters. Multi level wildcard (#) must be the last character."
            ));
        }
        if level.contains('+') && *level != "+" {
            let at = index + level.find('+').unwrap_or(0);
            return Err(format!(
                "Topic filter [{filter}] contains misplaced wildcard characters. Wildcard (+) at index {at} must follow a topic level separator and be followed by one."
            ));
        }
        index += level.len() + 1;
    }
    Ok(())
}

/// Removes `{{ ... }}` expressions, leaving the literal parts of a template.
fn strip_placeholders(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => rest = &rest[start + end + 2..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The header names a template reads through `header:<name>` inside `{{ }}`.
fn header_names(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let expr = &rest[start + 2..start + end];
        let mut search = expr;
        while let Some(at) = search.find("header:") {
            let name: String = search[at + 7..]
                .chars()
                .take_while(|ch| !ch.is_whitespace() && !matches!(ch, '|' | ')' | ',' | '}'))
                .collect();
            names.push(name);
            search = &search[at + 7..];
        }
        rest = &rest[start + end + 2..];
    }
    names
}

fn compact(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

fn mapping_rules(c: &Connection, limits: &ValidationLimits) -> Result<(), DittoError> {
    for (id, definition) in &c.mapping_definitions {
        if id.trim().is_empty() {
            return Err(invalid("A mapping definition has an empty ID."));
        }
        if !mapping::is_engine(&definition.mapping_engine) {
            return Err(invalid(format!(
                "The mapping definition <{id}> uses the unknown mappingEngine <{}>.",
                definition.mapping_engine
            ))
            .with_description(format!("Use one of: {}.", mapping::ENGINES.join(", "))));
        }
    }
    let check = |mappings: &[String], what: String| -> Result<(), DittoError> {
        if mappings.len() > limits.max_mappers {
            return Err(invalid("The number of configured payload mappings exceeded the limit.")
                .with_description(format!(
                    "The number of configured payload mappings for the {what} is above the limit of {}.",
                    limits.max_mappers
                )));
        }
        if let Some(unknown) = mappings
            .iter()
            .find(|m| !c.mapping_definitions.contains_key(*m) && !mapping::is_alias(m))
        {
            let defined: Vec<&str> = c.mapping_definitions.keys().map(String::as_str).collect();
            return Err(invalid(format!("The mapper <{unknown}> could not be loaded."))
                .with_description(format!(
                    "Make sure to only use either the specified mappingDefinitions names [{}] or fallback mapper names [{}].",
                    defined.join(", "),
                    mapping::ALIASES.join(", ")
                )));
        }
        Ok(())
    };
    for source in &c.sources {
        let addresses: Vec<&str> = source.addresses.iter().map(String::as_str).collect();
        check(
            &source.payload_mapping,
            format!("source with address {}", addresses.join(",")),
        )?;
    }
    for target in &c.targets {
        check(
            &target.payload_mapping,
            format!("target with address {}", target.address),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse::connection_from_object;
    use serde_json::{Value, json};

    fn mqtt() -> Value {
        json!({
            "id": "m1", "connectionType": "mqtt", "connectionStatus": "closed",
            "uri": "tcp://localhost:1883",
            "sources": [{"addresses": ["devices/+/telemetry", "a/#"], "qos": 1,
                         "authorizationContext": ["ditto:inbound"]}],
            "targets": [{"address": "events/{{ thing:id }}", "topics": ["_/_/things/twin/events"],
                         "qos": 0, "authorizationContext": ["ditto:outbound"]}]
        })
    }

    fn check(v: Value) -> Result<Connection, DittoError> {
        let mut c = connection_from_object(v.as_object().unwrap().clone())?;
        validate(&mut c, &ValidationLimits::default())?;
        Ok(c)
    }

    fn message(v: Value) -> String {
        check(v).unwrap_err().message
    }

    #[test]
    fn a_valid_mqtt_connection_passes() {
        check(mqtt()).unwrap();
    }

    /// Ditto's `ResponseDiversionValidatorTest`, re-expressed.
    #[test]
    fn response_diversion_rules() {
        let source = |mapping: Value, specific: Value| {
            let mut v = mqtt();
            v["sources"][0]["headerMapping"] = mapping;
            v["specificConfig"] = specific;
            v
        };
        let on = json!({"is-diversion-source": "true"});
        check(source(
            json!({"divert-response-to-connection": "webhook",
                   "divert-expected-response-types": "response, error,nack"}),
            on.clone(),
        ))
        .unwrap();
        assert_eq!(
            message(source(
                json!({"divert-response-to-connection": "webhook",
                       "divert-expected-response-types": "response,events"}),
                on.clone(),
            )),
            "Invalid response type in <divert-expected-response-types>: events. Valid types \
             are: response, error, nack"
        );
        assert!(
            message(source(
                json!({"divert-response-to-connection": " "}),
                on.clone()
            ))
            .contains("must not be empty")
        );
        assert!(
            message(source(
                json!({"divert-response-to-connection": "no/such id"}),
                json!({})
            ))
            .starts_with("Invalid target connection ID format")
        );
        assert!(
            message(source(json!({"divert-response-to-connection": "m1"}), on))
                .starts_with("It is pointless to divert responses to the originating connection")
        );

        let mut target = mqtt();
        target["specificConfig"] = json!({"is-diversion-target": "true",
            "authorized-connections-as-sources": "devices, other"});
        assert!(
            message(target.clone()).contains("no topics must be configured in targets"),
            "a diversion target's targets take no topics"
        );
        target["targets"][0]["topics"] = json!([]);
        check(target.clone()).unwrap();
        target["specificConfig"]["authorized-connections-as-sources"] = json!("ok, not ok");
        assert_eq!(
            check(target).unwrap_err().error,
            "connectivity:connection.id.invalid"
        );
        // Ditto takes a target without topics anywhere; it is given nothing.
        let mut v = mqtt();
        v["targets"][0]["topics"] = json!([]);
        check(v).unwrap();
    }

    #[test]
    fn ids() {
        assert!(is_valid_connection_id("a-b_c:d"));
        assert!(is_valid_connection_id(&"x".repeat(100)));
        assert!(!is_valid_connection_id(&"x".repeat(101)));
        assert!(!is_valid_connection_id(""));
        assert!(!is_valid_connection_id("a b"));
        assert!(!is_valid_connection_id("a/b"));
    }

    #[test]
    fn model_rules_hold() {
        let mut v = mqtt();
        v["sources"] = json!([]);
        v["targets"] = json!([]);
        assert_eq!(
            message(v),
            "Either a source or a target must be specified in the configuration of a connection!"
        );
        let mut v = mqtt();
        v["sources"][0]["authorizationContext"] = json!([]);
        v["targets"][0]["authorizationContext"] = json!([]);
        assert_eq!(
            message(v),
            "The Sources [devices/+/telemetry, a/#] and Targets [events/{{ thing:id }}] are missing an authorization context."
        );
        let mut v = mqtt();
        v["clientCount"] = json!(0);
        assert!(message(v).contains("clientCount"));
    }

    #[test]
    fn mqtt3_rules_hold() {
        let mut v = mqtt();
        v["clientCount"] = json!(2);
        assert_eq!(
            message(v),
            "Client count limited to 1 for MQTT 3.1.1 connections."
        );
        let mut v = mqtt();
        v["sources"][0]["consumerCount"] = json!(2);
        assert_eq!(
            message(v),
            "Consumer count limited to 1 for MQTT 3.1.1 connections."
        );
        let mut v = mqtt();
        v["sources"][0].as_object_mut().unwrap().remove("qos");
        assert_eq!(
            message(v),
            "MQTT Source <Source of index 0 of connection 'm1'> must contain QoS value."
        );
        let mut v = mqtt();
        v["targets"][0]["qos"] = json!(3);
        assert!(message(v).starts_with("Invalid value '3' for configuration 'qos'"));
        let mut v = mqtt();
        v["targets"][0]["headerMapping"] = json!({"correlation-id": "x"});
        assert_eq!(
            message(v),
            "The header 'correlation-id' is not allowed in MQTT 3.1.1 target header mapping."
        );
        let mut v = mqtt();
        v["targets"][0]["headerMapping"] = json!({"mqtt.retain": "true"});
        check(v).unwrap();
        let mut v = mqtt();
        v["sources"][0]["addresses"] = json!(["a/#/b"]);
        assert!(message(v).contains("Multi level wildcard (#) must be the last character"));
        let mut v = mqtt();
        v["sources"][0]["addresses"] = json!(["a/b+"]);
        assert!(message(v).contains("Wildcard (+) at index 3"));
        let mut v = mqtt();
        v["targets"][0]["address"] = json!("a/+/b");
        assert!(
            message(v).contains("must not contain single level wildcard (+), found at index 2")
        );
        let mut v = mqtt();
        v["sources"][0]["headerMapping"] = json!({"device": "{{ header:device_id }}"});
        assert!(message(v).contains("uses the header 'device_id'"));
        let mut v = mqtt();
        v["sources"][0]["headerMapping"] = json!({"topic": "{{ header:mqtt.topic | fn:lower() }}"});
        check(v).unwrap();
    }

    #[test]
    fn mqtt5_allows_more() {
        let mut v = mqtt();
        v["connectionType"] = json!("mqtt-5");
        v["clientCount"] = json!(2);
        v["targets"][0]["headerMapping"] = json!({"correlation-id": "{{ header:correlation-id }}"});
        v["sources"][0]["enforcement"] =
            json!({"input": "{{ header:device }}", "filters": ["{{ thing:id }}"]});
        check(v).unwrap();
        let mut v = mqtt();
        v["connectionType"] = json!("mqtt-5");
        v["sources"][0].as_object_mut().unwrap().remove("qos");
        assert!(message(v).contains("must contain QoS value"));
    }

    #[test]
    fn uri_rules_hold() {
        let mut v = mqtt();
        v["uri"] = json!("amqp://localhost:5672");
        let e = check(v).unwrap_err();
        assert_eq!(e.error, "connectivity:connection.uri.invalid");
        assert_eq!(
            e.message,
            "The URI scheme 'amqp' is not valid for MQTT 3.1.1."
        );
        assert_eq!(
            e.description.as_deref(),
            Some("Accepted URI schemes are: tcp, ssl")
        );
        for uri in ["tcp://localhost", "tcp://localhost:1883/?x=1"] {
            let mut v = mqtt();
            v["uri"] = json!(uri);
            let e = check(v).unwrap_err();
            assert_eq!(e.error, "connectivity:connection.uri.invalid", "{uri}");
            assert!(e.message.contains("has an invalid format"), "{e:?}");
        }
        let mut v = mqtt();
        v["uri"] = json!("not a uri");
        assert_eq!(
            check(v).unwrap_err().error,
            "connectivity:connection.uri.invalid"
        );
        let mut v = mqtt();
        v["ca"] = json!("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
        let e = check(v).unwrap_err();
        assert_eq!(e.error, "connectivity:connection.uri.invalid");
        assert!(e.message.contains("insecure protocol"));
        let mut v = mqtt();
        v["uri"] = json!("ssl://localhost:8883");
        v["ca"] = json!("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
        check(v).unwrap();
    }

    #[test]
    fn unsupported_types_are_rejected() {
        let mut v = mqtt();
        v["connectionType"] = json!("hono");
        assert_eq!(
            message(v),
            "The connection type 'hono' is not supported by Ferrule."
        );
    }

    #[test]
    fn ack_labels_must_carry_the_connection_id() {
        let mut v = mqtt();
        v["sources"][0]["declaredAcks"] = json!([
            "m1:good",
            "{{connection:id}}:fine",
            "{{ connection:id }}:ok"
        ]);
        v["targets"][0]["issuedAcknowledgementLabel"] = json!("{{connection:id}}:delivered");
        check(v).unwrap();
        let mut v = mqtt();
        v["sources"][0]["declaredAcks"] = json!(["other:bad"]);
        let e = check(v).unwrap_err();
        assert_eq!(e.error, "acknowledgement:label.invalid");
        assert_eq!(e.message, "Acknowledgement label <other:bad> is invalid.");
        let mut v = mqtt();
        v["targets"][0]["issuedAcknowledgementLabel"] = json!("m1:");
        assert_eq!(check(v).unwrap_err().error, "acknowledgement:label.invalid");
        let mut v = mqtt();
        let t = v["targets"][0].clone();
        v["targets"] = json!([t.clone(), t]);
        v["targets"][0]["issuedAcknowledgementLabel"] = json!("m1:x");
        v["targets"][1]["issuedAcknowledgementLabel"] = json!("{{connection:id}}:x");
        let e = check(v).unwrap_err();
        assert_eq!(e.error, "acknowledgement:label.not.unique");
        assert_eq!(
            e.status.as_u16(),
            409,
            "AcknowledgementLabelNotUniqueException"
        );
    }

    #[test]
    fn topics_are_checked_and_normalised() {
        let mut v = mqtt();
        v["targets"][0]["topics"] = json!(["_/_/things/twin/events?filter=eq(a,1)&namespaces=x"]);
        let c = check(v).unwrap();
        assert_eq!(
            c.targets[0].topics.first().unwrap(),
            "_/_/things/twin/events?namespaces=x&filter=eq(a,1)"
        );
        let mut v = mqtt();
        v["targets"][0]["topics"] = json!(["_/_/things/foo"]);
        assert_eq!(check(v).unwrap_err().error, "connectivity:topic.invalid");
        let mut v = mqtt();
        v["connectionType"] = json!("mqtt-5");
        v["clientCount"] = json!(2);
        v["targets"][0]["topics"] = json!(["_/_/connections/announcements"]);
        assert!(message(v).contains("can only be used with client count 1"));
    }

    #[test]
    fn payload_mappings_must_resolve() {
        let mut v = mqtt();
        v["mappingDefinitions"] = json!({"js": {"mappingEngine": "JavaScript", "options": {}}});
        v["sources"][0]["payloadMapping"] = json!(["js", "Ditto", "Normalized"]);
        check(v).unwrap();
        let mut v = mqtt();
        v["sources"][0]["payloadMapping"] = json!(["nope"]);
        let e = check(v).unwrap_err();
        assert_eq!(e.message, "The mapper <nope> could not be loaded.");
        let mut v = mqtt();
        v["sources"][0]["payloadMapping"] = json!(["JavaScript"]);
        assert_eq!(message(v), "The mapper <JavaScript> could not be loaded.");
        let mut v = mqtt();
        v["mappingDefinitions"] = json!({"x": {"mappingEngine": "Lua", "options": {}}});
        assert!(message(v).contains("unknown mappingEngine <Lua>"));
        let mut v = mqtt();
        v["targets"][0]["payloadMapping"] = json!(vec!["Ditto"; 11]);
        assert_eq!(
            message(v),
            "The number of configured payload mappings exceeded the limit."
        );
    }

    #[test]
    fn placeholders_must_be_known_where_they_stand() {
        // Ditto's validateTemplate: every placeholder error is a configuration error.
        const INVALID: &str = "connectivity:connection.configuration.invalid";
        let mut v = mqtt();
        v["targets"][0]["address"] = json!("events/{{ thing:nope }}");
        assert_eq!(check(v).unwrap_err().error, INVALID);
        let mut v = mqtt();
        v["targets"][0]["address"] = json!("events/{{ source:address }}");
        assert_eq!(check(v).unwrap_err().error, INVALID);
        let mut v = mqtt();
        v["targets"][0]["address"] = json!("events/{{ thing:id | fn:frobnicate() }}");
        let e = check(v).unwrap_err();
        assert_eq!(e.error, INVALID);
        assert!(e.message.contains("frobnicate"), "{e:?}");
        let mut v = mqtt();
        v["sources"][0]["enforcement"] =
            json!({"input": "{{ nope:x }}", "filters": ["{{ thing:id }}"]});
        assert_eq!(check(v).unwrap_err().error, INVALID);
        let mut v = mqtt();
        v["sources"][0]["headerMapping"] = json!({"x": "{{ header:a | fn:nope() }}"});
        assert_eq!(check(v).unwrap_err().error, INVALID);
        let mut v = mqtt();
        v["targets"][0]["address"] =
            json!("events/{{ thing:namespace }}/{{ thing:name | fn:lower() }}");
        check(v).unwrap();
        let mut v = mqtt();
        v["sources"][0]["enforcement"] =
            json!({"input": "{{ source:address }}", "filters": ["devices/{{ thing:name }}"]});
        check(v).unwrap();
        let mut v = mqtt();
        v["sources"][0]["enforcement"] =
            json!({"input": "{{ source:address }}", "filters": ["{{ header:x }}"]});
        assert!(message(v).starts_with("Source 0 enforcement filter"));
        let mut v = mqtt();
        v["sources"][0]["acknowledgementRequests"] =
            json!({"includes": [], "filter": "fn:filter(header:mqtt.qos,'ne','0')"});
        check(v).unwrap();
        let mut v = mqtt();
        v["sources"][0]["acknowledgementRequests"] =
            json!({"includes": [], "filter": "fn:filter(header:mqtt.qos,'ne'"});
        assert!(check(v).is_err());
        let mut v = mqtt();
        v["mappingDefinitions"] = json!({"d": {"mappingEngine": "Ditto", "options": {},
            "incomingConditions": {"c": "fn:filter(bogus:x,'eq','y')"}}});
        assert_eq!(check(v).unwrap_err().error, INVALID);
    }

    #[test]
    fn addresses_limits_and_tunnels() {
        let mut v = mqtt();
        v["sources"][0]["addresses"] = json!([""]);
        assert_eq!(
            message(v),
            "Source 0 of connection <m1>: addresses may not be empty."
        );
        let mut v = mqtt();
        let s = v["sources"][0].clone();
        v["sources"] = json!([s.clone(), s.clone(), s.clone(), s.clone(), s]);
        assert!(message(v).contains("number of sources (5)"));
        let tunnel = json!({"enabled": false, "uri": "ssh://h:22",
                            "credentials": {"type": "password", "username": "u", "password": "p"}});
        let mut v = mqtt();
        v["sshTunnel"] = tunnel.clone();
        check(v).unwrap();
        let mut v = mqtt();
        v["sshTunnel"] = tunnel.clone();
        v["sshTunnel"]["enabled"] = json!(true);
        assert!(message(v).contains("SSH tunnels are not supported"));
        // Ditto's `SshTunnelValidator`: type `plain`, non-empty user and password, ssh URIs,
        // a fingerprint when the host is validated, no other credentials types.
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = mqtt();
            v["sshTunnel"] = tunnel.clone();
            f(&mut v["sshTunnel"]);
            check(v).map(|_| ()).map_err(|e| e.message)
        };
        assert_eq!(with(&|t| t["credentials"]["type"] = json!("plain")), Ok(()));
        assert_eq!(
            with(&|t| t["credentials"]["password"] = json!("")),
            Err("SSH tunnel password must not be empty.".into())
        );
        assert_eq!(
            with(&|t| t["credentials"]["username"] = json!("")),
            Err("SSH tunnel username must not be empty.".into())
        );
        assert_eq!(
            with(&|t| t["uri"] = json!("http://h:22")),
            Err("The SSH server URI 'http://h:22' is not valid: The scheme for the ssh endpoint must be 'ssh'.".into())
        );
        assert_eq!(
            with(&|t| t["credentials"] = json!({"type": "hmac", "algorithm": "az-sasl"})),
            Err("Credentials type hmac cannot be used for an ssh tunnel.".into())
        );
        assert_eq!(
            with(&|t| {
                t["validateHost"] = json!(true);
                t["knownHosts"] = json!([]);
            }),
            Err("Specify at least one fingerprint if host validation is enabled.".into())
        );
        assert_eq!(
            with(&|t| {
                t["validateHost"] = json!(true);
                t["knownHosts"] = json!(["MD5:e0:3a"]);
            }),
            Ok(())
        );
        let mut v = mqtt();
        v["credentials"] = json!({"type": "magic"});
        assert!(message(v).contains("credentials type 'magic'"));
    }

    #[test]
    fn protocol_placeholder_rules_follow_dittos_validators() {
        // AmqpValidator / RabbitMQValidator: the enforcement input is a header.
        for kind in ["amqp-091", "amqp-10"] {
            let mut v = mqtt();
            v["connectionType"] = json!(kind);
            v["uri"] = json!("amqp://h:5672");
            v["sources"][0]["qos"] = json!(null);
            v["targets"][0]["address"] = json!("ex/key");
            v["sources"][0]["enforcement"] =
                json!({"input": "{{ source:address }}", "filters": ["{{ thing:id }}"]});
            let e = check(v.clone()).unwrap_err();
            assert_eq!(
                e.error, "connectivity:connection.configuration.invalid",
                "{kind}"
            );
            assert!(
                e.message.contains("enforcement input"),
                "{kind}: {}",
                e.message
            );
            v["sources"][0]["enforcement"]["input"] = json!("{{ header:device_id }}");
            check(v).unwrap();
        }
        // Mqtt3Validator: target header values may use header placeholders only.
        let mut v = mqtt();
        v["targets"][0]["headerMapping"] = json!({"mqtt.topic": "{{ thing:id }}/x"});
        let e = check(v.clone()).unwrap_err();
        assert_eq!(e.error, "connectivity:connection.configuration.invalid");
        assert!(
            e.message.contains("headerMapping 'mqtt.topic'"),
            "{}",
            e.message
        );
        v["targets"][0]["headerMapping"] =
            json!({"mqtt.topic": "{{ header:topic }}", "mqtt.qos": "1"});
        check(v.clone()).unwrap();
        v["connectionType"] = json!("mqtt-5");
        v["targets"][0]["headerMapping"] = json!({"mqtt.topic": "{{ thing:id }}/x"});
        check(v).unwrap();
    }

    #[test]
    fn credentials_must_suit_the_connection_type() {
        let hmac = json!({"type": "hmac", "algorithm": "az-sasl",
                          "parameters": {"sharedKeyName": "k", "sharedKey": "c2VjcmV0"}});
        let mut v = mqtt();
        v["credentials"] = hmac.clone();
        assert_eq!(
            message(v),
            "HMAC credentials are not supported for the connection type."
        );
        let mut v = mqtt();
        v["connectionType"] = json!("amqp-10");
        v["uri"] = json!("amqps://u:p@hub.example:5671");
        v["credentials"] = hmac.clone();
        assert_eq!(
            message(v),
            "There are conflicting authentication mechanisms."
        );
        let mut v = mqtt();
        v["connectionType"] = json!("amqp-10");
        v["uri"] = json!("amqps://hub.example:5671");
        v["credentials"] = hmac.clone();
        v["credentials"]["algorithm"] = json!("md5");
        assert_eq!(message(v), "Unsupported HMAC algorithm: md5");
        let mut v = mqtt();
        v["connectionType"] = json!("amqp-10");
        v["uri"] = json!("amqps://hub.example:5671");
        v["credentials"] = hmac;
        assert!(message(v).contains("not supported by Ferrule"));
        for oauth in ["oauth-client-credentials", "oauth-password"] {
            let mut v = mqtt();
            v["credentials"] = json!({"type": oauth, "tokenEndpoint": "https://a.example/token",
                                      "clientId": "c", "clientSecret": "s", "requestedScopes": "x"});
            let e = check(v).unwrap_err();
            assert_eq!(e.error, "connectivity:connection.configuration.invalid");
            assert_eq!(
                e.message,
                "OAuth client credentials are only supported for HTTP connection type."
            );
        }
    }
}

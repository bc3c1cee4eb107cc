//! Configuration: command-line flags, then environment variables, then the TOML file, then the
//! built-in defaults (examples/ferrule.toml lists every key with its default).

use crate::cluster::ClusterConfig;
use crate::mappers::MapperConfig;
use crate::mapping::JavaScriptConfig;
use crate::model::ValidationLimits;
use crate::monitoring::fluentd::PublisherConfig;
use crate::monitoring::logs::LogLimits;
use crate::monitoring::prometheus::PrometheusConfig;
use crate::runtime::RuntimeConfig;
use crate::runtime::hosts::HostRules;
use crate::store::EncryptionConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./ferrule-data";

/// The TOML file. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// The `devops` user's password. `FERRULE_DEVOPS_PASSWORD` overrides it.
    pub devops_password: Option<String>,
    pub http: HttpConfig,
    pub limits: ValidationLimits,
    pub hosts: HostRules,
    pub logs: LogLimits,
    pub runtime: RuntimeConfig,
    pub mappers: MapperConfig,
    pub javascript: JavaScriptConfig,
    pub prometheus: PrometheusConfig,
    pub log_publisher: PublisherConfig,
    pub encryption: EncryptionConfig,
    /// Cluster mode: several instances on PostgreSQL and NATS. Absent: one embedded instance.
    pub cluster: Option<ClusterConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Request bodies above this size are answered with 413.
    pub max_body_bytes: usize,
    /// `GET /api/2/connections` refuses to list more connections than this (ids-only works).
    pub connections_retrieve_limit: usize,
    /// A client that has not sent a whole request head within this time is disconnected.
    pub header_read_timeout_ms: u64,
    /// A request body that has not arrived whole within this time is answered with 408.
    pub body_read_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 1024 * 1024,
            connections_retrieve_limit: 100,
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 60_000,
        }
    }
}

/// The resolved configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub devops_password: Option<String>,
    pub http: HttpConfig,
    pub limits: ValidationLimits,
    pub hosts: HostRules,
    pub logs: LogLimits,
    pub runtime: RuntimeConfig,
    pub mappers: MapperConfig,
    pub javascript: JavaScriptConfig,
    pub prometheus: PrometheusConfig,
    pub log_publisher: PublisherConfig,
    pub encryption: EncryptionConfig,
    pub cluster: Option<ClusterConfig>,
}

/// What the command line (and clap's environment fallback) gave.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub bind: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    pub devops_password: Option<String>,
}

impl Config {
    /// The configuration from `overrides`, the process environment, the file and the defaults.
    pub fn resolve(overrides: Overrides) -> anyhow::Result<Config> {
        Config::resolve_with(overrides, std::env::vars())
    }

    /// As [`Config::resolve`], with the environment given: `FERRULE_<SECTION>__<KEY>` sets
    /// `<key>` of `[<section>]` (e.g. `FERRULE_RUNTIME__MAX_TRIES=5`) over the file.
    pub fn resolve_with(
        overrides: Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table = match &overrides.config_file {
            Some(path) => read_table(path)?,
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let file: FileConfig = toml::Value::Table(table).try_into().map_err(|e| {
            anyhow::anyhow!(
                "the configuration is not valid{}: {e}",
                overrides
                    .config_file
                    .as_ref()
                    .map(|p| format!(" ({} and FERRULE_*__* variables)", p.display()))
                    .unwrap_or_default()
            )
        })?;
        file.limits
            .check()
            .map_err(|e| anyhow::anyhow!("the configuration is not valid: {e}"))?;
        file.hosts
            .check_config()
            .map_err(|e| anyhow::anyhow!("the configuration is not valid: {e}"))?;
        if let Some(cluster) = &file.cluster {
            cluster
                .check()
                .map_err(|e| anyhow::anyhow!("the configuration is not valid: {e}"))?;
        }
        let bind_text = overrides
            .bind
            .or(file.bind)
            .unwrap_or_else(|| DEFAULT_BIND.to_string());
        let bind = bind_text.parse().map_err(|e| {
            anyhow::anyhow!("the bind address '{bind_text}' is not an IP:port address: {e}")
        })?;
        Ok(Config {
            bind,
            data_dir: overrides
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            devops_password: overrides
                .devops_password
                .filter(|p| !p.is_empty())
                .or(file.devops_password),
            http: file.http,
            limits: file.limits,
            hosts: file.hosts,
            logs: file.logs,
            runtime: file.runtime,
            mappers: file.mappers,
            javascript: file.javascript,
            prometheus: file.prometheus,
            log_publisher: file.log_publisher,
            encryption: file.encryption,
            cluster: file.cluster,
        })
    }
}

fn read_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the config file {}: {e}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("the config file {} is not valid: {e}", path.display()))
}

/// The prefix of the environment variables that set keys of the file's sections.
pub const ENV_PREFIX: &str = "FERRULE_";

/// Variables whose value is a string even where it reads as a number (`node_id = 1`).
const STRING_ENV: &[&str] = &[
    "FERRULE_CLUSTER__NODE_ID",
    "FERRULE_CLUSTER__POSTGRES_URL",
    "FERRULE_CLUSTER__NATS_URL",
];

/// Sets `[section] key` for every `FERRULE_SECTION__KEY=value`: the value as TOML (a number, a
/// boolean, a quoted string) where it parses as one, else as a string.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (name, raw) in env {
        // Ditto's variables of the Fluentd log publisher and of the JavaScript limits.
        let ditto = crate::monitoring::fluentd::ENV
            .iter()
            .find(|(var, _)| *var == name)
            .map(|(_, key)| ("log_publisher".to_string(), key.to_string()))
            .or_else(|| {
                crate::mapping::JAVASCRIPT_ENV
                    .iter()
                    .find(|(var, _)| *var == name)
                    .map(|(_, key)| ("javascript".to_string(), key.to_string()))
            })
            .or_else(|| {
                crate::runtime::hosts::ENV
                    .iter()
                    .find(|(var, _)| *var == name)
                    .map(|(_, key)| ("hosts".to_string(), key.to_string()))
            });
        let raw = if name == "CONNECTIVITY_LOGGER_PUBLISHER_LOG_LEVELS" {
            let levels: Vec<String> = raw
                .split(',')
                .map(|l| format!("{:?}", l.trim().to_ascii_lowercase()))
                .collect();
            format!("[{}]", levels.join(", "))
        } else if [
            "CONNECTIVITY_MESSAGE_MAPPING_JS_MAX_EXECUTION_TIME",
            "CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_CONNECTION_TIMEOUT",
            "CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_READ_TIMEOUT",
        ]
        .contains(&name.as_str())
        {
            // Ditto gives a duration (`500ms`, `2s`); the key is in milliseconds.
            match crate::hub::acks::parse_timeout(&raw) {
                Some(d) => d.as_millis().to_string(),
                None => raw,
            }
        } else if name == "CONNECTIVITY_LOGGER_PUBLISHER_LOG_TAG"
            || name == "CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_HOST"
            || STRING_ENV.contains(&name.as_str())
            || crate::runtime::hosts::ENV
                .iter()
                .any(|(var, _)| *var == name)
        {
            format!("{raw:?}")
        } else {
            raw
        };
        let (section, key) = match ditto {
            Some(section_key) => section_key,
            None => {
                let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                    continue;
                };
                let Some((section, key)) = rest.split_once("__") else {
                    continue;
                };
                (section.to_ascii_lowercase(), key.to_ascii_lowercase())
            }
        };
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            anyhow::bail!("{name}: <{section}> is not a section of the configuration");
        };
        section_table.insert(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_section_comes_from_the_file_or_the_environment() {
        let none = Config::resolve_with(Overrides::default(), Vec::new()).unwrap();
        assert_eq!(none.cluster, None, "no [cluster]: one embedded instance");
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let c = Config::resolve_with(
            Overrides::default(),
            env(&[
                ("FERRULE_CLUSTER__NODE_ID", "7"),
                ("FERRULE_CLUSTER__POSTGRES_URL", "postgres://u@127.0.0.1/f"),
                ("FERRULE_CLUSTER__NATS_URL", "nats://127.0.0.1:4222"),
            ]),
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!((c.node_id.as_str(), c.lease_ttl_ms), ("7", 5000));
        let bad = Config::resolve_with(
            Overrides::default(),
            env(&[
                ("FERRULE_CLUSTER__NODE_ID", "a b"),
                ("FERRULE_CLUSTER__POSTGRES_URL", "postgres://u@127.0.0.1/f"),
                ("FERRULE_CLUSTER__NATS_URL", "nats://127.0.0.1:4222"),
            ]),
        )
        .unwrap_err();
        assert!(bad.to_string().contains("node_id 'a b'"), "{bad}");
        let missing = Config::resolve_with(
            Overrides::default(),
            env(&[("FERRULE_CLUSTER__NODE_ID", "n1")]),
        )
        .unwrap_err();
        assert!(missing.to_string().contains("postgres_url"), "{missing}");
    }

    #[test]
    fn precedence_is_flags_then_file_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:9000\"\ndevops_password = \"fromfile\"\n[http]\nmax_body_bytes = 10\n",
        )
        .unwrap();
        let c = Config::resolve(Overrides {
            config_file: Some(file.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:9000");
        assert_eq!(c.devops_password.as_deref(), Some("fromfile"));
        assert_eq!(c.http.max_body_bytes, 10);
        assert_eq!(c.http.connections_retrieve_limit, 100);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        let c = Config::resolve(Overrides {
            config_file: Some(file),
            bind: Some("127.0.0.1:1".into()),
            devops_password: Some("fromenv".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:1");
        assert_eq!(c.devops_password.as_deref(), Some("fromenv"));
    }

    #[test]
    fn host_rules_come_from_dittos_variables_and_are_checked() {
        let env = [
            ("CONNECTIVITY_CONNECTION_BLOCKED_HOSTNAMES", "localhost"),
            (
                "CONNECTIVITY_CONNECTION_BLOCKED_SUBNETS",
                "11.1.0.0/16,10.0.0.0/8",
            ),
            ("CONNECTIVITY_CONNECTION_ALLOWED_HOSTNAMES", "broker"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let c = Config::resolve_with(Overrides::default(), env).unwrap();
        assert_eq!(c.hosts.blocked_hostnames, "localhost");
        assert_eq!(c.hosts.blocked_subnets, "11.1.0.0/16,10.0.0.0/8");
        assert_eq!(c.hosts.allowed_hostnames, "broker");
        let env = [("FERRULE_HOSTS__BLOCKED_SUBNETS", "10.0.0.0/99")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let e = Config::resolve_with(Overrides::default(), env).unwrap_err();
        assert!(e.to_string().contains("blocked_subnets"), "{e}");
    }

    #[test]
    fn transport_limits_are_checked_when_the_configuration_is_read() {
        let env = [("FERRULE_LIMITS__AMQP091_FRAME_MAX", "100")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let e = Config::resolve_with(Overrides::default(), env).unwrap_err();
        assert!(
            e.to_string()
                .contains("[limits] amqp091_frame_max = 100 is outside 4096"),
            "{e}"
        );
        let env = [("FERRULE_LIMITS__MQTT_MAXIMUM_PACKET_SIZE", "65536")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let c = Config::resolve_with(Overrides::default(), env).unwrap();
        assert_eq!(c.limits.mqtt_maximum_packet_size, 65_536);
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let text = include_str!("../../examples/ferrule.toml");
        let parsed: FileConfig = toml::from_str(text).unwrap();
        assert_eq!(parsed.http, HttpConfig::default());
        assert_eq!(parsed.limits, ValidationLimits::default());
        assert_eq!(parsed.hosts, HostRules::default());
        assert_eq!(parsed.logs, LogLimits::default());
        assert_eq!(parsed.runtime, RuntimeConfig::default());
        assert_eq!(parsed.mappers, MapperConfig::default());
        assert_eq!(parsed.javascript, JavaScriptConfig::default());
        assert_eq!(parsed.prometheus, PrometheusConfig::default());
        assert_eq!(parsed.log_publisher, PublisherConfig::default());
        assert_eq!(parsed.encryption, EncryptionConfig::default());
        assert_eq!(
            parsed.cluster, None,
            "one embedded instance unless [cluster] is given"
        );
        // The commented-out [cluster] section is valid once uncommented.
        let cluster: String = text
            .lines()
            .skip_while(|l| *l != "# [cluster]")
            .map(|l| l.trim_start_matches("# ").to_string() + "\n")
            .collect();
        let parsed: FileConfig = toml::from_str(&cluster).unwrap();
        let c = parsed.cluster.expect("the example has a [cluster] section");
        assert_eq!((c.node_id.as_str(), c.lease_ttl_ms), ("n1", 5000));
        c.check().unwrap();
    }

    #[test]
    fn environment_variables_set_keys_of_the_sections_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        std::fs::write(&file, "[runtime]\nmax_tries = 7\nmin_backoff_ms = 10\n").unwrap();
        let env = [
            ("FERRULE_RUNTIME__MAX_TRIES", "3"),
            ("FERRULE_HTTP__MAX_BODY_BYTES", "2048"),
            ("FERRULE_MAPPERS__MAX_TIMEOUT_MS", "250"),
            ("FERRULE_BIND", "ignored here: clap reads it"),
            ("OTHER__X", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let c = Config::resolve_with(
            Overrides {
                config_file: Some(file),
                ..Default::default()
            },
            env,
        )
        .unwrap();
        assert_eq!(c.runtime.max_tries, 3, "the variable wins over the file");
        assert_eq!(c.runtime.min_backoff_ms, 10, "the file's other keys stay");
        assert_eq!(c.http.max_body_bytes, 2048);
        assert_eq!(c.mappers.max_timeout_ms, 250);

        let c = Config::resolve_with(
            Overrides::default(),
            [
                ("CONNECTIVITY_LOGGER_PUBLISHER_ENABLED", "true"),
                ("CONNECTIVITY_LOGGER_PUBLISHER_LOG_LEVELS", "failure"),
                ("CONNECTIVITY_LOGGER_PUBLISHER_LOG_TAG", "ferrule.logs"),
                (
                    "CONNECTIVITY_LOGGER_PUBLISHER_LOG_HEADERS_AND_PAYLOAD",
                    "true",
                ),
                ("CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_HOST", "fluent.local"),
                ("CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_PORT", "24225"),
                ("CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_SSL_ENABLED", "true"),
                (
                    "CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_CONNECTION_TIMEOUT",
                    "2s",
                ),
                (
                    "CONNECTIVITY_LOGGER_PUBLISHER_FLUENCY_READ_TIMEOUT",
                    "750ms",
                ),
                (
                    "CONNECTIVITY_MESSAGE_MAPPING_JS_MAX_SCRIPT_SIZE_BYTES",
                    "100000",
                ),
                ("CONNECTIVITY_MESSAGE_MAPPING_JS_MAX_EXECUTION_TIME", "2s"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        assert!(c.log_publisher.enabled);
        assert_eq!(c.log_publisher.log_levels, ["failure"]);
        assert_eq!(c.log_publisher.log_tag.as_deref(), Some("ferrule.logs"));
        assert!(c.log_publisher.log_headers_and_payload);
        assert_eq!(c.log_publisher.host, "fluent.local");
        assert_eq!(c.log_publisher.port, 24225);
        assert!(c.log_publisher.ssl_enabled);
        assert_eq!(c.log_publisher.connection_timeout_ms, 2_000);
        assert_eq!(c.log_publisher.read_timeout_ms, 750);
        assert_eq!(c.javascript.max_script_size_bytes, 100_000);
        assert_eq!(c.javascript.max_script_execution_time_ms, 2_000);

        let e = Config::resolve_with(
            Overrides::default(),
            [("FERRULE_RUNTIME__MAX_TRIEZ".to_string(), "3".to_string())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("max_triez"), "{e}");
        let e = Config::resolve_with(
            Overrides::default(),
            [("FERRULE_RUNTIME__MAX_TRIES".to_string(), "many".to_string())],
        )
        .unwrap_err();
        assert!(e.to_string().contains("max_tries"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("bnd = \"x\"").is_err());
    }
}

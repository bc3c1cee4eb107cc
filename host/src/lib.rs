//! Ferrule: a connectivity host compatible with Eclipse Ditto's connection API.
//!
//! | module | owns |
//! |---|---|
//! | [`model`] | the connection JSON: types, defaults, parsing, validation, field selection |
//! | [`conditions`] | `If-Match` / `If-None-Match` against `"rev:N"` entity tags |
//! | [`connections`] | the connection service: create, modify, delete, commands, the live view |
//! | [`store`] | durable connection records behind one trait; the embedded redb default |
//! | [`monitoring`] | connection metrics (sliding windows), connection logs (ring buffers), Prometheus metrics (`GET /metrics`) |
//! | [`mapping`] | the `Mapper` trait, mapping pipelines (`payloadMapping` with conditions), the catalogue of engines, the Ditto mapper |
//! | [`mappers`] | uploaded WebAssembly mapper modules: storage, precompiled cache, hot swap |
//! | [`runtime`] | one supervisor per open connection: clients, sessions (consume → map → hub → reply/settle; route → map → publish), reconnect with backoff, live status, dry-run |
//! | [`api`] | the HTTP routes, devops authentication, request bodies |
//! | [`config`] | flags, environment, TOML file and defaults |
//! | [`server`] | start-up: data directory, devops password, store, listener |
//! | [`hub`] | where signals meet: routing to targets (namespaces, RQL, extra fields), inbound signals to the twin or live subscribers, live responses, acknowledgements and settle decisions, placeholders at run time, enforcement, announcements |
//! | [`twin`] | things: the twin commands at every path level, their responses and events |
//! | [`error`] | Ditto's error JSON |

pub mod api;
pub mod cluster;
pub mod conditions;
pub mod config;
pub mod connections;
pub mod error;
pub mod hub;
pub mod mappers;
pub mod mapping;
pub mod model;
pub mod monitoring;
pub mod runtime;
pub mod server;
pub mod store;
pub mod transfer;
pub mod twin;

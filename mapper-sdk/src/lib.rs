//! # ferrule-mapper-sdk
//!
//! Write a WebAssembly payload mapper for Ferrule (the Eclipse Ditto connectivity API) in plain
//! Rust: implement [`Mapper`] on the same [`DittoMessage`] / [`ExternalMessage`] model the host
//! uses, export it with [`export!`], test it natively with [`testing::Harness`], and build it
//! with `cargo build --target wasm32-wasip2 --release` into a component that implements
//! `wit/mapper.wit` (`ferrule:mapper@0.1.0`, world `mapper`).
//!
//! ```
//! use ferrule_mapper_sdk::prelude::*;
//! use ferrule_mapper_sdk::serde_json::{Map, Value};
//!
//! struct Passthrough;
//!
//! impl Mapper for Passthrough {
//!     fn new(_options: &Map<String, Value>) -> Result<Self, MappingError> {
//!         Ok(Passthrough)
//!     }
//!     // map_inbound / map_outbound default to Ditto Protocol JSON.
//! }
//!
//! ferrule_mapper_sdk::export!(Passthrough);
//! ```
//!
//! | module | for |
//! |---|---|
//! | [`Mapper`], [`export!`] | the mapper and its component exports |
//! | [`ditto`] | [`ThingId`](ditto::ThingId) and typed builders for twin commands and events |
//! | [`payload`] | JSON payloads, a [`ByteReader`](payload::ByteReader), number types by name |
//! | [`options`] | options into a `Deserialize` struct with a clear error |
//! | [`log`] | `debug`/`info`/`warn`/`error` into the connection logs |
//! | [`testing`] | the native harness |
//! | [`wire`] | the WIT records and the conversion rules at the boundary |

// Lets the paths the guest bindings are generated with (`::ferrule_mapper_sdk::…`) resolve
// inside this crate too.
extern crate self as ferrule_mapper_sdk;

/// The component's allocator (feature `talc`, default): a bump arena for what a mapping call
/// allocates, over Talc instead of dlmalloc for everything else (see `arena`).
#[cfg(all(
    feature = "talc",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: arena::CallArena<talc::wasm::WasmDynamicTalc> =
    arena::CallArena::new(talc::wasm::new_wasm_dynamic_allocator());

/// Runs one mapping call of the component; with the SDK's allocator, what it allocates comes
/// from the call arena.
#[cfg(target_arch = "wasm32")]
pub(crate) fn in_call<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(all(feature = "talc", not(target_feature = "atomics")))]
    return ALLOCATOR.call(f);
    #[cfg(not(all(feature = "talc", not(target_feature = "atomics"))))]
    f()
}

#[cfg(any(
    test,
    all(
        feature = "talc",
        target_arch = "wasm32",
        not(target_feature = "atomics")
    )
))]
mod arena;

pub mod ditto;
mod error;
pub mod log;
mod mapper;
pub mod options;
pub mod payload;
mod runtime;
pub mod testing;
pub mod wire;

pub use error::MappingError;
pub use mapper::{Mapper, ditto_protocol_inbound, ditto_protocol_outbound};
pub use runtime::Runtime;

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub use runtime::__private;

/// The Ditto Protocol model shared with the host (crate `ferrule-protocol`).
pub use ferrule_protocol as protocol;
pub use ferrule_protocol::{
    CONTENT_TYPE, Channel, Criterion, DittoMessage, ExternalMessage, Group, Headers, ProtocolError,
    Topic,
};
/// The `serde_json` the SDK is built with (`preserve_order`).
pub use serde_json;

/// The README's worked example compiles (its `lib.rs` block is a doctest).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The usual imports of a mapper: `use ferrule_mapper_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::ditto::{CommandAction, EventAction, MessageBuilder, ThingId};
    pub use crate::log;
    pub use crate::payload::{ByteReader, Scalar};
    pub use crate::{
        Channel, Criterion, DittoMessage, ExternalMessage, Headers, Mapper, MappingError, Topic,
    };
}

//! What the WIT exports do: keep the configured mapper and dispatch to it, converting between
//! the WIT records ([`crate::wire`]) and the model. The same code serves the WebAssembly
//! exports (one [`Runtime`] per instance, in a global) and the native [`crate::testing`]
//! harness (one per harness).

use crate::error::MappingError;
use crate::mapper::Mapper;
use crate::wire;
use ferrule_protocol::{DittoMessage, ExternalMessage};
use serde_json::Value;

trait Configured {
    fn map_inbound(
        &self,
        message: wire::ExternalMessage,
    ) -> Result<Vec<wire::DittoMessage>, MappingError>;
    fn map_outbound(
        &self,
        message: wire::DittoMessage,
    ) -> Result<Vec<wire::ExternalMessage>, MappingError>;
}

impl<M: Mapper> Configured for M {
    fn map_inbound(
        &self,
        message: wire::ExternalMessage,
    ) -> Result<Vec<wire::DittoMessage>, MappingError> {
        let message = ExternalMessage::from(message);
        let out = Mapper::map_inbound(self, &message)?;
        Ok(out.into_iter().map(wire::DittoMessage::from).collect())
    }

    fn map_outbound(
        &self,
        message: wire::DittoMessage,
    ) -> Result<Vec<wire::ExternalMessage>, MappingError> {
        let message = DittoMessage::try_from(message)?;
        let out = Mapper::map_outbound(self, &message)?;
        Ok(out.into_iter().map(wire::ExternalMessage::from).collect())
    }
}

/// The state of one mapper instance: unconfigured, or configured with a mapper.
#[derive(Default)]
pub struct Runtime {
    mapper: Option<Box<dyn Configured>>,
}

impl Runtime {
    /// `configure`: `options` is JSON object text. A failed configure leaves the instance
    /// unconfigured.
    pub fn configure<M: Mapper>(&mut self, options: &str) -> Result<(), MappingError> {
        self.mapper = None;
        let options = match serde_json::from_str::<Value>(options) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(MappingError::invalid_options(
                    "The options are not a JSON object.",
                ));
            }
            Err(e) => {
                return Err(MappingError::invalid_options(format!(
                    "The options are not JSON: {e}"
                )));
            }
        };
        self.mapper = Some(Box::new(M::new(&options)?));
        Ok(())
    }

    pub fn is_configured(&self) -> bool {
        self.mapper.is_some()
    }

    fn mapper(&self) -> Result<&dyn Configured, MappingError> {
        self.mapper.as_deref().ok_or_else(|| {
            MappingError::new("The mapper was called before it was configured.").with_description(
                "The host calls `configure` once per instance before any mapping; check that the mapping definition's options were accepted.",
            )
        })
    }

    /// `map-inbound`.
    pub fn map_inbound(
        &self,
        message: wire::ExternalMessage,
    ) -> Result<Vec<wire::DittoMessage>, MappingError> {
        self.mapper()?.map_inbound(message)
    }

    /// `map-outbound`.
    pub fn map_outbound(
        &self,
        message: wire::DittoMessage,
    ) -> Result<Vec<wire::ExternalMessage>, MappingError> {
        self.mapper()?.map_outbound(message)
    }
}

#[cfg(target_arch = "wasm32")]
mod instance {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// The instance's one runtime: a component instance is single-threaded.
        static RUNTIME: RefCell<Runtime> = RefCell::new(Runtime::default());
    }

    pub fn configure<M: Mapper>(options: &str) -> Result<(), MappingError> {
        RUNTIME.with(|r| r.borrow_mut().configure::<M>(options))
    }

    pub fn map_inbound(
        message: wire::ExternalMessage,
    ) -> Result<Vec<wire::DittoMessage>, MappingError> {
        crate::in_call(|| RUNTIME.with(|r| r.borrow().map_inbound(message)))
    }

    pub fn map_outbound(
        message: wire::DittoMessage,
    ) -> Result<Vec<wire::ExternalMessage>, MappingError> {
        crate::in_call(|| RUNTIME.with(|r| r.borrow().map_outbound(message)))
    }
}

/// The glue the [`export!`](crate::export) macro expands to. Not part of the API.
#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub mod __private {
    pub use wit_bindgen;

    /// The guest bindings of `wit/mapper.wit`, world `mapper`. The records of interface
    /// `types` are the SDK's own [`crate::wire`] structs.
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "ferrule:mapper/mapper",
            with: {
                "ferrule:mapper/types@0.1.0": crate::wire,
            },
            pub_export_macro: true,
            export_macro_name: "__ferrule_export_mapper_world",
            default_bindings_module: "::ferrule_mapper_sdk::__private::bindings",
            runtime_path: "::ferrule_mapper_sdk::__private::wit_bindgen::rt",
        });
    }

    use super::instance;
    use crate::{Mapper, MappingError, wire};
    use bindings::exports::ferrule::mapper::mapping::Guest;

    /// Implements the exported interface `mapping` with the mapper `M`.
    pub struct Export<M>(std::marker::PhantomData<M>);

    impl<M: Mapper> Guest for Export<M> {
        fn configure(options: String) -> Result<(), MappingError> {
            instance::configure::<M>(&options)
        }

        fn map_inbound(
            message: wire::ExternalMessage,
        ) -> Result<Vec<wire::DittoMessage>, MappingError> {
            instance::map_inbound(message)
        }

        fn map_outbound(
            message: wire::DittoMessage,
        ) -> Result<Vec<wire::ExternalMessage>, MappingError> {
            instance::map_outbound(message)
        }
    }
}

/// Exports a [`Mapper`](crate::Mapper) as the component's `mapping` interface:
///
/// ```
/// use ferrule_mapper_sdk::MappingError;
/// use ferrule_mapper_sdk::serde_json::{Map, Value};
///
/// struct MyMapper;
/// impl ferrule_mapper_sdk::Mapper for MyMapper {
///     fn new(_options: &Map<String, Value>) -> Result<Self, MappingError> {
///         Ok(MyMapper)
///     }
/// }
/// ferrule_mapper_sdk::export!(MyMapper);
/// ```
///
/// Use it once, in the mapper crate's `lib.rs` (`crate-type = ["cdylib", "rlib"]`). In a
/// WebAssembly build it emits the component's exports; natively it only checks that the type
/// implements `Mapper`, so `cargo test` of the crate needs no WebAssembly.
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export {
    ($mapper:ty) => {
        const _: () = {
            type __FerruleMapperExport = $crate::__private::Export<$mapper>;
            $crate::__private::bindings::__ferrule_export_mapper_world!(
                __FerruleMapperExport with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Exports a [`Mapper`](crate::Mapper) as the component's `mapping` interface:
///
/// ```
/// use ferrule_mapper_sdk::MappingError;
/// use ferrule_mapper_sdk::serde_json::{Map, Value};
///
/// struct MyMapper;
/// impl ferrule_mapper_sdk::Mapper for MyMapper {
///     fn new(_options: &Map<String, Value>) -> Result<Self, MappingError> {
///         Ok(MyMapper)
///     }
/// }
/// ferrule_mapper_sdk::export!(MyMapper);
/// ```
///
/// Use it once, in the mapper crate's `lib.rs` (`crate-type = ["cdylib", "rlib"]`). In a
/// WebAssembly build it emits the component's exports; natively it only checks that the type
/// implements `Mapper`, so `cargo test` of the crate needs no WebAssembly.
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export {
    ($mapper:ty) => {
        const _: () = {
            fn __ferrule_is_a_mapper<M: $crate::Mapper>() {}
            let _ = __ferrule_is_a_mapper::<$mapper>;
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    struct Echo {
        suffix: String,
    }

    impl Mapper for Echo {
        fn new(options: &Map<String, Value>) -> Result<Self, MappingError> {
            match options.get("suffix") {
                Some(Value::String(s)) => Ok(Echo { suffix: s.clone() }),
                _ => Err(MappingError::invalid_options("suffix is required")),
            }
        }

        fn map_outbound(
            &self,
            message: &DittoMessage,
        ) -> Result<Vec<ExternalMessage>, MappingError> {
            Ok(vec![ExternalMessage::text(format!(
                "{}{}",
                message.path, self.suffix
            ))])
        }
    }

    crate::export!(Echo);

    #[test]
    fn configure_then_map() {
        let mut rt = Runtime::default();
        let ditto = wire::DittoMessage {
            topic: "a/b/things/twin/events/modified".into(),
            path: "/attributes".into(),
            ..Default::default()
        };
        let e = rt.map_outbound(ditto.clone()).unwrap_err();
        assert!(e.message.contains("before it was configured"), "{e}");
        assert!(
            rt.configure::<Echo>("[]")
                .unwrap_err()
                .message
                .contains("not a JSON object")
        );
        assert!(
            rt.configure::<Echo>("{")
                .unwrap_err()
                .message
                .contains("not JSON")
        );
        let e = rt.configure::<Echo>("{}").unwrap_err();
        assert_eq!(e.message, "suffix is required");
        assert!(!rt.is_configured());
        rt.configure::<Echo>(&json!({"suffix": "!"}).to_string())
            .unwrap();
        let out = rt.map_outbound(ditto).unwrap();
        assert_eq!(out[0].text_payload.as_deref(), Some("/attributes!"));
        // The default inbound mapping: Ditto Protocol JSON.
        let inbound = rt
            .map_inbound(wire::ExternalMessage {
                text_payload: Some(
                    r#"{"topic":"a/b/things/twin/commands/modify","path":"/attributes/x","value":true}"#
                        .into(),
                ),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(inbound[0].value.as_deref(), Some("true"));
        // A failed reconfigure leaves it unconfigured.
        assert!(rt.configure::<Echo>("{}").is_err());
        assert!(!rt.is_configured());
    }
}

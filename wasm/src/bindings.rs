//! Host bindings of the `ferrule:mapper/mapper` world (`../wit/mapper.wit`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "ferrule:mapper/mapper",
});

pub use ferrule::mapper::host::Level;
pub use ferrule::mapper::types::{DittoMessage, ExternalMessage, MappingError};

//! Paths of WebAssembly components built for Ferrule's tests (see `build.rs` and `guests/`).
//! Each constant is the absolute path of a `.wasm` component.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The bytes of a guest component.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

//! Unit tests of the public API.

mod errors;
mod eval;
mod parse;
mod roundtrip;

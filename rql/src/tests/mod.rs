//! Unit tests of the public API.

mod errors;
mod eval;
mod hostile;
mod parse;
mod roundtrip;

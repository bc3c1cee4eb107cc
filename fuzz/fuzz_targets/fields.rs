#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrule_protocol::fuzz::check_fields(data));

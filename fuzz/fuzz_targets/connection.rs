#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrule_host::model::fuzz::check(data));

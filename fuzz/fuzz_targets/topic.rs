#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrule_host::model::topic::fuzz::check(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lrai_fuzz::raw_binary(data));

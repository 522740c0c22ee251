#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lrai_fuzz::audit_log(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| lrai_fuzz::binary_framing(data));

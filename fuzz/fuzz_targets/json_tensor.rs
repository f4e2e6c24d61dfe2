#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| maas_gateway::fuzz_targets::json_tensor(data));

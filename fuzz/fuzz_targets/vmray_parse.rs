//! Every `vmray::parse_*` on any bytes: no panic, and what they return is
//! bounded and free of control characters.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::vmray_parse(data));

//! `urls::normalize`: a normalised URL is http(s), bounded, free of control
//! characters and whitespace, and normalises to itself.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::url_normalize(data));

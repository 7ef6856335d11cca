//! Comment and tag rendering from fuzzed VMRay answers and texts: comments are
//! at most 8,000 characters, start with their marker, hold no control
//! character but newlines and no second marker line; tags hold only allowed
//! characters.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::render(data));

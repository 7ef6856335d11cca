//! `hunting::query_body` with any message ids: only valid ids reach the KQL,
//! each as one well-formed string literal (no quote from the input gets out);
//! `hunting::parse_results` on any bytes.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::hunting(data));

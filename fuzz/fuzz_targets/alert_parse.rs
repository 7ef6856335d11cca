//! `alert::parse_page` on any bytes, then the poller's intake (`poll::add_urls`)
//! on every alert it accepts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::alert_parse(data));

//! Log output: the core's JSON lines, printed to stdout (Spin collects a
//! component's stdout into its log files).

use chrono::Utc;
use mdo_vmray::config::LogLevel;
use mdo_vmray::logline::Logger;
use serde_json::Value;

pub struct Log {
    inner: Logger,
}

impl Log {
    pub fn new(component: &'static str, level: LogLevel) -> Log {
        Log {
            inner: Logger::new(component, crate::rand::run_id(), level),
        }
    }

    pub fn add_secret(&mut self, secret: &str) {
        self.inner.add_secret(secret);
    }

    pub fn run_id(&self) -> &str {
        self.inner.run_id()
    }

    pub fn scrub(&self, text: &str) -> String {
        self.inner.scrub(text)
    }

    pub fn emit(&self, level: LogLevel, event: &str, fields: &[(&str, Value)]) {
        if let Some(line) = self.inner.line(Utc::now(), level, event, fields) {
            println!("{line}");
        }
    }

    pub fn debug(&self, event: &str, fields: &[(&str, Value)]) {
        self.emit(LogLevel::Debug, event, fields);
    }
    pub fn info(&self, event: &str, fields: &[(&str, Value)]) {
        self.emit(LogLevel::Info, event, fields);
    }
    pub fn warn(&self, event: &str, fields: &[(&str, Value)]) {
        self.emit(LogLevel::Warn, event, fields);
    }
    pub fn error(&self, event: &str, fields: &[(&str, Value)]) {
        self.emit(LogLevel::Error, event, fields);
    }
}

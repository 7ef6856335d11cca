//! Structured log lines: one JSON object per notable event, with the run id,
//! and every known secret value scrubbed before it is printed.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::config::LogLevel;

/// Builds log lines for one tick of one component.
pub struct Logger {
    component: &'static str,
    run: String,
    min_level: LogLevel,
    secrets: Vec<String>,
}

impl Logger {
    pub fn new(component: &'static str, run: String, min_level: LogLevel) -> Logger {
        Logger {
            component,
            run,
            min_level,
            secrets: Vec::new(),
        }
    }

    /// Values that must never be printed (keys, client secrets, tokens).
    pub fn add_secret(&mut self, secret: &str) {
        if secret.len() >= 4 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run
    }

    pub fn enabled(&self, level: LogLevel) -> bool {
        level >= self.min_level
    }

    /// The line for an event, or `None` below the configured level.
    pub fn line(
        &self,
        now: DateTime<Utc>,
        level: LogLevel,
        event: &str,
        fields: &[(&str, Value)],
    ) -> Option<String> {
        if !self.enabled(level) {
            return None;
        }
        let mut m = Map::new();
        m.insert(
            "ts".into(),
            now.to_rfc3339_opts(SecondsFormat::Millis, true).into(),
        );
        m.insert("level".into(), level.as_str().into());
        m.insert("component".into(), self.component.into());
        m.insert("run".into(), self.run.clone().into());
        m.insert("event".into(), event.into());
        for (k, v) in fields {
            m.insert((*k).to_string(), v.clone());
        }
        Some(self.scrub(&Value::Object(m).to_string()))
    }

    /// Replace every known secret in a text.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "<redacted>");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_are_json_with_run_id_and_no_secrets() {
        let mut l = Logger::new("vmray", "run-1".into(), LogLevel::Info);
        l.add_secret("sekrit-key");
        let line = l
            .line(
                Utc::now(),
                LogLevel::Warn,
                "retry",
                &[("error", json!("auth sekrit-key failed"))],
            )
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["run"], "run-1");
        assert_eq!(v["event"], "retry");
        assert_eq!(v["error"], "auth <redacted> failed");
        assert!(l.line(Utc::now(), LogLevel::Debug, "x", &[]).is_none());
    }
}

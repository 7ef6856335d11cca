//! Settings: every variable of `configuration.md`, parsed and validated.
//!
//! Components hand in a lookup function (Spin's `variables::get`); the core
//! validates at the start of a tick and names the variable, the value (never for
//! secrets) and what is allowed.

use std::fmt;

use crate::exclusions::Exclusions;
use crate::model::{IndicatorAction, IndicatorKind, Severity, Verdict};

/// A bad or missing setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    /// `None` for secrets, which are never echoed.
    pub value: Option<String>,
    pub allowed: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(
                f,
                "variable `{}` has invalid value `{}`: expected {}",
                self.variable,
                truncate(v, 200),
                self.allowed
            ),
            None => write!(
                f,
                "variable `{}` is invalid: expected {}",
                self.variable, self.allowed
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// Where setting values come from; `None` means "not set" (use the default).
pub trait Vars {
    fn var(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Vars for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

struct Reader<'a> {
    vars: &'a dyn Vars,
}

impl Reader<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        self.vars
            .var(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn err(name: &str, value: Option<&str>, allowed: &str) -> ConfigError {
        ConfigError {
            variable: name.into(),
            value: value.map(str::to_string),
            allowed: allowed.into(),
        }
    }

    fn required(&self, name: &str, secret: bool) -> Result<String, ConfigError> {
        self.raw(name).ok_or_else(|| {
            Self::err(
                name,
                None,
                if secret {
                    "a non-empty secret"
                } else {
                    "a non-empty value"
                },
            )
        })
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_string())
    }

    fn int(&self, name: &str, default: u32, min: u32, max: u32) -> Result<u32, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(Self::err(
                    name,
                    Some(&v),
                    &format!("a whole number from {min} to {max}"),
                )),
            },
        }
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(Self::err(name, Some(&v), "true or false")),
            },
        }
    }

    fn base_url(&self, name: &str, default: &str) -> Result<String, ConfigError> {
        let v = self.string(name, default);
        validate_base_url(&v).map_err(|why| Self::err(name, Some(&v), why))
    }

    fn guid(&self, name: &str) -> Result<String, ConfigError> {
        let v = self.required(name, false)?;
        if is_guid(&v) {
            Ok(v.to_ascii_lowercase())
        } else {
            Err(Self::err(
                name,
                Some(&v),
                "a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47",
            ))
        }
    }

    fn action(
        &self,
        name: &str,
        default: IndicatorAction,
        files: bool,
    ) -> Result<IndicatorAction, ConfigError> {
        let allowed = if files {
            "one of Allowed, Audit, Warn, Block, BlockAndRemediate"
        } else {
            "one of Allowed, Audit, Warn, Block"
        };
        match self.raw(name) {
            None => Ok(default),
            Some(v) => match IndicatorAction::parse(&v) {
                Some(IndicatorAction::BlockAndRemediate) if !files => {
                    Err(Self::err(name, Some(&v), allowed))
                }
                Some(a) => Ok(a),
                None => Err(Self::err(name, Some(&v), allowed)),
            },
        }
    }
}

/// `https://host[:port]`, or `http://` for loopback only (local simulators).
pub fn validate_base_url(v: &str) -> Result<String, &'static str> {
    const WHY: &str =
        "an https:// URL without path, query or credentials (http:// only for loopback hosts)";
    let parsed = url::Url::parse(v).map_err(|_| WHY)?;
    if !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(WHY);
    }
    if parsed.path() != "/" && !parsed.path().is_empty() {
        return Err(WHY);
    }
    let host = parsed.host().ok_or(WHY)?;
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        _ => return Err(WHY),
    }
    Ok(v.trim_end_matches('/').to_string())
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

pub fn is_guid(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Log verbosity (`log_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// What every component's settings share: the common part and the secrets
/// that must never be printed.
pub trait ComponentSettings {
    fn common(&self) -> &Common;
    fn secrets(&self) -> Vec<&str>;
}

impl ComponentSettings for PollerSettings {
    fn common(&self) -> &Common {
        &self.common
    }
    fn secrets(&self) -> Vec<&str> {
        vec![&self.entra.client_secret]
    }
}

impl ComponentSettings for VmraySettings {
    fn common(&self) -> &Common {
        &self.common
    }
    fn secrets(&self) -> Vec<&str> {
        vec![&self.api_key]
    }
}

impl ComponentSettings for DefenderSettings {
    fn common(&self) -> &Common {
        &self.common
    }
    fn secrets(&self) -> Vec<&str> {
        vec![&self.entra.client_secret]
    }
}

/// Settings every component reads.
#[derive(Debug, Clone)]
pub struct Common {
    pub tenant_id: String,
    pub dry_run: bool,
    pub log_level: LogLevel,
}

impl Common {
    fn read(r: &Reader) -> Result<Self, ConfigError> {
        let level = r.string("log_level", "info");
        let log_level = match level.to_ascii_lowercase().as_str() {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => {
                return Err(Reader::err(
                    "log_level",
                    Some(&level),
                    "one of debug, info, warn, error",
                ))
            }
        };
        Ok(Common {
            tenant_id: r.guid("tenant_id")?,
            dry_run: r.bool("dry_run", false)?,
            log_level,
        })
    }
}

/// Entra app credentials (poller and defender only).
#[derive(Clone)]
pub struct EntraApp {
    pub login_base_url: String,
    pub client_id: String,
    pub client_secret: String,
}

impl fmt::Debug for EntraApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraApp")
            .field("login_base_url", &self.login_base_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

impl EntraApp {
    fn read(r: &Reader) -> Result<Self, ConfigError> {
        Ok(EntraApp {
            login_base_url: r.base_url("login_base_url", "https://login.microsoftonline.com")?,
            client_id: r.guid("client_id")?,
            client_secret: r.required("client_secret", true)?,
        })
    }
}

/// The poller's settings.
#[derive(Debug, Clone)]
pub struct PollerSettings {
    pub common: Common,
    pub entra: EntraApp,
    pub graph_base_url: String,
    pub minimum_alert_age_minutes: u32,
    pub alert_severities: Vec<Severity>,
    pub email_lookback_days: u32,
    pub url_exclusions: Exclusions,
    pub analyze_user_reported_attachments: bool,
}

impl PollerSettings {
    pub fn read(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let r = Reader { vars };
        let sev_raw = r.string("alert_severities", "informational,low,medium,high");
        let mut alert_severities = Vec::new();
        for s in sev_raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match Severity::parse(s) {
                Some(sev) if sev != Severity::Unknown => alert_severities.push(sev),
                _ => {
                    return Err(Reader::err(
                        "alert_severities",
                        Some(&sev_raw),
                        "a comma-separated subset of informational, low, medium, high",
                    ))
                }
            }
        }
        if alert_severities.is_empty() {
            return Err(Reader::err(
                "alert_severities",
                Some(&sev_raw),
                "at least one of informational, low, medium, high",
            ));
        }
        let excl_raw = r.string("url_exclusion_patterns", "");
        let url_exclusions = Exclusions::parse(&excl_raw)
            .map_err(|why| Reader::err("url_exclusion_patterns", Some(&excl_raw), &why))?;
        Ok(PollerSettings {
            common: Common::read(&r)?,
            entra: EntraApp::read(&r)?,
            graph_base_url: r.base_url("graph_base_url", "https://graph.microsoft.com")?,
            minimum_alert_age_minutes: r.int("minimum_alert_age_minutes", 5, 0, 60)?,
            alert_severities,
            email_lookback_days: r.int("email_lookback_days", 7, 1, 7)?,
            url_exclusions,
            analyze_user_reported_attachments: r
                .bool("analyze_user_reported_attachments", false)?,
        })
    }
}

/// Retry limits for one API.
#[derive(Debug, Clone, Copy)]
pub struct RetryLimits {
    pub max_retries: u32,
    pub total_timeout_secs: u64,
}

/// The VMRay component's settings.
#[derive(Clone)]
pub struct VmraySettings {
    pub common: Common,
    pub api_key: String,
    pub base_url: String,
    pub resubmit_after_days: u32,
    pub retry: RetryLimits,
    pub analysis_timeout_minutes: u32,
    pub submission_tags: Vec<String>,
    pub add_alert_id_tags: bool,
}

impl fmt::Debug for VmraySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmraySettings")
            .field("common", &self.common)
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("resubmit_after_days", &self.resubmit_after_days)
            .finish_non_exhaustive()
    }
}

impl VmraySettings {
    pub fn read(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let r = Reader { vars };
        let tags_raw = r.string("vmray_submission_tags", "MDO");
        let mut submission_tags = Vec::new();
        for t in tags_raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if t.len() > 255 || !t.chars().all(is_vmray_tag_char) {
                return Err(Reader::err(
                    "vmray_submission_tags",
                    Some(&tags_raw),
                    "comma-separated tags of at most 255 letters, digits and _ . ! ? ; : + = / $ @ % ^ & ( ) # \\ -",
                ));
            }
            submission_tags.push(t.to_string());
        }
        Ok(VmraySettings {
            common: Common::read(&r)?,
            api_key: r.required("vmray_api_key", true)?,
            base_url: r.base_url("vmray_base_url", "https://eu.cloud.vmray.com")?,
            resubmit_after_days: r.int("vmray_resubmit_after_days", 7, 0, 100)?,
            retry: RetryLimits {
                max_retries: r.int("vmray_api_max_retry", 3, 0, 10)?,
                total_timeout_secs: u64::from(r.int(
                    "vmray_api_retry_timeout_minutes",
                    5,
                    1,
                    60,
                )?) * 60,
            },
            analysis_timeout_minutes: r.int("vmray_analysis_timeout_minutes", 30, 5, 720)?,
            submission_tags,
            add_alert_id_tags: r.bool("add_alert_id_tags", false)?,
        })
    }
}

/// Characters VMRay accepts in a tag.
pub fn is_vmray_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.!?;:+=/$@%^&)(#\\-–".contains(c)
}

/// Indicator actions per verdict and kind.
#[derive(Debug, Clone, Copy)]
pub struct IndicatorActions {
    pub malicious_url_ip: IndicatorAction,
    pub suspicious_url_ip: IndicatorAction,
    pub malicious_file: IndicatorAction,
    pub suspicious_file: IndicatorAction,
}

impl IndicatorActions {
    pub fn for_ioc(&self, verdict: Verdict, kind: IndicatorKind) -> Option<IndicatorAction> {
        let file = kind.is_file();
        match (verdict, file) {
            (Verdict::Malicious, true) => Some(self.malicious_file),
            (Verdict::Malicious, false) => Some(self.malicious_url_ip),
            (Verdict::Suspicious, true) => Some(self.suspicious_file),
            (Verdict::Suspicious, false) => Some(self.suspicious_url_ip),
            _ => None,
        }
    }
}

/// The Defender write-back component's settings.
#[derive(Debug, Clone)]
pub struct DefenderSettings {
    pub common: Common,
    pub entra: EntraApp,
    pub graph_base_url: String,
    pub defender_base_url: String,
    pub indicator_verdicts: Vec<Verdict>,
    pub add_tags_to_incident: bool,
    pub create_indicators: bool,
    pub indicator_expiration_days: u32,
    pub actions: IndicatorActions,
    pub indicator_generate_alert: bool,
    pub retry: RetryLimits,
}

impl DefenderSettings {
    pub fn read(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let r = Reader { vars };
        let verdicts_raw = r.string("vmray_sample_verdict", "malicious,suspicious");
        let mut indicator_verdicts = Vec::new();
        for v in verdicts_raw
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            match v.to_ascii_lowercase().as_str() {
                "malicious" => indicator_verdicts.push(Verdict::Malicious),
                "suspicious" => indicator_verdicts.push(Verdict::Suspicious),
                _ => {
                    return Err(Reader::err(
                        "vmray_sample_verdict",
                        Some(&verdicts_raw),
                        "malicious, suspicious, or both (comma-separated)",
                    ))
                }
            }
        }
        if indicator_verdicts.is_empty() {
            return Err(Reader::err(
                "vmray_sample_verdict",
                Some(&verdicts_raw),
                "malicious, suspicious, or both",
            ));
        }
        Ok(DefenderSettings {
            common: Common::read(&r)?,
            entra: EntraApp::read(&r)?,
            graph_base_url: r.base_url("graph_base_url", "https://graph.microsoft.com")?,
            defender_base_url: r.base_url(
                "defender_base_url",
                "https://api.securitycenter.microsoft.com",
            )?,
            indicator_verdicts,
            add_tags_to_incident: r.bool("add_tags_to_incident", true)?,
            create_indicators: r.bool("create_indicators", true)?,
            indicator_expiration_days: r.int("indicator_expiration_days", 30, 1, 365)?,
            actions: IndicatorActions {
                malicious_url_ip: r.action(
                    "indicator_action_malicious_url_ip",
                    IndicatorAction::Block,
                    false,
                )?,
                suspicious_url_ip: r.action(
                    "indicator_action_suspicious_url_ip",
                    IndicatorAction::Audit,
                    false,
                )?,
                malicious_file: r.action(
                    "indicator_action_malicious_file",
                    IndicatorAction::Block,
                    true,
                )?,
                suspicious_file: r.action(
                    "indicator_action_suspicious_file",
                    IndicatorAction::Audit,
                    true,
                )?,
            },
            indicator_generate_alert: r.bool("indicator_generate_alert", false)?,
            retry: RetryLimits {
                max_retries: r.int("defender_api_max_retry", 2, 0, 10)?,
                total_timeout_secs: u64::from(r.int(
                    "defender_api_retry_timeout_minutes",
                    5,
                    1,
                    60,
                )?) * 60,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    const TENANT: (&str, &str) = ("tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47");
    const CLIENT: (&str, &str) = ("client_id", "11111111-2222-3333-4444-555555555555");
    const SECRET: (&str, &str) = ("client_secret", "s3cr3t-value");

    #[test]
    fn defaults_match_configuration_md() {
        let d = DefenderSettings::read(&vars(&[TENANT, CLIENT, SECRET])).unwrap();
        assert_eq!(
            d.indicator_verdicts,
            vec![Verdict::Malicious, Verdict::Suspicious]
        );
        assert_eq!(d.indicator_expiration_days, 30);
        assert_eq!(d.actions.malicious_url_ip, IndicatorAction::Block);
        assert_eq!(d.actions.suspicious_file, IndicatorAction::Audit);
        assert_eq!(d.retry.max_retries, 2);
        assert_eq!(
            d.defender_base_url,
            "https://api.securitycenter.microsoft.com"
        );
        let v = VmraySettings::read(&vars(&[TENANT, ("vmray_api_key", "k")])).unwrap();
        assert_eq!(v.resubmit_after_days, 7);
        assert_eq!(v.analysis_timeout_minutes, 30);
        assert_eq!(v.submission_tags, vec!["MDO"]);
        assert_eq!(v.base_url, "https://eu.cloud.vmray.com");
        let p = PollerSettings::read(&vars(&[TENANT, CLIENT, SECRET])).unwrap();
        assert_eq!(p.minimum_alert_age_minutes, 5);
        assert_eq!(p.email_lookback_days, 7);
        assert_eq!(p.alert_severities.len(), 4);
    }

    #[test]
    fn errors_name_the_variable_and_range() {
        let e = VmraySettings::read(&vars(&[
            TENANT,
            ("vmray_api_key", "k"),
            ("vmray_resubmit_after_days", "101"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "vmray_resubmit_after_days");
        assert!(e.to_string().contains("0 to 100"), "{e}");
        let e = DefenderSettings::read(&vars(&[
            TENANT,
            CLIENT,
            SECRET,
            ("indicator_action_malicious_url_ip", "BlockAndRemediate"),
        ]))
        .unwrap_err();
        assert_eq!(e.variable, "indicator_action_malicious_url_ip");
    }

    #[test]
    fn secrets_are_never_echoed() {
        let e = PollerSettings::read(&vars(&[TENANT, CLIENT])).unwrap_err();
        assert_eq!(e.variable, "client_secret");
        assert_eq!(e.value, None);
        let p = PollerSettings::read(&vars(&[TENANT, CLIENT, SECRET])).unwrap();
        assert!(!format!("{p:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn base_urls_need_https_except_loopback() {
        assert!(validate_base_url("http://127.0.0.1:8080").is_ok());
        assert!(validate_base_url("http://localhost:1").is_ok());
        assert!(validate_base_url("http://[::1]:1").is_ok());
        assert!(validate_base_url("http://10.0.0.1:80").is_err());
        assert!(validate_base_url("http://graph.microsoft.com").is_err());
        assert!(validate_base_url("https://graph.microsoft.com/v1.0").is_err());
        assert!(validate_base_url("https://user:pw@graph.microsoft.com").is_err());
        assert_eq!(
            validate_base_url("https://us.cloud.vmray.com/").unwrap(),
            "https://us.cloud.vmray.com"
        );
    }

    #[test]
    fn tenant_must_be_a_guid() {
        let e = VmraySettings::read(&vars(&[("tenant_id", "contoso"), ("vmray_api_key", "k")]))
            .unwrap_err();
        assert_eq!(e.variable, "tenant_id");
        assert_eq!(e.value.as_deref(), Some("contoso"));
    }
}

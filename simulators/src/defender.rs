//! Defender for Endpoint indicators API: `/api/indicators`, `/api/indicators/import`.

use crate::entra::{check_token, DEFENDER_SCOPE};
use crate::http::{bearer, guid, Req, Resp};
use crate::state::{iso, Indicator, Shared, World};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

const TYPES: &[&str] = &[
    "FileSha1",
    "FileMd5",
    "FileSha256",
    "CertificateThumbprint",
    "IpAddress",
    "DomainName",
    "Url",
];
const ACTIONS: &[&str] = &["Allowed", "Audit", "Warn", "Block", "BlockAndRemediate"];
const SEVERITIES: &[&str] = &["Informational", "Low", "Medium", "High"];
const MAX_IMPORT: usize = 500;

pub(crate) fn defender_error(status: u16, code: &str, message: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {"code": code, "message": message, "target": guid()}}),
    )
}

pub(crate) fn handle(shared: &Shared, req: &Req) -> Resp {
    if let Some(problem) = check_token(shared, bearer(req), DEFENDER_SCOPE) {
        return defender_error(401, "Unauthorized", &problem);
    }
    let seg = req.segments();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    match (req.method.as_str(), seg.as_slice()) {
        ("POST", ["api", "indicators"]) => {
            let body = match req.json() {
                Ok(b) => b,
                Err(e) => return defender_error(400, "InvalidRequestBody", &e),
            };
            let now = shared.clock.now();
            let mut world = shared.lock();
            match submit(&mut world, &body, now) {
                Ok(ind) => {
                    let mut v = serde_json::to_value(ind).unwrap_or(Value::Null);
                    if let Value::Object(o) = &mut v {
                        o.insert(
                            "@odata.context".into(),
                            json!(format!(
                                "{}/api/$metadata#Indicators/$entity",
                                shared.bases.defender
                            )),
                        );
                    }
                    Resp::json(200, &v)
                }
                Err((code, msg)) => defender_error(400, code, &msg),
            }
        }
        ("POST", ["api", "indicators", "import"]) => import(shared, req),
        ("GET", ["api", "indicators"]) => list(shared, req),
        ("GET", ["api", "indicators", id]) => {
            let world = shared.lock();
            match world.indicators.iter().find(|i| i.id == *id) {
                Some(i) => Resp::json(200, &serde_json::to_value(i).unwrap_or(Value::Null)),
                None => defender_error(404, "NotFound", &format!("Indicator {id} was not found")),
            }
        }
        ("DELETE", ["api", "indicators", id]) => {
            let mut world = shared.lock();
            let before = world.indicators.len();
            world.indicators.retain(|i| i.id != *id);
            if world.indicators.len() == before {
                defender_error(404, "NotFound", &format!("Indicator {id} was not found"))
            } else {
                Resp {
                    status: 204,
                    headers: vec![],
                    body: vec![],
                }
            }
        }
        (_, ["api", "indicators", ..]) => defender_error(
            405,
            "MethodNotAllowed",
            "The requested resource does not support this http method.",
        ),
        _ => defender_error(
            404,
            "ResourceNotFound",
            &format!("Resource {} was not found", req.path),
        ),
    }
}

type Failure = (&'static str, String);

fn str_field<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, Failure> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err((
            "InvalidRequestBody",
            format!("Field '{name}' must be a string"),
        )),
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())
}

fn valid_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn validate_value(kind: &str, value: &str) -> Result<(), Failure> {
    let ok = match kind {
        "FileSha1" | "CertificateThumbprint" => is_hex(value, 40),
        "FileMd5" => is_hex(value, 32),
        "FileSha256" => is_hex(value, 64),
        "IpAddress" => value.parse::<std::net::IpAddr>().is_ok(),
        "DomainName" => valid_domain(value),
        "Url" => {
            !value.chars().any(char::is_whitespace)
                && (if value.contains("://") {
                    url::Url::parse(value).is_ok_and(|u| u.host_str().is_some())
                } else {
                    url::Url::parse(&format!("http://{value}"))
                        .is_ok_and(|u| u.host_str().is_some_and(|h| h.contains('.')))
                })
        }
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let code = match kind {
        "IpAddress" => "InvalidIpAddress",
        "DomainName" => "InvalidDomainName",
        "Url" => "InvalidUrl",
        _ => "InvalidHashValue",
    };
    Err((code, format!("Invalid {kind} value: '{value}'")))
}

/// Validates and upserts one indicator.
fn submit(world: &mut World, body: &Value, now: DateTime<Utc>) -> Result<Indicator, Failure> {
    if !body.is_object() {
        return Err((
            "InvalidRequestBody",
            "Request body must be a JSON object".into(),
        ));
    }
    let mut required = vec![];
    for name in [
        "indicatorValue",
        "indicatorType",
        "action",
        "title",
        "description",
    ] {
        match str_field(body, name)? {
            Some(v) if !v.trim().is_empty() => required.push(v),
            _ => {
                return Err((
                    "MissingRequiredParameter",
                    format!("The required parameter '{name}' is missing or empty"),
                ))
            }
        }
    }
    let [value, kind, action, title, description] = required[..] else {
        unreachable!()
    };
    if !TYPES.contains(&kind) {
        return Err((
            "InvalidRequestBody",
            format!(
                "Invalid indicatorType '{kind}'. Allowed values: {}",
                TYPES.join(", ")
            ),
        ));
    }
    if !ACTIONS.contains(&action) {
        return Err((
            "InvalidRequestBody",
            format!(
                "Invalid action '{action}'. Allowed values: {}",
                ACTIONS.join(", ")
            ),
        ));
    }
    let is_file = kind.starts_with("File");
    if action == "BlockAndRemediate" && !is_file {
        return Err((
            "InvalidRequestBody",
            format!("Action 'BlockAndRemediate' is not supported for indicator type '{kind}'"),
        ));
    }
    validate_value(kind, value)?;
    let severity = str_field(body, "severity")?;
    if let Some(s) = severity {
        if !SEVERITIES.contains(&s) {
            return Err((
                "InvalidRequestBody",
                format!(
                    "Invalid severity '{s}'. Allowed values: {}",
                    SEVERITIES.join(", ")
                ),
            ));
        }
    }
    let generate_alert = match body.get("generateAlert") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err((
                "InvalidRequestBody",
                "Field 'generateAlert' must be a boolean".into(),
            ))
        }
    };
    if action == "Audit" && !generate_alert {
        return Err((
            "InvalidRequestBody",
            "generateAlert must be true when action is 'Audit'".into(),
        ));
    }
    let expiration = match str_field(body, "expirationTime")? {
        None => None,
        Some(t) => match DateTime::parse_from_rfc3339(t) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                return Err((
                    "InvalidRequestBody",
                    format!("Invalid expirationTime '{t}'"),
                ))
            }
        },
    };
    let rbac = match body.get("rbacGroupNames") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(_) => {
            return Err((
                "InvalidRequestBody",
                "Field 'rbacGroupNames' must be an array".into(),
            ))
        }
    };
    let recommended = str_field(body, "recommendedActions")?.map(str::to_string);
    let application = str_field(body, "application")?.map(str::to_string);

    let existing = world
        .indicators
        .iter()
        .position(|i| i.indicator_value.eq_ignore_ascii_case(value) && i.indicator_type == kind);
    if existing.is_none() && world.indicators.len() >= world.cfg.indicator_cap {
        return Err((
            "BadRequest",
            format!(
                "Indicators limit reached: the tenant already has {} indicators (maximum {}). Delete indicators before adding new ones.",
                world.indicators.len(),
                world.cfg.indicator_cap
            ),
        ));
    }
    let app_id = world.cfg.client_id.clone();
    let stamp = iso(now);
    let (id, created) = match existing {
        Some(i) => (
            world.indicators[i].id.clone(),
            world.indicators[i].creation_time_date_time_utc.clone(),
        ),
        None => {
            world.next_indicator_id += 1;
            (world.next_indicator_id.to_string(), stamp.clone())
        }
    };
    let ind = Indicator {
        id,
        indicator_value: value.to_string(),
        indicator_type: kind.to_string(),
        action: action.to_string(),
        severity: severity.map(str::to_string),
        title: title.to_string(),
        description: description.to_string(),
        recommended_actions: recommended,
        expiration_time: expiration.map(iso),
        generate_alert,
        application,
        rbac_group_names: rbac,
        created_by: app_id.clone(),
        created_by_source: "PublicApi".into(),
        creation_time_date_time_utc: created,
        last_update_time: stamp,
        last_updated_by: app_id,
        source: "AadApp".into(),
        source_type: "AadApp".into(),
    };
    match existing {
        Some(i) => world.indicators[i] = ind.clone(),
        None => world.indicators.push(ind.clone()),
    }
    *world
        .indicator_writes
        .entry((ind.indicator_value.clone(), ind.indicator_type.clone()))
        .or_insert(0) += 1;
    Ok(ind)
}

fn import(shared: &Shared, req: &Req) -> Resp {
    let body = match req.json() {
        Ok(b) => b,
        Err(e) => return defender_error(400, "InvalidRequestBody", &e),
    };
    let Some(items) = body.get("Indicators").and_then(Value::as_array) else {
        return defender_error(
            400,
            "InvalidRequestBody",
            "The request body must contain the array 'Indicators'",
        );
    };
    if items.is_empty() {
        return defender_error(400, "InvalidRequestBody", "'Indicators' must not be empty");
    }
    if items.len() > MAX_IMPORT {
        return defender_error(
            400,
            "MaximumBatchSizeExceeded",
            &format!(
                "Maximum batch size is {MAX_IMPORT}; the request contains {} indicators",
                items.len()
            ),
        );
    }
    let now = shared.clock.now();
    let mut world = shared.lock();
    let value: Vec<Value> = items
        .iter()
        .map(|item| {
            let shown = item.get("indicatorValue").cloned().unwrap_or(Value::Null);
            match submit(&mut world, item, now) {
                Ok(ind) => json!({"id": ind.id, "indicator": ind.indicator_value, "isFailed": false, "failureReason": null}),
                Err((code, msg)) => json!({"id": null, "indicator": shown, "isFailed": true, "failureReason": format!("{code}: {msg}")}),
            }
        })
        .collect();
    Resp::json(
        200,
        &json!({
            "@odata.context": format!("{}/api/$metadata#Collection(microsoft.windowsDefenderATP.api.ImportIndicatorResult)", shared.bases.defender),
            "value": value,
        }),
    )
}

/// `$filter` on indicators: `field eq 'value'` joined by `and`.
fn parse_filter(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = vec![];
    let mut rest = text.trim();
    loop {
        let (field, after) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("Invalid $filter '{text}'"))?;
        let after = after.trim_start();
        let after = after
            .strip_prefix("eq ")
            .ok_or_else(|| format!("Invalid $filter '{text}': only 'eq' is supported"))?
            .trim_start();
        let after = after
            .strip_prefix('\'')
            .ok_or_else(|| format!("Invalid $filter '{text}': expected a quoted value"))?;
        let mut value = String::new();
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if let Some((_, '\'')) = chars.peek() {
                    value.push('\'');
                    chars.next();
                } else {
                    end = Some(i + 1);
                    break;
                }
            } else {
                value.push(c);
            }
        }
        let end = end.ok_or_else(|| format!("Invalid $filter '{text}': unterminated string"))?;
        if ![
            "indicatorValue",
            "indicatorType",
            "action",
            "application",
            "createdBy",
            "severity",
            "title",
        ]
        .contains(&field)
        {
            return Err(format!("Invalid $filter: unsupported property '{field}'"));
        }
        out.push((field.to_string(), value));
        rest = after[end..].trim_start();
        if rest.is_empty() {
            return Ok(out);
        }
        rest = rest
            .strip_prefix("and ")
            .ok_or_else(|| format!("Invalid $filter '{text}': expected 'and'"))?
            .trim_start();
    }
}

fn list(shared: &Shared, req: &Req) -> Resp {
    let filters = match req.query("$filter").map(parse_filter) {
        None => vec![],
        Some(Ok(f)) => f,
        Some(Err(e)) => return defender_error(400, "InvalidRequest", &e),
    };
    let parse_n = |name: &str, default: usize| match req.query(name) {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| format!("Invalid {name} '{s}'")),
    };
    let (top, skip) = match (parse_n("$top", 10_000), parse_n("$skip", 0)) {
        (Ok(t), Ok(s)) => (t.min(10_000), s),
        (Err(e), _) | (_, Err(e)) => return defender_error(400, "InvalidRequest", &e),
    };
    let world = shared.lock();
    let value: Vec<Value> = world
        .indicators
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .filter(|v| {
            filters.iter().all(|(f, want)| {
                v.get(f).and_then(Value::as_str).is_some_and(|have| {
                    if f == "indicatorValue" {
                        have.eq_ignore_ascii_case(want)
                    } else {
                        have == want
                    }
                })
            })
        })
        .skip(skip)
        .take(top)
        .collect();
    Resp::json(
        200,
        &json!({
            "@odata.context": format!("{}/api/$metadata#Indicators", shared.bases.defender),
            "value": value,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_validated_per_type() {
        assert!(validate_value("Url", "http://evil.example/a").is_ok());
        assert!(validate_value("Url", "evil.example/a").is_ok());
        assert_eq!(
            validate_value("Url", "not a url").unwrap_err().0,
            "InvalidUrl"
        );
        assert!(validate_value("DomainName", "evil.example").is_ok());
        assert_eq!(
            validate_value("DomainName", "http://evil.example")
                .unwrap_err()
                .0,
            "InvalidDomainName"
        );
        assert!(validate_value("IpAddress", "203.0.113.9").is_ok());
        assert_eq!(
            validate_value("IpAddress", "203.0.113.0/24").unwrap_err().0,
            "InvalidIpAddress"
        );
        assert!(validate_value("FileSha256", &"a".repeat(64)).is_ok());
        assert_eq!(
            validate_value("FileSha256", "abc").unwrap_err().0,
            "InvalidHashValue"
        );
    }

    #[test]
    fn filter_parsing() {
        let f = parse_filter("indicatorValue eq 'it''s.example' and indicatorType eq 'DomainName'")
            .unwrap();
        assert_eq!(
            f,
            vec![
                ("indicatorValue".into(), "it's.example".into()),
                ("indicatorType".into(), "DomainName".into())
            ]
        );
        assert!(parse_filter("indicatorValue ne 'x'").is_err());
        assert!(parse_filter("nope eq 'x'").is_err());
    }
}

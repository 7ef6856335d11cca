//! Microsoft Graph (security): alerts_v2, alert comments, incidents, runHuntingQuery.

use crate::entra::{check_token, GRAPH_SCOPE};
use crate::http::{bearer, guid, opaque, Req, Resp};
use crate::hunting;
use crate::state::{iso, Alert, Comment, Incident, Shared, World};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

pub(crate) fn graph_error(status: u16, code: &str, message: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "request-id": guid(),
                "client-request-id": guid(),
            }
        }}),
    )
}

pub(crate) fn handle(shared: &Shared, req: &Req) -> Resp {
    if let Some(problem) = check_token(shared, bearer(req), GRAPH_SCOPE) {
        return graph_error(401, "InvalidAuthenticationToken", &problem);
    }
    let seg = req.segments();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    match (m, seg.as_slice()) {
        ("GET", ["v1.0", "security", "alerts_v2"]) => list_alerts(shared, req),
        ("GET", ["v1.0", "security", "alerts_v2", id]) => {
            let world = shared.lock();
            match world.alerts.iter().find(|a| a.id == *id) {
                Some(a) => {
                    let mut v = render_alert(&world, a);
                    if let Value::Object(o) = &mut v {
                        o.insert(
                            "@odata.context".into(),
                            json!(format!(
                                "{}/v1.0/$metadata#security/alerts_v2/$entity",
                                shared.bases.graph
                            )),
                        );
                    }
                    Resp::json(200, &v)
                }
                None => not_found("alert", id),
            }
        }
        ("POST", ["v1.0", "security", "alerts_v2", id, "comments"]) => add_comment(shared, req, id),
        ("GET", ["v1.0", "security", "incidents", id]) => {
            let world = shared.lock();
            match world.incidents.get(*id) {
                Some(i) => Resp::json(200, &render_incident(shared, &world, i)),
                None => not_found("incident", id),
            }
        }
        ("PATCH", ["v1.0", "security", "incidents", id]) => patch_incident(shared, req, id),
        ("POST", ["v1.0", "security", "runHuntingQuery"]) => {
            let body = match req.json() {
                Ok(b) => b,
                Err(e) => return graph_error(400, "BadRequest", &e),
            };
            let now = shared.clock.now();
            let mut world = shared.lock();
            if let Some(q) = body.get("Query").and_then(Value::as_str) {
                world.hunting_queries.push(q.to_string());
            }
            match hunting::run(&world, now, &body) {
                Ok(mut v) => {
                    if let Value::Object(o) = &mut v {
                        o.insert(
                            "@odata.context".into(),
                            json!(format!(
                                "{}/v1.0/$metadata#microsoft.graph.security.huntingQueryResults",
                                shared.bases.graph
                            )),
                        );
                    }
                    Resp::json(200, &v)
                }
                Err(e) => graph_error(400, "BadRequest", &e),
            }
        }
        (_, ["v1.0", "users", ..]) => match crate::graph_mail::handle(shared, req, &seg) {
            Some(r) => r,
            None => graph_error(
                400,
                "BadRequest",
                &format!(
                    "Resource not found for the segment '{}'.",
                    seg.last().unwrap_or(&"")
                ),
            ),
        },
        (_, ["v1.0", "security", ..])
            if ["alerts_v2", "incidents", "runHuntingQuery"]
                .contains(seg.get(2).unwrap_or(&"")) =>
        {
            graph_error(
                405,
                "Request_BadRequest",
                &format!("The HTTP method '{m}' is not allowed for this resource."),
            )
        }
        _ => graph_error(
            400,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                seg.last().unwrap_or(&"")
            ),
        ),
    }
}

fn not_found(kind: &str, id: &str) -> Resp {
    graph_error(
        404,
        "NotFound",
        &format!("The requested {kind} '{id}' was not found."),
    )
}

pub(crate) fn render_alert(world: &World, a: &Alert) -> Value {
    let comments: Vec<Value> = a.comments.iter().map(comment_json).collect();
    if let Some(raw) = &a.spec.raw {
        let mut raw = raw.clone();
        if let (Value::Object(o), false) = (&mut raw, comments.is_empty()) {
            o.insert("comments".into(), Value::Array(comments));
        }
        return raw;
    }
    let s = &a.spec;
    let tenant = &world.cfg.tenant_id;
    let evidence: Vec<Value> = s
        .evidence
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if let Value::Object(o) = &mut e {
                let defaults = [
                    ("createdDateTime", json!(iso(a.created))),
                    ("verdict", json!("unknown")),
                    ("remediationStatus", json!("none")),
                    ("remediationStatusDetails", Value::Null),
                    ("roles", json!([])),
                    ("tags", json!([])),
                ];
                for (k, v) in defaults {
                    o.entry(k).or_insert(v);
                }
            }
            e
        })
        .collect();
    let incident_url = format!(
        "https://security.microsoft.com/incidents/{}?tid={tenant}",
        s.incident_id
    );
    json!({
        "@odata.type": "#microsoft.graph.security.alert",
        "id": a.id,
        "providerAlertId": format!("{}-provider", a.id),
        "incidentId": if s.incident_id.is_empty() { Value::Null } else { json!(s.incident_id) },
        "status": s.status,
        "severity": s.severity,
        "classification": null,
        "determination": null,
        "serviceSource": s.service_source,
        "detectionSource": s.detection_source.clone().unwrap_or_else(|| s.service_source.clone()),
        "productName": "Microsoft Defender for Office 365",
        "detectorId": format!("{:016x}", fxhash(&s.title)),
        "tenantId": tenant,
        "title": s.title,
        "description": if s.description.is_empty() { format!("{}. Investigate the message and its URLs.", s.title) } else { s.description.clone() },
        "recommendedActions": "",
        "category": s.category,
        "assignedTo": null,
        "alertWebUrl": format!("https://security.microsoft.com/alerts/{}?tid={tenant}", a.id),
        "incidentWebUrl": incident_url,
        "actorDisplayName": null,
        "threatDisplayName": null,
        "threatFamilyName": null,
        "mitreTechniques": ["T1566"],
        "createdDateTime": iso(a.created),
        "lastUpdateDateTime": iso(a.last_updated),
        "firstActivityDateTime": iso(a.created - chrono::Duration::minutes(2)),
        "lastActivityDateTime": iso(a.created - chrono::Duration::minutes(1)),
        "resolvedDateTime": null,
        "comments": comments,
        "evidence": evidence,
        "systemTags": [],
        "alertPolicyId": null,
        "additionalData": {},
    })
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn comment_json(c: &Comment) -> Value {
    json!({
        "@odata.type": "microsoft.graph.security.alertComment",
        "comment": c.comment,
        "createdByDisplayName": c.created_by_display_name,
        "createdDateTime": c.created_date_time,
    })
}

// ---------- $filter ----------

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Time(DateTime<Utc>),
    Null,
}

#[derive(Debug, Clone)]
struct Clause {
    field: String,
    op: String,
    value: Literal,
}

const STRING_FIELDS: &[&str] = &[
    "serviceSource",
    "detectionSource",
    "severity",
    "status",
    "classification",
    "determination",
    "assignedTo",
    "incidentId",
    "providerAlertId",
    "category",
];
const TIME_FIELDS: &[&str] = &[
    "lastUpdateDateTime",
    "createdDateTime",
    "firstActivityDateTime",
    "lastActivityDateTime",
    "resolvedDateTime",
];

fn enum_values(field: &str) -> Option<&'static [&'static str]> {
    match field {
        "severity" => Some(&[
            "unknown",
            "informational",
            "low",
            "medium",
            "high",
            "unknownFutureValue",
        ]),
        "status" => Some(&[
            "unknown",
            "new",
            "inProgress",
            "resolved",
            "unknownFutureValue",
        ]),
        "serviceSource" | "detectionSource" => None,
        _ => None,
    }
}

fn tokenize_filter(text: &str) -> Result<Vec<(String, bool)>, String> {
    // (token, was_quoted)
    let mut out = vec![];
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err("Invalid filter clause: unterminated string literal.".into())
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push((s, true));
        } else if c == '(' || c == ')' {
            return Err("Invalid filter clause: parentheses and functions are not supported by this endpoint.".into());
        } else {
            let mut s = String::new();
            while i < chars.len() && !chars[i].is_whitespace() {
                s.push(chars[i]);
                i += 1;
            }
            out.push((s, false));
        }
    }
    Ok(out)
}

fn parse_filter(text: &str) -> Result<Vec<Clause>, String> {
    let tokens = tokenize_filter(text)?;
    let mut clauses = vec![];
    let mut i = 0;
    while i < tokens.len() {
        if !clauses.is_empty() {
            let (t, q) = &tokens[i];
            if *q || !t.eq_ignore_ascii_case("and") {
                return Err(format!(
                    "Invalid filter clause: expected 'and' but found '{t}'."
                ));
            }
            i += 1;
        }
        let (Some((field, false)), Some((op, false)), Some((value, quoted))) =
            (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2))
        else {
            return Err(format!(
                "Invalid filter clause: syntax error at position {i} in '{text}'."
            ));
        };
        i += 3;
        let op = op.to_ascii_lowercase();
        if !["eq", "ne", "gt", "ge", "lt", "le"].contains(&op.as_str()) {
            return Err(format!(
                "Invalid filter clause: unsupported operator '{op}'."
            ));
        }
        let value = if STRING_FIELDS.contains(&field.as_str()) {
            if !["eq", "ne"].contains(&op.as_str()) {
                return Err(format!("Invalid filter clause: operator '{op}' is not supported on property '{field}'."));
            }
            if !quoted && value == "null" {
                Literal::Null
            } else if !quoted {
                return Err(format!("Invalid filter clause: '{value}' is not a string literal; quote it as '{value}'."));
            } else {
                if let Some(allowed) = enum_values(field) {
                    if !allowed.contains(&value.as_str()) {
                        return Err(format!(
                            "The string '{value}' is not a valid enumeration type constant."
                        ));
                    }
                }
                Literal::Str(value.clone())
            }
        } else if TIME_FIELDS.contains(&field.as_str()) {
            if *quoted {
                return Err(format!("Invalid filter clause: A binary operator with incompatible types was detected. Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind '{op}'."));
            }
            if value == "null" {
                Literal::Null
            } else {
                let t = DateTime::parse_from_rfc3339(value).map_err(|_| {
                    format!("Invalid filter clause: the DateTimeOffset text '{value}' should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?'.")
                })?;
                Literal::Time(t.with_timezone(&Utc))
            }
        } else {
            return Err(format!("Invalid filter clause: Could not find a property named '{field}' on type 'microsoft.graph.security.alert'."));
        };
        clauses.push(Clause {
            field: field.clone(),
            op,
            value,
        });
    }
    Ok(clauses)
}

fn clause_matches(alert: &Value, is_raw: bool, c: &Clause) -> bool {
    let v = alert.get(&c.field);
    if is_raw && v.is_none() {
        return true; // hostile raw alerts: be lenient about what they lack
    }
    let v = v.unwrap_or(&Value::Null);
    let ord = match (&c.value, v) {
        (Literal::Null, Value::Null) => Some(std::cmp::Ordering::Equal),
        (Literal::Null, _) => None,
        (Literal::Str(s), Value::String(x)) => Some(x.as_str().cmp(s.as_str())),
        (Literal::Time(t), Value::String(x)) => match DateTime::parse_from_rfc3339(x) {
            Ok(x) => Some(x.with_timezone(&Utc).cmp(t)),
            Err(_) => return is_raw,
        },
        _ => None,
    };
    use std::cmp::Ordering::*;
    match c.op.as_str() {
        "eq" => ord == Some(Equal),
        "ne" => ord != Some(Equal),
        "gt" => ord == Some(Greater),
        "ge" => matches!(ord, Some(Greater | Equal)),
        "lt" => ord == Some(Less),
        "le" => matches!(ord, Some(Less | Equal)),
        _ => false,
    }
}

fn list_alerts(shared: &Shared, req: &Req) -> Resp {
    let mut world = shared.lock();
    let page_cap = world.cfg.alert_page_size;
    let (ids, page_size) = if let Some(token) = req.query("$skiptoken") {
        match world.alert_pages.remove(token) {
            Some(p) => p,
            None => {
                return graph_error(
                    400,
                    "BadRequest",
                    "The $skiptoken is invalid or has expired.",
                )
            }
        }
    } else {
        let top = match req.query("$top").map(str::parse::<usize>) {
            None => page_cap,
            Some(Ok(n)) if n >= 1 => n.min(1000).min(page_cap),
            Some(_) => {
                return graph_error(
                    400,
                    "BadRequest",
                    "Invalid value for $top: it must be a positive integer.",
                )
            }
        };
        let skip = match req.query("$skip").map(str::parse::<usize>) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => return graph_error(400, "BadRequest", "Invalid value for $skip."),
        };
        let clauses = match req.query("$filter").map(parse_filter) {
            None => vec![],
            Some(Ok(c)) => c,
            Some(Err(e)) => return graph_error(400, "BadRequest", &e),
        };
        let (order_field, descending) = match req.query("$orderby").map(str::trim) {
            None => ("createdDateTime", true),
            Some(o) => {
                let mut parts = o.split_whitespace();
                let field = parts.next().unwrap_or_default();
                let dir = parts.next().unwrap_or("asc");
                if !["createdDateTime", "lastUpdateDateTime"].contains(&field)
                    || !["asc", "desc"].contains(&dir)
                {
                    return graph_error(400, "BadRequest", &format!("Invalid $orderby '{o}'."));
                }
                (field, dir == "desc")
            }
        };
        let mut matched: Vec<(DateTime<Utc>, String)> = world
            .alerts
            .iter()
            .filter_map(|a| {
                let v = render_alert(&world, a);
                let is_raw = a.spec.raw.is_some();
                clauses
                    .iter()
                    .all(|c| clause_matches(&v, is_raw, c))
                    .then(|| {
                        let t = if order_field == "createdDateTime" {
                            a.created
                        } else {
                            a.last_updated
                        };
                        (t, a.id.clone())
                    })
            })
            .collect();
        matched.sort();
        if descending {
            matched.reverse();
        }
        (
            matched.into_iter().skip(skip).map(|(_, id)| id).collect(),
            top,
        )
    };
    let (page, rest) = ids.split_at(page_size.min(ids.len()));
    let value: Vec<Value> = page
        .iter()
        .filter_map(|id| world.alerts.iter().find(|a| &a.id == id))
        .map(|a| render_alert(&world, a))
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/v1.0/$metadata#security/alerts_v2",
            shared.bases.graph
        )),
    );
    if req.query("$count") == Some("true") {
        body.insert("@odata.count".into(), json!(ids.len()));
    }
    if !rest.is_empty() {
        let token = opaque(32);
        world
            .alert_pages
            .insert(token.clone(), (rest.to_vec(), page_size));
        body.insert(
            "@odata.nextLink".into(),
            json!(format!(
                "{}/v1.0/security/alerts_v2?$skiptoken={token}",
                shared.bases.graph
            )),
        );
    }
    body.insert("value".into(), Value::Array(value));
    Resp::json(200, &Value::Object(body))
}

fn add_comment(shared: &Shared, req: &Req, id: &str) -> Resp {
    let body = match req.json() {
        Ok(b) => b,
        Err(e) => return graph_error(400, "BadRequest", &e),
    };
    let Some(text) = body.get("comment").and_then(Value::as_str) else {
        return graph_error(
            400,
            "BadRequest",
            "The property 'comment' is required and must be a string.",
        );
    };
    if text.trim().is_empty() {
        return graph_error(400, "BadRequest", "The comment must not be empty.");
    }
    if let Some(t) = body.get("@odata.type").and_then(Value::as_str) {
        if t.trim_start_matches('#') != "microsoft.graph.security.alertComment" {
            return graph_error(400, "BadRequest", &format!("Invalid @odata.type '{t}'."));
        }
    }
    let now = shared.clock.now();
    let mut world = shared.lock();
    let name = world.cfg.app_display_name.clone();
    let bump = world.cfg.comment_updates_alert;
    let Some(alert) = world.alerts.iter_mut().find(|a| a.id == id) else {
        return not_found("alert", id);
    };
    alert.comments.push(Comment {
        comment: text.to_string(),
        created_by_display_name: name,
        created_date_time: iso(now),
    });
    if bump {
        alert.last_updated = now;
    }
    let value: Vec<Value> = alert.comments.iter().map(comment_json).collect();
    Resp::json(
        200,
        &json!({
            "@odata.context": format!("{}/v1.0/$metadata#Collection(microsoft.graph.security.alertComment)", shared.bases.graph),
            "value": value,
        }),
    )
}

fn render_incident(shared: &Shared, world: &World, i: &Incident) -> Value {
    json!({
        "@odata.context": format!("{}/v1.0/$metadata#security/incidents/$entity", shared.bases.graph),
        "@odata.type": "#microsoft.graph.security.incident",
        "id": i.id,
        "tenantId": world.cfg.tenant_id,
        "displayName": i.display_name,
        "description": null,
        "status": i.status,
        "severity": i.severity,
        "classification": i.classification.clone().unwrap_or_else(|| "unknown".into()),
        "determination": i.determination.clone().unwrap_or_else(|| "unknown".into()),
        "assignedTo": i.assigned_to,
        "customTags": i.custom_tags,
        "systemTags": i.system_tags,
        "incidentWebUrl": format!("https://security.microsoft.com/incidents/{}?tid={}", i.id, world.cfg.tenant_id),
        "redirectIncidentId": null,
        "createdDateTime": iso(i.created),
        "lastUpdateDateTime": iso(i.last_update),
        "summary": null,
        "comments": [],
    })
}

fn patch_incident(shared: &Shared, req: &Req, id: &str) -> Resp {
    let body = match req.json() {
        Ok(Value::Object(o)) => o,
        Ok(_) => return graph_error(400, "BadRequest", "The request body must be a JSON object."),
        Err(e) => return graph_error(400, "BadRequest", &e),
    };
    let now = shared.clock.now();
    let mut world = shared.lock();
    if !world.incidents.contains_key(id) {
        return not_found("incident", id);
    }
    let tags = match body.get("customTags") {
        None => None,
        Some(Value::Array(a)) => {
            let mut tags = vec![];
            for t in a {
                match t.as_str() {
                    Some(s) => tags.push(s.to_string()),
                    None => {
                        return graph_error(
                            400,
                            "BadRequest",
                            "customTags must be an array of strings.",
                        )
                    }
                }
            }
            Some(tags)
        }
        Some(_) => {
            return graph_error(400, "BadRequest", "customTags must be an array of strings.")
        }
    };
    let status = match body.get("status") {
        None => None,
        Some(Value::String(s))
            if [
                "active",
                "resolved",
                "inProgress",
                "redirected",
                "awaitingAction",
                "unknownFutureValue",
            ]
            .contains(&s.as_str()) =>
        {
            Some(s.clone())
        }
        Some(other) => {
            return graph_error(
                400,
                "BadRequest",
                &format!("The value {other} is not a valid incident status."),
            )
        }
    };
    let str_field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(incident) = world.incidents.get_mut(id) else {
        return not_found("incident", id);
    };
    incident.patches.push(Value::Object(body.clone()));
    if let Some(tags) = tags {
        incident.custom_tags = tags;
    }
    if let Some(s) = status {
        incident.status = s;
    }
    if let Some(v) = str_field("assignedTo") {
        incident.assigned_to = Some(v);
    }
    if let Some(v) = str_field("classification") {
        incident.classification = Some(v);
    }
    if let Some(v) = str_field("determination") {
        incident.determination = Some(v);
    }
    incident.last_update = now;
    let incident = incident.clone();
    Resp::json(200, &render_incident(shared, &world, &incident))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parsing() {
        let c = parse_filter("serviceSource eq 'microsoftDefenderForOffice365' and lastUpdateDateTime ge 2026-12-01T10:00:00Z").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0].value,
            Literal::Str("microsoftDefenderForOffice365".into())
        );
        assert!(matches!(c[1].value, Literal::Time(_)));
        assert!(parse_filter("severity eq 'nope'").is_err());
        assert!(parse_filter("lastUpdateDateTime gt '2026-01-01T00:00:00Z'").is_err());
        assert!(parse_filter("contains(title,'x')").is_err());
        assert!(parse_filter("title eq 'x'").is_err());
        assert!(parse_filter("severity eq 'high' or severity eq 'low'").is_err());
        let c = parse_filter("status eq 'new' AND severity eq 'high'").unwrap();
        assert_eq!(c.len(), 2);
    }
}

//! Advanced hunting: just enough KQL to answer
//! `EmailUrlInfo | where NetworkMessageId in ("a","b") | project NetworkMessageId, Url, UrlDomain, UrlLocation`.

use crate::state::{iso, World};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

const COLUMNS: &[(&str, &str)] = &[
    ("Timestamp", "DateTime"),
    ("NetworkMessageId", "String"),
    ("Url", "String"),
    ("UrlDomain", "String"),
    ("UrlLocation", "String"),
    ("ReportId", "String"),
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Pipe,
    LParen,
    RParen,
    Comma,
    Op(String),
}

fn lex(q: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = vec![];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(
                                "Query could not be parsed: unterminated string literal.".into()
                            )
                        }
                        Some('\\') => match chars.get(i + 1) {
                            Some(e @ ('"' | '\\' | '\'')) => {
                                s.push(*e);
                                i += 2;
                            }
                            Some('n') => {
                                s.push('\n');
                                i += 2;
                            }
                            Some('t') => {
                                s.push('\t');
                                i += 2;
                            }
                            _ => {
                                return Err(format!(
                                "Query could not be parsed: invalid escape sequence at offset {i}."
                            ))
                            }
                        },
                        Some(ch) if *ch == quote => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '=' | '!' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                if ["==", "=~", "!="].contains(&two.as_str()) {
                    out.push(Tok::Op(two));
                    i += 2;
                } else {
                    return Err(format!("Query could not be parsed at '{two}'."));
                }
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut s = String::new();
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '~')
                {
                    s.push(chars[i]);
                    i += 1;
                }
                out.push(Tok::Ident(s));
            }
            other => {
                return Err(format!(
                    "Query could not be parsed: unexpected character '{other}'."
                ))
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Query {
    /// Each `where` stage: the message ids allowed.
    pub id_filters: Vec<BTreeSet<String>>,
    /// Projected columns (None = all).
    pub project: Option<Vec<String>>,
}

pub(crate) fn parse(q: &str) -> Result<Query, String> {
    let toks = lex(q)?;
    let mut it = toks.into_iter().peekable();
    match it.next() {
        Some(Tok::Ident(t)) if t == "EmailUrlInfo" => {}
        Some(Tok::Ident(t)) => {
            return Err(format!("Failed to resolve table or column expression named '{t}' (this simulator knows only EmailUrlInfo)."))
        }
        _ => return Err("Query could not be parsed: expected a table name.".into()),
    }
    let mut query = Query::default();
    while let Some(tok) = it.next() {
        if tok != Tok::Pipe {
            return Err(format!(
                "Query could not be parsed: expected '|' but found {tok:?}."
            ));
        }
        match it.next() {
            Some(Tok::Ident(op)) if op == "where" => {
                match it.next() {
                    Some(Tok::Ident(col)) if col == "NetworkMessageId" => {}
                    Some(Tok::Ident(col)) if COLUMNS.iter().any(|(c, _)| *c == col) => {
                        return Err(format!("This simulator supports 'where' only on NetworkMessageId, not on '{col}'."))
                    }
                    other => return Err(format!("Failed to resolve column in 'where': {other:?}.")),
                }
                let mut ids = BTreeSet::new();
                match it.next() {
                    Some(Tok::Op(op)) if op == "==" => match it.next() {
                        Some(Tok::Str(s)) => {
                            ids.insert(s);
                        }
                        other => {
                            return Err(format!(
                                "Expected a string literal after '==', found {other:?}."
                            ))
                        }
                    },
                    Some(Tok::Ident(op)) if op == "in" => {
                        if it.next() != Some(Tok::LParen) {
                            return Err("Expected '(' after 'in'.".into());
                        }
                        loop {
                            match it.next() {
                                Some(Tok::Str(s)) => {
                                    ids.insert(s);
                                }
                                other => {
                                    return Err(format!(
                                    "Expected a string literal in the 'in' list, found {other:?}."
                                ))
                                }
                            }
                            match it.next() {
                                Some(Tok::Comma) => continue,
                                Some(Tok::RParen) => break,
                                other => {
                                    return Err(format!(
                                        "Expected ',' or ')' in the 'in' list, found {other:?}."
                                    ))
                                }
                            }
                        }
                    }
                    other => {
                        return Err(format!(
                            "Unsupported operator in 'where': {other:?} (use '==' or 'in')."
                        ))
                    }
                }
                query.id_filters.push(ids);
            }
            Some(Tok::Ident(op)) if op == "project" => {
                let mut cols = vec![];
                loop {
                    match it.next() {
                        Some(Tok::Ident(c)) if COLUMNS.iter().any(|(n, _)| *n == c) => cols.push(c),
                        Some(Tok::Ident(c)) => {
                            return Err(format!(
                            "'project' operator: Failed to resolve scalar expression named '{c}'."
                        ))
                        }
                        other => {
                            return Err(format!(
                                "Expected a column name in 'project', found {other:?}."
                            ))
                        }
                    }
                    match it.peek() {
                        Some(Tok::Comma) => {
                            it.next();
                        }
                        _ => break,
                    }
                }
                if query.project.is_some() {
                    return Err("Only one 'project' stage is supported.".into());
                }
                query.project = Some(cols);
            }
            Some(Tok::Ident(op)) => {
                return Err(format!(
                "Unsupported query operator '{op}' (this simulator supports where and project)."
            ))
            }
            other => {
                return Err(format!(
                    "Query could not be parsed: expected an operator after '|', found {other:?}."
                ))
            }
        }
    }
    Ok(query)
}

/// ISO 8601 duration: PnW, PnD, PTnH, PTnM, PTnS and combinations like P1DT12H.
pub(crate) fn parse_timespan(s: &str) -> Result<Duration, String> {
    let err =
        || format!("Invalid Timespan '{s}': expected an ISO 8601 duration such as P1D or PT12H.");
    let rest = s.strip_prefix('P').ok_or_else(err)?;
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = Duration::zero();
    let mut in_time = false;
    let mut num = String::new();
    for c in rest.chars() {
        match c {
            'T' if !in_time && num.is_empty() => in_time = true,
            '0'..='9' | '.' => num.push(c),
            unit => {
                let n: f64 = num.parse().map_err(|_| err())?;
                num.clear();
                let secs = match (in_time, unit) {
                    (false, 'W') => n * 604_800.0,
                    (false, 'D') => n * 86_400.0,
                    (true, 'H') => n * 3600.0,
                    (true, 'M') => n * 60.0,
                    (true, 'S') => n,
                    _ => return Err(err()),
                };
                total += Duration::milliseconds((secs * 1000.0) as i64);
            }
        }
    }
    if !num.is_empty() {
        return Err(err());
    }
    Ok(total)
}

pub(crate) fn run(world: &World, now: DateTime<Utc>, body: &Value) -> Result<Value, String> {
    let Some(q) = body.get("Query").and_then(Value::as_str) else {
        return Err("The request body must contain the string property 'Query'.".into());
    };
    let span = match body.get("Timespan") {
        None | Some(Value::Null) => Duration::days(30),
        Some(Value::String(s)) => parse_timespan(s)?,
        Some(other) => return Err(format!("Invalid Timespan {other}.")),
    };
    let query = parse(q)?;
    let cols: Vec<String> = query
        .project
        .clone()
        .unwrap_or_else(|| COLUMNS.iter().map(|(c, _)| c.to_string()).collect());
    let results: Vec<Value> = world
        .mails
        .iter()
        .filter(|r| r.visible_from <= now && now - r.timestamp <= span && r.timestamp <= now)
        .filter(|r| {
            query
                .id_filters
                .iter()
                .all(|ids| ids.contains(&r.network_message_id))
        })
        .map(|r| {
            let domain = url::Url::parse(&r.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            let mut o = Map::new();
            for c in &cols {
                let v = match c.as_str() {
                    "Timestamp" => json!(iso(r.timestamp)),
                    "NetworkMessageId" => json!(r.network_message_id),
                    "Url" => json!(r.url),
                    "UrlDomain" => json!(domain),
                    "UrlLocation" => json!(r.location),
                    "ReportId" => json!(format!("{}-{}", r.network_message_id, r.url.len())),
                    _ => Value::Null,
                };
                o.insert(c.clone(), v);
            }
            Value::Object(o)
        })
        .collect();
    let schema: Vec<Value> = cols
        .iter()
        .map(|c| {
            let t = COLUMNS
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, t)| *t)
                .unwrap_or("String");
            json!({"name": c, "type": t})
        })
        .collect();
    Ok(json!({"schema": schema, "results": results}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_connector_query() {
        let q = parse(r#"EmailUrlInfo | where NetworkMessageId in ("a","b\"c", "d\\e") | project NetworkMessageId, Url, UrlDomain, UrlLocation"#).unwrap();
        assert_eq!(q.id_filters.len(), 1);
        let ids: Vec<&str> = q.id_filters[0].iter().map(String::as_str).collect();
        assert_eq!(ids, vec!["a", "b\"c", "d\\e"]);
        assert_eq!(q.project.unwrap().len(), 4);
        let q = parse(r#"EmailUrlInfo | where NetworkMessageId == "x|y""#).unwrap();
        assert!(q.id_filters[0].contains("x|y"));
        assert!(q.project.is_none());
    }

    #[test]
    fn rejects_other_queries() {
        assert!(parse("EmailEvents | take 10")
            .unwrap_err()
            .contains("EmailEvents"));
        assert!(parse("EmailUrlInfo | take 10")
            .unwrap_err()
            .contains("take"));
        assert!(parse(r#"EmailUrlInfo | where Url == "x""#).is_err());
        assert!(parse(r#"EmailUrlInfo | where NetworkMessageId in ("a""#).is_err());
        assert!(parse(r#"EmailUrlInfo | project Nope"#).is_err());
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("P1D").unwrap(), Duration::days(1));
        assert_eq!(parse_timespan("P7D").unwrap(), Duration::days(7));
        assert_eq!(parse_timespan("PT12H").unwrap(), Duration::hours(12));
        assert_eq!(parse_timespan("P1DT12H").unwrap(), Duration::hours(36));
        assert_eq!(parse_timespan("P1W").unwrap(), Duration::days(7));
        assert!(parse_timespan("1D").is_err());
        assert!(parse_timespan("P1H").is_err());
        assert!(parse_timespan("P").is_err());
    }
}

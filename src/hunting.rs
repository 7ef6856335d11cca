//! Advanced hunting on `EmailUrlInfo`: one batched query per tick for every
//! alert still waiting for its URLs.

use serde_json::Value;

/// Message ids per query (keeps the KQL well under Graph's request limits).
pub const MAX_IDS_PER_QUERY: usize = 200;

/// Network message ids are GUIDs; anything else is refused before it gets
/// near a query (KQL injection).
pub fn valid_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b'@')
}

/// A KQL string literal with `\` and `"` escaped.
pub fn kql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The request body for `POST /security/runHuntingQuery`.
pub fn query_body(message_ids: &[String], lookback_days: u32) -> Value {
    let list: Vec<String> = message_ids
        .iter()
        .filter(|id| valid_message_id(id))
        .map(|id| kql_string(id))
        .collect();
    let query = format!(
        "EmailUrlInfo | where NetworkMessageId in ({}) | project NetworkMessageId, Url, UrlDomain, UrlLocation",
        list.join(",")
    );
    serde_json::json!({ "Query": query, "Timespan": format!("P{}D", lookback_days.max(1)) })
}

/// One row: which message carries which URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRow {
    pub network_message_id: String,
    pub url: String,
}

/// Parse the hunting response; rows without the two fields are skipped.
pub fn parse_results(body: &[u8]) -> Result<Vec<UrlRow>, String> {
    let v: Value =
        crate::alert::json_lossy(body).map_err(|e| format!("hunting response is not JSON: {e}"))?;
    let rows = v
        .get("results")
        .or_else(|| v.get("Results"))
        .and_then(Value::as_array)
        .ok_or("hunting response: field `results` is missing or not an array")?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let id = r.get("NetworkMessageId")?.as_str()?;
            let url = r.get("Url")?.as_str()?;
            Some(UrlRow {
                network_message_id: id.to_string(),
                url: url.to_string(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_filters_ids() {
        assert_eq!(kql_string(r#"a"b\c"#), r#""a\"b\\c""#);
        let body = query_body(&["id-1".into(), "x\") | take 1 //".into()], 7);
        let q = body["Query"].as_str().unwrap();
        assert!(q.contains("in (\"id-1\")"), "{q}");
        assert!(!q.contains("take 1"));
        assert_eq!(body["Timespan"], "P7D");
    }

    #[test]
    fn parses_rows_either_case() {
        let rows = parse_results(
            br#"{"schema":[],"results":[{"NetworkMessageId":"m","Url":"http://a/"},{"Url":3}]}"#,
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![UrlRow {
                network_message_id: "m".into(),
                url: "http://a/".into()
            }]
        );
        assert!(parse_results(b"{}").is_err());
    }
}

//! Transport-neutral request/response types and small helpers shared by the services.

use bytes::Bytes;
use rand::Rng;
use serde_json::Value;

/// A parsed form body (urlencoded or multipart).
#[derive(Clone, Debug, Default)]
pub(crate) struct Form {
    pub fields: Vec<(String, String)>,
    /// (field name, file name, content)
    pub files: Vec<(String, String, Bytes)>,
}

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A request as the service handlers see it.
#[derive(Clone, Debug)]
pub(crate) struct Req {
    pub method: String,
    /// Percent-encoded path, without the query string.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: axum::http::HeaderMap,
    pub body: Bytes,
    /// Set when the body is a form (urlencoded or multipart).
    pub form: Option<Form>,
    /// An inner request of a Graph `$batch` call.
    pub in_batch: bool,
}

impl Req {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Path segments, percent-decoded.
    pub fn segments(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect()
    }

    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("body is not valid JSON: {e}"))
    }
}

/// A response.
#[derive(Clone, Debug)]
pub(crate) struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(status: u16, body: &Value) -> Resp {
        Resp {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: raw_bytes(serde_json::to_vec(body).unwrap_or_default()),
        }
    }
}

/// Hostile-input tests: every `[[sim-byte:HH]]` in a served JSON body becomes the raw
/// byte `0xHH`, so a scenario can make a simulator send non-UTF-8 bytes.
pub(crate) fn raw_bytes(body: Vec<u8>) -> Vec<u8> {
    const MARK: &[u8] = b"[[sim-byte:";
    if !body.windows(MARK.len()).any(|w| w == MARK) {
        return body;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let rest = &body[i..];
        if rest.starts_with(MARK)
            && rest.len() >= MARK.len() + 4
            && &rest[MARK.len() + 2..MARK.len() + 4] == b"]]"
        {
            let hex = std::str::from_utf8(&rest[MARK.len()..MARK.len() + 2]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += MARK.len() + 4;
                continue;
            }
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A random GUID-shaped string.
pub(crate) fn guid() -> String {
    let mut rng = rand::thread_rng();
    let b: [u8; 16] = rng.gen();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random opaque token of URL-safe characters.
pub(crate) fn opaque(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(req: &Req) -> Option<&str> {
    let h = req.header("authorization")?.trim();
    let (scheme, rest) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}

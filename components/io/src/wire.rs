//! One HTTP exchange over `wasi:http/outgoing-handler`, with timeouts.
//!
//! spin-sdk 5.2's `http::send` passes no request options, so a server that
//! accepts a connection and never answers would hold a tick until the host
//! gives up. This sends through the same binding with connect, first-byte
//! and between-bytes timeouts, which Spin's host enforces.

use std::time::Duration;

use spin_sdk::http::Method;
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::{
    Fields, Method as WasiMethod, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(15);
pub const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are cut off (no API we call sends more).
const MAX_RESPONSE: usize = 32 * 1024 * 1024;

pub struct Exchange {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

fn method(m: &Method) -> WasiMethod {
    match m {
        Method::Get => WasiMethod::Get,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Patch => WasiMethod::Patch,
        Method::Delete => WasiMethod::Delete,
        Method::Head => WasiMethod::Head,
        Method::Options => WasiMethod::Options,
        other => WasiMethod::Other(other.to_string()),
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Send one request and read the whole answer, blocking this tick.
pub fn exchange(
    m: &Method,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Exchange, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
    let fields = Fields::new();
    for (k, v) in headers {
        fields
            .append(&k.to_ascii_lowercase(), v.as_bytes())
            .map_err(|e| format!("header {k}: {e:?}"))?;
    }
    let req = OutgoingRequest::new(fields);
    req.set_method(&method(m)).map_err(|_| "invalid method")?;
    req.set_scheme(Some(&match parsed.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    }))
    .map_err(|_| "invalid scheme")?;
    let authority = match parsed.port() {
        Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or_default()),
        None => parsed.host_str().unwrap_or_default().to_string(),
    };
    req.set_authority(Some(&authority))
        .map_err(|_| "invalid authority")?;
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    req.set_path_with_query(Some(&path))
        .map_err(|_| "invalid path")?;
    let out_body = req.body().map_err(|_| "request body already taken")?;

    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(nanos(CONNECT_TIMEOUT)));
    let _ = options.set_first_byte_timeout(Some(nanos(FIRST_BYTE_TIMEOUT)));
    let _ = options.set_between_bytes_timeout(Some(nanos(BETWEEN_BYTES_TIMEOUT)));
    let pending = outgoing_handler::handle(req, Some(options)).map_err(|e| format!("{e:?}"))?;

    {
        let stream = out_body.write().map_err(|_| "request body stream")?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing request body: {e:?}"))?;
        }
    }
    OutgoingBody::finish(out_body, None).map_err(|e| format!("{e:?}"))?;

    pending.subscribe().block();
    let resp = match pending.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(code))) => return Err(format!("{code:?}")),
        Some(Err(())) | None => return Err("response already taken".into()),
    };
    let status = resp.status();
    let headers = resp.headers().entries();
    let in_body = resp.consume().map_err(|_| "response body already taken")?;
    let mut data = Vec::new();
    {
        let stream = in_body.stream().map_err(|_| "response body stream")?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    if data.len() + chunk.len() > MAX_RESPONSE {
                        return Err(format!("response larger than {MAX_RESPONSE} bytes"));
                    }
                    data.extend_from_slice(&chunk);
                }
                Err(wasi::io::streams::StreamError::Closed) => break,
                Err(e) => return Err(format!("reading response: {e:?}")),
            }
        }
    }
    Ok(Exchange {
        status,
        headers,
        body: data,
    })
}

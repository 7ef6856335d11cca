//! Attachments of user-reported mail (`analyze_user_reported_attachments`):
//! which alerts qualify, the Graph mail requests and answers, which
//! attachments are analysed, how their bytes are chunked into the store and
//! put back together, and the multipart body VMRay gets.
//!
//! The poller (which holds the Graph credentials) fetches the files and stores
//! them under `att:{sha256}`; the VMRay component (which holds the VMRay key)
//! reads them from there. Neither reaches the other's service.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::alert::Alert;
use crate::records::{
    AlertRecord, AlertStage, AttachmentFetch, AttachmentNote, FileBlob, FileRef, MessageRef,
};

/// Raw bytes per chunk record: under every Spin key-value backend's value
/// limit (Cosmos DB items are ≤ 2 MB, and JSON would not be used for these).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Largest attachment analysed.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Files analysed per alert, at most (the rest is named on the alert).
pub const MAX_FILES_PER_ALERT: usize = 10;
/// Notes kept per alert.
pub const MAX_NOTES: usize = 20;
/// Mails per alert whose attachments are fetched.
pub const MAX_MESSAGES: usize = 5;
/// Fetch attempts (Graph errors other than 403/404) before giving up.
pub const MAX_FETCH_TRIES: u32 = 5;
/// Wait between fetch attempts.
pub const FETCH_RETRY_MINUTES: i64 = 3;

/// Is this a user-reported alert? MDO's "Email reported by user as malware or
/// phish" (and custom policies named alike): the title says "reported by
/// user", "user-reported" or "user reported", in any case. Titles are in
/// English in Graph whatever the tenant's language.
pub fn is_user_reported(title: &str) -> bool {
    let t = title.to_ascii_lowercase();
    ["reported by user", "user-reported", "user reported"]
        .iter()
        .any(|p| t.contains(p))
}

/// A mailbox and message id we are willing to put into a Graph URL.
pub fn valid_message_ref(m: &MessageRef) -> bool {
    let mb = &m.mailbox;
    let id = &m.internet_message_id;
    let printable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    !mb.is_empty()
        && mb.len() <= 254
        && printable(mb)
        && mb.contains('@')
        && !mb.contains(['/', '\\', '?', '#', '%', '\'', '"'])
        && !id.is_empty()
        && id.len() <= 500
        && printable(id)
}

/// At intake: should the poller fetch this alert's attachments? Sets the
/// mails to fetch and a pending fetch when so.
pub fn plan(record: &mut AlertRecord, alert: &Alert, enabled: bool, now: DateTime<Utc>) {
    if !enabled || !is_user_reported(&alert.title) || alert.messages.is_empty() {
        return;
    }
    record.messages = alert.messages.iter().take(MAX_MESSAGES).cloned().collect();
    record.attachments = Some(AttachmentFetch::Pending {
        tries: 0,
        next_try: now,
        held_no_url_reason: None,
    });
    settle(record);
}

/// Is the attachment fetch of this record due?
pub fn fetch_due(record: &AlertRecord, now: DateTime<Utc>) -> bool {
    matches!(record.attachments, Some(AttachmentFetch::Pending { next_try, .. }) if next_try <= now)
}

/// Is the attachment fetch still to be done (the VMRay side waits)?
pub fn pending(record: &AlertRecord) -> bool {
    matches!(record.attachments, Some(AttachmentFetch::Pending { .. }))
}

const NOTES_HEADING: &str = "Attachments not analysed:";

fn notes_text(notes: &[AttachmentNote]) -> String {
    let items: Vec<String> = notes
        .iter()
        .map(|n| format!("{} ({})", clean(&n.name), n.reason))
        .collect();
    format!("{NOTES_HEADING} {}", items.join("; "))
}

/// Keep the stage consistent with the attachments. Call after every change
/// to the URLs or the attachments of a record.
///
/// - While the fetch is pending, a "no URL" stage is held back as `ready`
///   (the VMRay side waits for the fetch; the write-back waits for VMRay).
/// - With files, an alert is `ready` even without URLs.
/// - Without URLs or files it is `no_urls`, the reason naming the notes.
pub fn settle(record: &mut AlertRecord) {
    if matches!(record.stage, AlertStage::AwaitingUrls { .. }) {
        return;
    }
    if let Some(AttachmentFetch::Pending {
        held_no_url_reason, ..
    }) = &mut record.attachments
    {
        if let AlertStage::NoUrls { reason } = &record.stage {
            *held_no_url_reason = Some(reason.clone());
            record.stage = AlertStage::Ready;
        }
        return;
    }
    match &mut record.stage {
        AlertStage::NoUrls { .. } if !record.files.is_empty() => record.stage = AlertStage::Ready,
        AlertStage::NoUrls { reason }
            if !record.attachment_notes.is_empty() && !reason.contains(NOTES_HEADING) =>
        {
            reason.push_str(". ");
            reason.push_str(&notes_text(&record.attachment_notes));
        }
        AlertStage::Ready if record.urls.is_empty() && record.files.is_empty() => {
            let mut reason = "the alert names no URL".to_string();
            if !record.attachment_notes.is_empty() {
                reason.push_str(". ");
                reason.push_str(&notes_text(&record.attachment_notes));
            }
            record.stage = AlertStage::NoUrls { reason };
        }
        _ => {}
    }
}

/// The fetch is over (files stored, notes made): the record may become ready.
pub fn finish(record: &mut AlertRecord) {
    let held = match record.attachments.take() {
        Some(AttachmentFetch::Pending {
            held_no_url_reason, ..
        }) => held_no_url_reason,
        _ => None,
    };
    record.attachments = Some(AttachmentFetch::Done);
    if let Some(reason) = held {
        if record.urls.is_empty() && matches!(record.stage, AlertStage::Ready) {
            record.stage = AlertStage::NoUrls { reason };
        }
    }
    settle(record);
}

/// A failed fetch: another try later, or (after [`MAX_FETCH_TRIES`]) a note
/// and the end of the fetch. Returns true when it gave up.
pub fn fetch_failed(record: &mut AlertRecord, error: &str, now: DateTime<Utc>) -> bool {
    let Some(AttachmentFetch::Pending {
        tries,
        held_no_url_reason,
        ..
    }) = record.attachments.clone()
    else {
        return false;
    };
    let tries = tries + 1;
    if tries >= MAX_FETCH_TRIES {
        note(
            record,
            "attachments of the reported mail",
            &format!("could not be fetched from Graph after {tries} tries: {error}"),
        );
        finish(record);
        true
    } else {
        record.attachments = Some(AttachmentFetch::Pending {
            tries,
            next_try: now + Duration::minutes(FETCH_RETRY_MINUTES),
            held_no_url_reason,
        });
        false
    }
}

/// Note an attachment that is not analysed (de-duplicated, bounded).
pub fn note(record: &mut AlertRecord, name: &str, reason: &str) {
    let name: String = clean(name).chars().take(200).collect();
    if record.attachment_notes.len() < MAX_NOTES
        && !record
            .attachment_notes
            .iter()
            .any(|n| n.name == name && n.reason == reason)
    {
        record.attachment_notes.push(AttachmentNote {
            name,
            reason: reason.to_string(),
        });
    }
}

/// Add a stored file to the record; false (and a note) past the limit.
pub fn add_file(record: &mut AlertRecord, file: FileRef) -> bool {
    if record.files.iter().any(|f| f.sha256 == file.sha256) {
        return true;
    }
    if record.files.len() >= MAX_FILES_PER_ALERT {
        note(
            record,
            &file.filename,
            &format!("more than {MAX_FILES_PER_ALERT} attachments in the alert"),
        );
        return false;
    }
    record.files.push(file);
    true
}

/// Control characters out (names end up in comments and logs).
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
}

fn path_seg(s: &str) -> String {
    // `form_urlencoded` turns spaces into `+`, which a path keeps literally;
    // `@` may stay as it is in a path (user principal names read better).
    enc(s).replace('+', "%20").replace("%40", "@")
}

/// `GET /v1.0/users/{mailbox}/messages?$filter=internetMessageId eq '…'&$select=…`
pub fn message_lookup_url(graph_base: &str, m: &MessageRef) -> String {
    let filter = format!(
        "internetMessageId eq '{}'",
        m.internet_message_id.replace('\'', "''")
    );
    format!(
        "{graph_base}/v1.0/users/{}/messages?$filter={}&$select=id,subject,hasAttachments",
        path_seg(&m.mailbox),
        enc(&filter).replace('+', "%20")
    )
}

/// `GET /v1.0/users/{mailbox}/messages/{id}/attachments`
pub fn attachments_url(graph_base: &str, mailbox: &str, message_id: &str) -> String {
    format!(
        "{graph_base}/v1.0/users/{}/messages/{}/attachments",
        path_seg(mailbox),
        path_seg(message_id)
    )
}

/// `GET /v1.0/users/{mailbox}/messages/{id}/attachments/{aid}/$value` (raw bytes)
pub fn attachment_value_url(
    graph_base: &str,
    mailbox: &str,
    message_id: &str,
    attachment_id: &str,
) -> String {
    format!(
        "{}/{}/$value",
        attachments_url(graph_base, mailbox, message_id),
        path_seg(attachment_id)
    )
}

fn graph_value(body: &[u8]) -> Result<Vec<Value>, String> {
    let v: Value = crate::alert::json_lossy(body).map_err(|e| format!("not JSON: {e}"))?;
    v.get("value")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| "`value` is missing or not an array".into())
}

/// The ids of the messages a look-up found (usually one; none when the mail
/// was removed or quarantined).
pub fn parse_message_ids(body: &[u8]) -> Result<Vec<String>, String> {
    Ok(graph_value(body)?
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .filter(|id| !id.is_empty() && id.len() <= 1000)
        .map(str::to_string)
        .collect())
}

/// One attachment of a listing.
#[derive(Debug, Clone, PartialEq)]
pub enum Listed {
    /// A file to analyse; `content` when the listing carried `contentBytes`.
    File {
        id: String,
        name: String,
        content_type: String,
        size: u64,
        content: Option<Vec<u8>>,
    },
    /// Not analysed: the note says why.
    Skip(AttachmentNote),
}

/// Decide about each attachment of `GET …/attachments`.
pub fn parse_attachments(body: &[u8]) -> Result<Vec<Listed>, String> {
    let items = graph_value(body)?;
    let mut out = Vec::new();
    for a in items.iter().take(100) {
        let name = a
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .map(|n| clean(n).chars().take(200).collect::<String>())
            .unwrap_or_else(|| "(unnamed)".into());
        let kind = a.get("@odata.type").and_then(Value::as_str).unwrap_or("");
        let skip = |reason: &str| {
            Listed::Skip(AttachmentNote {
                name: name.clone(),
                reason: reason.into(),
            })
        };
        let size = a.get("size").and_then(Value::as_u64).unwrap_or(0);
        match kind.rsplit('.').next().unwrap_or("") {
            "fileAttachment" => {}
            "itemAttachment" => {
                out.push(skip(
                    "an attached mail, event or contact (itemAttachment), not a file",
                ));
                continue;
            }
            "referenceAttachment" => {
                out.push(skip(
                    "a link to a cloud file (referenceAttachment), not a file",
                ));
                continue;
            }
            _ => {
                out.push(skip("an attachment of an unknown kind"));
                continue;
            }
        }
        let Some(id) = a
            .get("id")
            .and_then(Value::as_str)
            .filter(|i| !i.is_empty() && i.len() <= 1000)
        else {
            out.push(skip("Graph gave no attachment id"));
            continue;
        };
        if size > MAX_FILE_BYTES {
            out.push(skip(&too_big(size)));
            continue;
        }
        // Bad base64 or none: the raw bytes are fetched instead.
        let content = a
            .get("contentBytes")
            .and_then(Value::as_str)
            .and_then(|b64| {
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
            });
        let content_type = a
            .get("contentType")
            .and_then(Value::as_str)
            .filter(|c| c.len() <= 200 && c.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
            .unwrap_or("application/octet-stream")
            .to_string();
        out.push(Listed::File {
            id: id.to_string(),
            name,
            content_type,
            size,
            content,
        });
    }
    Ok(out)
}

fn too_big(size: u64) -> String {
    format!(
        "{size} bytes, more than the {} MiB limit",
        MAX_FILE_BYTES / (1024 * 1024)
    )
}

/// Check fetched bytes: `Err(reason)` for a note when they cannot be analysed.
pub fn check_content(bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(())
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Is this a lower-case hex SHA-256?
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The meta record and the chunks of a file to store. Write the chunks
/// (key `att:{sha256}:{n}`) first and the meta record last.
pub fn to_blob<'a>(
    bytes: &'a [u8],
    filename: &str,
    content_type: &str,
    now: DateTime<Utc>,
) -> (FileBlob, Vec<&'a [u8]>) {
    let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
    (
        FileBlob {
            v: crate::records::SCHEMA,
            sha256: sha256_hex(bytes),
            filename: filename.to_string(),
            content_type: content_type.to_string(),
            size: bytes.len() as u64,
            chunks: chunks.len() as u32,
            stored_at: now,
        },
        chunks,
    )
}

/// Put a file back together from its chunks (in order), checking size and hash.
pub fn reassemble(blob: &FileBlob, chunks: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    if chunks.len() != blob.chunks as usize {
        return Err(format!(
            "{} of {} chunks of attachment {} are in the store",
            chunks.len(),
            blob.chunks,
            blob.sha256
        ));
    }
    if chunks.iter().any(|c| c.len() > CHUNK_BYTES) {
        return Err(format!(
            "a chunk of attachment {} is larger than {CHUNK_BYTES} bytes",
            blob.sha256
        ));
    }
    let bytes = chunks.concat();
    if bytes.len() as u64 != blob.size || sha256_hex(&bytes) != blob.sha256 {
        return Err(format!(
            "the stored bytes of attachment {} do not match its size and SHA-256",
            blob.sha256
        ));
    }
    Ok(bytes)
}

/// What an alert's result for a file is called (comments, logs).
pub fn display(file: &FileRef) -> String {
    format!(
        "attachment {} (SHA-256 {})",
        clean(&file.filename),
        file.sha256
    )
}

/// The file name as sent in a multipart header: no quotes, backslashes or
/// control characters, at most 200 characters.
pub fn header_filename(name: &str) -> String {
    let n: String = name
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' | '/' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .take(200)
        .collect();
    if n.trim().is_empty() {
        "attachment.bin".into()
    } else {
        n
    }
}

/// A `multipart/form-data` body: text `fields`, then the file as
/// `file_field`. Returns the content type (with the boundary) and the body.
/// The boundary is derived from the content and checked not to occur in it.
pub fn multipart_body(
    fields: &[(&str, &str)],
    file_field: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> (String, Vec<u8>) {
    let seed = sha256_hex(bytes);
    let mut n = 0u32;
    let boundary = loop {
        let b = format!("mdo-vmray-{}-{n}", &seed[..24]);
        let needle = b.as_bytes();
        let in_parts = fields.iter().any(|(k, v)| k.contains(&b) || v.contains(&b));
        if !in_parts && !bytes.windows(needle.len()).any(|w| w == needle) {
            break b;
        }
        n += 1;
    };
    let mut body = Vec::with_capacity(bytes.len() + 512);
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    let ct = if content_type
        .bytes()
        .all(|b| b.is_ascii_graphic() || b == b' ')
    {
        content_type
    } else {
        "application/octet-stream"
    };
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{}\"\r\nContent-Type: {ct}\r\n\r\n",
            header_filename(filename)
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The `url` of a file's analysis record (`url:f…`): never a URL, since
/// only http and https URLs are analysed.
pub fn analysis_subject(sha256: &str) -> String {
    format!("sha256:{sha256}")
}

/// The SHA-256 of a file's analysis subject; `None` for a URL.
pub fn subject_sha256(subject: &str) -> Option<&str> {
    subject.strip_prefix("sha256:").filter(|h| is_sha256(h))
}

/// `GET /rest/sample/sha256/{hash}`: the ids of the samples with this hash.
pub fn parse_sample_ids(body: &[u8]) -> Result<Vec<u64>, crate::vmray::VmrayError> {
    let d = crate::vmray::data(body)?;
    let items = match d {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    };
    Ok(items
        .iter()
        .filter_map(|s| s.get("sample_id").and_then(Value::as_u64))
        .take(10)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::SCHEMA;
    use serde_json::json;

    fn record(stage: AlertStage) -> AlertRecord {
        AlertRecord {
            v: SCHEMA,
            alert_id: "a".into(),
            incident_id: None,
            title: "Email reported by user as malware or phish".into(),
            created: Utc::now(),
            first_seen: Utc::now(),
            network_message_ids: vec![],
            urls: vec![],
            skipped: vec![],
            stage,
            messages: vec![],
            files: vec![],
            attachment_notes: vec![],
            attachments: None,
        }
    }

    fn file(n: u8) -> FileRef {
        FileRef {
            sha256: sha256_hex(&[n]),
            filename: format!("f{n}.html"),
            size: 1,
        }
    }

    #[test]
    fn file_subjects_and_sample_lookup() {
        let h = sha256_hex(b"x");
        assert_eq!(subject_sha256(&analysis_subject(&h)), Some(h.as_str()));
        assert_eq!(subject_sha256("http://a.example/"), None);
        assert_eq!(subject_sha256("sha256:nothex"), None);
        assert_eq!(
            parse_sample_ids(
                br#"{"result":"ok","data":[{"sample_id":7},{"x":1},{"sample_id":9}]}"#
            )
            .unwrap(),
            vec![7, 9]
        );
        assert!(parse_sample_ids(br#"{"result":"ok","data":[]}"#)
            .unwrap()
            .is_empty());
        assert!(parse_sample_ids(br#"{"result":"error","error_msg":"No such element"}"#).is_err());
    }

    #[test]
    fn which_alerts_are_user_reported() {
        assert!(is_user_reported(
            "Email reported by user as malware or phish"
        ));
        assert!(is_user_reported("User-reported message (custom)"));
        assert!(!is_user_reported(
            "Email messages containing malicious URL removed after delivery"
        ));
        assert!(!is_user_reported(
            "A potentially malicious URL click was detected"
        ));
    }

    #[test]
    fn message_refs_that_could_bend_a_url_are_refused() {
        let ok = MessageRef {
            mailbox: "alice@contoso.example".into(),
            internet_message_id: "<a1@mail.example>".into(),
        };
        assert!(valid_message_ref(&ok));
        for mb in ["", "alice", "a/b@c", "a@b?x", "a b@c", "a'@b"] {
            let m = MessageRef {
                mailbox: mb.into(),
                ..ok.clone()
            };
            assert!(!valid_message_ref(&m), "{mb}");
        }
        let m = MessageRef {
            internet_message_id: "a\r\nb".into(),
            ..ok.clone()
        };
        assert!(!valid_message_ref(&m));
    }

    #[test]
    fn graph_urls_escape_quotes_and_paths() {
        let m = MessageRef {
            mailbox: "alice@contoso.example".into(),
            internet_message_id: "<o'neil&x@mail.example>".into(),
        };
        let u = message_lookup_url("https://graph.microsoft.com", &m);
        assert_eq!(
            u,
            "https://graph.microsoft.com/v1.0/users/alice@contoso.example/messages?$filter=internetMessageId%20eq%20%27%3Co%27%27neil%26x%40mail.example%3E%27&$select=id,subject,hasAttachments"
        );
        let parsed = url::Url::parse(&u).unwrap();
        let filter = parsed
            .query_pairs()
            .find(|(k, _)| k == "$filter")
            .unwrap()
            .1
            .to_string();
        assert_eq!(filter, "internetMessageId eq '<o''neil&x@mail.example>'");
        assert_eq!(
            attachment_value_url("https://g", "a@b", "AA/k=", "x y"),
            "https://g/v1.0/users/a@b/messages/AA%2Fk%3D/attachments/x%20y/$value"
        );
    }

    #[test]
    fn listing_sorts_files_from_the_rest() {
        let body = json!({"value": [
            {"@odata.type": "#microsoft.graph.fileAttachment", "id": "A1", "name": "invoice.html",
             "contentType": "text/html", "size": 5, "isInline": false, "contentBytes": "aGVsbG8="},
            {"@odata.type": "#microsoft.graph.fileAttachment", "id": "A2", "name": "big.bin", "size": 2000000},
            {"@odata.type": "#microsoft.graph.fileAttachment", "id": "A3", "name": "huge.iso", "size": MAX_FILE_BYTES + 1},
            {"@odata.type": "#microsoft.graph.itemAttachment", "id": "A4", "name": "Fwd: hi"},
            {"@odata.type": "#microsoft.graph.referenceAttachment", "id": "A5", "name": "share\r\nlink"},
            {"@odata.type": "#microsoft.graph.fileAttachment", "name": "noid.txt", "size": 1}
        ]})
        .to_string();
        let l = parse_attachments(body.as_bytes()).unwrap();
        assert_eq!(
            l[0],
            Listed::File {
                id: "A1".into(),
                name: "invoice.html".into(),
                content_type: "text/html".into(),
                size: 5,
                content: Some(b"hello".to_vec())
            }
        );
        assert!(
            matches!(&l[1], Listed::File { content: None, content_type, .. } if content_type == "application/octet-stream")
        );
        let reasons: Vec<String> = l[2..]
            .iter()
            .map(|x| match x {
                Listed::Skip(n) => format!("{}: {}", n.name, n.reason),
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(reasons[0].contains("MiB limit"), "{reasons:?}");
        assert!(reasons[1].contains("itemAttachment"));
        assert!(
            reasons[2].starts_with("share  link: ") && reasons[2].contains("referenceAttachment")
        );
        assert!(reasons[3].contains("no attachment id"));
        assert!(parse_attachments(b"{}").is_err());
        assert_eq!(
            parse_message_ids(br#"{"value":[{"id":"M1"},{"x":1}]}"#).unwrap(),
            vec!["M1"]
        );
        assert!(parse_message_ids(br#"{"value":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn chunks_hold_at_most_256_kib_and_come_back_whole() {
        let bytes: Vec<u8> = (0..(1024 * 1024 + 7))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let (blob, chunks) = to_blob(&bytes, "big.bin", "application/octet-stream", Utc::now());
        assert_eq!(blob.chunks, 5);
        assert_eq!(chunks.len(), 5);
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES));
        assert_eq!(blob.sha256, sha256_hex(&bytes));
        let owned: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        assert_eq!(reassemble(&blob, &owned).unwrap(), bytes);
        // A missing or altered chunk is refused.
        assert!(reassemble(&blob, &owned[..4]).is_err());
        let mut bad = owned.clone();
        bad[2][0] ^= 1;
        assert!(reassemble(&blob, &bad)
            .unwrap_err()
            .contains("do not match"));
        // Exactly one chunk's worth is one chunk.
        let bytes = vec![1u8; CHUNK_BYTES];
        let (b, c) = to_blob(&bytes, "x", "y", Utc::now());
        assert_eq!((b.chunks, c.len()), (1, 1));
        assert!(check_content(&[]).is_err());
    }

    #[test]
    fn multipart_body_is_well_formed_and_boundary_free() {
        let (ct, body) = multipart_body(
            &[("tags", "MDO"), ("comment", "alert 1")],
            "sample_file",
            "in\"voice\r\n.html",
            "text/html",
            b"<html>hi</html>",
        );
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        assert!(text.contains("name=\"tags\"\r\n\r\nMDO\r\n"));
        assert!(text.contains(
            "name=\"sample_file\"; filename=\"in'voice__.html\"\r\nContent-Type: text/html\r\n\r\n<html>hi</html>\r\n"
        ));
        assert_eq!(text.matches(boundary).count(), 4);
        // Content that contains the first boundary candidate gets another one.
        let seed = sha256_hex(b"x");
        let tricky = format!("--mdo-vmray-{}-0", &seed[..24]);
        let (ct2, _) = multipart_body(&[], "f", "a", "b", tricky.as_bytes());
        assert!(!tricky.contains(ct2.rsplit('=').next().unwrap()) || ct2.ends_with("-1"));
    }

    #[test]
    fn stage_waits_for_the_fetch_and_then_settles() {
        let now = Utc::now();
        // No URL and a pending fetch: held as ready, the VMRay side waits.
        let mut r = record(AlertStage::NoUrls {
            reason: "the alert names no URL and no e-mail message to look one up by".into(),
        });
        r.attachments = Some(AttachmentFetch::Pending {
            tries: 0,
            next_try: now,
            held_no_url_reason: None,
        });
        settle(&mut r);
        assert_eq!(r.stage, AlertStage::Ready);
        assert!(pending(&r) && fetch_due(&r, now));
        // A file was stored: ready with the file.
        let mut with_file = r.clone();
        assert!(add_file(&mut with_file, file(1)));
        finish(&mut with_file);
        assert_eq!(with_file.stage, AlertStage::Ready);
        assert!(!pending(&with_file));
        // Nothing stored, a note: back to no_urls, the note in the reason.
        note(&mut r, "mail <a@b>", "the mail was removed or quarantined");
        finish(&mut r);
        let AlertStage::NoUrls { reason } = &r.stage else {
            panic!("{:?}", r.stage)
        };
        assert!(
            reason.starts_with("the alert names no URL and no e-mail"),
            "{reason}"
        );
        assert!(reason.contains("removed or quarantined"), "{reason}");
        settle(&mut r);
        let AlertStage::NoUrls { reason: again } = &r.stage else {
            panic!()
        };
        assert_eq!(again.matches(NOTES_HEADING).count(), 1);
        // Hunting gave up later but files exist: ready.
        let mut h = record(AlertStage::NoUrls { reason: "x".into() });
        h.attachments = Some(AttachmentFetch::Done);
        h.files.push(file(2));
        settle(&mut h);
        assert_eq!(h.stage, AlertStage::Ready);
        // Awaiting URLs is left alone.
        let mut w = record(AlertStage::AwaitingUrls {
            tries: 0,
            next_try: now,
        });
        w.attachments = Some(AttachmentFetch::Done);
        settle(&mut w);
        assert!(matches!(w.stage, AlertStage::AwaitingUrls { .. }));
    }

    #[test]
    fn failures_retry_a_bounded_number_of_times() {
        let now = Utc::now();
        let mut r = record(AlertStage::Ready);
        r.urls.push(crate::records::UrlRef {
            url: "http://a.example/".into(),
            key: "k".into(),
        });
        r.attachments = Some(AttachmentFetch::Pending {
            tries: 0,
            next_try: now,
            held_no_url_reason: None,
        });
        for i in 1..MAX_FETCH_TRIES {
            assert!(!fetch_failed(&mut r, "HTTP 503", now), "try {i}");
            assert!(pending(&r) && !fetch_due(&r, now));
        }
        assert!(fetch_failed(&mut r, "HTTP 503", now));
        assert!(!pending(&r));
        assert_eq!(r.stage, AlertStage::Ready);
        assert!(r.attachment_notes[0].reason.contains("after 5 tries"));
    }

    #[test]
    fn files_are_bounded_and_deduplicated() {
        let mut r = record(AlertStage::Ready);
        for n in 0..MAX_FILES_PER_ALERT as u8 {
            assert!(add_file(&mut r, file(n)));
        }
        assert!(add_file(&mut r, file(0)), "a duplicate is fine");
        assert!(!add_file(&mut r, file(99)));
        assert_eq!(r.files.len(), MAX_FILES_PER_ALERT);
        assert_eq!(r.attachment_notes.len(), 1);
    }

    #[test]
    fn planning_needs_setting_title_and_message() {
        let now = Utc::now();
        let alert = Alert {
            id: "a".into(),
            incident_id: None,
            title: "Email reported by user as malware or phish".into(),
            severity: crate::model::Severity::Medium,
            service_source: crate::alert::MDO_SERVICE_SOURCE.into(),
            created: now,
            last_updated: now,
            evidence_urls: vec![],
            network_message_ids: vec![],
            expected_url_count: 0,
            is_teams: false,
            comments: vec![],
            messages: vec![MessageRef {
                mailbox: "a@b.example".into(),
                internet_message_id: "<m@x>".into(),
            }],
        };
        let mut r = record(AlertStage::Ready);
        plan(&mut r, &alert, false, now);
        assert!(r.attachments.is_none() && r.messages.is_empty());
        let mut other = alert.clone();
        other.title = "A potentially malicious URL click was detected".into();
        plan(&mut r, &other, true, now);
        assert!(r.attachments.is_none());
        plan(&mut r, &alert, true, now);
        assert!(pending(&r));
        assert_eq!(r.messages.len(), 1);
    }
}

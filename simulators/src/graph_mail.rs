//! Microsoft Graph mail (`Mail.Read`): finding a message by
//! `internetMessageId`, listing its attachments, reading one's raw bytes.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::graph::graph_error;
use crate::http::{Req, Resp};
use crate::scenario::{AttachmentSpec, MailSpec};
use crate::state::Shared;

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The Graph id of a mail in a mailbox (stable, opaque, URL-unsafe like Graph's).
pub fn message_id(mail: &MailSpec) -> String {
    let key = format!(
        "{}|{}",
        mail.recipient
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        mail.internet_message_id.as_deref().unwrap_or_default()
    );
    format!("AAMkAG{:016x}AAA=", hash(&key))
}

fn attachment_id(i: usize) -> String {
    format!("AAMkAGATT{i:04}=")
}

fn odata_type(a: &AttachmentSpec) -> &'static str {
    match a.kind.as_str() {
        "item" => "#microsoft.graph.itemAttachment",
        "reference" => "#microsoft.graph.referenceAttachment",
        _ => "#microsoft.graph.fileAttachment",
    }
}

fn parse_filter(f: &str) -> Option<String> {
    let rest = f.trim().strip_prefix("internetMessageId eq '")?;
    let inner = rest.strip_suffix('\'')?;
    // Single quotes inside are doubled; a lone one ends the literal early.
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.next() != Some('\'') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

fn mailbox_mails<'a>(mails: &'a [MailSpec], user: &str) -> Vec<&'a MailSpec> {
    mails
        .iter()
        .filter(|m| {
            m.recipient
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(user))
        })
        .collect()
}

fn item_not_found() -> Resp {
    graph_error(
        404,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

/// `/v1.0/users/…`: `None` when the path is not a mail path.
pub(crate) fn handle(shared: &Shared, req: &Req, seg: &[&str]) -> Option<Resp> {
    if req.method != "GET" {
        return match seg {
            ["v1.0", "users", _, "messages", ..] => Some(graph_error(
                405,
                "ErrorInvalidRequest",
                "The OData request is not supported.",
            )),
            _ => None,
        };
    }
    let world = shared.lock();
    let user = *seg.get(2)?;
    let mails = mailbox_mails(&world.mailbox, user);
    let known_user = world.mailbox.iter().any(|m| {
        m.recipient
            .as_deref()
            .is_some_and(|r| r.eq_ignore_ascii_case(user))
    });
    if !known_user {
        return Some(graph_error(
            404,
            "ErrorInvalidUser",
            &format!("The requested user '{user}' is invalid."),
        ));
    }
    let find = |mid: &str| {
        mails
            .iter()
            .find(|m| !m.removed && message_id(m) == mid)
            .copied()
    };
    Some(match seg {
        ["v1.0", "users", _, "messages"] => {
            let Some(filter) = req.query("$filter") else {
                return Some(graph_error(
                    400,
                    "BadRequest",
                    "The simulator only serves messages filtered by internetMessageId.",
                ));
            };
            let Some(imid) = parse_filter(filter) else {
                return Some(graph_error(
                    400,
                    "BadRequest",
                    &format!("Invalid filter clause: {filter}"),
                ));
            };
            let found: Vec<Value> = mails
                .iter()
                .filter(|m| !m.removed && m.internet_message_id.as_deref() == Some(imid.as_str()))
                .map(|m| {
                    json!({"@odata.etag": "W/\"CQAAABYAAAA\"", "id": message_id(m),
                           "subject": m.subject, "hasAttachments": !m.attachments.is_empty()})
                })
                .collect();
            Resp::json(
                200,
                &json!({"@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{user}')/messages(id,subject,hasAttachments)"),
                        "value": found}),
            )
        }
        ["v1.0", "users", _, "messages", mid] => match find(mid) {
            Some(m) => Resp::json(
                200,
                &json!({"id": message_id(m), "subject": m.subject,
                        "internetMessageId": m.internet_message_id,
                        "hasAttachments": !m.attachments.is_empty()}),
            ),
            None => item_not_found(),
        },
        ["v1.0", "users", _, "messages", mid, "attachments"] => {
            let Some(m) = find(mid) else {
                return Some(item_not_found());
            };
            let items: Vec<Value> = m
                .attachments
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let data = a.content();
                    let mut v = json!({"@odata.type": odata_type(a), "id": attachment_id(i),
                        "lastModifiedDateTime": "2026-12-01T10:00:00Z", "name": a.name,
                        "contentType": a.content_type, "size": data.len(), "isInline": a.is_inline});
                    if a.kind == "file" {
                        v["contentId"] = Value::Null;
                        v["contentLocation"] = Value::Null;
                        v["contentBytes"] = if a.list_content {
                            json!(base64::engine::general_purpose::STANDARD.encode(&data))
                        } else {
                            Value::Null
                        };
                    }
                    v
                })
                .collect();
            Resp::json(
                200,
                &json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('…')/messages('…')/attachments",
                        "value": items}),
            )
        }
        ["v1.0", "users", _, "messages", mid, "attachments", aid, "$value"] => {
            let Some(m) = find(mid) else {
                return Some(item_not_found());
            };
            match m
                .attachments
                .iter()
                .enumerate()
                .find(|(i, _)| attachment_id(*i) == *aid)
            {
                Some((_, a)) => Resp {
                    status: 200,
                    headers: vec![("content-type".into(), a.content_type.clone())],
                    body: a.content(),
                },
                None => item_not_found(),
            }
        }
        _ => return None,
    })
}

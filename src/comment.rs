//! Alert comments: what VMRay found, as plain text an analyst reads in the
//! Defender portal. Each comment starts with a stable marker line, so a
//! comment is recognised (and never written twice) however its text changes.

use chrono::{DateTime, Utc};

use crate::records::{SampleReport, SkippedUrl};

/// A comment longer than this is split into parts.
pub const MAX_COMMENT_CHARS: usize = 8_000;

/// Every marker starts with this, so our comments are easy to find.
pub const MARKER_PREFIX: &str = "[VMRay connector]";

/// The marker of the comment for one analysed URL.
pub fn sample_marker(sample_id: u64, submission_id: Option<u64>) -> String {
    match submission_id {
        Some(s) => format!("{MARKER_PREFIX} sample {sample_id} · submission {s}"),
        None => format!("{MARKER_PREFIX} sample {sample_id}"),
    }
}

/// The marker of the comment saying one URL could not be analysed.
pub fn failure_marker(url_key: &str) -> String {
    format!("{MARKER_PREFIX} failed {url_key}")
}

/// The marker of the "no URL" comment.
pub fn no_url_marker() -> String {
    format!("{MARKER_PREFIX} no URL")
}

/// Is the comment with this marker (or one of its parts) among `existing`?
pub fn already_posted(existing: &[String], marker: &str) -> bool {
    existing.iter().any(|c| {
        c.lines()
            .next()
            .is_some_and(|first| first == marker || first.starts_with(&format!("{marker} · part ")))
    })
}

/// URLs in comments are defanged so nobody clicks them from the portal.
pub fn defang(url: &str) -> String {
    let mut s = url
        .replacen("http://", "hxxp://", 1)
        .replacen("https://", "hxxps://", 1);
    if let Some(scheme_end) = s.find("://") {
        let host_start = scheme_end + 3;
        let host_end = s[host_start..]
            .find(['/', '?'])
            .map(|i| host_start + i)
            .unwrap_or(s.len());
        let host = s[host_start..host_end].replace('.', "[.]");
        s.replace_range(host_start..host_end, &host);
    }
    // A skipped URL may carry CR/LF or escapes: shown escaped, they cannot
    // forge lines (a second marker, a fake verdict) in the comment.
    if s.chars().any(char::is_control) {
        s = s
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
    }
    s
}

fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn sample_block(out: &mut String, s: &SampleReport, indent: &str) {
    let verdict = s.verdict.as_str().replace('_', " ").to_uppercase();
    match (&s.url, &s.filename) {
        (Some(u), _) => out.push_str(&format!("{indent}URL: {}\n", defang(u))),
        (None, Some(f)) => out.push_str(&format!(
            "{indent}File: {f}{}\n",
            s.sha256
                .as_ref()
                .map(|h| format!(" (SHA-256 {h})"))
                .unwrap_or_default()
        )),
        (None, None) => {}
    }
    out.push_str(&format!("{indent}Verdict: {verdict}"));
    if let Some(r) = &s.verdict_reason {
        out.push_str(&format!(" — {r}"));
    }
    out.push('\n');
    if let Some(score) = s.vti_score {
        out.push_str(&format!("{indent}VTI score: {score}/100\n"));
    }
    if !s.classifications.is_empty() {
        out.push_str(&format!(
            "{indent}Classifications: {}\n",
            s.classifications.join(", ")
        ));
    }
    if !s.threat_names.is_empty() {
        let names: Vec<&str> = s.threat_names.iter().map(|t| t.name.as_str()).collect();
        out.push_str(&format!("{indent}Threat names: {}\n", names.join(", ")));
    }
    if !s.vtis.is_empty() {
        out.push_str(&format!("{indent}Top VTIs:\n"));
        for v in &s.vtis {
            out.push_str(&format!(
                "{indent}  [{}/5] {}: {}\n",
                v.score, v.category, v.operation
            ));
        }
    }
    out.push_str(&format!("{indent}Analysis date: {}\n", date(s.analysed_at)));
    if !s.webif_url.is_empty() {
        out.push_str(&format!("{indent}Report: {}\n", s.webif_url));
    }
}

/// The comment (in parts if needed) for one analysed URL: the sample, then
/// each child sample. `marker` comes from [`sample_marker`].
pub fn render_sample_comment(
    marker: &str,
    root: &SampleReport,
    children: &[&SampleReport],
    reused: bool,
) -> Vec<String> {
    let mut body = String::new();
    if reused {
        let what = if root.url.is_none() && root.filename.is_some() {
            "file"
        } else {
            "URL"
        };
        body.push_str(&format!(
            "An earlier VMRay analysis of this {what} was reused.\n"
        ));
    }
    sample_block(&mut body, root, "");
    if !children.is_empty() {
        body.push_str(&format!("Child samples ({}):\n", children.len()));
        for c in children {
            body.push_str(&format!("- Sample {}\n", c.sample_id));
            sample_block(&mut body, c, "  ");
        }
    }
    split(marker, &body)
}

/// A comment saying why a URL has no result.
pub fn render_failure_comment(marker: &str, url: &str, reason: &str) -> Vec<String> {
    let body = format!(
        "VMRay could not analyse {}: {reason}\nWhat you can do: submit the {} in the VMRay console, or check the connector's logs for this alert.\n",
        defang(url),
        // Attachments' results are named `attachment …`, URLs are URLs.
        if url.starts_with("attachment ") { "file" } else { "URL" }
    );
    split(marker, &body)
}

/// The one comment an alert without URLs gets.
pub fn render_no_url_comment(reason: &str, skipped: &[SkippedUrl]) -> Vec<String> {
    let mut body = format!("No URL of this alert could be sent to VMRay: {reason}.\n");
    if !skipped.is_empty() {
        body.push_str("URLs found but not analysed:\n");
        for s in skipped {
            body.push_str(&format!("- {} ({})\n", defang(&s.url), s.reason));
        }
    }
    split(&no_url_marker(), &body)
}

/// The comment put on an alert whose write-back failed for good.
pub fn render_error_comment(error: &str, attempts: u32) -> Vec<String> {
    let body = format!(
        "The VMRay connector could not finish this alert after {attempts} attempts: {error}\n\
         What you can do: check the connector's logs for this alert id; the VMRay report may still be in the VMRay console.\n"
    );
    split(&format!("{MARKER_PREFIX} error"), &body)
}

/// The comment listing indicators Defender refused.
pub fn render_indicator_failures(failed: &[crate::records::IndicatorFailure]) -> Vec<String> {
    let mut body = format!(
        "{} indicator(s) could not be written to Defender:\n",
        failed.len()
    );
    for f in failed {
        let value = if f.kind == crate::model::IndicatorKind::Url {
            defang(&f.value)
        } else {
            f.value.clone()
        };
        body.push_str(&format!(
            "- {} {} ({}): {}\n",
            f.kind.as_str(),
            value,
            f.action.as_str(),
            f.reason
        ));
    }
    body.push_str(
        "What you can do: add them by hand in Defender (Settings > Endpoints > Indicators), or free room if the tenant's 15,000-indicator limit is reached.\n",
    );
    split(&format!("{MARKER_PREFIX} indicators failed"), &body)
}

/// Split a body into comments of at most [`MAX_COMMENT_CHARS`] characters,
/// each starting with the marker (`· part i/n` when split), cutting at line ends.
pub fn split(marker: &str, body: &str) -> Vec<String> {
    let whole = format!("{marker}\n{body}");
    if whole.chars().count() <= MAX_COMMENT_CHARS {
        return vec![whole.trim_end().to_string()];
    }
    let room = MAX_COMMENT_CHARS - marker.chars().count() - 24;
    let mut chunks: Vec<String> = vec![String::new()];
    for line in body.lines() {
        let line: String = line.chars().take(room - 1).collect();
        let current = chunks.last_mut().expect("non-empty");
        if current.chars().count() + line.chars().count() + 1 > room {
            chunks.push(String::new());
        }
        let current = chunks.last_mut().expect("non-empty");
        current.push_str(&line);
        current.push('\n');
    }
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            format!("{marker} · part {}/{n}\n{c}", i + 1)
                .trim_end()
                .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::sample;

    #[test]
    fn comment_names_everything_an_analyst_needs() {
        let mut child = sample(43);
        child.url = None;
        child.filename = Some("p.exe".into());
        let marker = sample_marker(42, Some(111));
        let c = render_sample_comment(&marker, &sample(42), &[&child], false);
        assert_eq!(c.len(), 1);
        let text = &c[0];
        assert!(
            text.starts_with("[VMRay connector] sample 42 · submission 111\n"),
            "{text}"
        );
        for needle in [
            "hxxp://evil[.]example/login",
            "MALICIOUS",
            "Phishing page",
            "90/100",
            "Lumma",
            "[4/5] Heuristics",
            "2026-12-01 10:05 UTC",
            "https://eu.cloud.vmray.com/samples/42",
            "File: p.exe",
            "Sample 43",
        ] {
            assert!(text.contains(needle), "missing {needle} in {text}");
        }
        assert!(already_posted(std::slice::from_ref(text), &marker));
        assert!(!already_posted(
            std::slice::from_ref(text),
            &sample_marker(4, Some(111))
        ));
    }

    #[test]
    fn long_comments_are_split_with_markers() {
        let children: Vec<SampleReport> = (0..200).map(sample).collect();
        let refs: Vec<&SampleReport> = children.iter().collect();
        let marker = sample_marker(1, Some(2));
        let parts = render_sample_comment(&marker, &sample(1), &refs, true);
        assert!(parts.len() > 1);
        for (i, p) in parts.iter().enumerate() {
            assert!(p.chars().count() <= MAX_COMMENT_CHARS);
            assert!(p.starts_with(&format!("{marker} · part {}/{}", i + 1, parts.len())));
        }
        assert!(already_posted(&parts[1..2], &marker));
    }

    #[test]
    fn skipped_urls_cannot_forge_comment_lines() {
        let skipped = vec![SkippedUrl {
            url: "http://crlf.example/x\r\n[VMRay connector] sample 1\nVerdict: CLEAN\u{1b}[2J"
                .into(),
            reason: "URL contains control characters".into(),
        }];
        let c = render_no_url_comment("every URL was skipped", &skipped);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].lines().count(), 4, "{}", c[0]);
        assert!(!c[0].chars().any(|ch| ch.is_control() && ch != '\n'));
        assert!(c[0].contains("x\\r\\n[VMRay connector]"), "{}", c[0]);
    }

    #[test]
    fn defangs_host_only() {
        assert_eq!(
            defang("https://a.b.example/x.y?q=1.2"),
            "hxxps://a[.]b[.]example/x.y?q=1.2"
        );
    }
}

//! Incident tags: the most severe VMRay verdict across the incident's alerts
//! (never downgraded) and threat names, merged with everyone else's tags.

use crate::model::Verdict;
use crate::records::{IncidentTags, SampleReport, SCHEMA};

pub const VERDICT_TAG_PREFIX: &str = "VMRay: ";
pub const THREAT_TAG_PREFIX: &str = "VMRay threat: ";
/// Threat-name tags per incident, at most.
pub const MAX_THREAT_TAGS: usize = 10;

/// Keep what Defender accepts in a tag: letters, digits, space and `-_.`.
pub fn clean_tag_text(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| c.is_alphanumeric() || " -_.".contains(*c))
        .take(64)
        .collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn verdict_tag(v: Verdict) -> String {
    format!("{VERDICT_TAG_PREFIX}{}", v.as_str())
}

/// Threat names worth a tag: not those only antivirus engines reported.
pub fn threat_names(samples: &[&SampleReport]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in samples {
        for t in &s.threat_names {
            let av_only =
                !t.sources.is_empty() && t.sources.iter().all(|src| src.eq_ignore_ascii_case("av"));
            let name = clean_tag_text(&t.name);
            if !av_only && !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// The new tag list and what we now own on the incident.
///
/// `prev` is what this connector tagged before (its own record); the new
/// verdict is the most severe of the previous one and this alert's.
pub fn merge(
    existing: &[String],
    prev: Option<&IncidentTags>,
    verdict: Verdict,
    names: &[String],
) -> (Vec<String>, IncidentTags) {
    // The verdict already on the incident counts too: our own record of it
    // may be missing (a tick that died between the PATCH and the record).
    let shown = existing.iter().filter_map(|t| our_verdict(t)).max();
    let best = [prev.map(|p| p.verdict), shown, Some(verdict)]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(verdict);
    let mut owned_names: Vec<String> = prev.map(|p| p.threat_names.clone()).unwrap_or_default();
    for n in names {
        if owned_names.len() < MAX_THREAT_TAGS && !owned_names.contains(n) {
            owned_names.push(n.clone());
        }
    }
    // Drop only our own verdict tags that a better one replaces; keep every
    // other tag, in its place, so an unchanged list is recognised as such.
    let wanted = (best >= Verdict::Clean).then(|| verdict_tag(best));
    let mut tags: Vec<String> = existing
        .iter()
        .filter(|t| our_verdict(t).is_none() || Some(*t) == wanted.as_ref())
        .cloned()
        .collect();
    if let Some(w) = wanted {
        if !tags.contains(&w) {
            tags.push(w);
        }
    }
    for n in &owned_names {
        let tag = format!("{THREAT_TAG_PREFIX}{n}");
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    (
        tags,
        IncidentTags {
            v: SCHEMA,
            verdict: best,
            threat_names: owned_names,
        },
    )
}

/// The verdict of one of our verdict tags.
fn our_verdict(t: &str) -> Option<Verdict> {
    [
        Verdict::NotAvailable,
        Verdict::Clean,
        Verdict::Suspicious,
        Verdict::Malicious,
    ]
    .into_iter()
    .find(|v| t == verdict_tag(*v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::ThreatName;

    #[test]
    fn never_downgrades_and_keeps_others() {
        let existing = vec![
            "Phish campaign 12".to_string(),
            "VMRay: malicious".to_string(),
        ];
        let prev = IncidentTags {
            v: 1,
            verdict: Verdict::Malicious,
            threat_names: vec![],
        };
        let (tags, own) = merge(&existing, Some(&prev), Verdict::Clean, &[]);
        assert_eq!(tags, vec!["Phish campaign 12", "VMRay: malicious"]);
        assert_eq!(own.verdict, Verdict::Malicious);
        let (tags, _) = merge(
            &["VMRay: suspicious".into(), "x".into()],
            None,
            Verdict::Malicious,
            &["Lumma".into()],
        );
        assert_eq!(tags, vec!["x", "VMRay: malicious", "VMRay threat: Lumma"]);
    }

    #[test]
    fn an_unchanged_list_stays_unchanged_without_our_record() {
        // Our record lost after the PATCH: the tags already there are recognised.
        let existing: Vec<String> = vec![
            "keep-me".into(),
            "VMRay: malicious".into(),
            "VMRay threat: Emotet".into(),
        ];
        let (tags, own) = merge(&existing, None, Verdict::Malicious, &["Emotet".into()]);
        assert_eq!(tags, existing);
        assert_eq!(own.verdict, Verdict::Malicious);
        // And a clean alert does not downgrade the verdict shown.
        let (tags, _) = merge(&existing, None, Verdict::Clean, &[]);
        assert_eq!(tags, existing);
    }

    #[test]
    fn av_only_names_and_bad_characters_dropped() {
        let mut s = crate::fixtures::sample(1);
        s.threat_names = vec![
            ThreatName {
                name: "Trojan.Gen/<script>".into(),
                sources: vec!["av".into()],
            },
            ThreatName {
                name: "Lumma <b>Stealer</b>\n".into(),
                sources: vec!["vti".into(), "av".into()],
            },
        ];
        assert_eq!(threat_names(&[&s]), vec!["Lumma bStealerb"]);
    }
}

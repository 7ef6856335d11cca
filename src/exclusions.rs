//! `url_exclusion_patterns`: `*` globs on the host, or `re:` regular
//! expressions on the whole (normalised) URL.

use std::fmt;

#[derive(Clone)]
enum Pattern {
    HostGlob(String),
    Regex(String, regex_lite::Regex),
}

/// Parsed exclusion patterns.
#[derive(Clone, Default)]
pub struct Exclusions {
    patterns: Vec<Pattern>,
}

impl fmt::Debug for Exclusions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .patterns
            .iter()
            .map(|p| match p {
                Pattern::HostGlob(g) => g.as_str(),
                Pattern::Regex(s, _) => s.as_str(),
            })
            .collect();
        f.debug_tuple("Exclusions").field(&names).finish()
    }
}

impl Exclusions {
    /// Comma-separated list. A regular expression may not contain a comma.
    pub fn parse(raw: &str) -> Result<Exclusions, String> {
        let mut patterns = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(re) = item.strip_prefix("re:") {
                let compiled = regex_lite::RegexBuilder::new(re)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("a valid regular expression after `re:` ({e})"))?;
                patterns.push(Pattern::Regex(re.to_string(), compiled));
            } else {
                let glob = item.to_ascii_lowercase();
                if !glob
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.*_".contains(c))
                {
                    return Err(format!(
                        "host globs of letters, digits, `-`, `.`, `_` and `*` (or `re:` expressions); `{item}` is neither"
                    ));
                }
                patterns.push(Pattern::HostGlob(glob));
            }
        }
        Ok(Exclusions { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Does any pattern exclude this URL? `host` is the URL's lower-case host.
    pub fn excludes(&self, url: &str, host: &str) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::HostGlob(g) => glob_match(g.as_bytes(), host.as_bytes()),
            Pattern::Regex(_, re) => re.is_match(url),
        })
    }
}

/// `*` matches any run of characters (iterative, no backtracking blow-up).
fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pat.len() && pat[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_globs() {
        let e = Exclusions::parse("*.safelinks.protection.outlook.com, intranet.example").unwrap();
        assert!(e.excludes(
            "https://eur01.safelinks.protection.outlook.com/?url=x",
            "eur01.safelinks.protection.outlook.com"
        ));
        assert!(e.excludes("http://intranet.example/a", "intranet.example"));
        assert!(!e.excludes("http://evil.example/a", "evil.example"));
        assert!(!e.excludes(
            "http://safelinks.protection.outlook.com.evil/",
            "safelinks.protection.outlook.com.evil"
        ));
    }

    #[test]
    fn regexes_on_whole_url() {
        let e = Exclusions::parse(r"re:^https://docs\.example/.*\.pdf$").unwrap();
        assert!(e.excludes("https://docs.example/a/b.pdf", "docs.example"));
        assert!(!e.excludes("https://docs.example/a/b.exe", "docs.example"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Exclusions::parse("re:(unclosed").is_err());
        assert!(Exclusions::parse("exa mple.com").is_err());
        assert!(Exclusions::parse("").unwrap().is_empty());
    }
}

//! Application and component variables, as Spin resolves them.
//!
//! Application variables come from `[variables]` (`default`) overridden by the
//! caller's map (the test-host counterpart of `SPIN_VARIABLE_*`). A component
//! only sees its own `[component.x.variables]`, each a template such as
//! `"Bearer {{ api_key }}"` rendered against the application variables.

use crate::manifest::Manifest;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};

/// Spin's rule for variable names: lower-case ASCII letters, digits and `_`,
/// starting with a letter, no `__`, not ending with `_`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err("must not be empty".into());
    };
    if !first.is_ascii_lowercase() {
        return Err("must start with a lower-case letter".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("may contain only lower-case letters, digits and '_'".into());
    }
    if name.contains("__") {
        return Err("must not contain '__'".into());
    }
    if name.ends_with('_') {
        return Err("must not end with '_'".into());
    }
    Ok(())
}

/// One piece of a template: literal text or a `{{ name }}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

/// A parsed `{{ name }}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

impl Template {
    pub fn parse(text: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("unterminated '{{{{' in template {text:?}"))?;
            let name = after[..end].trim();
            validate_name(name)
                .map_err(|e| anyhow::anyhow!("variable {name:?} in template {text:?} {e}"))?;
            parts.push(Part::Variable(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template(parts))
    }

    pub fn is_literal(&self) -> bool {
        self.0.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    pub fn render(&self, values: &HashMap<String, String>) -> Result<String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Variable(name) => out.push_str(
                    values
                        .get(name)
                        .with_context(|| format!("no application variable named {name:?}"))?,
                ),
            }
        }
        Ok(out)
    }
}

/// Resolves the application variables: override > default; a required
/// variable without a value is an error naming it.
pub fn resolve_app_variables(
    manifest: &Manifest,
    overrides: &HashMap<String, String>,
) -> Result<HashMap<String, String>> {
    let mut values = HashMap::new();
    let mut missing = Vec::new();
    for (name, decl) in &manifest.variables {
        match overrides.get(name).or(decl.default.as_ref()) {
            Some(v) => {
                values.insert(name.clone(), v.clone());
            }
            None if decl.required => missing.push(name.clone()),
            None => bail!("variable {name:?} must have a default or be required"),
        }
    }
    if !missing.is_empty() {
        bail!(
            "required application variable(s) without a value: {} (set them with --var name=value / AppConfig::variables, like SPIN_VARIABLE_<NAME>)",
            missing.join(", ")
        );
    }
    Ok(values)
}

/// Renders a component's `[component.x.variables]` against the app variables.
pub fn resolve_component_variables(
    component_id: &str,
    templates: &BTreeMap<String, String>,
    app_values: &HashMap<String, String>,
) -> Result<HashMap<String, String>> {
    templates
        .iter()
        .map(|(name, text)| {
            let value = Template::parse(text)
                .and_then(|t| t.render(app_values))
                .with_context(|| format!("component {component_id:?} variable {name:?}"))?;
            Ok((name.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_follow_spin_rules() {
        assert!(validate_name("vmray_base_url").is_ok());
        assert!(validate_name("a1").is_ok());
        for bad in ["", "1a", "Upper", "a-b", "a__b", "a_", "_a"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn renders_literal_text_around_templates() {
        let t = Template::parse("Bearer {{ key }}/{{other}}!").unwrap();
        assert!(!t.is_literal());
        let out = t.render(&values(&[("key", "k1"), ("other", "o")])).unwrap();
        assert_eq!(out, "Bearer k1/o!");
        assert!(Template::parse("plain").unwrap().is_literal());
    }

    #[test]
    fn unknown_variable_and_bad_template_fail() {
        let t = Template::parse("{{ nope }}").unwrap();
        assert!(t.render(&values(&[])).is_err());
        assert!(Template::parse("{{ open").is_err());
        assert!(Template::parse("{{ Bad }}").is_err());
    }
}

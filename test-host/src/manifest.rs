//! `spin.toml` (manifest version 2): the parts the test host runs.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// An application variable declared under `[variables]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
    pub description: Option<String>,
}

/// A `[component.<id>]` table.
#[derive(Debug, Clone, Deserialize)]
pub struct ComponentDecl {
    pub source: String,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// Templates over application variables, e.g. `"{{ vmray_api_key }}"`.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronTrigger {
    pub component: String,
    pub cron_expression: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpTrigger {
    pub route: String,
    pub component: String,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub variables: BTreeMap<String, VariableDecl>,
    pub components: BTreeMap<String, ComponentDecl>,
    pub cron: Vec<CronTrigger>,
    pub http: Vec<HttpTrigger>,
}

#[derive(Deserialize)]
struct RawManifest {
    spin_manifest_version: i64,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    component: BTreeMap<String, ComponentDecl>,
    #[serde(default)]
    trigger: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawApplication {
    name: String,
}

impl Manifest {
    pub fn from_file(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading manifest {}", path.display()))?;
        Manifest::parse(&text).with_context(|| format!("manifest {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Manifest> {
        let raw: RawManifest = toml::from_str(text).context("parsing spin.toml")?;
        if raw.spin_manifest_version != 2 {
            bail!(
                "spin_manifest_version {} is not supported (only 2)",
                raw.spin_manifest_version
            );
        }
        let mut cron = Vec::new();
        let mut http = Vec::new();
        for (kind, value) in raw.trigger {
            match kind.as_str() {
                "cron" => cron = value.try_into().context("[[trigger.cron]]")?,
                "http" => http = value.try_into().context("[[trigger.http]]")?,
                other => bail!("unknown trigger type {other:?} (the test host runs cron and http)"),
            }
        }
        for name in raw.variables.keys() {
            if let Err(e) = crate::variables::validate_name(name) {
                bail!("[variables] name {name:?} {e}");
            }
        }
        for (id, component) in &raw.component {
            for name in component.variables.keys() {
                if let Err(e) = crate::variables::validate_name(name) {
                    bail!("[component.{id}.variables] name {name:?} {e}");
                }
            }
        }
        let triggered = cron
            .iter()
            .map(|t: &CronTrigger| &t.component)
            .chain(http.iter().map(|t: &HttpTrigger| &t.component));
        for id in triggered {
            if !raw.component.contains_key(id) {
                bail!("a trigger names component {id:?}, which is not defined");
            }
        }
        for t in &cron {
            let fields = t.cron_expression.split_whitespace().count();
            if fields != 6 {
                bail!(
                    "cron_expression {:?} of component {:?} has {fields} fields; Spin's cron trigger needs 6 (seconds first)",
                    t.cron_expression,
                    t.component
                );
            }
        }
        Ok(Manifest {
            name: raw.application.name,
            variables: raw.variables,
            components: raw.component,
            cron,
            http,
        })
    }
}

/// Collects every key-value store label used by any component.
pub fn store_labels(manifest: &Manifest) -> HashMap<String, Vec<String>> {
    let mut labels: HashMap<String, Vec<String>> = HashMap::new();
    for (id, c) in &manifest.components {
        for label in &c.key_value_stores {
            labels.entry(label.clone()).or_default().push(id.clone());
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
a = { default = "x" }
b = { required = true, secret = true }
[component.p]
source = "p.wasm"
key_value_stores = ["default"]
[component.p.variables]
v = "{{ a }}"
[[trigger.cron]]
component = "p"
cron_expression = "0 */5 * * * *"
[[trigger.http]]
route = "/p/..."
component = "p"
"#;

    #[test]
    fn parses_components_variables_and_triggers() {
        let m = Manifest::parse(MINIMAL).unwrap();
        assert_eq!(m.name, "t");
        assert!(m.variables["b"].required && m.variables["b"].secret);
        assert_eq!(m.components["p"].variables["v"], "{{ a }}");
        assert_eq!(m.cron[0].cron_expression, "0 */5 * * * *");
        assert_eq!(m.http[0].route, "/p/...");
    }

    #[test]
    fn rejects_unknown_trigger_type() {
        let text = MINIMAL.replace("[[trigger.cron]]", "[[trigger.redis]]");
        let err = format!("{:#}", Manifest::parse(&text).unwrap_err());
        assert!(err.contains("unknown trigger type \"redis\""), "{err}");
    }

    #[test]
    fn rejects_five_field_cron() {
        let text = MINIMAL.replace("0 */5 * * * *", "*/5 * * * *");
        assert!(Manifest::parse(&text).is_err());
    }

    #[test]
    fn rejects_trigger_for_missing_component() {
        let text = MINIMAL.replace("component = \"p\"\ncron", "component = \"q\"\ncron");
        let err = format!("{:#}", Manifest::parse(&text).unwrap_err());
        assert!(err.contains("\"q\""), "{err}");
    }
}

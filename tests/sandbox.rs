//! Each component holds only its own secrets and reaches only its own hosts.

mod support;

use std::collections::HashMap;

use simulators::Scenario;
use support::{manifest_text, root, sim_vars, Harness};
use test_host::manifest::Manifest;
use test_host::variables::{resolve_app_variables, resolve_component_variables};
use test_host::{App, AppConfig, KvBackend};

/// What each component can read through `variables::get`, resolved the way
/// the host resolves it.
fn component_values(
    manifest: &str,
    vars: &HashMap<String, String>,
) -> HashMap<String, HashMap<String, String>> {
    let m = Manifest::parse(&manifest_text(manifest)).expect("manifest parses");
    let app = resolve_app_variables(&m, vars).expect("variables resolve");
    m.components
        .iter()
        .map(|(id, c)| {
            (
                id.clone(),
                resolve_component_variables(id, &c.variables, &app).expect("component variables"),
            )
        })
        .collect()
}

#[test]
fn secrets_reach_only_their_component() {
    for manifest in ["spin.toml", "spin-http.toml"] {
        let mut vars: HashMap<String, String> = [
            ("tenant_id", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("client_secret", "entra-secret-value-1234"),
            ("vmray_api_key", "vmray-key-value-5678"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.insert("tick_token".into(), "tick-token-value-abcdefgh".into());
        let seen = component_values(manifest, &vars);
        let holds = |c: &str, secret: &str| seen[c].values().any(|v| v.contains(secret));
        assert!(
            holds("vmray", "vmray-key-value-5678"),
            "{manifest}: vmray needs its key"
        );
        assert!(
            !holds("poller", "vmray-key-value-5678"),
            "{manifest}: the VMRay key reached the poller"
        );
        assert!(
            !holds("defender", "vmray-key-value-5678"),
            "{manifest}: the VMRay key reached the defender"
        );
        assert!(
            !holds("vmray", "entra-secret-value-1234"),
            "{manifest}: the Entra secret reached vmray"
        );
        assert!(
            holds("poller", "entra-secret-value-1234")
                && holds("defender", "entra-secret-value-1234")
        );
    }
}

#[test]
fn each_component_reaches_only_its_own_hosts() {
    let m = Manifest::parse(&manifest_text("spin.toml")).unwrap();
    let hosts = |c: &str| m.components[c].allowed_outbound_hosts.clone();
    assert_eq!(hosts("vmray"), vec!["{{ vmray_base_url }}"]);
    assert_eq!(
        hosts("poller"),
        vec!["{{ login_base_url }}", "{{ graph_base_url }}"]
    );
    assert_eq!(
        hosts("defender"),
        vec![
            "{{ login_base_url }}",
            "{{ graph_base_url }}",
            "{{ defender_base_url }}"
        ]
    );
}

/// Point a component's own base URL at another service's host while its
/// allow-list stays as shipped: the host must refuse the request, and the
/// component must see an error, not reach the service.
fn misdirected(component: &str, variable: &str, target: &str) -> (Harness, App) {
    let scenario = Scenario::demo();
    let h = Harness::start(scenario.clone(), &[]);
    // `{variable} = "{{ variable }}"` appears only in that component's table.
    let line = |v: &str| format!("{variable} = \"{{{{ {v} }}}}\"");
    let original = manifest_text("spin.toml");
    assert!(
        original.contains(&line(variable)),
        "{component} has no {variable}"
    );
    let text = original.replace(&line(variable), &line(target));
    let dir = std::env::temp_dir().join(format!(
        "mdo-vmray-egress-{component}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    let vars = sim_vars(&h.sims, &scenario);
    let app = App::load(
        &path,
        AppConfig {
            variables: vars,
            kv: KvBackend::Memory,
            wasm_dir: Some(root()),
        },
    )
    .expect("loads");
    (h, app)
}

#[test]
fn vmray_component_cannot_reach_graph() {
    let (h, app) = misdirected("vmray", "vmray_base_url", "graph_base_url");
    // The poller (real manifest) takes alerts in so the VMRay side has work.
    h.app.cron_tick("poller", 0).unwrap().unwrap();
    for k in h.app.kv_keys("default") {
        app.kv_set("default", &k, &h.app.kv_get("default", &k).unwrap())
            .unwrap();
    }
    let graph_calls_before = h.sims.state().calls.len();
    let _ = app.cron_tick("vmray", 0).expect("no trap");
    let denied = app.denied_requests();
    assert!(!denied.is_empty(), "vmray reached Graph");
    assert!(
        denied
            .iter()
            .all(|(c, url)| c == "vmray" && url.starts_with(&h.sims.graph_url())),
        "{denied:?}"
    );
    assert_eq!(
        h.sims.state().calls.len(),
        graph_calls_before,
        "the request must never leave the host"
    );
}

#[test]
fn defender_component_cannot_reach_vmray() {
    let (h, app) = misdirected("defender", "defender_base_url", "vmray_base_url");
    let calls_before = h.sims.state().calls_to("vmray", "POST", "/api/indicators");
    // Feed it a finished analysis through the real pipeline first.
    h.run_until(8, |s| !s.indicators.is_empty());
    for k in h.app.kv_keys("default") {
        if !k.contains(":wb:") && !k.contains(":ind:") {
            app.kv_set("default", &k, &h.app.kv_get("default", &k).unwrap())
                .unwrap();
        }
    }
    let _ = app.cron_tick("defender", 0).expect("no trap");
    let denied = app.denied_requests();
    assert!(
        denied
            .iter()
            .any(|(c, url)| c == "defender" && url.starts_with(&h.sims.vmray_url())),
        "{denied:?}"
    );
    assert_eq!(
        h.sims.state().calls_to("vmray", "POST", "/api/indicators"),
        calls_before
    );
}

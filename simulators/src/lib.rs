//! Loopback simulators of the four services the MDO ↔ VMRay connector talks to:
//! Entra ID (tokens), Microsoft Graph (security alerts, incidents, hunting), the Defender for
//! Endpoint indicators API, and VMRay. Each runs on its own port of 127.0.0.1, on a background
//! thread with its own tokio runtime. See README.md for the scenario format.

mod clock;
mod conn;
mod defender;
mod entra;
mod faults;
mod graph;
mod graph_mail;
mod http;
mod hunting;
mod quotas;
mod scenario;
mod server;
mod state;
mod vmray;

pub use clock::Clock;
pub use faults::{ActiveRule, Fault, FaultRule};
pub use quotas::Quotas;
pub use scenario::{
    AlertSpec, AttachmentSpec, DomainIocSpec, FileIocSpec, IncidentSpec, IocsSpec, IpIocSpec,
    MailSpec, MailUrlSpec, PriorSubmissionSpec, SampleSpec, Scenario, ThreatNameSpec, UrlIocSpec,
    VmraySpec, VtiSpec,
};
pub use state::{
    Bases, CallRecord, Comment, IncidentState, Indicator, IndicatorWrites, Service, SimState,
    SubmissionRecord,
};

use anyhow::Context;
use conn::{Conn, SimListener};
use faults::FaultSet;
use quotas::QuotaState;
use state::{Shared, World};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Fixed ports for the four servers; 0 = let the OS choose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    pub entra: u16,
    pub graph: u16,
    pub defender: u16,
    pub vmray: u16,
}

/// Handle on the running simulators. Dropping it stops them.
pub struct Simulators {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Simulators {
    /// Starts the four servers on OS-chosen loopback ports.
    pub fn start(scenario: Scenario) -> anyhow::Result<Simulators> {
        Self::start_on(scenario, Ports::default())
    }

    /// Starts the four servers on the given ports (0 = OS-chosen).
    pub fn start_on(scenario: Scenario, ports: Ports) -> anyhow::Result<Simulators> {
        let bind = |service: Service, port: u16| -> anyhow::Result<(TcpListener, String)> {
            let l = TcpListener::bind(("127.0.0.1", port))
                .with_context(|| format!("cannot bind the {service} simulator to port {port}"))?;
            l.set_nonblocking(true)?;
            let url = format!("http://127.0.0.1:{}", l.local_addr()?.port());
            Ok((l, url))
        };
        let (entra_l, entra) = bind(Service::Entra, ports.entra)?;
        let (graph_l, graph) = bind(Service::Graph, ports.graph)?;
        let (defender_l, defender) = bind(Service::Defender, ports.defender)?;
        let (vmray_l, vmray) = bind(Service::Vmray, ports.vmray)?;
        let clock = Clock::new();
        let world = World::new(&scenario, clock.now());
        let shared = Arc::new(Shared {
            clock,
            bases: Bases {
                entra,
                graph,
                defender,
                vmray,
            },
            world: Mutex::new(world),
            faults: Mutex::new(FaultSet::default()),
            quotas: Mutex::new(QuotaState::new(scenario.quotas)),
            serial: Mutex::new(()),
        });

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("simulators")
            .enable_all()
            .build()
            .context("cannot build the simulators' tokio runtime")?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let listeners = vec![
            (Service::Entra, entra_l),
            (Service::Graph, graph_l),
            (Service::Defender, defender_l),
            (Service::Vmray, vmray_l),
        ];
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("simulators".into())
            .spawn(move || {
                runtime.block_on(async move {
                    for (service, l) in listeners {
                        let l = match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready_tx.send(Err(e.into()));
                                return;
                            }
                        };
                        let app = server::router(for_thread.clone(), service)
                            .into_make_service_with_connect_info::<Conn>();
                        tokio::spawn(async move {
                            let _ = axum::serve(SimListener(l), app).await;
                        });
                    }
                    let _ = ready_tx.send(Ok(()));
                    let _ = stop_rx.await;
                });
                runtime.shutdown_background();
            })
            .context("cannot spawn the simulators' thread")?;
        ready_rx
            .recv()
            .context("the simulators' thread died while starting")??;
        Ok(Simulators {
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn entra_url(&self) -> String {
        self.shared.bases.entra.clone()
    }
    pub fn graph_url(&self) -> String {
        self.shared.bases.graph.clone()
    }
    pub fn defender_url(&self) -> String {
        self.shared.bases.defender.clone()
    }
    pub fn vmray_url(&self) -> String {
        self.shared.bases.vmray.clone()
    }
    /// The connector's Spin variables that point it at these simulators with
    /// the scenario's credentials (what `SPIN_VARIABLE_*` would set).
    pub fn spin_variables(&self, scenario: &Scenario) -> std::collections::HashMap<String, String> {
        [
            ("tenant_id", scenario.tenant_id.clone()),
            ("client_id", scenario.client_id.clone()),
            ("client_secret", scenario.client_secret.clone()),
            ("vmray_api_key", scenario.vmray_api_key.clone()),
            ("login_base_url", self.entra_url()),
            ("graph_base_url", self.graph_url()),
            ("defender_base_url", self.defender_url()),
            ("vmray_base_url", self.vmray_url()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// All four base URLs.
    pub fn bases(&self) -> Bases {
        self.shared.bases.clone()
    }

    /// The shared simulated clock (advance it to finish analyses, expire tokens …).
    pub fn clock(&self) -> Clock {
        self.shared.clock.clone()
    }

    /// A snapshot of what the simulators hold and saw.
    pub fn state(&self) -> SimState {
        self.shared.snapshot()
    }

    /// Adds a fault rule (also `POST /_sim/faults`). Panics on a rule that makes no sense
    /// (see [`FaultRule::validate`]); [`Simulators::try_inject`] returns the reason instead.
    pub fn inject(&self, rule: FaultRule) {
        if let Err(e) = self.try_inject(rule) {
            panic!("invalid fault rule: {e}");
        }
    }

    /// Adds a fault rule, or says why it makes no sense.
    pub fn try_inject(&self, rule: FaultRule) -> Result<(), String> {
        rule.validate()?;
        self.shared.faults().rules.push(ActiveRule {
            rule,
            matched: 0,
            fired: 0,
        });
        Ok(())
    }

    /// Removes every fault rule (also `DELETE /_sim/faults`).
    pub fn clear_faults(&self) {
        self.shared.faults().rules.clear();
    }

    /// The injected rules with how often each matched and fired.
    pub fn fault_rules(&self) -> Vec<ActiveRule> {
        self.shared.faults().rules.clone()
    }

    /// Replaces the rate quotas (also `POST /_sim/quotas`); calls already made still count.
    pub fn set_quotas(&self, quotas: Quotas) {
        self.shared.quotas().limits = quotas;
    }

    /// Shortcut for `state().calls_to(…)`.
    pub fn calls_to(&self, service: &str, method: &str, path_prefix: &str) -> usize {
        self.state().calls_to(service, method, path_prefix)
    }

    /// Adds (or replaces, by id) an alert; its age counts back from the clock now.
    pub fn add_alert(&self, alert: AlertSpec) {
        let now = self.shared.clock.now();
        self.shared.lock().add_alert(alert, now);
    }

    /// Adds `EmailUrlInfo` rows (URLs that arrive late); ages count back from the clock now.
    pub fn add_mail(&self, mail: MailSpec) {
        let now = self.shared.clock.now();
        self.shared.lock().add_mail(&mail, now);
    }

    /// Sets what VMRay finds for a URL (also changes an existing sample of that URL).
    pub fn set_url_sample(&self, url: &str, sample: SampleSpec) {
        let now = self.shared.clock.now();
        self.shared.lock().set_url_sample(url, sample, now);
    }

    /// Stops the servers and waits for their thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Simulators {
    fn drop(&mut self) {
        self.stop_now();
    }
}

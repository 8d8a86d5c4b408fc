//! The haproxy part of a load balancer's plan: the reference haproxy.cfg
//! (`mode tcp`, `balance roundrobin`, `check inter 3000ms rise 30 fall 3`,
//! `retries 6`, the reference timeouts), one frontend + backend per service.

use crate::haseed::policy::plan::{
    Backend, Frontend, HaproxyConfig, HaproxyDefaults, HaproxyGlobal, NodePlan, Server,
    ServerCheck, Sysctl,
};
use crate::haseed::policy::site::{Balance, ProxyMode, Service, Vip};
use crate::Policy;

/// Reference `check inter 3000ms rise 30 fall 3`: a backend must answer for
/// 90 s before it gets traffic (an apiserver that just started is not ready),
/// and is out after 9 s of failures.
const CHECK_INTER_MS: u32 = 3000;
const CHECK_RISE: u32 = 30;
const CHECK_FALL: u32 = 3;

/// The reference `global` and `defaults` sections.
fn reference_config() -> HaproxyConfig {
    HaproxyConfig {
        global: HaproxyGlobal {
            maxconn: None,
            // Keeps Debian's admin socket, so `hatop`/`socat` keep working.
            stats_socket: true,
        },
        defaults: HaproxyDefaults {
            mode: ProxyMode::Tcp,
            retries: 6,
            timeout_connect_ms: 3000,
            timeout_client_ms: 3000,
            timeout_server_ms: 60000,
            timeout_check_ms: None,
            options: vec!["tcplog".into(), "dontlognull".into()],
        },
        frontends: Vec::new(),
        backends: Vec::new(),
    }
}

impl Policy {
    /// Adds a frontend and a backend for every service of every VIP in `held`
    /// (site order). Sections and proxies an earlier plugin proposed are kept:
    /// a frontend or backend whose name is taken is not added again.
    pub(crate) fn decide_haproxy(&self, plan: &mut NodePlan, held: &[u32]) {
        let haproxy = plan.haproxy.get_or_insert_with(reference_config);
        // Binding the VIP itself: the standby does not hold the address, and
        // haproxy could not start there without non-local bind.
        let mut nonlocal_v4 = false;
        let mut nonlocal_v6 = false;
        for &v in held {
            let vip = &self.site.vips[v as usize];
            let services = &self.index.services_of[v as usize];
            if services.is_empty() {
                plan.warnings.push(format!(
                    "VIP {} has no services: haproxy will have no frontends for it",
                    vip.name
                ));
            }
            for &s in services {
                let service = &self.site.services[s as usize];
                if !haproxy.frontends.iter().any(|f| f.name == service.name) {
                    haproxy.frontends.push(frontend(service, vip));
                    if service.bind_vip {
                        if is_ipv6(&vip.address) {
                            nonlocal_v6 = true;
                        } else {
                            nonlocal_v4 = true;
                        }
                    }
                }
                if !haproxy.backends.iter().any(|b| b.name == service.name) {
                    haproxy.backends.push(self.backend(service));
                }
            }
        }
        for (needed, key) in [
            (nonlocal_v4, "net.ipv4.ip_nonlocal_bind"),
            (nonlocal_v6, "net.ipv6.ip_nonlocal_bind"),
        ] {
            if needed && !plan.sysctls.iter().any(|s| s.key == key) {
                plan.sysctls.push(Sysctl {
                    key: key.into(),
                    value: "1".into(),
                });
            }
        }
    }

    /// The backend of `service`: one server per backend node, in inventory
    /// order, named after the node.
    fn backend(&self, service: &Service) -> Backend {
        let check = ServerCheck {
            inter_ms: service.check.inter_ms.unwrap_or(CHECK_INTER_MS),
            rise: service.check.rise.unwrap_or(CHECK_RISE),
            fall: service.check.fall.unwrap_or(CHECK_FALL),
            port: service.check.port,
            ssl: false,
        };
        let servers = service
            .backends
            .iter()
            .map(|&b| {
                let node = &self.site.nodes[b as usize];
                Server {
                    name: node.name.clone(),
                    address: node.address.clone(),
                    // None for port ranges: the port the client connected to.
                    port: service.backend_port,
                    check: Some(check),
                    backup: false,
                    weight: None,
                }
            })
            .collect();
        Backend {
            name: service.name.clone(),
            mode: service.mode,
            balance: service.balance.unwrap_or(Balance::Roundrobin),
            // A connection whose server died is retried on another one.
            options: vec!["redispatch".into()],
            http_check: service.check.http.clone(),
            servers,
        }
    }
}

/// The frontend of `service`, named like it and sending to the backend of the
/// same name. Binds every address unless the service asks for the VIP.
fn frontend(service: &Service, vip: &Vip) -> Frontend {
    Frontend {
        name: service.name.clone(),
        bind_address: service.bind_vip.then(|| vip.address.clone()),
        port_first: service.port_first,
        port_last: service.port_last,
        mode: service.mode,
        backend: service.name.clone(),
        options: Vec::new(),
        monitor_uri: None,
    }
}

/// The host hands over checked addresses: an IPv6 one is the one with a ':'.
pub(crate) fn is_ipv6(address: &str) -> bool {
    address.contains(':')
}

//! The built-in default policy of haseed, compiled to a Wasm component and
//! embedded in the `haseed` binary. It runs first in every chain.
//!
//! Its defaults reproduce the reference Raspberry Pi cluster
//! (shared/reference/pi-k8s-active-standby-lb.md): both load balancers
//! `state BACKUP` + `nopreempt` with equal priority, haproxy health tracked by
//! keepalived, `mode tcp`, `balance roundrobin`, `check inter 3000ms rise 30
//! fall 3`, `retries 6` and the reference timeouts. What the reference gets
//! wrong is fixed: script security is on (keepalived refuses scripts without
//! it), every VIP gets its own VRID per network (the host assigns it), and a
//! frontend bound to the VIP itself comes with `net.ipv4.ip_nonlocal_bind=1`
//! (haproxy on the standby cannot bind an address it does not hold).
//!
//! Cost: `open` indexes the site once (which VIPs each node holds, which
//! services each VIP carries); `decide` is proportional to the node's own
//! plan, never to the site's size.

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-plugin",
});

use exports::haseed::policy::policy::{Decider, Guest, GuestDecider, PluginInfo};
use haseed::policy::plan::{
    Backend, Frontend, HaproxyConfig, HaproxyDefaults, HaproxyGlobal, KeepalivedConfig, NodePlan,
    Server, ServerCheck, Sysctl, VrrpInstance, VrrpScript, VrrpState,
};
use haseed::policy::site::{Balance, Platform, Role, Site};

/// Settings from the inventory's `[default_policy]` table.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// How keepalived checks haproxy: a cheap process check by default
    /// (`systemctl is-active` was seen to flap on slow nodes).
    #[serde(default = "default_check_script")]
    check_script: String,
    #[serde(default = "default_advert_int_ms")]
    advert_int_ms: u32,
    #[serde(default = "default_priority")]
    priority: u8,
}

fn default_check_script() -> String {
    "pgrep".into()
}
fn default_advert_int_ms() -> u32 {
    1000
}
fn default_priority() -> u8 {
    100
}

const SETTINGS_HELP: &str = "JSON object (inventory table [default_policy]), all keys optional: \
\"check_script\": \"pgrep\" (default: /usr/bin/pgrep -x haproxy) or \"systemctl\" (systemctl is-active --quiet haproxy); \
\"advert_int_ms\": VRRP advert interval in ms (default 1000; not a multiple of 1000 selects VRRPv3); \
\"priority\": keepalived priority of every holder (default 100).";

struct Component;

impl Guest for Component {
    type Decider = Policy;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "default-policy".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "haseed's built-in policy: the reference active/standby keepalived + haproxy \
                          load balancers, with script security, unique VRIDs and nonlocal bind fixed"
                .into(),
            settings_help: SETTINGS_HELP.into(),
        }
    }
}

/// The site, indexed once per build.
struct Policy {
    site: Site,
    settings: Settings,
    /// For each node: indices of the VIPs it holds (site order).
    held: Vec<Vec<u32>>,
    /// For each VIP: indices of the services it carries (site order).
    services_of: Vec<Vec<u32>>,
}

impl GuestDecider for Policy {
    fn open(site: Site, settings: String) -> Result<Decider, String> {
        let settings: Settings = serde_json::from_str(if settings.trim().is_empty() {
            "{}"
        } else {
            &settings
        })
        .map_err(|e| format!("default-policy settings: {e}"))?;
        match settings.check_script.as_str() {
            "pgrep" | "systemctl" => {}
            other => {
                return Err(format!(
                    "default-policy settings: check_script must be \"pgrep\" or \"systemctl\", not {other:?}"
                ))
            }
        }
        if settings.advert_int_ms == 0 || !settings.advert_int_ms.is_multiple_of(10) {
            return Err(
                "default-policy settings: advert_int_ms must be a positive multiple of 10".into(),
            );
        }
        if settings.priority == 0 || settings.priority == 255 {
            return Err("default-policy settings: priority must be 1..254".into());
        }
        let mut held = vec![Vec::new(); site.nodes.len()];
        for (v, vip) in site.vips.iter().enumerate() {
            for &h in &vip.holders {
                if let Some(list) = held.get_mut(h as usize) {
                    list.push(v as u32);
                }
            }
        }
        let mut services_of = vec![Vec::new(); site.vips.len()];
        for (s, service) in site.services.iter().enumerate() {
            if let Some(list) = services_of.get_mut(service.vip as usize) {
                list.push(s as u32);
            }
        }
        Ok(Decider::new(Policy {
            site,
            settings,
            held,
            services_of,
        }))
    }

    fn decide(&self, node: u32, proposed: NodePlan) -> Result<NodePlan, String> {
        let index = node as usize;
        let Some(me) = self.site.nodes.get(index) else {
            return Err(format!("node index {node} out of range"));
        };
        let mut plan = proposed;
        plan.hostname = me.name.clone();

        // The Pi kernel needs the memory cgroup enabled for the kubelet.
        let pi = matches!(
            me.platform,
            Platform::Raspios | Platform::RaspiosLegacy | Platform::UbuntuRaspi
        );
        if pi && me.roles.contains(&Role::Master) {
            for word in ["cgroup_enable=memory", "cgroup_memory=1"] {
                push_unique(&mut plan.kernel_cmdline, word);
            }
        }

        let held = &self.held[index];
        if held.is_empty() {
            return Ok(plan);
        }
        for name in ["haproxy", "keepalived"] {
            push_unique(&mut plan.packages, name);
            push_unique(&mut plan.services, name);
        }
        self.decide_haproxy(&mut plan, held);
        self.decide_keepalived(&mut plan, index, held);
        Ok(plan)
    }
}

impl Policy {
    fn decide_haproxy(&self, plan: &mut NodePlan, held: &[u32]) {
        let haproxy = plan.haproxy.get_or_insert_with(|| HaproxyConfig {
            global: HaproxyGlobal {
                maxconn: None,
                stats_socket: true,
            },
            defaults: HaproxyDefaults {
                mode: haseed::policy::site::ProxyMode::Tcp,
                retries: 6,
                timeout_connect_ms: 3000,
                timeout_client_ms: 3000,
                timeout_server_ms: 60000,
                timeout_check_ms: None,
                options: vec!["tcplog".into(), "dontlognull".into()],
            },
            frontends: Vec::new(),
            backends: Vec::new(),
        });
        let mut nonlocal_bind = false;
        for &v in held {
            let vip = &self.site.vips[v as usize];
            let services = &self.services_of[v as usize];
            if services.is_empty() {
                plan.warnings.push(format!(
                    "VIP {} has no services: haproxy has no frontend for it",
                    vip.name
                ));
            }
            for &s in services {
                let service = &self.site.services[s as usize];
                if haproxy.frontends.iter().any(|f| f.name == service.name) {
                    continue;
                }
                nonlocal_bind |= service.bind_vip;
                haproxy.frontends.push(Frontend {
                    name: service.name.clone(),
                    bind_address: service.bind_vip.then(|| vip.address.clone()),
                    port_first: service.port_first,
                    port_last: service.port_last,
                    mode: service.mode,
                    backend: service.name.clone(),
                    options: Vec::new(),
                    monitor_uri: None,
                });
                if haproxy.backends.iter().any(|b| b.name == service.name) {
                    continue;
                }
                let check = ServerCheck {
                    inter_ms: service.check.inter_ms.unwrap_or(3000),
                    rise: service.check.rise.unwrap_or(30),
                    fall: service.check.fall.unwrap_or(3),
                    port: service.check.port,
                    ssl: false,
                };
                let servers = service
                    .backends
                    .iter()
                    .map(|&b| {
                        let backend = &self.site.nodes[b as usize];
                        Server {
                            name: backend.name.clone(),
                            address: backend.address.clone(),
                            port: service.backend_port,
                            check: Some(check),
                            backup: false,
                            weight: None,
                        }
                    })
                    .collect();
                haproxy.backends.push(Backend {
                    name: service.name.clone(),
                    mode: service.mode,
                    balance: service.balance.unwrap_or(Balance::Roundrobin),
                    options: vec!["redispatch".into()],
                    http_check: service.check.http.clone(),
                    servers,
                });
            }
        }
        if nonlocal_bind
            && !plan
                .sysctls
                .iter()
                .any(|s| s.key == "net.ipv4.ip_nonlocal_bind")
        {
            plan.sysctls.push(Sysctl {
                key: "net.ipv4.ip_nonlocal_bind".into(),
                value: "1".into(),
            });
        }
    }

    fn decide_keepalived(&self, plan: &mut NodePlan, index: usize, held: &[u32]) {
        let me = &self.site.nodes[index];
        let keepalived = plan.keepalived.get_or_insert_with(|| KeepalivedConfig {
            router_id: me.name.clone(),
            script_user: "root".into(),
            scripts: Vec::new(),
            track_files: Vec::new(),
            instances: Vec::new(),
        });
        if !keepalived.scripts.iter().any(|s| s.name == "chk_haproxy") {
            let command = if self.settings.check_script == "systemctl" {
                vec!["/usr/bin/systemctl", "is-active", "--quiet", "haproxy"]
            } else {
                vec!["/usr/bin/pgrep", "-x", "haproxy"]
            };
            keepalived.scripts.push(VrrpScript {
                name: "chk_haproxy".into(),
                command: command.into_iter().map(String::from).collect(),
                interval_s: 1,
                timeout_s: Some(2),
                rise: 2,
                fall: 3,
                weight: 0,
            });
        }
        let advert = self.settings.advert_int_ms;
        let version = if advert.is_multiple_of(1000) { 2 } else { 3 };
        for &v in held {
            let vip = &self.site.vips[v as usize];
            let name = instance_name(&vip.name);
            if keepalived.instances.iter().any(|i| i.name == name) {
                continue;
            }
            let prefix = self
                .site
                .networks
                .get(vip.network as usize)
                .and_then(|n| n.cidr.split('/').nth(1))
                .unwrap_or("32");
            let preferred = vip.master == Some(index as u32);
            let (state, priority, nopreempt) = match vip.master {
                // A named master starts MASTER a notch higher and takes the
                // VIP back when it returns: preemption, so no nopreempt.
                Some(_) if preferred => (
                    VrrpState::Master,
                    self.settings.priority.saturating_add(50).min(254),
                    false,
                ),
                Some(_) => (VrrpState::Backup, self.settings.priority, false),
                None => (VrrpState::Backup, self.settings.priority, vip.nopreempt),
            };
            let aws = me.platform == Platform::Aws;
            keepalived.instances.push(VrrpInstance {
                name,
                state,
                interface: me.interface.clone(),
                virtual_router_id: vip.vrid,
                priority,
                nopreempt,
                advert_int_ms: advert,
                vrrp_version: version,
                // No multicast inside a VPC: talk to the other holders directly.
                unicast_src: aws.then(|| me.address.clone()),
                unicast_peers: if aws {
                    vip.holders
                        .iter()
                        .filter(|&&h| h as usize != index)
                        .map(|&h| self.site.nodes[h as usize].address.clone())
                        .collect()
                } else {
                    Vec::new()
                },
                addresses: vec![format!("{}/{}", vip.address, prefix)],
                track_scripts: vec!["chk_haproxy".into()],
                track_files: Vec::new(),
                notify_master: None,
                notify_backup: None,
                notify_fault: None,
                garp_master_refresh_s: None,
            });
        }
    }
}

/// `VI_<vip>` with anything keepalived would not like replaced by '_'.
fn instance_name(vip: &str) -> String {
    let clean: String = vip
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("VI_{clean}")
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

export!(Component);

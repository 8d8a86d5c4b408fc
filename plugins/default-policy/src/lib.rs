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
//! A `master` node (Kubernetes control plane) comes up ready for kubeadm:
//! swap off, overlay + br_netfilter, IP forwarding and the bridge sysctls,
//! containerd, and a kubeadm configuration naming the VIP that fronts the
//! masters (see `master.rs`), and kubeadm, kubelet and kubectl from
//! pkgs.k8s.io with a signing key checked against a pinned fingerprint at
//! boot, held (masters and workers; `kubernetes.rs`).
//!
//! A `controller` node (OpenStack-style API node) gets host entries for every
//! node that survive cloud-init's `manage_etc_hosts` and time sync pointed at
//! its network's NTP servers (`controller.rs`); its services get `balance
//! source`, `tcpka`, HTTP checks and `inter 2000 rise 2 fall 5` on the
//! load balancers (`haproxy.rs`). A `db` node gets MariaDB + Galera with a
//! one-time bootstrap of the first node and a health endpoint on port 9200
//! for haproxy; a db backend has one writer and the others `backup`
//! (`db.rs`, `haproxy.rs`).
//!
//! Any node a VIP names in `holders` gets haproxy and keepalived for that
//! VIP, whatever its roles: controllers holding a database VIP in front of
//! the db nodes are VIP holders like the load balancers.
//!
//! Event-driven failover (on by default, `"failover": false` turns it off;
//! see `failover.rs` for the decisions and the measured figures): haproxy's
//! systemd hooks write a file keepalived tracks (weight 0), keepalived starts
//! after haproxy and removes a crashed node's VIPs, a watcher of haproxy's
//! monitor URI gives the VIP up within 1 s when haproxy hangs (or lost every
//! backend while a peer has them), 1 s adverts (a stall under three adverts moves nothing), priority 254, gratuitous ARP
//! refresh. Clients then see 20-80 ms when haproxy dies, not 3.3-3.6 s.
//!
//! Cost: `open` indexes the site once (which VIPs each node holds, which
//! services each VIP carries); `decide` is proportional to the node's own
//! plan, never to the site's size.

wit_bindgen::generate!({
    path: "../../wit",
    world: "policy-plugin",
});

mod aws;
mod controller;
mod db;
mod failover;
mod haproxy;
mod index;
mod keepalived;
mod kubernetes;
mod master;
mod settings;

use exports::haseed::policy::policy::{Decider, Guest, GuestDecider, PluginInfo, PolicyError};
use haseed::policy::plan::NodePlan;
use haseed::policy::site::{Platform, Role, Site};
use index::SiteIndex;
use settings::Settings;

struct Component;

impl Guest for Component {
    type Decider = Policy;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "default-policy".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "haseed's built-in policy: the reference active/standby keepalived + \
                          haproxy load balancers, with script security, unique VRIDs and \
                          non-local bind fixed; Kubernetes masters made ready for kubeadm; \
                          OpenStack-style controllers; MariaDB Galera db nodes"
                .into(),
            settings_help: settings::HELP.into(),
            // The first link of the chain builds every plan from an empty one.
            scope: Some(
                [
                    "hostname",
                    "haproxy",
                    "keepalived",
                    "packages",
                    "apt-sources",
                    "sysctls",
                    "kernel-cmdline",
                    "files",
                    "services",
                ]
                .map(String::from)
                .to_vec(),
            ),
        }
    }
}

/// One build's view: the site, its index and the settings.
pub(crate) struct Policy {
    site: Site,
    index: SiteIndex,
    settings: Settings,
    /// `/etc/haseed/hosts` for controllers (None: the site has none).
    hosts: Option<String>,
    /// The site's Galera cluster (None: no db node).
    galera: Option<db::Galera>,
}

impl GuestDecider for Policy {
    fn open(site: Site, settings: String) -> Result<Decider, PolicyError> {
        // The field names the key ("settings.priority") so that the host
        // points at its line in the site.
        let settings = Settings::parse(&settings).map_err(|e| PolicyError {
            field: Some(e.key.map_or("settings".into(), |k| format!("settings.{k}"))),
            message: e.message,
        })?;
        let index = SiteIndex::build(&site).map_err(|message| PolicyError {
            message,
            field: None,
        })?;
        // IPv6 VIPs always use VRRPv3, whose adverts stop at 40.95 s.
        if settings.advert_int_ms > 40_950 {
            if let Some(vip) = site.vips.iter().find(|v| haproxy::is_ipv6(&v.address)) {
                return Err(PolicyError {
                    message: format!(
                        "advert_int_ms: {} ms is too long for IPv6 VIP {} \
                         (VRRPv3 allows at most 40950)",
                        settings.advert_int_ms, vip.name
                    ),
                    field: Some("settings.advert_int_ms".into()),
                });
            }
        }
        let controllers = site
            .nodes
            .iter()
            .any(|n| n.roles.contains(&Role::Controller));
        let hosts = controller::hosts_file(&site, controllers);
        let galera = db::Galera::build(&site, settings.cluster_name(&site.name));
        Ok(Decider::new(Policy {
            site,
            index,
            settings,
            hosts,
            galera,
        }))
    }

    fn decide(&self, node: u32, proposed: NodePlan) -> Result<NodePlan, PolicyError> {
        let index = node as usize;
        let Some(me) = self.site.nodes.get(index) else {
            return Err(PolicyError {
                message: format!("node index {node} out of range"),
                field: None,
            });
        };
        // Start from what the plugins before us proposed; only add to it.
        let mut plan = proposed;
        plan.hostname = me.name.clone();

        // The Pi kernel leaves the memory cgroup off; the kubelet needs it.
        let pi = matches!(
            me.platform,
            Platform::Raspios | Platform::RaspiosLegacy | Platform::UbuntuRaspi
        );
        let kubernetes = me.roles.contains(&Role::Master) || me.roles.contains(&Role::Worker);
        if kubernetes {
            if pi {
                for word in ["cgroup_enable=memory", "cgroup_memory=1"] {
                    push_unique(&mut plan.kernel_cmdline, word);
                }
            }
            self.prepare_kubernetes_node(&mut plan);
        }
        if me.roles.contains(&Role::Master) {
            self.decide_master(&mut plan, index, me);
        }
        let controller = me.roles.contains(&Role::Controller);
        let db = me.roles.contains(&Role::Db);
        if controller {
            self.decide_controller(&mut plan);
        }
        if db {
            self.decide_db(&mut plan, index, me);
        }
        if controller || db {
            self.decide_time_sync(&mut plan, me);
        }

        // A node that may hold a VIP (a load balancer, or a controller
        // holding the database VIP) runs haproxy and keepalived; any other
        // node gets nothing more.
        let held = &self.index.held[index];
        if held.is_empty() {
            return Ok(plan);
        }
        for name in ["haproxy", "keepalived"] {
            push_unique(&mut plan.packages, name);
            push_unique(&mut plan.services, name);
        }
        self.decide_haproxy(&mut plan, index, held);
        self.decide_keepalived(&mut plan, index, held);
        if me.platform == Platform::Aws {
            self.decide_aws(&mut plan, held);
        }
        self.decide_failover(&mut plan, index, held);
        Ok(plan)
    }
}

/// Appends `item` unless the list already has it (an earlier plugin may have).
fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

export!(Component);

//! What the lab mirrors of a site: one VIP's holders, its services'
//! backends and a client on one segment, and what each holder's plan says
//! about the VIP (the lab's expectations come from the plan, not constants).

use super::*;

/// One lab member: a site node (or the client) in its own namespace.
#[derive(Clone, Debug)]
pub(super) struct Member {
    /// Index of the site node (none for the client).
    pub(super) node: Option<usize>,
    pub(super) name: String,
    pub(super) ns: String,
    pub(super) interface: String,
    pub(super) address: Ipv4Addr,
}

/// What the lab mirrors of the site for one VIP.
#[derive(Debug)]
pub(super) struct Topology {
    pub(super) vip_name: String,
    pub(super) vip: Ipv4Addr,
    pub(super) prefix: u8,
    pub(super) holders: Vec<Member>,
    /// Backend nodes with the ports they serve.
    pub(super) backends: Vec<(Member, BTreeSet<u16>)>,
    pub(super) client: Member,
    /// The VIP's service ports the client probes.
    pub(super) ports: Vec<u16>,
    pub(super) bridge_ns: String,
}

impl Topology {
    pub(super) fn of(site: &Site, vip: Option<&str>) -> anyhow::Result<Topology> {
        let has_services = |i: usize| site.services.iter().any(|s| s.vip as usize == i);
        let (vi, v) = match vip {
            Some(name) => site
                .vips
                .iter()
                .enumerate()
                .find(|(_, v)| v.name == name)
                .ok_or_else(|| {
                    anyhow!(
                        "site {} has no VIP {name:?} (it has: {})",
                        site.name,
                        site.vips
                            .iter()
                            .map(|v| v.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?,
            None => site
                .vips
                .iter()
                .enumerate()
                .find(|(i, _)| has_services(*i))
                .ok_or_else(|| anyhow!("site {} has no VIP with a service to test", site.name))?,
        };
        if !has_services(vi) {
            bail!(
                "VIP {} carries no service: nothing for the client to probe",
                v.name
            );
        }
        let vip_addr: Ipv4Addr = v
            .address
            .parse()
            .map_err(|_| anyhow!("VIP {}: the lab supports IPv4 only ({})", v.name, v.address))?;
        let net = &site.networks[v.network as usize];
        let prefix: u8 = net
            .cidr
            .split_once('/')
            .and_then(|(_, p)| p.parse().ok())
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| {
                anyhow!(
                    "network {}: the lab needs an IPv4 /8../30 ({})",
                    net.name,
                    net.cidr
                )
            })?;
        let tag = format!("hsl{}", std::process::id());
        let member = |i: usize, role: &str| -> anyhow::Result<Member> {
            let n = &site.nodes[i];
            Ok(Member {
                node: Some(i),
                name: n.name.clone(),
                ns: format!("{tag}-{role}{i}"),
                interface: n.interface.clone(),
                address: n.address.parse().map_err(|_| {
                    anyhow!(
                        "node {}: the lab supports IPv4 only ({})",
                        n.name,
                        n.address
                    )
                })?,
            })
        };
        let holders = v
            .holders
            .iter()
            .map(|&h| member(h as usize, "lb"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut backends: Vec<(Member, BTreeSet<u16>)> = Vec::new();
        let mut ports = Vec::new();
        for s in site.services.iter().filter(|s| s.vip as usize == vi) {
            ports.push(s.port_first);
            let port = s.backend_port.unwrap_or(s.port_first);
            for &b in &s.backends {
                if let Some((_, p)) = backends
                    .iter_mut()
                    .find(|(m, _)| m.name == site.nodes[b as usize].name)
                {
                    p.insert(port);
                } else {
                    backends.push((member(b as usize, "be")?, BTreeSet::from([port])));
                }
            }
        }
        // The client takes the highest free address of the network.
        let used: BTreeSet<Ipv4Addr> = site
            .nodes
            .iter()
            .filter_map(|n| n.address.parse().ok())
            .chain(site.vips.iter().filter_map(|v| v.address.parse().ok()))
            .collect();
        let mask = u32::MAX << (32 - prefix);
        let base = u32::from(vip_addr) & mask;
        let broadcast = base | !mask;
        let client_addr = (1..=1024u32)
            .filter_map(|k| broadcast.checked_sub(k))
            .filter(|&a| a > base)
            .map(Ipv4Addr::from)
            .find(|a| !used.contains(a))
            .ok_or_else(|| anyhow!("network {}: no free address for the lab's client", net.name))?;
        Ok(Topology {
            vip_name: v.name.clone(),
            vip: vip_addr,
            prefix,
            holders,
            backends,
            client: Member {
                node: None,
                name: "client".into(),
                ns: format!("{tag}-client"),
                interface: "eth0".into(),
                address: client_addr,
            },
            ports,
            bridge_ns: format!("{tag}-br"),
        })
    }
}

/// What one holder's generated keepalived section says about the VIP: the
/// lab's expectations for a hung haproxy and a returning old master come from
/// the plan, not from constants.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct HolderVrrp {
    /// The instance's name, as keepalived's log names it.
    pub(super) instance: String,
    /// `state MASTER`: keepalived ignores `nopreempt` then.
    pub(super) master: bool,
    pub(super) priority: u8,
    pub(super) nopreempt: bool,
    /// The tracked weight-0 script that asks haproxy itself (its
    /// `monitor-uri` frontend), the only check that sees a hung haproxy: its
    /// name, interval, fall and timeout in s.
    pub(super) hung_check: Option<(String, u32, u32, u32)>,
    /// The watcher (`hooks::Watch`) whose track file the instance tracks
    /// with weight 0: its description and worst-case detection, ms.
    pub(super) watch: Option<(String, u64)>,
    /// Longest time a tracked script needs to call a returning haproxy
    /// healthy (interval x rise + timeout), ms.
    pub(super) rise_ms: u64,
    /// The instance's VRRP advert interval, ms: the peer declares this
    /// holder dead after three of them (plus the skew), so a stall shorter
    /// than that must not move the VIP.
    pub(super) advert_ms: u64,
}

impl HolderVrrp {
    pub(super) fn of(plan: &NodePlan, vip: Ipv4Addr) -> Option<HolderVrrp> {
        let k = plan.keepalived.as_ref()?;
        let vip = vip.to_string();
        let inst = k.instances.iter().find(|i| {
            i.addresses
                .iter()
                .any(|a| a.split('/').next() == Some(vip.as_str()))
        })?;
        let tracked: Vec<_> = k
            .scripts
            .iter()
            .filter(|s| inst.track_scripts.contains(&s.name))
            .collect();
        // keepalived's script timeout defaults to its interval.
        let timeout = |s: &crate::contract::VrrpScript| s.timeout_s.unwrap_or(s.interval_s);
        let monitors: Vec<String> = plan
            .haproxy
            .iter()
            .flat_map(|h| &h.frontends)
            .filter_map(|f| {
                f.monitor_uri
                    .as_ref()
                    .map(|u| format!(":{}{u}", f.port_first))
            })
            .collect();
        let hung_check = tracked
            .iter()
            .filter(|s| s.weight == 0)
            .filter(|s| {
                s.command
                    .iter()
                    .any(|w| monitors.iter().any(|m| w.contains(m.as_str())))
            })
            .map(|s| (s.name.clone(), s.interval_s, s.fall, timeout(s)))
            .min_by_key(|(_, i, f, t)| i * f + t);
        let watcher = watch_of(plan).filter(|w| {
            let path = format!("{}/{}", w.dir, w.name);
            k.track_files
                .iter()
                .any(|t| t.path == path && t.weight == 0 && inst.track_files.contains(&t.name))
        });
        let rise_ms = tracked
            .iter()
            .map(|s| u64::from(s.interval_s * s.rise + timeout(s)) * 1000)
            .chain(watcher.as_ref().map(Watch::detect_ms))
            .max()
            .unwrap_or(0);
        let watch = watcher.map(|w| {
            (
                format!(
                    "haseed-haproxy-watch every {} ms, timeout {} ms, fall {}",
                    w.every_ms, w.timeout_ms, w.fall
                ),
                w.detect_ms(),
            )
        });
        Some(HolderVrrp {
            instance: inst.name.clone(),
            master: inst.state == VrrpState::Master,
            priority: inst.priority,
            nopreempt: inst.nopreempt,
            hung_check,
            watch,
            rise_ms,
            advert_ms: u64::from(inst.advert_int_ms),
        })
    }

    /// The bound on a hung haproxy's outage, when something tracked sees a
    /// hang at all: issue 19's objective, [`HUNG_OBJECTIVE_MS`].
    pub(super) fn hung_bound_ms(&self) -> Option<u64> {
        (self.watch.is_some() || self.hung_check.is_some()).then_some(HUNG_OBJECTIVE_MS)
    }

    /// Worst-case detection of a hang by what the holder tracks, ms: the
    /// watcher's, else the check's interval x fall + timeout.
    pub(super) fn hung_detect_ms(&self) -> Option<u64> {
        let check = self
            .hung_check
            .as_ref()
            .map(|(_, i, f, t)| u64::from(i * f + t) * 1000);
        match (&self.watch, check) {
            (Some((_, w)), Some(c)) => Some((*w).min(c)),
            (Some((_, w)), None) => Some(*w),
            (None, c) => c,
        }
    }

    /// Does this holder, returning, take the VIP back from `current`?
    /// keepalived preempts unless `nopreempt` on a BACKUP, and only a
    /// strictly higher priority wins.
    pub(super) fn takes_back_from(&self, current: &HolderVrrp) -> bool {
        (self.master || !self.nopreempt) && self.priority > current.priority
    }
}

/// The watcher an enabled `haseed-*.service` unit of the plan starts, if
/// any (recognised; the lab's `vet` also checks its script).
pub(super) fn watch_of(plan: &NodePlan) -> Option<Watch> {
    plan.files.iter().find_map(|f| {
        let unit = f
            .path
            .strip_prefix("/etc/systemd/system/")
            .filter(|u| u.starts_with("haseed-") && u.ends_with(".service"))?;
        if !plan.services.iter().any(|s| s == unit) {
            return None;
        }
        let mut h = Hooks::default();
        h.add_dropin(&f.content, &f.path).ok()?;
        h.start.iter().find_map(|c| Watch::recognise(&c.argv).ok())
    })
}

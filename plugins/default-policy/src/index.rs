//! The site, indexed once per build in `open` so that `decide` only touches
//! what belongs to the node it decides (sites may have thousands of nodes).

use std::collections::BTreeSet;

use crate::haseed::policy::site::{Role, Site};

/// Lookups built from the site. All indices in it (and in the site) are
/// checked here, so `decide` can index without failing.
pub struct SiteIndex {
    /// For each node: the VIPs it holds (indices into `site.vips`, site order).
    pub held: Vec<Vec<u32>>,
    /// For each VIP: the services it carries (indices into `site.services`,
    /// site order).
    pub services_of: Vec<Vec<u32>>,
    /// For each VIP: its keepalived instance name, unique within the site.
    pub instance_names: Vec<String>,
    /// For each VIP: the prefix length of its network ("24" for a /24).
    pub prefixes: Vec<String>,
    /// For each node: the first service (site order) whose backend role is
    /// `master` and whose backends include the node: the Kubernetes API
    /// endpoint its kubeadm configuration names.
    pub master_service: Vec<Option<u32>>,
}

impl SiteIndex {
    /// One pass over VIPs and services (O(site)). The host promises a
    /// resolved, checked site; an index that is out of range anyway is
    /// reported instead of trapping later in `decide`.
    pub fn build(site: &Site) -> Result<SiteIndex, String> {
        let nodes = site.nodes.len();
        let node_ok = |what: &str, i: u32| {
            if (i as usize) < nodes {
                Ok(())
            } else {
                Err(format!("site: {what} names node index {i}, out of range"))
            }
        };

        let mut held = vec![Vec::new(); nodes];
        let mut prefixes = Vec::with_capacity(site.vips.len());
        for (v, vip) in site.vips.iter().enumerate() {
            let network = site.networks.get(vip.network as usize).ok_or_else(|| {
                format!(
                    "site: VIP {} names network index {}, out of range",
                    vip.name, vip.network
                )
            })?;
            let prefix = network
                .cidr
                .split_once('/')
                .map(|(_, p)| p)
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    format!(
                        "site: network {} has no prefix length in {}",
                        network.name, network.cidr
                    )
                })?;
            prefixes.push(prefix.to_string());
            for &h in &vip.holders {
                node_ok(&format!("VIP {} holder", vip.name), h)?;
                held[h as usize].push(v as u32);
            }
            if let Some(m) = vip.master {
                node_ok(&format!("VIP {} master", vip.name), m)?;
            }
        }

        let mut services_of = vec![Vec::new(); site.vips.len()];
        let mut master_service = vec![None; nodes];
        for (s, service) in site.services.iter().enumerate() {
            let list = services_of.get_mut(service.vip as usize).ok_or_else(|| {
                format!(
                    "site: service {} names VIP index {}, out of range",
                    service.name, service.vip
                )
            })?;
            list.push(s as u32);
            for &b in &service.backends {
                node_ok(&format!("service {} backend", service.name), b)?;
                if service.backend_role == Role::Master {
                    master_service[b as usize].get_or_insert(s as u32);
                }
            }
        }

        Ok(SiteIndex {
            held,
            services_of,
            instance_names: instance_names(site),
            prefixes,
            master_service,
        })
    }
}

/// `VI_<vip name>` with every character outside `[A-Za-z0-9_-]` replaced by
/// '_'. VIP names may contain '.', so "a.b" and "a_b" would both become
/// `VI_a_b`; a later VIP that collides gets its index appended, so no
/// instance is silently dropped.
fn instance_names(site: &Site) -> Vec<String> {
    let mut taken = BTreeSet::new();
    site.vips
        .iter()
        .enumerate()
        .map(|(v, vip)| {
            let clean: String = vip
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let mut name = format!("VI_{clean}");
            let mut n = v;
            while taken.contains(&name) {
                name = format!("VI_{clean}_{n}");
                n += 1;
            }
            taken.insert(name.clone());
            name
        })
        .collect()
}

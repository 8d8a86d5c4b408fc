//! The keepalived part of a load balancer's plan: the reference
//! `vrrp_instance` (state BACKUP, nopreempt, equal priority, haproxy tracked
//! by a script), one instance per VIP the node holds.

use crate::haproxy::is_ipv6;
use crate::haseed::policy::plan::{
    KeepalivedConfig, NodePlan, VrrpInstance, VrrpScript, VrrpState,
};
use crate::haseed::policy::site::{AwsVipMove, Platform};
use crate::Policy;

/// The script every instance tracks.
const CHECK_NAME: &str = "chk_haproxy";

/// How much higher a VIP's preferred master starts than the other holders.
const MASTER_BONUS: u8 = 50;

impl Policy {
    /// Adds the `chk_haproxy` script and one instance per VIP in `held` (site
    /// order) to the proposed keepalived section, or to a new one. A script or
    /// instance whose name is taken is not added again.
    pub(crate) fn decide_keepalived(&self, plan: &mut NodePlan, node: usize, held: &[u32]) {
        let me = &self.site.nodes[node];
        let keepalived = plan.keepalived.get_or_insert_with(|| KeepalivedConfig {
            router_id: me.name.clone(),
            // keepalived refuses to run scripts without script security (the
            // reference config's mistake); root may run pgrep/systemctl.
            script_user: "root".into(),
            scripts: Vec::new(),
            track_files: Vec::new(),
            instances: Vec::new(),
        });
        if !keepalived.scripts.iter().any(|s| s.name == CHECK_NAME) {
            keepalived.scripts.push(VrrpScript {
                name: CHECK_NAME.into(),
                command: self.settings.check_script.command(),
                interval_s: 1,
                timeout_s: Some(2),
                rise: 2,
                fall: 3,
                // 0: a holder whose haproxy is down goes FAULT and gives the
                // VIP away, whatever the priorities.
                weight: 0,
            });
        }

        let aws = me.platform == Platform::Aws;
        for &v in held {
            let vip = &self.site.vips[v as usize];
            let name = &self.index.instance_names[v as usize];
            if keepalived.instances.iter().any(|i| &i.name == name) {
                continue;
            }
            let base = self.settings.priority;
            let (state, priority, nopreempt) = match vip.master {
                // No preferred master (the reference): every holder starts
                // BACKUP with equal priority, the first one up keeps the VIP.
                None => (VrrpState::Backup, base, vip.nopreempt),
                // A preferred master starts MASTER, higher, and takes the VIP
                // back when it returns: preemption, so nopreempt is off
                // (keepalived ignores it on a MASTER anyway). The others stay
                // strictly lower even when `priority` is near the top.
                Some(m) => {
                    let top = base.saturating_add(MASTER_BONUS).min(254);
                    if m as usize == node {
                        (VrrpState::Master, top, false)
                    } else {
                        (VrrpState::Backup, base.min(top - 1), false)
                    }
                }
            };
            // keepalived speaks only VRRPv3 for IPv6.
            let vrrp_version = if is_ipv6(&vip.address) {
                3
            } else {
                self.settings.vrrp_version()
            };
            // On AWS the MASTER moves the VIP through the EC2 API; a
            // route-table ("overlay") VIP is a host route outside every subnet.
            let how = if aws { vip.aws.as_ref() } else { None };
            let (notify_master, notify_backup, notify_fault) = match how {
                Some(how) => {
                    let (m, b, f) = crate::aws::notify_commands(name, vip, how);
                    (Some(m), Some(b), Some(f))
                }
                None => (None, None, None),
            };
            let prefix = match how {
                Some(AwsVipMove::RouteTable(_)) => {
                    if is_ipv6(&vip.address) {
                        "128"
                    } else {
                        "32"
                    }
                }
                _ => self.index.prefixes[v as usize].as_str(),
            };
            keepalived.instances.push(VrrpInstance {
                name: name.clone(),
                state,
                interface: me.interface.clone(),
                virtual_router_id: vip.vrid,
                priority,
                nopreempt,
                advert_int_ms: self.settings.advert_int_ms,
                vrrp_version,
                // A VPC carries no multicast: talk to the other holders of
                // this VIP directly (O(holders), not O(site)).
                unicast_src: aws.then(|| me.address.clone()),
                unicast_peers: if aws {
                    vip.holders
                        .iter()
                        .filter(|&&h| h as usize != node)
                        .map(|&h| self.site.nodes[h as usize].address.clone())
                        .collect()
                } else {
                    Vec::new()
                },
                addresses: vec![format!("{}/{prefix}", vip.address)],
                track_scripts: vec![CHECK_NAME.into()],
                track_files: Vec::new(),
                notify_master,
                notify_backup,
                notify_fault,
                garp_master_refresh_s: None,
            });
        }
    }
}

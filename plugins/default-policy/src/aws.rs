//! What an AWS load balancer needs besides the VRRP instances (which
//! `keepalived.rs` makes unicast for `platform = "aws"`): VRRP cannot move an
//! address inside a VPC, so keepalived's notify commands call a generated
//! script (`/usr/local/sbin/haseed-aws-vip`) that points the VIP at the new
//! MASTER through the EC2 API, with an IMDSv2 session token and the instance
//! profile's credentials (never keys in a file). While MASTER the script
//! re-asserts the VIP periodically: a healed split brain runs no notify
//! again, so the transition alone is not enough.
//!
//! The AWS CLI comes from the distribution: `awscli` on Debian (12 and 13
//! ship it). Ubuntu 24.04 has no `awscli` deb; there a site plugin swaps the
//! package for the `aws-cli` snap or AWS's own installer, and the script
//! finds `aws` on PATH (/usr/bin, /usr/local/bin or /snap/bin).

use crate::haseed::policy::plan::{File, NodePlan};
use crate::haseed::policy::site::{AwsVipMove, Vip};
use crate::{push_unique, Policy};

/// The notify script, as it lands on the node.
pub const SCRIPT_PATH: &str = "/usr/local/sbin/haseed-aws-vip";
/// Its settings (IMDS URL, EC2 endpoint, re-assert interval).
pub const CONF_PATH: &str = "/etc/haseed/aws-vip.conf";

const SCRIPT: &str = include_str!("aws/haseed-aws-vip.sh");

const CONF: &str =
    "# Settings of /usr/local/sbin/haseed-aws-vip (written by haseed; the environment wins).\n\
# IMDS base URL (IMDSv2 tokens are always used).\n\
HASEED_IMDS_URL=http://169.254.169.254\n\
# Seconds between re-assertions of a VIP while this node is MASTER.\n\
HASEED_AWS_VIP_INTERVAL=10\n\
# EC2 endpoint override, e.g. a VPC interface endpoint; empty: the region's.\n\
AWS_ENDPOINT_URL_EC2=\n";

/// The arguments after the action that say how `vip` moves:
/// `METHOD VIP [ALLOCATION_ID | RTB...]`.
pub fn move_args(vip: &Vip, how: &AwsVipMove) -> Vec<String> {
    let mut args = Vec::new();
    match how {
        AwsVipMove::SecondaryIp => {
            args.push("secondary-ip".into());
            args.push(vip.address.clone());
        }
        AwsVipMove::ElasticIp(id) => {
            args.push("elastic-ip".into());
            args.push(vip.address.clone());
            args.push(id.clone());
        }
        AwsVipMove::RouteTable(tables) => {
            args.push("route-table".into());
            args.push(vip.address.clone());
            args.extend(tables.iter().cloned());
        }
    }
    args
}

/// keepalived's notify commands for instance `instance` of `vip`:
/// (master, backup, fault).
pub fn notify_commands(
    instance: &str,
    vip: &Vip,
    how: &AwsVipMove,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut master = vec![SCRIPT_PATH.to_string(), "master".into(), instance.into()];
    master.extend(move_args(vip, how));
    let stop = |action: &str| vec![SCRIPT_PATH.to_string(), action.into(), instance.to_string()];
    (master, stop("backup"), stop("fault"))
}

impl Policy {
    /// The script, its settings file and the packages it runs on, for a node
    /// that holds at least one VIP with an AWS move method.
    pub(crate) fn decide_aws(&self, plan: &mut NodePlan, held: &[u32]) {
        let moves = held
            .iter()
            .any(|&v| self.site.vips[v as usize].aws.is_some());
        if !moves {
            return;
        }
        // curl: the IMDSv2 reads; awscli: the EC2 calls (see the module docs).
        for name in ["awscli", "curl"] {
            push_unique(&mut plan.packages, name);
        }
        for (path, mode, content) in [(SCRIPT_PATH, 0o755, SCRIPT), (CONF_PATH, 0o644, CONF)] {
            if !plan.files.iter().any(|f| f.path == path) {
                plan.files.push(File {
                    path: path.into(),
                    mode,
                    owner: "root:root".into(),
                    content: content.into(),
                });
            }
        }
    }
}

//! What an AWS load balancer needs besides the VRRP instances (which
//! `keepalived.rs` makes unicast for `platform = "aws"`): VRRP cannot move an
//! address inside a VPC, so keepalived's notify commands call a generated
//! script (`/usr/local/sbin/haseed-aws-vip`) that points the VIP at the new
//! MASTER through the EC2 API, with an IMDSv2 session token and the instance
//! profile's credentials (never keys in a file). While MASTER the script
//! re-asserts the VIP periodically: a healed split brain runs no notify
//! again, so the transition alone is not enough.
//!
//! - `elastic-ip`: the VIP becomes a secondary private address of the new
//!   MASTER's ENI (`assign-private-ip-addresses --allow-reassignment`) and the
//!   Elastic IP is associated with that address (`associate-address
//!   --private-ip-address VIP --allow-reassociation`): kubeadm's
//!   `controlPlaneEndpoint` names the VIP, which must answer inside the VPC,
//!   and the EIP maps onto it from outside. Without `--private-ip-address`
//!   the EIP lands on the ENI's primary address (EC2 API reference,
//!   AssociateAddress, parameter PrivateIpAddress: when it is not given, the
//!   primary private IP address is used).
//! - Split brain: the loop takes the VIP at once only from no holder (a
//!   BACKUP or FAULT node releases it); from another node, which only a
//!   MASTER's script moves it to, after INTERVAL x 2^n (at most
//!   `HASEED_AWS_VIP_MAX_BACKOFF`), logging from the third flip on.
//! - Bounded: every CLI call has connect/read timeouts and an overall
//!   `timeout` ([`CONF`]); `master` returns at once and runs the move and the
//!   loop as a process group whose pid file (pid + start time from /proc) is
//!   written before the first move; BACKUP/FAULT kill that group (the call in
//!   flight with it) only when /proc still shows the same process, so a stale
//!   file never kills an unrelated one. A pid file, not a systemd unit: the
//!   script also runs where keepalived runs without systemd (containers, the
//!   tests), and the start-time check closes the pid-reuse hole a plain pid
//!   file has; `flock` alone cannot stop the holder.
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

/// The script's settings. The CLI bounds are AWS CLI v1 global options
/// (<https://docs.aws.amazon.com/cli/v1/userguide/cli-configure-options.html>:
/// `--cli-connect-timeout` and `--cli-read-timeout`, 60 s each by default,
/// 0 = wait forever); without them a hung EC2 endpoint held `notify_master`
/// for 309 s (issue 19). 2 s to connect and 5 s to read are far above EC2's
/// usual answer time; with at most two attempts (`AWS_MAX_ATTEMPTS=2`) a call
/// ends within 2 x 7 s, and `timeout 15` bounds it whatever the CLI does.
/// The re-check backs off to at most 300 s against another MASTER.
const CONF: &str =
    "# Settings of /usr/local/sbin/haseed-aws-vip (written by haseed; the environment wins).\n\
# IMDS base URL (IMDSv2 tokens are always used).\n\
HASEED_IMDS_URL=http://169.254.169.254\n\
# Seconds between re-checks of a VIP while this node is MASTER.\n\
HASEED_AWS_VIP_INTERVAL=10\n\
# Longest wait before taking a VIP back from another node (split brain: doubles per flip).\n\
HASEED_AWS_VIP_MAX_BACKOFF=300\n\
# Bounds of every AWS CLI call: connect, read (per attempt) and in all, in seconds.\n\
HASEED_AWS_CLI_CONNECT_TIMEOUT=2\n\
HASEED_AWS_CLI_READ_TIMEOUT=5\n\
HASEED_AWS_CALL_TIMEOUT=15\n\
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
/// (master, backup, fault). Each names how the VIP moves: BACKUP and FAULT
/// stop the MASTER loop and release the VIP if it still points at this node,
/// so the new MASTER's loop sees no holder and takes it at once, while a VIP
/// found on another node is taken back only after a growing wait (split
/// brain: issue 19 measured 12 reassignments in 12 s, alternating).
pub fn notify_commands(
    instance: &str,
    vip: &Vip,
    how: &AwsVipMove,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let call = |action: &str| {
        let mut c = vec![SCRIPT_PATH.to_string(), action.into(), instance.to_string()];
        c.extend(move_args(vip, how));
        c
    };
    (call("master"), call("backup"), call("fault"))
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

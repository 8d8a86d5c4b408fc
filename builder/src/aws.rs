//! What a user applies in their AWS account for each VIP that moves through the
//! EC2 API (`[vip.aws]`), written next to the nodes' user-data as
//! `DIR/_aws/VIP/iam-policy.json` and `DIR/_aws/VIP/security-group.json`
//! (`_` cannot start a node name, so the folder never collides with a node's).
//!
//! - `iam-policy.json`: the least-privilege policy for the holders' instance
//!   profile: the one EC2 action the notify script moves the VIP with, scoped
//!   to the VIP's Elastic IP allocation or route tables where AWS allows it,
//!   plus the Describe action its re-assertion loop reads (Describe actions
//!   take no resource-level permissions, hence `*`).
//! - `security-group.json`: the ingress rules the holders' security group
//!   needs, in the shape of `aws ec2 authorize-security-group-ingress
//!   --group-id sg-... --ip-permissions file://security-group.json`: VRRP (IP
//!   protocol 112) from each other holder, and the VIP's service ports from the
//!   site's networks.
//!
//! Pure: values in, JSON text out. Never holds or writes credentials.

use std::net::IpAddr;

use serde_json::{json, Value};

use crate::contract::{AwsVipMove, Site};
use crate::output::OutFile;

/// Where the AWS files live inside a build directory.
pub const DIR: &str = "_aws";

/// The IAM policy document for `how` (a JSON object).
pub fn iam_policy(how: &AwsVipMove) -> Value {
    let (action, resources, describe): (&str, Vec<String>, &str) = match how {
        AwsVipMove::SecondaryIp => (
            "ec2:AssignPrivateIpAddresses",
            vec!["arn:aws:ec2:*:*:network-interface/*".into()],
            "ec2:DescribeNetworkInterfaces",
        ),
        AwsVipMove::ElasticIp(id) => (
            "ec2:AssociateAddress",
            vec![
                format!("arn:aws:ec2:*:*:elastic-ip/{id}"),
                "arn:aws:ec2:*:*:network-interface/*".into(),
            ],
            "ec2:DescribeAddresses",
        ),
        AwsVipMove::RouteTable(tables) => (
            "ec2:ReplaceRoute",
            tables
                .iter()
                .map(|t| format!("arn:aws:ec2:*:*:route-table/{t}"))
                .collect(),
            "ec2:DescribeRouteTables",
        ),
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "HaseedMoveVip",
                "Effect": "Allow",
                "Action": [action],
                "Resource": resources,
            },
            {
                "Sid": "HaseedCheckVip",
                "Effect": "Allow",
                "Action": [describe],
                "Resource": "*",
            }
        ]
    })
}

/// `ADDRESS/32` (or `/128`) as an IpRanges / Ipv6Ranges entry.
fn range(addr: &str, description: &str) -> (bool, Value) {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => (
            true,
            json!({ "CidrIpv6": format!("{addr}/128"), "Description": description }),
        ),
        _ => (
            false,
            json!({ "CidrIp": format!("{addr}/32"), "Description": description }),
        ),
    }
}

fn permission(protocol: &str, ports: Option<(u16, u16)>, ranges: Vec<(bool, Value)>) -> Value {
    let (v6, v4): (Vec<_>, Vec<_>) = ranges.into_iter().partition(|(v6, _)| *v6);
    let mut p = json!({ "IpProtocol": protocol });
    if let Some((from, to)) = ports {
        p["FromPort"] = json!(from);
        p["ToPort"] = json!(to);
    }
    if !v4.is_empty() {
        p["IpRanges"] = Value::Array(v4.into_iter().map(|(_, r)| r).collect());
    }
    if !v6.is_empty() {
        p["Ipv6Ranges"] = Value::Array(v6.into_iter().map(|(_, r)| r).collect());
    }
    p
}

/// The holders' ingress rules for VIP `vip` (a JSON array of IpPermissions).
pub fn security_group(site: &Site, vip: usize) -> Value {
    let v = &site.vips[vip];
    let mut rules = Vec::new();
    let vrrp: Vec<_> = v
        .holders
        .iter()
        .map(|&h| &site.nodes[h as usize])
        .map(|n| {
            range(
                &n.address,
                &format!("VRRP from {} (VIP {})", n.name, v.name),
            )
        })
        .collect();
    rules.push(permission("112", None, vrrp));
    // Clients: the site's own networks (widen for clients elsewhere).
    for s in site.services.iter().filter(|s| s.vip as usize == vip) {
        let ranges = site
            .networks
            .iter()
            .map(|n| {
                let v6 = n.cidr.contains(':');
                let key = if v6 { "CidrIpv6" } else { "CidrIp" };
                (
                    v6,
                    json!({ key: n.cidr, "Description": format!("{} from network {}", s.name, n.name) }),
                )
            })
            .collect();
        rules.push(permission("tcp", Some((s.port_first, s.port_last)), ranges));
    }
    Value::Array(rules)
}

/// Every AWS file of a build, relative to the build directory.
pub fn build_files(site: &Site) -> Vec<OutFile> {
    let mut files = Vec::new();
    for (i, vip) in site.vips.iter().enumerate() {
        let Some(how) = &vip.aws else { continue };
        let base = std::path::Path::new(DIR).join(&vip.name);
        for (name, value) in [
            ("iam-policy.json", iam_policy(how)),
            ("security-group.json", security_group(site, i)),
        ] {
            let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
            text.push('\n');
            files.push(OutFile {
                rel: base.join(name),
                mode: 0o644,
                content: text.into_bytes(),
            });
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_policy_is_least_privilege_per_method() {
        let p = iam_policy(&AwsVipMove::RouteTable(vec![
            "rtb-0a1b2c3d".into(),
            "rtb-11112222".into(),
        ]));
        assert_eq!(p["Statement"][0]["Action"], json!(["ec2:ReplaceRoute"]));
        assert_eq!(
            p["Statement"][0]["Resource"],
            json!([
                "arn:aws:ec2:*:*:route-table/rtb-0a1b2c3d",
                "arn:aws:ec2:*:*:route-table/rtb-11112222"
            ])
        );
        assert_eq!(
            p["Statement"][1]["Action"],
            json!(["ec2:DescribeRouteTables"])
        );
        let p = iam_policy(&AwsVipMove::ElasticIp("eipalloc-0a1b2c3d".into()));
        assert_eq!(p["Statement"][0]["Action"], json!(["ec2:AssociateAddress"]));
        assert_eq!(
            p["Statement"][0]["Resource"][0],
            json!("arn:aws:ec2:*:*:elastic-ip/eipalloc-0a1b2c3d")
        );
        let p = iam_policy(&AwsVipMove::SecondaryIp);
        assert_eq!(
            p["Statement"][0]["Action"],
            json!(["ec2:AssignPrivateIpAddresses"])
        );
        assert_eq!(
            p["Statement"][1]["Action"],
            json!(["ec2:DescribeNetworkInterfaces"])
        );
        // Nothing broader than the move and its one read.
        for st in p["Statement"].as_array().expect("statements") {
            for a in st["Action"].as_array().expect("actions") {
                assert!(!a.as_str().expect("action").contains('*'), "{p}");
            }
        }
    }
}

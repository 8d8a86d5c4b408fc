//! What a user applies in their AWS account for each VIP that moves through the
//! EC2 API (`[vip.aws]`), written next to the nodes' user-data as
//! `DIR/_aws/VIP/iam-policy.json` and `DIR/_aws/VIP/security-group.json`
//! (`_` cannot start a node name, so the folder never collides with a node's).
//!
//! - `iam-policy.json`: the least-privilege policy for the holders' instance
//!   profile: the EC2 actions the notify script moves and releases the VIP
//!   with, scoped to the VIP's Elastic IP allocation, route tables, and ENIs
//!   tagged `haseed:vip = SITE/VIP` (see [`iam_policy`]), plus the Describe
//!   actions its re-check loop reads (no resource-level permissions, `*`).
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

/// The tag key the holders' ENIs carry; its value is [`eni_tag`].
pub const ENI_TAG_KEY: &str = "haseed:vip";

/// The value of the [`ENI_TAG_KEY`] tag on the ENIs that may hold VIP `vip`
/// of site `site`.
pub fn eni_tag(site: &str, vip: &str) -> String {
    format!("{site}/{vip}")
}

/// The IAM policy document for `how` (a JSON object); `tag` is the value of
/// the [`ENI_TAG_KEY`] tag the holders' ENIs carry.
///
/// Network interfaces: an ENI id is only known once the instances exist, so
/// the ENI actions (assign/unassign the VIP, associate the EIP with it) are
/// allowed only on ENIs tagged `haseed:vip = SITE/VIP`, through the
/// `aws:ResourceTag/${TagKey}` condition key that EC2's `network-interface`
/// resource type supports ("Actions, resources, and condition keys for
/// Amazon EC2", Service Authorization Reference,
/// <https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html>;
/// IAM User Guide, "Controlling access to AWS resources using tags"). The
/// old `network-interface/*` without a condition let a holder take any
/// address onto, or steal any address from, any ENI of the account.
/// Elastic IPs and route tables are named by ARN; the Describe actions take
/// no resource-level permissions, hence `*`. BACKUP/FAULT release the VIP
/// (unassign, disassociate), hence those actions.
pub fn iam_policy(tag: &str, how: &AwsVipMove) -> Value {
    let eni = "arn:aws:ec2:*:*:network-interface/*";
    let tagged = |sid: &str, actions: &[&str]| {
        json!({
            "Sid": sid,
            "Effect": "Allow",
            "Action": actions,
            "Resource": eni,
            "Condition": { "StringEquals": { format!("aws:ResourceTag/{ENI_TAG_KEY}"): tag } },
        })
    };
    let describe = |actions: &[&str]| {
        json!({
            "Sid": "HaseedCheckVip",
            "Effect": "Allow",
            "Action": actions,
            "Resource": "*",
        })
    };
    let statements = match how {
        AwsVipMove::SecondaryIp => vec![
            tagged(
                "HaseedMoveVip",
                &[
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
            ),
            describe(&["ec2:DescribeNetworkInterfaces"]),
        ],
        AwsVipMove::ElasticIp(id) => vec![
            tagged(
                "HaseedMoveVip",
                &[
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                    "ec2:AssociateAddress",
                    "ec2:DisassociateAddress",
                ],
            ),
            json!({
                "Sid": "HaseedMoveElasticIp",
                "Effect": "Allow",
                "Action": ["ec2:AssociateAddress", "ec2:DisassociateAddress"],
                "Resource": [format!("arn:aws:ec2:*:*:elastic-ip/{id}")],
            }),
            describe(&["ec2:DescribeAddresses", "ec2:DescribeNetworkInterfaces"]),
        ],
        AwsVipMove::RouteTable(tables) => vec![
            json!({
                "Sid": "HaseedMoveVip",
                "Effect": "Allow",
                "Action": ["ec2:ReplaceRoute"],
                "Resource": tables
                    .iter()
                    .map(|t| format!("arn:aws:ec2:*:*:route-table/{t}"))
                    .collect::<Vec<_>>(),
            }),
            describe(&["ec2:DescribeRouteTables"]),
        ],
    };
    json!({ "Version": "2012-10-17", "Statement": statements })
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
pub fn build_files(site: &Site) -> Vec<OutFile<'static>> {
    let mut files = Vec::new();
    for (i, vip) in site.vips.iter().enumerate() {
        let Some(how) = &vip.aws else { continue };
        let base = std::path::Path::new(DIR).join(&vip.name);
        for (name, value) in [
            (
                "iam-policy.json",
                iam_policy(&eni_tag(&site.name, &vip.name), how),
            ),
            ("security-group.json", security_group(site, i)),
        ] {
            let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
            text.push('\n');
            files.push(OutFile {
                rel: base.join(name),
                mode: 0o644,
                content: text.into_bytes().into(),
            });
        }
    }
    files
}

/// EC2 refuses user-data larger than this (bytes, before base64).
pub const USER_DATA_LIMIT: usize = 16 * 1024;

/// User-data as it goes to EC2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedUserData {
    pub bytes: Vec<u8>,
    /// gzip-compressed (cloud-init recognises the gzip magic and inflates it).
    pub gzip: bool,
    /// Size of the cloud-config before compression.
    pub raw_len: usize,
}

/// Why user-data cannot go to EC2: too large even compressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UserDataTooLarge {
    pub message: String,
}

/// The cloud-config as EC2 user-data: as is when it fits in
/// [`USER_DATA_LIMIT`] (unless `force_gzip`), else gzip-compressed
/// (deterministic: fixed mtime, no file name); when even that is too large,
/// an error naming both sizes and the largest files to trim (`files`: path
/// and size of each file the user-data writes).
pub fn pack_user_data(
    node: &str,
    text: &str,
    force_gzip: bool,
    files: &[(String, usize)],
) -> Result<PackedUserData, UserDataTooLarge> {
    let raw_len = text.len();
    if raw_len <= USER_DATA_LIMIT && !force_gzip {
        return Ok(PackedUserData {
            bytes: text.as_bytes().to_vec(),
            gzip: false,
            raw_len,
        });
    }
    let gz = gzip(text.as_bytes());
    if gz.len() <= USER_DATA_LIMIT {
        return Ok(PackedUserData {
            bytes: gz,
            gzip: true,
            raw_len,
        });
    }
    let mut biggest: Vec<&(String, usize)> = files.iter().collect();
    biggest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let list: Vec<String> = biggest
        .iter()
        .take(5)
        .map(|(p, n)| format!("{p} ({n} bytes)"))
        .collect();
    Err(UserDataTooLarge {
        message: format!(
            "user-data of node {node} is too large for EC2: {raw_len} bytes, {} bytes gzipped; \
             EC2 accepts {USER_DATA_LIMIT} bytes. Trim what the node's plan writes{}, or ship \
             large files another way (a package, an S3 object fetched at boot)",
            gz.len(),
            if list.is_empty() {
                String::new()
            } else {
                format!(" (largest files: {})", list.join(", "))
            }
        ),
    })
}

/// gzip with a fixed header (mtime from SOURCE_DATE_EPOCH or 0, no name).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::GzBuilder::new()
        .mtime(crate::output::source_date_epoch() as u32)
        .write(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate(b: &[u8]) -> String {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::GzDecoder::new(b)
            .read_to_string(&mut s)
            .expect("gzip");
        s
    }

    #[test]
    fn user_data_is_gzipped_only_past_the_limit() {
        let at = "#cloud-config\n".to_string() + &"a".repeat(USER_DATA_LIMIT - 14);
        assert_eq!(at.len(), USER_DATA_LIMIT);
        let p = pack_user_data("lb1", &at, false, &[]).expect("fits");
        assert!(!p.gzip);
        assert_eq!(p.bytes, at.as_bytes());
        let over = at.clone() + "a";
        let p = pack_user_data("lb1", &over, false, &[]).expect("fits gzipped");
        assert!(p.gzip);
        assert_eq!(&p.bytes[..2], &[0x1f, 0x8b]);
        assert_eq!(inflate(&p.bytes), over);
        assert_eq!(p.raw_len, USER_DATA_LIMIT + 1);
        // --gzip forces it; the result is deterministic.
        let small = "#cloud-config\n{}\n";
        let p = pack_user_data("lb1", small, true, &[]).expect("fits");
        assert!(p.gzip);
        assert_eq!(p, pack_user_data("lb1", small, true, &[]).expect("fits"));
    }

    #[test]
    fn user_data_too_large_even_gzipped_names_sizes_and_files() {
        // Incompressible: a byte sequence with no repeats gzip could use.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: String = (0..40_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x % 90) as u8)
            })
            .collect();
        let files = vec![("/etc/a".to_string(), 10), ("/etc/big".to_string(), 40_000)];
        let e = pack_user_data("lb1", &noise, false, &files).expect_err("too large");
        assert!(
            e.message
                .contains("user-data of node lb1 is too large for EC2: 40000 bytes"),
            "{e}"
        );
        assert!(
            e.message.contains("bytes gzipped; EC2 accepts 16384 bytes"),
            "{e}"
        );
        assert!(
            e.message
                .contains("largest files: /etc/big (40000 bytes), /etc/a (10 bytes)"),
            "{e}"
        );
    }

    #[test]
    fn iam_policy_is_least_privilege_per_method() {
        let p = iam_policy(
            "s/api",
            &AwsVipMove::RouteTable(vec!["rtb-0a1b2c3d".into(), "rtb-11112222".into()]),
        );
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
        let p = iam_policy("s/api", &AwsVipMove::ElasticIp("eipalloc-0a1b2c3d".into()));
        assert_eq!(
            p["Statement"][1]["Resource"][0],
            json!("arn:aws:ec2:*:*:elastic-ip/eipalloc-0a1b2c3d")
        );
        assert_eq!(
            p["Statement"][1]["Action"],
            json!(["ec2:AssociateAddress", "ec2:DisassociateAddress"])
        );
        for how in [
            AwsVipMove::SecondaryIp,
            AwsVipMove::ElasticIp("eipalloc-0a1b2c3d".into()),
        ] {
            let p = iam_policy("s/api", &how);
            // Every statement on network interfaces is limited to the holders' tagged ENIs.
            let mut eni_statements = 0;
            for st in p["Statement"].as_array().expect("statements") {
                if st["Resource"] == json!("arn:aws:ec2:*:*:network-interface/*") {
                    eni_statements += 1;
                    assert_eq!(
                        st["Condition"],
                        json!({"StringEquals": {"aws:ResourceTag/haseed:vip": "s/api"}}),
                        "{p}"
                    );
                }
                if st["Resource"] == json!("*") {
                    for a in st["Action"].as_array().expect("actions") {
                        assert!(
                            a.as_str().expect("action").starts_with("ec2:Describe"),
                            "{p}"
                        );
                    }
                }
            }
            assert_eq!(eni_statements, 1, "{p}");
            assert!(
                p.to_string().contains("ec2:AssignPrivateIpAddresses"),
                "{p}"
            );
        }
        // Nothing broader than the moves and their reads.
        for how in [AwsVipMove::SecondaryIp, AwsVipMove::RouteTable(vec![])] {
            let p = iam_policy("s/api", &how);
            for st in p["Statement"].as_array().expect("statements") {
                for a in st["Action"].as_array().expect("actions") {
                    assert!(!a.as_str().expect("action").contains('*'), "{p}");
                }
            }
        }
    }
}

//! The first-boot script for Raspberry Pi OS Bookworm, which has no
//! cloud-init. Raspberry Pi Imager's way: the script sits on the boot
//! partition, the kernel command line starts it once
//! (`systemd.run=... systemd.run_success_action=reboot`), it configures the
//! node, removes its command-line words and itself, and the node reboots.
//!
//! It applies the same plan the cloud-init seed carries: host name, the login
//! user with its keys (password locked), the static address (a
//! NetworkManager keyfile, Bookworm's network stack), every file byte for
//! byte with its mode, sysctls and APT sources. Packages need the network,
//! which is not up that early: a one-shot unit installs them on the next
//! boot, then enables and starts the plan's services, fixes the owners that
//! only exist once the packages do, and disables itself. It retries on every
//! boot until it succeeds.

use std::fmt::Write as _;

use anyhow::Context;

use super::base::BaseImage;
use super::Job;

/// Single-quotes a word for sh.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 in 76-character lines (what `base64 -d` reads).
fn base64_lines(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 + 4);
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push('\n');
        }
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.push('\n');
    out
}

/// Writes `content` to `path` from a quoted here-document of base64.
fn put_file(s: &mut String, path: &str, mode: u32, owner: Option<&str>, content: &[u8]) {
    let dir = path
        .rsplit_once('/')
        .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
    let _ = writeln!(s, "install -d -m 0755 {}", sq(dir));
    let _ = writeln!(s, "base64 -d >{} <<'HASEED_EOF'", sq(path));
    s.push_str(&base64_lines(content));
    s.push_str("HASEED_EOF\n");
    let _ = writeln!(s, "chmod {:04o} {}", mode, sq(path));
    if let Some(o) = owner {
        let _ = writeln!(s, "chown {} {}", sq(o), sq(path));
    }
}

fn prefix_len(cidr: &str) -> anyhow::Result<&str> {
    cidr.split_once('/')
        .map(|(_, p)| p)
        .with_context(|| format!("network cidr {cidr} has no prefix length"))
}

/// The NetworkManager keyfile for the node's static address.
fn nm_keyfile(job: &Job<'_>) -> anyhow::Result<String> {
    let me = &job.site.nodes[job.node_index as usize];
    let net = job
        .site
        .networks
        .get(me.network as usize)
        .context("node network index out of range")?;
    let v6 = me.address.contains(':');
    let mut addr = format!("{}/{}", me.address, prefix_len(&net.cidr)?);
    if let Some(gw) = &net.gateway {
        let _ = write!(addr, ",{gw}");
    }
    let dns: String = net
        .dns
        .iter()
        .filter(|d| d.contains(':') == v6)
        .map(|d| format!("{d};"))
        .collect();
    let (fam, other) = if v6 {
        ("ipv6", "ipv4")
    } else {
        ("ipv4", "ipv6")
    };
    let mut k = format!(
        "[connection]\nid=haseed-{0}\ntype=ethernet\ninterface-name={0}\nautoconnect=true\nautoconnect-priority=100\n\n[ethernet]\n\n[{fam}]\nmethod=manual\naddress1={addr}\n",
        me.interface
    );
    if !dns.is_empty() {
        let _ = writeln!(k, "dns={dns}");
    }
    let _ = write!(
        k,
        "\n[{other}]\nmethod={}\n",
        if v6 { "disabled" } else { "ignore" }
    );
    Ok(k)
}

/// The script, as written to the boot partition.
pub fn script(job: &Job<'_>, desc: &BaseImage, _old_cmdline: &str) -> anyhow::Result<String> {
    let me = &job.site.nodes[job.node_index as usize];
    let plan = job.plan;
    let a = job.artifacts;
    let user = &me.user;
    let mut s = String::new();
    let _ = write!(
        s,
        "#!/bin/sh\n\
         # haseed first-boot script for node {node} (site {site}), {desc}.\n\
         # Started once from the kernel command line; applies the node's plan,\n\
         # removes its command-line words and itself; the node then reboots.\n\
         set -eu\n\
         BOOT=/boot/firmware\n\
         [ -f \"$BOOT/cmdline.txt\" ] || BOOT=/boot\n\
         exec >>/var/log/haseed-firstrun.log 2>&1\n\
         echo \"haseed: first boot of {node}\"\n\n",
        node = me.name,
        site = job.site.name,
        desc = desc.description
    );

    s.push_str("# Host name.\n");
    let _ = writeln!(s, "OLD_HOSTNAME=$(cat /etc/hostname)");
    let _ = writeln!(s, "printf '%s\\n' {} >/etc/hostname", sq(&plan.hostname));
    let _ = writeln!(
        s,
        "sed -i \"s/^127\\.0\\.1\\.1.*$OLD_HOSTNAME.*/127.0.1.1\\t\"{}\"/\" /etc/hosts",
        sq(&plan.hostname)
    );
    s.push('\n');

    s.push_str("# The login user: the image's first user renamed, or a new one; password locked, keys only.\n");
    let _ = writeln!(s, "FIRSTUSER=$(getent passwd 1000 | cut -d: -f1)");
    let _ = writeln!(
        s,
        "if [ -n \"$FIRSTUSER\" ] && [ \"$FIRSTUSER\" != {u} ]; then\n  usermod -l {u} \"$FIRSTUSER\"\n  usermod -m -d /home/{u} {u}\n  groupmod -n {u} \"$FIRSTUSER\" || true\nelif [ -z \"$FIRSTUSER\" ]; then\n  useradd -m -s /bin/bash {u}\nfi",
        u = sq(user)
    );
    let _ = writeln!(s, "usermod -a -G sudo {}", sq(user));
    let _ = writeln!(s, "passwd -l {}", sq(user));
    let keys: String = job
        .ssh_authorized_keys
        .iter()
        .map(|k| format!("{k}\n"))
        .collect();
    let home = format!("/home/{user}");
    let _ = writeln!(
        s,
        "install -d -m 0700 -o {u} -g {u} {}",
        sq(&format!("{home}/.ssh")),
        u = sq(user)
    );
    put_file(
        &mut s,
        &format!("{home}/.ssh/authorized_keys"),
        0o600,
        Some(&format!("{user}:{user}")),
        keys.as_bytes(),
    );
    put_file(
        &mut s,
        "/etc/sudoers.d/010-haseed-user",
        0o440,
        Some("root:root"),
        format!("{user} ALL=(ALL) NOPASSWD:ALL\n").as_bytes(),
    );
    put_file(
        &mut s,
        "/etc/ssh/sshd_config.d/50-haseed.conf",
        0o644,
        Some("root:root"),
        b"PasswordAuthentication no\n",
    );
    // The rename wizard, cancelled the way userconf-pi's `cancel-rename`
    // does it (userconf-pi ca2620a3; Raspberry Pi Imager's firstrun.sh
    // reaches it through /usr/lib/userconf-pi/userconf): the sshd banner
    // gone, userconfig.service off and the console login back on tty1,
    // which `rename-user -f -s` disabled at image build (pi-gen
    // export-image/01-user-rename). Without the last step the card boots
    // with no login prompt on its screen. cancel-rename itself when the
    // image has it (it also sets the boot behaviour and removes the
    // Desktop's piwiz autostart); these steps when it is missing or fails.
    let _ = writeln!(
        s,
        "if ! {{ [ -x /usr/bin/cancel-rename ] && /usr/bin/cancel-rename {}; }}; then\n  rm -f /etc/ssh/sshd_config.d/rename_user.conf /etc/xdg/autostart/piwiz.desktop\n  systemctl disable userconfig.service 2>/dev/null || true\n  systemctl enable getty@tty1.service\nfi",
        sq(user)
    );
    s.push_str("systemctl enable ssh\n\n");

    s.push_str("# Static address (NetworkManager keyfile).\n");
    put_file(
        &mut s,
        &format!(
            "/etc/NetworkManager/system-connections/haseed-{}.nmconnection",
            me.interface
        ),
        0o600,
        Some("root:root"),
        nm_keyfile(job)?.as_bytes(),
    );
    s.push('\n');

    if !plan.apt_sources.is_empty() {
        s.push_str("# APT sources.\n");
        for src in &plan.apt_sources {
            let key_file = format!("/etc/apt/keyrings/haseed-{}.asc", src.name);
            if let Some(key) = &src.key {
                put_file(&mut s, &key_file, 0o644, Some("root:root"), key.as_bytes());
            }
            let line = src.source.replace("$KEY_FILE", &key_file);
            put_file(
                &mut s,
                &format!("/etc/apt/sources.list.d/haseed-{}.list", src.name),
                0o644,
                Some("root:root"),
                format!("{line}\n").as_bytes(),
            );
        }
        s.push('\n');
    }

    s.push_str("# The node's files, byte for byte.\n");
    let mut deferred_owners = Vec::new();
    for f in &a.files {
        let root = f.owner == "root:root";
        put_file(
            &mut s,
            &f.path,
            f.mode,
            root.then_some("root:root"),
            f.content.as_bytes(),
        );
        if !root {
            deferred_owners.push(f);
        }
    }
    s.push('\n');

    // Stage two: after the reboot, with the network up.
    let mut two = String::from(
        "#!/bin/sh\n# haseed first boot, stage two: packages and services (retried on every boot until it succeeds).\nset -eu\n",
    );
    if !plan.packages.is_empty() {
        let pkgs: Vec<String> = plan.packages.iter().map(|p| sq(p)).collect();
        let _ = writeln!(
            two,
            "apt-get update\nDEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Options::=--force-confold {}",
            pkgs.join(" ")
        );
    }
    for f in &deferred_owners {
        let _ = writeln!(two, "chown {} {}", sq(&f.owner), sq(&f.path));
    }
    for svc in &plan.services {
        let _ = writeln!(two, "systemctl enable {0}\nsystemctl restart {0}", sq(svc));
    }
    two.push_str(
        "systemctl disable haseed-firstboot.service\nrm -f /var/lib/haseed/firstboot.sh\n",
    );
    s.push_str("# Stage two runs after the reboot, once the network is up.\n");
    put_file(
        &mut s,
        "/var/lib/haseed/firstboot.sh",
        0o700,
        Some("root:root"),
        two.as_bytes(),
    );
    put_file(
        &mut s,
        "/etc/systemd/system/haseed-firstboot.service",
        0o644,
        Some("root:root"),
        b"[Unit]\nDescription=haseed first boot: install the node's packages and start its services\nWants=network-online.target\nAfter=network-online.target\nConditionPathExists=/var/lib/haseed/firstboot.sh\n\n[Service]\nType=oneshot\nExecStart=/bin/sh /var/lib/haseed/firstboot.sh\n\n[Install]\nWantedBy=multi-user.target\n",
    );
    s.push_str("systemctl enable haseed-firstboot.service\n\n");

    s.push_str("# Done: remove the first-boot words from the command line, then this script.\n");
    s.push_str("sed -i 's| systemd.run=[^ ]*||g; s| systemd.run_success_action=[^ ]*||g; s| systemd.unit=kernel-command-line.target||g' \"$BOOT/cmdline.txt\"\n");
    let file = desc.firstrun_file().unwrap_or("firstrun.sh");
    let _ = writeln!(s, "rm -f \"$BOOT/{file}\"");
    s.push_str("echo \"haseed: first boot done\"\nexit 0\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64_lines(b""), "\n");
        assert_eq!(base64_lines(b"f"), "Zg==\n");
        assert_eq!(base64_lines(b"fo"), "Zm8=\n");
        assert_eq!(base64_lines(b"foo"), "Zm9v\n");
        assert_eq!(base64_lines(b"foobar\n"), "Zm9vYmFyCg==\n");
        let long = base64_lines(&[0u8; 100]);
        assert_eq!(long.lines().next().unwrap().len(), 76);
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sq("a'b"), r"'a'\''b'");
    }
}

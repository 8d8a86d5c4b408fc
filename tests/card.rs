//! The card boots (issue 18): the image `haseed image` writes for the example
//! load balancer first-boots a twin of Raspberry Pi OS Trixie under qemu, and
//! the node answers SSH with the inventory's key.
//!
//! `tests/twins/make-twin.sh raspios-trixie` builds (once, cached outside the
//! clone) a card image with Raspberry Pi OS's layout and first-boot state, read
//! from pi-gen and the other sources named in tests/twins/README.md: ssh
//! disabled, host keys removed, the first user `pi` pre-created with a nologin
//! shell, the rename wizard enabled, cloud-init reading the NoCloud seed from
//! the FAT boot partition, NetworkManager as the network stack. This test runs
//! the real `haseed image SITE --node lb1 --base TWIN.img.xz`, then
//! `tests/twins/boot-image.sh` boots that file as the VM's disk with the kernel
//! command line of its own cmdline.txt and logs in with the real OpenSSH
//! client, as the inventory's user, with a key whose private half only this
//! test holds. The twin's report unit (never part of a seed) adds what the node
//! became; `checks::problems` and `card_problems` judge it.
//!
//! Needs root (CI runs as root). Under TCG the boot takes several minutes.
//!
//! `HASEED_TWIN_LAYOUT` picks another twin (default `raspios-trixie`, the one
//! CI boots): `raspios-trixie-2025-10` (the first Trixie release),
//! `raspios-bookworm` (no cloud-init: a `raspios-legacy` node gets
//! `firstrun.sh`, and the card boots three times), `ubuntu-raspi-noble` or
//! `ubuntu-raspi-resolute` (an `ubuntu-raspi` node: networkd, sshd through
//! ssh.socket; 26.04 reads its command line from `current/`).
//! `tests/twins/run-twin.sh` runs them.

#[path = "firstboot/checks.rs"]
mod checks;
mod common;

use checks::*;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn twins(name: &str) -> PathBuf {
    repo_root().join("tests/twins").join(name)
}

/// The twin to boot: `HASEED_TWIN_LAYOUT`, else the CI's.
fn layout() -> String {
    std::env::var("HASEED_TWIN_LAYOUT").unwrap_or_else(|_| "raspios-trixie".into())
}

/// The distribution a twin stands for: it decides the node's platform, the
/// network stack and how first boot is judged.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Distro {
    /// Raspberry Pi OS Trixie: cloud-init, NetworkManager, sshd disabled.
    Trixie,
    /// Raspberry Pi OS Bookworm has no cloud-init: its node platform is
    /// `raspios-legacy` (haseed writes firstrun.sh) and first boot is judged
    /// by what firstrun.sh left behind.
    Bookworm,
    /// Ubuntu Server for Raspberry Pi: cloud-init, netplan rendering to
    /// systemd-networkd, sshd enabled (socket-activated).
    Ubuntu,
}

impl Distro {
    fn of(layout: &str) -> Distro {
        if layout == "raspios-bookworm" {
            Distro::Bookworm
        } else if layout.starts_with("ubuntu-") {
            Distro::Ubuntu
        } else {
            Distro::Trixie
        }
    }

    /// The inventory platform of a node on this distribution.
    fn platform(self) -> &'static str {
        match self {
            Distro::Trixie => "raspios",
            Distro::Bookworm => "raspios-legacy",
            Distro::Ubuntu => "ubuntu-raspi",
        }
    }
}

/// firstrun.sh's own checks (Bookworm), from the report's `boot-*` lines:
/// start-up finished without a failed unit, firstrun.sh removed itself and
/// its command-line words (and raspberrypi-sys-mods' `init=` word is gone),
/// and haseed's stage two (packages, services) ran and disabled itself.
fn firstrun_problems(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    match report.all("boot-exit").next() {
        Some("0") => {}
        other => out.push(format!(
            "systemd's start-up did not finish as running (is-system-running --wait exited {other:?})"
        )),
    }
    match report.all("boot-cmdline").next() {
        None => out.push("the report has no cmdline.txt".into()),
        Some(c) => {
            for w in c.split_whitespace() {
                if w.starts_with("systemd.run")
                    || w == "systemd.unit=kernel-command-line.target"
                    || w.starts_with("init=")
                {
                    out.push(format!("cmdline.txt still has {w} after first boot: {c}"));
                }
            }
        }
    }
    match report.all("boot-files").next() {
        Some(f) if f.split_whitespace().any(|n| n == "firstrun.sh") => {
            out.push("firstrun.sh is still on the boot partition (it did not finish)".into())
        }
        Some(_) => {}
        None => out.push("the report does not list the boot partition".into()),
    }
    match report.all("firstboot-unit").next() {
        Some(s) if s.ends_with(" success") && !s.starts_with("enabled") => {}
        other => out.push(format!(
            "haseed-firstboot.service (packages, services) is {other:?}, not run and disabled"
        )),
    }
    if report.all("cloud-init-exit").next().is_some() {
        out.push("cloud-init is installed on the Bookworm twin".into());
    }
    out
}

/// What logging in produced: boot-image.sh's `ssh-result` ("ok SECONDS" or
/// "failed SECONDS") and the end of its ssh.log.
struct Login {
    result: String,
    log_tail: String,
}

impl Login {
    fn read(work: &Path) -> Login {
        let result = std::fs::read_to_string(work.join("ssh-result"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let log = std::fs::read_to_string(work.join("ssh.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(6).collect();
        let log_tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n    ");
        Login { result, log_tail }
    }
}

/// The card's own checks, on top of `checks::problems`: the login, the
/// hostname, no wizard holding first boot, sshd, the user's shell and eth0
/// through the distribution's network stack (NetworkManager on Raspberry Pi
/// OS, from the report; systemd-networkd on Ubuntu, from `ssh_state`, what
/// boot-image.sh read over SSH). Each problem is a sentence.
fn card_problems(
    report: &Report,
    login: &Login,
    ssh_state: &str,
    distro: Distro,
    who: (&str, &str, &str),
) -> Vec<String> {
    let (node, user, address) = who;
    let mut out = Vec::new();
    if !login.result.starts_with("ok ") {
        out.push(format!(
            "`ssh {user}@{address} sudo -n true` with the inventory's key did not succeed ({}); last attempts:\n    {}",
            if login.result.is_empty() { "no result" } else { &login.result },
            login.log_tail
        ));
    }
    match report.all("hostname").next() {
        Some(h) if h == node => {}
        other => out.push(format!("the hostname is {other:?}, not {node}")),
    }
    let service = |unit: &str| {
        report
            .all("service")
            .find(|l| l.split(' ').next() == Some(unit))
            .map(|l| l[unit.len()..].trim().to_string())
    };
    if distro == Distro::Ubuntu {
        // Ubuntu 22.10 on: sshd is socket-activated (ssh.socket enabled,
        // ssh.service started by the first connection).
        let socket_enabled = ssh_state
            .lines()
            .any(|l| l.starts_with("ssh.socket:") && l.contains("UnitFileState=enabled"));
        match service("ssh").as_deref() {
            Some(s) if s.ends_with(" active") && (s.starts_with("enabled") || socket_enabled) => {}
            other => out.push(format!(
                "ssh.service is {other:?} (ssh.socket enabled: {socket_enabled}), not active and enabled by itself or by ssh.socket"
            )),
        }
    } else {
        match service("ssh").as_deref() {
            Some("enabled active") => {}
            other => out.push(format!(
                "ssh.service is {other:?}, not enabled and active (Raspberry Pi OS ships it disabled)"
            )),
        }
    }
    // userconfig.service (the rename wizard) waits for an answer on tty8; while
    // it runs, multi-user.target and cloud-final (packages, runcmd) wait too.
    if let Some(state) = service("userconfig") {
        if matches!(state.split(' ').nth(1), Some("activating" | "active")) {
            out.push(format!(
                "the rename wizard (userconfig.service) is {state}: it holds first boot until someone answers on tty8"
            ));
        }
    }
    match report
        .all("user")
        .find(|l| l.split(' ').next() == Some(user))
    {
        Some(l) if l.ends_with("nologin") || l.ends_with("/bin/false") => out.push(format!(
            "{user}'s shell is {} (the image's pre-created user; cloud-init leaves an existing user's shell alone)",
            l.split(' ').nth(1).unwrap_or("?")
        )),
        Some(_) => {}
        None => out.push(format!("there is no user {user} on the node")),
    }
    if distro == Distro::Ubuntu {
        // networkctl list: IDX LINK TYPE OPERATIONAL SETUP.
        let links: Vec<&str> = ssh_state
            .lines()
            .filter_map(|l| l.strip_prefix("networkd-link "))
            .collect();
        let eth0 = links
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.get(1) == Some(&"eth0"));
        match eth0.as_deref() {
            Some([_, _, _, "routable", "configured", ..]) => {}
            _ => out.push(format!(
                "eth0 is not routable and configured by systemd-networkd (networkctl: {links:?})"
            )),
        }
        if report
            .all("nm-device")
            .any(|l| l.starts_with("eth0:connected"))
        {
            out.push("eth0 is managed by NetworkManager on Ubuntu Server".into());
        }
    } else if !report
        .all("nm-device")
        .any(|l| l.starts_with("eth0:connected:"))
    {
        let seen: Vec<&str> = report.all("nm-device").collect();
        out.push(format!(
            "eth0 is not connected through NetworkManager (nmcli: {seen:?})"
        ));
    }
    out
}

/// The console login, from what boot-image.sh read over SSH (`ssh-state`):
/// the image build disabled getty@tty1 for the rename wizard (pi-gen
/// export-image/01-user-rename); cancelling the wizard must enable it again,
/// or the card has no login prompt on its screen. Judged on Bookworm, where
/// firstrun.sh cancels the wizard.
fn console_problems(ssh_state: &str) -> Vec<String> {
    match ssh_state
        .lines()
        .find_map(|l| l.strip_prefix("getty@tty1: "))
    {
        Some(s) if s.starts_with("enabled") => vec![],
        Some(s) => vec![format!(
            "getty@tty1 is {s}: the rename wizard was not cancelled as userconf-pi's cancel-rename does (no console login)"
        )],
        None => vec!["the node's getty@tty1 state was not read (no login?)".into()],
    }
}

/// One VM at a time: two TCG guests on a 2-core machine starve each other.
static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What one boot of lb1's card produced.
struct Boot {
    found: Vec<String>,
    diagnosis: String,
}

/// Builds the twin (cached), writes lb1's card with the real `haseed image`
/// for a copy of the example site holding a fresh key, lets `edit` change the
/// card (a defect case), boots it and judges it.
fn boot_lb1_card(edit: impl Fn(&Path)) -> Boot {
    assert!(
        is_root(),
        "the card test needs root (network namespace, tap, qemu); CI runs as root"
    );
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    let layout = layout();
    let distro = Distro::of(&layout);
    let bookworm = distro == Distro::Bookworm;
    let o = Command::new("sh")
        .arg(twins("make-twin.sh"))
        .arg(&layout)
        .output()
        .expect("make-twin.sh runs");
    assert!(o.status.success(), "make-twin.sh failed:\n{}", stderr(&o));
    let twin = PathBuf::from(stdout(&o).lines().last().expect("a directory").trim());
    eprintln!(
        "twin ready in {} s: {}",
        started.elapsed().as_secs(),
        twin.display()
    );

    let tmp = tempfile::tempdir().unwrap();
    // HASEED_TWIN_KEEP=1: the card, the VM's logs and its report stay for a
    // post-mortem (run-twin.sh sets it).
    let (_guard, dir) = if std::env::var_os("HASEED_TWIN_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!(
            "HASEED_TWIN_KEEP: the card and the VM's files stay in {}",
            kept.display()
        );
        (None, kept)
    } else {
        let dir = tmp.path().to_path_buf();
        (Some(tmp), dir)
    };
    let (key, public) = keypair(&dir);
    let site = site_with_key(&dir, &public, distro.platform());
    let out = dir.join("out");
    let o = build(&site, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let card = dir.join("lb1.img");
    let o = run(&[
        "image",
        site.to_str().unwrap(),
        "--node",
        "lb1",
        "--base",
        twin.join("twin.img.xz").to_str().unwrap(),
        "-o",
        card.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "haseed image: {}", stderr(&o));
    edit(&card);

    let expect = Expect::of(&out.join("lb1"));
    let address = expect.address.split('/').next().unwrap().to_string();
    let work = dir.join("vm");
    let booted = std::time::Instant::now();
    let o = Command::new("sh")
        .arg(twins("boot-image.sh"))
        .arg(&twin)
        .arg(&card)
        .arg(&work)
        .arg(&expect.gateway)
        .arg(&key)
        .args(["pi", &address, "1500"])
        // Bookworm reboots twice: raspberrypi-sys-mods' firstboot, firstrun.sh.
        .env("HASEED_TWIN_BOOTS", if bookworm { "3" } else { "1" })
        .output()
        .expect("boot-image.sh runs");
    let accel = std::fs::read_to_string(work.join("accel")).unwrap_or_default();
    let login = Login::read(&work);
    eprintln!(
        "lb1's card under {}: {} s; login {:?}; kernel command line {:?} (from {})\n{}",
        accel.trim(),
        booted.elapsed().as_secs(),
        login.result,
        std::fs::read_to_string(work.join("cmdline"))
            .unwrap_or_default()
            .trim(),
        std::fs::read_to_string(work.join("cmdline-file"))
            .unwrap_or_default()
            .trim(),
        stderr(&o)
    );
    let state = std::fs::read_to_string(work.join("ssh-state")).unwrap_or_default();
    if !state.is_empty() {
        eprintln!("systemd's view of sshd after first boot:\n{state}");
    }
    let text = std::fs::read_to_string(work.join("report.txt")).unwrap_or_default();
    let report = match Report::parse(&text) {
        Ok(r) => r,
        Err(e) => panic!(
            "the VM did not report ({e}):\n{}{}",
            stderr(&o),
            diagnosis(None, &work)
        ),
    };
    if let Some(up) = report.all("uptime").next() {
        eprintln!("cloud-init done (or its wait ended) {up} s after the kernel started");
    }
    if let Ok(at) = std::fs::read_to_string(work.join("reported-at")) {
        eprintln!(
            "reported {} s after qemu first started ({} boots)",
            at.trim(),
            std::fs::read_to_string(work.join("boots"))
                .unwrap_or_default()
                .trim()
        );
    }
    let mut found = card_problems(&report, &login, &state, distro, ("lb1", "pi", &address));
    if bookworm {
        // No cloud-init: its status checks are firstrun.sh's instead.
        found.extend(
            problems(&report, &expect)
                .into_iter()
                .filter(|p| !p.starts_with("cloud-init")),
        );
        found.extend(firstrun_problems(&report));
        found.extend(console_problems(&state));
    } else {
        found.extend(problems(&report, &expect));
    }
    Boot {
        found,
        diagnosis: diagnosis(Some(&report), &work),
    }
}

#[test]
fn the_example_lb_card_boots_on_the_trixie_twin_and_answers_ssh() {
    let boot = boot_lb1_card(|_| {});
    assert!(
        boot.found.is_empty(),
        "lb1's card did not come up as planned:\n  - {}\n{}",
        boot.found.join("\n  - "),
        boot.diagnosis
    );
}

/// The defect case of the login check: the same card with the user-data's
/// ssh enable taken out (today's Raspberry Pi OS ships sshd disabled) must
/// not be reachable, and the check must say so.
#[test]
fn without_the_ssh_enable_the_trixie_card_refuses_ssh() {
    let boot = boot_lb1_card(|card| {
        let fat = boot_partition(card);
        let o = Command::new("mtype")
            .args(["-i", &fat, "::user-data"])
            .output()
            .expect("mtype runs (mtools, .ci/install-deps)");
        assert!(o.status.success(), "mtype: {}", stderr(&o));
        let user_data = stdout(&o);
        let ssh = r#"  - ["systemctl","enable","--now","ssh"]"#;
        assert!(user_data.contains(ssh), "{user_data}");
        let edited = user_data.replace(&format!("{ssh}\n"), "");
        let path = card.with_file_name("user-data");
        std::fs::write(&path, edited).unwrap();
        let o = Command::new("mcopy")
            .args(["-o", "-i", &fat])
            .arg(&path)
            .arg("::user-data")
            .output()
            .expect("mcopy runs (mtools, .ci/install-deps)");
        assert!(o.status.success(), "mcopy: {}", stderr(&o));
    });
    assert!(
        boot.found.iter().any(|p| p.contains("did not succeed")),
        "the login worked without the ssh enable: {:?}",
        boot.found
    );
    assert!(
        boot.found.iter().any(|p| p.contains("ssh.service is")),
        "{:?}",
        boot.found
    );
}

/// `IMG@@OFFSET` of partition 1, for mtools.
fn boot_partition(card: &Path) -> String {
    let o = Command::new("sfdisk")
        .arg("--dump")
        .arg(card)
        .output()
        .expect("sfdisk runs (fdisk, .ci/install-deps)");
    let dump = stdout(&o);
    let start: u64 = dump
        .lines()
        .find(|l| l.contains("1 : start="))
        .and_then(|l| l.split("start=").nth(1))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no partition 1 in {dump}"));
    format!("{}@@{}", card.display(), start * 512)
}

/// The card checks themselves: a report and login that match pass, and each
/// defect is named.
#[test]
fn the_card_checker_catches_each_failure() {
    let good = "HASEED-REPORT-BEGIN\nhostname lb1\nservice ssh enabled active\n\
        service userconfig disabled inactive\nuser pi /bin/bash\n\
        nm-device eth0:connected:netplan-eth0\nnm-device lo:connected (externally):lo\n\
        HASEED-REPORT-END\n";
    let ok = Login {
        result: "ok 200".into(),
        log_tail: String::new(),
    };
    let judge = |text: &str, login: &Login| {
        card_problems(
            &Report::parse(text).unwrap(),
            login,
            "",
            Distro::Trixie,
            ("lb1", "pi", "192.168.3.11"),
        )
    };
    assert!(judge(good, &ok).is_empty(), "{:?}", judge(good, &ok));
    let refused = Login {
        result: "failed 300".into(),
        log_tail: "pi@192.168.3.11: Permission denied (publickey).".into(),
    };
    let found = judge(good, &refused);
    assert!(
        found
            .iter()
            .any(|p| p.contains("did not succeed (failed 300)") && p.contains("Permission denied")),
        "{found:?}"
    );
    let cases = [
        (
            "hostname lb1",
            "hostname raspberrypi",
            "hostname is Some(\"raspberrypi\")",
        ),
        (
            "service ssh enabled active",
            "service ssh disabled inactive",
            "ssh.service is Some(\"disabled inactive\")",
        ),
        // systemd lost track of a running sshd (a reload merged the alias
        // sshd.service's empty state into ssh.service; tests/twins/README.md).
        (
            "service ssh enabled active",
            "service ssh enabled inactive",
            "ssh.service is Some(\"enabled inactive\")",
        ),
        (
            "service userconfig disabled inactive",
            "service userconfig enabled activating",
            "rename wizard (userconfig.service) is enabled activating",
        ),
        (
            "user pi /bin/bash",
            "user pi /usr/sbin/nologin",
            "pi's shell is /usr/sbin/nologin",
        ),
        ("user pi /bin/bash", "user ubuntu /bin/bash", "no user pi"),
        (
            "nm-device eth0:connected:netplan-eth0",
            "nm-device eth0:unmanaged:",
            "eth0 is not connected through NetworkManager",
        ),
    ];
    for (from, to, want) in cases {
        let found = judge(&good.replace(from, to), &ok);
        assert!(
            found.iter().any(|p| p.contains(want)),
            "{to}: expected a problem containing {want:?}, got {found:?}"
        );
    }
}

/// The Ubuntu card's checks: sshd through its socket and eth0 through
/// systemd-networkd pass; a stopped sshd, a disabled socket, eth0 left to
/// NetworkManager or not configured by networkd are each named.
#[test]
fn the_ubuntu_card_checker_wants_networkd_and_the_ssh_socket() {
    let report = "HASEED-REPORT-BEGIN\nhostname lb1\nservice ssh disabled active\n\
        service userconfig not-found inactive\nuser pi /bin/bash\nHASEED-REPORT-END\n";
    let state = "ssh.service: Names=ssh.service ActiveState=active UnitFileState=disabled \n\
        ssh.socket: Names=ssh.socket ActiveState=active UnitFileState=enabled \n\
        networkd-link 1 lo loopback carrier unmanaged\n\
        networkd-link 2 eth0 ether routable configured\n";
    let ok = Login {
        result: "ok 200".into(),
        log_tail: String::new(),
    };
    let judge = |report: &str, state: &str| {
        card_problems(
            &Report::parse(report).unwrap(),
            &ok,
            state,
            Distro::Ubuntu,
            ("lb1", "pi", "192.168.3.11"),
        )
    };
    assert!(
        judge(report, state).is_empty(),
        "{:?}",
        judge(report, state)
    );
    let cases = [
        (
            true,
            "service ssh disabled active",
            "service ssh disabled inactive",
            "ssh.service is Some(\"disabled inactive\")",
        ),
        (
            false,
            "ssh.socket: Names=ssh.socket ActiveState=active UnitFileState=enabled",
            "ssh.socket: Names=ssh.socket ActiveState=inactive UnitFileState=disabled",
            "ssh.socket enabled: false",
        ),
        (
            false,
            "2 eth0 ether routable configured",
            "2 eth0 ether off unmanaged",
            "eth0 is not routable and configured by systemd-networkd",
        ),
        (
            false,
            "networkd-link 2 eth0 ether routable configured\n",
            "",
            "eth0 is not routable and configured by systemd-networkd",
        ),
        (
            true,
            "user pi /bin/bash",
            "user pi /bin/bash\nnm-device eth0:connected:netplan-eth0",
            "managed by NetworkManager",
        ),
    ];
    for (in_report, from, to, want) in cases {
        let found = if in_report {
            judge(&report.replace(from, to), state)
        } else {
            judge(report, &state.replace(from, to))
        };
        assert!(
            found.iter().any(|p| p.contains(want)),
            "{to}: expected a problem containing {want:?}, got {found:?}"
        );
    }
    assert_eq!(Distro::of("ubuntu-raspi-noble").platform(), "ubuntu-raspi");
    assert_eq!(Distro::of("raspios-bookworm"), Distro::Bookworm);
    assert_eq!(Distro::of("raspios-trixie-2025-10"), Distro::Trixie);
}

#[test]
fn the_console_checker_wants_getty_on_tty1() {
    assert!(console_problems("ssh.service: x\ngetty@tty1: enabled active\n").is_empty());
    let off = console_problems("getty@tty1: disabled inactive\n");
    assert!(
        off.len() == 1 && off[0].contains("getty@tty1 is disabled inactive"),
        "{off:?}"
    );
    assert!(console_problems("")[0].contains("not read"));
}

/// firstrun.sh's checks (Bookworm): a report of a first boot that finished
/// passes, and each way it did not is named.
#[test]
fn the_firstrun_checker_catches_each_failure() {
    let good = "HASEED-REPORT-BEGIN\nboot-exit 0\n\
        boot-cmdline console=serial0,115200 console=tty1 root=PARTUUID=7a5e3d01-02 rootfstype=ext4 fsck.repair=yes rootwait\n\
        boot-files cmdline.txt config.txt issue.txt\nfirstboot-unit disabled success\n\
        HASEED-REPORT-END\n";
    let judge = |text: &str| firstrun_problems(&Report::parse(text).unwrap());
    assert!(judge(good).is_empty(), "{:?}", judge(good));
    let cases = [
        ("boot-exit 0", "boot-exit 1", "did not finish as running"),
        (
            "rootwait\n",
            "rootwait systemd.run=/boot/firmware/firstrun.sh\n",
            "still has systemd.run=/boot/firmware/firstrun.sh",
        ),
        (
            "rootwait\n",
            "rootwait init=/usr/lib/raspberrypi-sys-mods/firstboot\n",
            "still has init=",
        ),
        (
            "issue.txt\n",
            "issue.txt firstrun.sh\n",
            "firstrun.sh is still on the boot partition",
        ),
        (
            "firstboot-unit disabled success",
            "firstboot-unit enabled exit-code",
            "haseed-firstboot.service",
        ),
        (
            "boot-exit 0",
            "cloud-init-exit 0\nboot-exit 0",
            "cloud-init is installed",
        ),
    ];
    for (from, to, want) in cases {
        let found = judge(&good.replace(from, to));
        assert!(
            found.iter().any(|p| p.contains(want)),
            "{to}: expected a problem containing {want:?}, got {found:?}"
        );
    }
}

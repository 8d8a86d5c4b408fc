//! `haseed image`, `seed` and `flash` against base images that mimic the real
//! layouts (built by tests/images/make-base.sh with sfdisk, mkfs.vfat, mtools
//! and mkfs.ext4), checked with tools haseed did not write: mtools reads the
//! seed back, fsck.vfat checks the boot partition, sfdisk dumps the table,
//! cloud-init validates the user-data, shellcheck the first-boot script.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{example, repo_root, run, stderr};

const BOOT_OFFSET: u64 = 4 << 20;
const BOOT_LEN: u64 = 64 << 20;

fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

/// A base image of `layout` in `dir`, compressed with `compress` ("" = raw).
fn base(dir: &Path, layout: &str, compress: &str) -> PathBuf {
    let img = dir.join(format!("{layout}.img"));
    if !img.exists() {
        sh(Command::new("sh")
            .arg(repo_root().join("tests/images/make-base.sh"))
            .arg(&img)
            .arg(layout));
    }
    match compress {
        "" => img,
        "xz" | "gz" => {
            let out = dir.join(format!("{layout}.img.{compress}"));
            let tool = if compress == "xz" { "xz" } else { "gzip" };
            if !out.exists() {
                sh(Command::new(tool).args(["-k", "-1", "-f"]).arg(&img));
            }
            out
        }
        other => panic!("{other}"),
    }
}

fn mtype(img: &Path, offset: u64, name: &str) -> Vec<u8> {
    let o = Command::new("mtype")
        .arg("-i")
        .arg(format!("{}@@{offset}", img.display()))
        .arg(format!("::{name}"))
        .output()
        .expect("mtype runs");
    assert!(
        o.status.success(),
        "mtype {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn image(args: &[&str]) -> std::process::Output {
    let mut all = vec!["image"];
    all.extend_from_slice(args);
    run(&all)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The built seed of every node, from `haseed build`, to compare against.
fn built(dir: &Path, site: &Path) -> PathBuf {
    let out = dir.join("built");
    let o = common::build(site, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

fn boot_partition(img: &Path, dir: &Path) -> PathBuf {
    let bytes = std::fs::read(img).expect("image");
    let part = dir.join(format!("{}.p1", img.file_name().unwrap().to_string_lossy()));
    std::fs::write(
        &part,
        &bytes[BOOT_OFFSET as usize..(BOOT_OFFSET + BOOT_LEN) as usize],
    )
    .expect("write partition");
    part
}

#[test]
fn trixie_image_carries_the_seed_and_nothing_else_changes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let base_raw = base(tmp.path(), "raspios-trixie", "");
    let base_xz = base(tmp.path(), "raspios-trixie", "xz");
    let out = tmp.path().join("lb1.img");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&base_xz),
        "-o",
        s(&out),
        s(&site),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    // The seed reads back with mtools, byte for byte what `build` writes.
    let built = built(tmp.path(), &site);
    for f in ["user-data", "meta-data", "network-config"] {
        assert_eq!(
            mtype(&out, BOOT_OFFSET, f),
            std::fs::read(built.join("lb1").join(f)).expect("built seed"),
            "{f}"
        );
    }
    // The instance id is on the kernel command line; nothing else of it moved.
    let meta = String::from_utf8(mtype(&out, BOOT_OFFSET, "meta-data")).unwrap();
    let id = meta
        .lines()
        .find_map(|l| l.strip_prefix("instance-id: "))
        .expect("instance id");
    let cmdline = String::from_utf8(mtype(&out, BOOT_OFFSET, "cmdline.txt")).unwrap();
    assert_eq!(
        cmdline,
        format!("console=serial0,115200 console=tty1 root=PARTUUID=5452dd2b-02 rootfstype=ext4 fsck.repair=yes rootwait quiet resize ds=nocloud;i={id}\n")
    );
    assert_eq!(
        mtype(&out, BOOT_OFFSET, "config.txt"),
        mtype(&base_raw, BOOT_OFFSET, "config.txt")
    );

    // cloud-init accepts the user-data read back from the image.
    let ud = tmp.path().join("user-data.readback");
    std::fs::write(&ud, mtype(&out, BOOT_OFFSET, "user-data")).unwrap();
    sh(Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&ud));

    // The boot file system is clean; the partition table is the base's.
    sh(Command::new("fsck.vfat")
        .arg("-n")
        .arg(boot_partition(&out, tmp.path())));
    let dump = |p: &Path| {
        sh(Command::new("sfdisk").arg("--dump").arg(p))
            .lines()
            .filter(|l| !l.starts_with("device:"))
            .map(|l| l.replace(&s(p).to_string(), "IMG"))
            .collect::<Vec<_>>()
    };
    assert_eq!(dump(&out), dump(&base_raw));

    // Every byte outside the boot partition is the base's.
    let a = std::fs::read(&base_raw).unwrap();
    let b = std::fs::read(&out).unwrap();
    assert_eq!(a.len(), b.len());
    let (lo, hi) = (BOOT_OFFSET as usize, (BOOT_OFFSET + BOOT_LEN) as usize);
    assert!(a[..lo] == b[..lo], "bytes before the boot partition differ");
    assert!(a[hi..] == b[hi..], "bytes after the boot partition differ");
    assert!(a[lo..hi] != b[lo..hi], "the boot partition did not change");

    // Deterministic: again, from the gzip and the raw base, byte-identical.
    for (name, from) in [
        ("again-gz.img", base(tmp.path(), "raspios-trixie", "gz")),
        ("again-raw.img", base_raw.clone()),
    ] {
        let again = tmp.path().join(name);
        let o = image(&[
            "--node",
            "lb1",
            "--base",
            s(&from),
            "-o",
            s(&again),
            s(&site),
            "-q",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            std::fs::read(&again).unwrap() == b,
            "{name} differs from the first run"
        );
    }
    // Compressed output decompresses to the same image.
    let xz = tmp.path().join("lb1.img.xz");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&base_xz),
        "-o",
        s(&xz),
        s(&site),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let unpacked = Command::new("xz").arg("-dc").arg(&xz).output().unwrap();
    assert!(unpacked.status.success());
    assert!(unpacked.stdout == b, "the .xz output is not the image");
}

#[test]
fn all_nodes_from_one_pass_each_with_its_identity() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let base = base(tmp.path(), "raspios-trixie", "xz");
    let out = tmp.path().join("images");
    let o = image(&[
        "--all",
        "--base",
        s(&base),
        "-o",
        s(&out),
        "--json",
        s(&site),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(doc["ok"], true, "{doc}");
    let made = &doc["images"];
    let nodes: Vec<&str> = made
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["lb1", "lb2", "master1", "master2", "master3"]);
    let mut ids = std::collections::BTreeSet::new();
    for n in &nodes {
        let img = out.join(format!("{n}.img"));
        let meta = String::from_utf8(mtype(&img, BOOT_OFFSET, "meta-data")).unwrap();
        assert!(meta.contains(&format!("local-hostname: {n}")), "{meta}");
        ids.insert(meta);
        let cmdline = String::from_utf8(mtype(&img, BOOT_OFFSET, "cmdline.txt")).unwrap();
        // Kubernetes masters get the cgroup words their plan asks for.
        assert_eq!(
            cmdline.contains("cgroup_enable=memory cgroup_memory=1"),
            n.starts_with("master"),
            "{n}: {cmdline}"
        );
    }
    assert_eq!(ids.len(), nodes.len(), "every node has its own instance id");
    // Each image is the one the per-node command makes, byte for byte.
    for n in ["lb1", "master3"] {
        let one = tmp.path().join(format!("{n}-alone.img"));
        let o = image(&["--node", n, "--base", s(&base), "-o", s(&one), s(&site)]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            std::fs::read(&one).unwrap() == std::fs::read(out.join(format!("{n}.img"))).unwrap(),
            "{n}: --all and --node differ"
        );
    }
    // Only the images and their block maps are left in the directory: no
    // temporary files.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "lb1.img",
            "lb1.img.bmap",
            "lb2.img",
            "lb2.img.bmap",
            "master1.img",
            "master1.img.bmap",
            "master2.img",
            "master2.img.bmap",
            "master3.img",
            "master3.img.bmap"
        ]
    );
    for n in &names {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(out.join(n)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{n}: the seed may carry secrets");
    }
}

/// The example site with every node on Ubuntu for Raspberry Pi.
fn ubuntu_site(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(example("pi-k8s"))
        .unwrap()
        .replace("platform = \"raspios\"", "platform = \"ubuntu-raspi\"")
        .replace("user = \"pi\"", "user = \"ubuntu\"");
    let site = dir.join("site.toml");
    std::fs::write(&site, text).unwrap();
    site
}

#[test]
fn ubuntu_image_uses_system_boot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = ubuntu_site(tmp.path());
    let base = base(tmp.path(), "ubuntu-raspi", "gz");
    let out = tmp.path().join("lb2.img");
    let o = image(&["--node", "lb2", "--base", s(&base), "-o", s(&out), s(&site)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let nc = String::from_utf8(mtype(&out, BOOT_OFFSET, "network-config")).unwrap();
    assert!(nc.contains("renderer: networkd"), "{nc}");
    let cmdline = String::from_utf8(mtype(&out, BOOT_OFFSET, "cmdline.txt")).unwrap();
    assert!(cmdline.contains(" ds=nocloud;i=haseed-"), "{cmdline}");
    sh(Command::new("fsck.vfat")
        .arg("-n")
        .arg(boot_partition(&out, tmp.path())));
}

/// Ubuntu 25.10's A/B boot: config.txt says `[all] os_prefix=current/`, so
/// the firmware reads current/cmdline.txt and the seed's words go there; the
/// root gets no cmdline.txt (nothing reads one). A base whose prefix has no
/// cmdline.txt is refused naming the config.txt line, and a broken chain in
/// a subdirectory is refused like one at the root.
#[test]
fn ubuntu_ab_boot_gets_the_seed_words_in_current() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = ubuntu_site(tmp.path());
    let ab = base(tmp.path(), "ubuntu-raspi-ab", "");
    let out = tmp.path().join("lb2.img");
    let o = image(&[
        "--node",
        "lb2",
        "--base",
        s(&ab),
        "-o",
        s(&out),
        "--json",
        s(&site),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(doc["ok"], true, "{doc}");
    let made = &doc["images"];
    assert_eq!(
        made[0]["release"], "25.10 and later (A/B boot, current/)",
        "{made}"
    );
    let cmdline = String::from_utf8(mtype(&out, BOOT_OFFSET, "current/cmdline.txt")).unwrap();
    assert!(cmdline.contains(" ds=nocloud;i=haseed-"), "{cmdline}");
    assert_eq!(made[0]["cmdline"].as_str(), Some(cmdline.trim_end()));
    let root = sh(Command::new("mdir")
        .arg("-b")
        .arg("-i")
        .arg(format!("{}@@{BOOT_OFFSET}", out.display()))
        .arg("::"));
    assert!(
        !root.to_ascii_lowercase().contains("::/cmdline.txt"),
        "no cmdline.txt at the root: {root}"
    );
    let nc = String::from_utf8(mtype(&out, BOOT_OFFSET, "network-config")).unwrap();
    assert!(nc.contains("renderer: networkd"), "{nc}");
    sh(Command::new("fsck.vfat")
        .arg("-n")
        .arg(boot_partition(&out, tmp.path())));

    // current/ without its cmdline.txt: refused, naming the line.
    let bare = tmp.path().join("bare.img");
    std::fs::copy(&ab, &bare).unwrap();
    sh(Command::new("mdel")
        .arg("-i")
        .arg(format!("{}@@{BOOT_OFFSET}", bare.display()))
        .arg("::current/cmdline.txt"));
    let refused = tmp.path().join("refused.img");
    let o = image(&[
        "--node",
        "lb2",
        "--base",
        s(&bare),
        "-o",
        s(&refused),
        s(&site),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("config.txt line 4 sets os_prefix=current/ but its boot partition has no current/cmdline.txt"),
        "{err}"
    );
    assert!(!refused.exists(), "nothing written");

    // current/cmdline.txt's chain loops: the check of subdirectories sees it.
    let mut bytes = std::fs::read(&ab).unwrap();
    let c = clusters_of(&ab, "current/cmdline.txt");
    assert_eq!(c.len(), 1);
    set_fat32(&mut bytes, c[0], c[0]);
    let looped = tmp.path().join("looped.img");
    std::fs::write(&looped, &bytes).unwrap();
    let o = image(&[
        "--node",
        "lb2",
        "--base",
        s(&looped),
        "-o",
        s(&refused),
        s(&site),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("the cluster chain of current/cmdline.txt loops"),
        "{err}"
    );
    assert!(!refused.exists(), "nothing written");
}

#[test]
fn bookworm_gets_a_first_boot_script_that_shellcheck_accepts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(example("pi-k8s"))
        .unwrap()
        .replace("platform = \"raspios\"", "platform = \"raspios-legacy\"");
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, text).unwrap();
    let base = base(tmp.path(), "raspios-bookworm", "xz");
    let out = tmp.path().join("lb1.img");
    let o = image(&["--node", "lb1", "--base", s(&base), "-o", s(&out), s(&site)]);
    assert!(o.status.success(), "{}", stderr(&o));

    let script = mtype(&out, BOOT_OFFSET, "firstrun.sh");
    let path = tmp.path().join("firstrun.sh");
    std::fs::write(&path, &script).unwrap();
    sh(Command::new("shellcheck").args(["-s", "sh"]).arg(&path));
    let text = String::from_utf8(script).unwrap();
    // The rename wizard is cancelled as userconf-pi's cancel-rename does:
    // with it when the image has it, else the banner, the unit and the
    // console login on tty1 (disabled by pi-gen's rename-user -f -s).
    assert!(
        text.contains("/usr/bin/cancel-rename 'pi'")
            && text.contains("systemctl disable userconfig.service")
            && text.contains("systemctl enable getty@tty1.service"),
        "{text}"
    );
    // No NoCloud seed on an image without cloud-init.
    let listing = sh(Command::new("mdir")
        .args(["-b", "-i"])
        .arg(format!("{}@@{BOOT_OFFSET}", out.display()))
        .arg("::"));
    assert!(!listing.contains("user-data"), "{listing}");
    let cmdline = String::from_utf8(mtype(&out, BOOT_OFFSET, "cmdline.txt")).unwrap();
    assert!(
        cmdline.ends_with(" quiet init=/usr/lib/raspberrypi-sys-mods/firstboot systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n"),
        "{cmdline}"
    );

    // Run the script's file-writing part for real into a scratch root: the
    // files it lands are byte for byte the ones `build` renders.
    let built = built(tmp.path(), &site);
    let root = tmp.path().join("root");
    let mut body = String::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some(rest) = l.strip_prefix("base64 -d >") {
            let target = rest.split(' ').next().unwrap().trim_matches('\'');
            let mut b64 = String::new();
            for l in lines.by_ref() {
                if l == "HASEED_EOF" {
                    break;
                }
                b64.push_str(l);
                b64.push('\n');
            }
            body.push_str(&format!("{target}\n{b64}--\n"));
        }
    }
    let mut checked = 0;
    let mut keyfile = None;
    for chunk in body.split("--\n").filter(|c| !c.is_empty()) {
        let (target, b64) = chunk.split_once('\n').unwrap();
        let dest = root.join(target.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let decoded = Command::new("base64")
            .arg("-d")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b64.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(decoded.status.success(), "{target}");
        if target.ends_with(".nmconnection") {
            keyfile = Some(String::from_utf8(decoded.stdout.clone()).unwrap());
        }
        let on_node = built.join("lb1/files").join(target.trim_start_matches('/'));
        if on_node.exists() {
            assert_eq!(decoded.stdout, std::fs::read(&on_node).unwrap(), "{target}");
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "haproxy.cfg and keepalived.conf at least; checked {checked}"
    );
    let keyfile = keyfile.expect("a NetworkManager keyfile");
    assert!(
        keyfile.contains("interface-name=eth0\n")
            && keyfile.contains(
                "[ipv4]\nmethod=manual\naddress1=192.168.3.241/24,192.168.3.1\ndns=192.168.3.1;\n"
            ),
        "{keyfile}"
    );
}

#[test]
fn a_base_that_does_not_match_the_node_is_refused_and_nothing_is_left() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let bookworm = base(tmp.path(), "raspios-bookworm", "");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&bookworm),
        "-o",
        s(&out.join("lb1.img")),
        s(&site),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("node lb1 has platform raspios")
            && err.contains("looks like Raspberry Pi OS Bookworm"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing written"
    );
}

/// A base made by make-base.sh with `env` (MAKE_BASE_MARK, MAKE_BASE_ISSUE),
/// raw, in its own file.
fn base_with(dir: &Path, name: &str, layout: &str, env: &[(&str, &str)]) -> PathBuf {
    let img = dir.join(format!("{name}.img"));
    sh(Command::new("sh")
        .arg(repo_root().join("tests/images/make-base.sh"))
        .arg(&img)
        .arg(layout)
        .envs(env.iter().copied()));
    img
}

/// The first Trixie release (2025-10-01) has no seed placeholders on its boot
/// partition, like Bookworm; its issue.txt (the pi-gen commit) or, without
/// one, cmdline.txt's `resize` tells it apart. It gets the whole NoCloud seed
/// (its cloud-init reads user-data and meta-data from /boot/firmware), and a
/// Bookworm node is refused on it, naming what it is.
#[test]
fn the_first_trixie_release_without_placeholders_is_trixie_and_gets_a_seed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let built = built(tmp.path(), &site);
    let by_issue = base(tmp.path(), "raspios-trixie-2025-10", "xz");
    let by_cmdline = base_with(
        tmp.path(),
        "no-issue",
        "raspios-trixie-2025-10",
        &[("MAKE_BASE_ISSUE", "none")],
    );
    for (what, base) in [("issue.txt", &by_issue), ("cmdline.txt", &by_cmdline)] {
        let out = tmp.path().join(format!("lb1-{what}.img"));
        let o = image(&[
            "--node",
            "lb1",
            "--base",
            s(base),
            "-o",
            s(&out),
            s(&site),
            "--json",
        ]);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(doc["ok"], true, "{doc}");
        let made = &doc["images"];
        assert_eq!(made[0]["base"], "raspios-trixie", "{what}: {made}");
        assert_eq!(
            made[0]["release"], "2025-10-01 (no seed placeholders)",
            "{what}: {made}"
        );
        for f in ["user-data", "meta-data", "network-config"] {
            assert_eq!(
                mtype(&out, BOOT_OFFSET, f),
                std::fs::read(built.join("lb1").join(f)).expect("built seed"),
                "{what}: {f}"
            );
        }
        let cmdline = String::from_utf8(mtype(&out, BOOT_OFFSET, "cmdline.txt")).unwrap();
        assert!(
            cmdline.contains(" rootwait quiet resize ds=nocloud;i=haseed-"),
            "{what}: {cmdline}"
        );
        sh(Command::new("fsck.vfat")
            .arg("-n")
            .arg(boot_partition(&out, tmp.path())));
    }

    // A Bookworm node on it: refused, and the message says what the base is.
    let text = std::fs::read_to_string(&site)
        .unwrap()
        .replace("platform = \"raspios\"", "platform = \"raspios-legacy\"");
    let legacy = tmp.path().join("legacy.toml");
    std::fs::write(&legacy, text).unwrap();
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&by_issue),
        "-o",
        s(&tmp.path().join("refused.img")),
        s(&legacy),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("needs Raspberry Pi OS Bookworm")
            && err.contains("looks like Raspberry Pi OS Trixie")
            && err.contains("release 2025-10-01")
            && err.contains("issue.txt \"Raspberry Pi reference 2025-10-01\" (pi-gen 7dadcf1fc5ce1648ab09409ab978831690c9a955)"),
        "{err}"
    );
    assert!(!tmp.path().join("refused.img").exists());
}

/// A pi-gen commit in issue.txt that a release lists decides, even where
/// the rest would say otherwise; a base that is neither Trixie nor Bookworm
/// (no placeholders, no release's cmdline.txt word, an unknown commit) is
/// refused with what it looks like: label, files, marks, issue.txt.
#[test]
fn issue_txt_decides_and_a_base_that_is_neither_release_is_described() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    // The 2025-10-01 Trixie commit, on a base without `resize`.
    let known = base_with(
        tmp.path(),
        "known",
        "raspios-trixie-2025-10",
        &[("MAKE_BASE_MARK", "none")],
    );
    let out = tmp.path().join("lb1.img");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&known),
        "-o",
        s(&out),
        s(&site),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let neither = base_with(
        tmp.path(),
        "neither",
        "raspios-trixie-2025-10",
        &[
            ("MAKE_BASE_MARK", "none"),
            (
                "MAKE_BASE_ISSUE",
                "2030-01-01 0123456789abcdef0123456789abcdef01234567",
            ),
        ],
    );
    let refused = tmp.path().join("neither-lb1.img");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&neither),
        "-o",
        s(&refused),
        s(&site),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("node lb1 has platform raspios")
            && err.contains("matches no supported base image")
            && err.contains("label \"bootfs\", files cmdline.txt, config.txt, issue.txt")
            && err.contains("no release's marks")
            && err.contains("issue.txt \"Raspberry Pi reference 2030-01-01\" (pi-gen 0123456789abcdef0123456789abcdef01234567)"),
        "{err}"
    );
    assert!(!refused.exists());
}

/// Broken bases: each gets its own clear error and leaves no file behind.
#[test]
fn broken_bases_fail_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let good = base(tmp.path(), "raspios-trixie", "");
    let good_xz = base(tmp.path(), "raspios-trixie", "xz");
    let bytes = std::fs::read(&good).unwrap();
    let xz = std::fs::read(&good_xz).unwrap();
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.img.xz",
            xz[..xz.len() / 2].to_vec(),
            "reading base image",
        ),
        (
            "not-a-disk.img",
            vec![0x42; 1 << 20],
            "no MBR partition table",
        ),
        (
            "past-end.img",
            bytes[..(32 << 20)].to_vec(),
            "past the end of the image",
        ),
        ("zstd.img.zst", b"\x28\xB5\x2F\xFD rest".to_vec(), "zstd"),
    ];
    let mut corrupt = xz.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    corrupt[mid + 1] ^= 0xff;
    cases.push(("corrupt.img.xz", corrupt, "reading base image"));
    let mut gz = std::fs::read(base(tmp.path(), "raspios-trixie", "gz")).unwrap();
    gz.truncate(gz.len() - 100);
    cases.push(("truncated.img.gz", gz, "reading base image"));

    // A GPT disk, made by sfdisk.
    let gpt = tmp.path().join("gpt.img");
    sh(Command::new("truncate").args(["-s", "16M"]).arg(&gpt));
    sh(Command::new("sh").arg("-c").arg(format!(
        "printf 'label: gpt\\nstart=2048, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\\n' | sfdisk --quiet {}",
        gpt.display()
    )));
    cases.push(("gpt.img", std::fs::read(&gpt).unwrap(), "GPT"));

    // A boot partition with no room for the seed: fill it with mtools.
    let full = tmp.path().join("full.img");
    std::fs::copy(&good, &full).unwrap();
    let filler = tmp.path().join("filler");
    let listing = sh(Command::new("mdir")
        .arg("-i")
        .arg(format!("{}@@{BOOT_OFFSET}", full.display()))
        .arg("::"));
    let free: u64 = listing
        .lines()
        .find(|l| l.contains("bytes free"))
        .and_then(|l| l.split("bytes").next())
        .map(|n| n.chars().filter(char::is_ascii_digit).collect::<String>())
        .and_then(|n| n.parse().ok())
        .expect("mdir reports the free bytes");
    std::fs::write(&filler, vec![1u8; (free - 1024) as usize]).unwrap();
    sh(Command::new("mcopy")
        .arg("-i")
        .arg(format!("{}@@{BOOT_OFFSET}", full.display()))
        .arg(&filler)
        .arg("::filler"));
    cases.push((
        "full.img",
        std::fs::read(&full).unwrap(),
        "free but the seed needs",
    ));

    for (name, data, want) in cases {
        let input = tmp.path().join("in").join(name);
        std::fs::create_dir_all(input.parent().unwrap()).unwrap();
        std::fs::write(&input, data).unwrap();
        let out = tmp.path().join("out").join(name);
        std::fs::create_dir_all(&out).unwrap();
        let o = image(&[
            "--node",
            "lb1",
            "--base",
            s(&input),
            "-o",
            s(&out.join("lb1.img")),
            s(&site),
            "-q",
        ]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(want), "{name}: want {want:?} in {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "{name}: left a file"
        );
    }
}

#[test]
fn seed_disk_is_a_cidata_volume_cloud_init_reads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let seed = tmp.path().join("master1-seed.img");
    let o = run(&["seed", s(&site), "--node", "master1", "-o", s(&seed)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let label = sh(Command::new("blkid")
        .args(["-o", "value", "-s", "LABEL"])
        .arg(&seed));
    assert_eq!(label.trim(), "cidata");
    sh(Command::new("fsck.vfat").arg("-n").arg(&seed));
    let built = built(tmp.path(), &site);
    for f in ["user-data", "meta-data", "network-config"] {
        assert_eq!(
            mtype(&seed, 0, f),
            std::fs::read(built.join("master1").join(f)).unwrap(),
            "{f}"
        );
    }
    let again = tmp.path().join("again.img");
    let o = run(&["seed", s(&site), "--node", "master1", "-o", s(&again), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(&seed).unwrap() == std::fs::read(&again).unwrap(),
        "deterministic"
    );
}

#[test]
fn flash_refuses_what_is_not_a_card_and_verifies_what_it_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let base = base(tmp.path(), "raspios-trixie", "xz");
    let expected = tmp.path().join("lb1.img");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&base),
        "-o",
        s(&expected),
        s(&site),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = std::fs::read(&expected).unwrap();

    // A plain file: refused, untouched; forced: written and verified.
    let card = tmp.path().join("card.bin");
    std::fs::write(&card, b"untouched").unwrap();
    let flash = |target: &Path, force: bool| {
        let mut args = vec![
            "flash",
            s(&site),
            "--node",
            "lb1",
            "--base",
            s(&base),
            "--tmp-dir",
            s(tmp.path()),
        ];
        if force {
            args.push("--force");
        }
        args.push(s(target));
        run(&args)
    };
    let o = flash(&card, false);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not a block device"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&card).unwrap(), b"untouched");
    let o = flash(&card, true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("wrote and verified"), "{}", stderr(&o));
    assert!(std::fs::read(&card).unwrap() == expected);
    // Owner-only, as `haseed image` leaves its output (it was 0644).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&card).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // A loop device (not removable): refused; forced: written, read back equal.
    let backing = tmp.path().join("loop.bin");
    std::fs::write(&backing, vec![0xAAu8; expected.len()]).unwrap();
    let dev = sh(Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&backing));
    let dev = PathBuf::from(dev.trim());
    struct Detach(PathBuf);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
        }
    }
    let _detach = Detach(dev.clone());
    let o = flash(&dev, false);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a removable device"),
        "{}",
        stderr(&o)
    );
    let o = flash(&dev, true);
    assert!(o.status.success(), "{}", stderr(&o));
    let back = std::fs::read(&dev).unwrap();
    let ranges = card_ranges(
        &tmp.path().join("lb1.img.bmap"),
        expected.len() as u64,
        false,
    );
    assert!(
        holds_over(&back, &expected, &ranges),
        "the loop device holds the image over its block map"
    );
    // Nothing left in the scratch directory.
    assert!(
        !std::fs::read_dir(tmp.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("haseed-flash-")),
        "scratch left behind"
    );
}

/// The byte ranges `flash` writes and reads back for an image of `len`
/// bytes: its block map's ranges and the MBR's sector (and sectors 1-33
/// on a card that held a GPT), merged, end-exclusive.
fn card_ranges(bmap: &Path, len: u64, gpt: bool) -> Vec<(u64, u64)> {
    let (block, ranges) = bmap_ranges(bmap);
    let mut all: Vec<(u64, u64)> = ranges
        .iter()
        .map(|&(a, b)| (a * block, ((b + 1) * block).min(len)))
        .collect();
    all.push((0, 512));
    if gpt {
        all.push((512, 34 * 512));
    }
    all.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in all {
        match merged.last_mut() {
            Some((_, end)) if a <= *end => *end = (*end).max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// `card` holds `image` over `ranges`, and something else (the 0xAA it
/// was filled with) outside them.
fn holds_over(card: &[u8], image: &[u8], ranges: &[(u64, u64)]) -> bool {
    let inside = ranges
        .iter()
        .all(|&(a, b)| card[a as usize..b as usize] == image[a as usize..b as usize]);
    let mut outside = card.len() as u64 - ranges.iter().map(|(a, b)| b - a).sum::<u64>();
    if outside > 0 {
        outside = 0;
        let mut at = 0u64;
        for &(a, b) in ranges
            .iter()
            .chain(std::iter::once(&(card.len() as u64, card.len() as u64)))
        {
            outside += card[at as usize..a as usize]
                .iter()
                .filter(|&&x| x == 0xAA)
                .count() as u64;
            at = b;
        }
        return inside && outside > 0;
    }
    inside
}

/// The sha256 of `image` over `ranges`, in order: what the ledger records.
fn ranges_sha256(image: &[u8], ranges: &[(u64, u64)]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for &(a, b) in ranges {
        h.update(&image[a as usize..b as usize]);
    }
    hex::encode(h.finalize())
}

/// A loop device over `backing`, detached when dropped.
struct Loop(PathBuf);

impl Loop {
    fn over(backing: &Path) -> Loop {
        let dev = sh(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing));
        Loop(PathBuf::from(dev.trim()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// A tmpfs of `bytes` at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Issue 23 items 1, 2 and 5: two nodes onto two cards (loop devices) in one
/// run from one decompression, each card its node's own image, read back;
/// the ledger says what went where. A card listed twice, or a node given two
/// cards, is refused before anything is written. A card that fails while it
/// is written (a loop device over a file on a tmpfs too small for it: the
/// kernel's writes to it end in I/O errors) is reported by node and device
/// while the other card completes; exit 1.
#[test]
fn several_cards_in_one_run_each_with_its_node_and_a_ledger() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let base = base(tmp.path(), "raspios-trixie", "xz");
    let out = tmp.path().join("images");
    let o = image(&[
        "--node",
        "lb1",
        "--node",
        "lb2",
        "--base",
        s(&base),
        "-o",
        s(&out),
        s(&site),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = |node: &str| std::fs::read(out.join(format!("{node}.img"))).expect("image");
    let (lb1, lb2) = (want("lb1"), want("lb2"));
    assert_ne!(lb1, lb2, "each node has its own identity");
    let backing = |name: &str, len: usize| {
        let p = tmp.path().join(name);
        std::fs::write(&p, vec![0xAAu8; len]).expect("backing");
        p
    };
    let card1 = Loop::over(&backing("card1.bin", lb1.len()));
    let card2 = Loop::over(&backing("card2.bin", lb1.len()));
    let ledger = tmp.path().join("ledger.jsonl");
    let flash = |extra: &[&str]| {
        let mut args = vec![
            "flash",
            s(&site),
            "--base",
            s(&base),
            "--tmp-dir",
            s(tmp.path()),
            "--force",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let pair = |n: &str, d: &Loop| format!("{n}={}", d.0.display());

    // Refused before anything is written: one card twice (by another name
    // too), one node twice.
    let link = tmp.path().join("card1-link");
    std::os::unix::fs::symlink(&card1.0, &link).expect("symlink");
    for (args, want) in [
        (
            vec![
                "--node".to_string(),
                pair("lb1", &card1),
                "--node".into(),
                format!("lb2={}", link.display()),
            ],
            "are the same card",
        ),
        (
            vec![
                "--node".to_string(),
                pair("lb1", &card1),
                "--node".into(),
                pair("lb1", &card2),
            ],
            "node lb1 is given two cards",
        ),
        (
            vec![
                "--node".to_string(),
                "lb1".into(),
                "--node".into(),
                pair("lb2", &card2),
                s(&card1.0).into(),
            ],
            "for several cards give --node NODE=DEVICE",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = flash(&args);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(want), "no {want:?} in {}", stderr(&o));
    }
    for card in [&card1, &card2] {
        let back = std::fs::read(&card.0).expect("card");
        assert!(
            back.iter().all(|&b| b == 0xAA),
            "{} was written",
            card.0.display()
        );
    }
    assert!(!ledger.exists(), "a refused run wrote the ledger");

    // Two cards, one run.
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::OpenOptions::new()
            .write(true)
            .open(&card2.0)
            .expect("card2"),
        b"EFI PART",
        512,
    )
    .expect("a GPT signature");
    let (a, b) = (pair("lb1", &card1), pair("lb2", &card2));
    let o = flash(&["--node", &a, "--node", &b, "--ledger", s(&ledger)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("lb1 -> {}", card1.0.display())),
        "{err}"
    );
    // Each card holds its node's image over what flash writes (the image's
    // block map, from the base's file systems, and the first MiB); the
    // rest is still the 0xAA it was filled with.
    let ranges = |node: &str, img: &[u8], gpt: bool| {
        card_ranges(&out.join(format!("{node}.img.bmap")), img.len() as u64, gpt)
    };
    // Card 2 held a GPT before (its header at LBA 1): flash clears sectors
    // 1-33 too, which the image's map alone would leave.
    let (r1, r2) = (ranges("lb1", &lb1, false), ranges("lb2", &lb2, true));
    assert!(
        holds_over(&std::fs::read(&card1.0).expect("card1"), &lb1, &r1),
        "card 1 holds lb1's image"
    );
    assert!(
        holds_over(&std::fs::read(&card2.0).expect("card2"), &lb2, &r2),
        "card 2 holds lb2's image"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&ledger)
        .expect("ledger")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, (node, card, img, ranges)) in lines
        .iter()
        .zip([("lb1", &card1, &lb1, &r1), ("lb2", &card2, &lb2, &r2)])
    {
        let (node, card, img, ranges) = (node, card, img, ranges);
        assert_eq!(line["node"], node, "{line}");
        assert_eq!(line["device"], s(&card.0), "{line}");
        assert_eq!(line["result"], "verified", "{line}");
        let written: u64 = ranges.iter().map(|(a, b)| b - a).sum();
        assert!(written < img.len() as u64, "{line}");
        assert_eq!(line["bytes_written"], written, "{line}");
        assert_eq!(line["sha256"], ranges_sha256(img, ranges), "{line}");
        // From sysfs: the loop device's backing file.
        let model = line["model"].as_str().expect("model");
        assert!(
            model.starts_with("loop device over ") && model.contains("card"),
            "{line}"
        );
        assert!(
            line["instance_id"].as_str().is_some_and(|i| !i.is_empty()),
            "{line}"
        );
        assert!(
            line["time"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 20),
            "{line}"
        );
    }

    // A card that fails while written; the other completes.
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).expect("mkdir");
    sh(Command::new("mount")
        // Room for a quarter of what the card gets (its block map's bytes).
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={}", r1.iter().map(|(a, b)| b - a).sum::<u64>() / 4),
        ])
        .arg("tmpfs")
        .arg(&small));
    let _small = Tmpfs(small.clone());
    let sparse = small.join("card3.bin");
    std::fs::File::create(&sparse)
        .and_then(|f| f.set_len(lb1.len() as u64))
        .expect("sparse backing");
    let card3 = Loop::over(&sparse);
    std::fs::write(&card1.0, vec![0u8; lb1.len()]).expect("wipe card 1");
    let (a, c) = (pair("lb1", &card1), pair("lb2", &card3));
    let o = flash(&["--node", &a, "--node", &c, "--ledger", s(&ledger)]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "1 of 2 cards failed: node lb2 on {}",
            card3.0.display()
        )) && err.contains("the other cards were written and verified"),
        "{err}"
    );
    let written: u64 = r1.iter().map(|(a, b)| b - a).sum();
    assert!(
        err.contains(&format!(
            "lb1: wrote and verified {written} bytes of the {}-byte image on {}",
            lb1.len(),
            card1.0.display()
        )),
        "{err}"
    );
    let back = std::fs::read(&card1.0).expect("card1");
    assert!(
        r1.iter()
            .all(|&(a, b)| back[a as usize..b as usize] == lb1[a as usize..b as usize]),
        "card 1 completed"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&ledger)
        .expect("ledger")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4, "appended: {lines:?}");
    assert_eq!(lines[2]["result"], "verified", "{}", lines[2]);
    assert_eq!(lines[3]["node"], "lb2", "{}", lines[3]);
    assert_eq!(lines[3]["result"], "failed", "{}", lines[3]);
    assert!(lines[3]["sha256"].is_null(), "{}", lines[3]);
    // The step and the kernel's error: the loop device's writes to its full
    // backing file fail, and the writeback of that chunk reports it.
    let error = lines[3]["error"].as_str().expect("error");
    assert!(
        error.contains(&format!("writing {} at byte", card3.0.display()))
            && error.contains("Input/output error"),
        "{error}"
    );
}

/// A write limit on a loop device for as long as this lives: cgroup v1's
/// blkio throttle on the root group, which every writer of the device
/// (processes and the kernel's writeback) passes through.
struct Throttle(String);

impl Throttle {
    const RULES: &'static str = "/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device";

    fn new(dev: &Loop, bytes_per_second: u64) -> Throttle {
        assert!(
            Path::new(Self::RULES).exists(),
            "this test throttles a loop device with cgroup v1's blkio controller ({}), which this machine lacks",
            Self::RULES
        );
        let mm = sh(Command::new("lsblk").args(["-dno", "MAJ:MIN"]).arg(&dev.0))
            .trim()
            .to_string();
        std::fs::write(Self::RULES, format!("{mm} {bytes_per_second}\n")).expect("throttle");
        Throttle(mm)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::RULES, format!("{} 0\n", self.0));
    }
}

/// Issue 23 item 1: a card that is too slow or stuck (its writes throttled
/// to 1 MiB/s, so a 4 MiB chunk takes 4 s) is given up after
/// `--stall-timeout 1` and reported by node and device, while the other
/// card is written and verified; exit 1, and the ledger says which.
#[test]
fn a_stuck_card_is_given_up_while_the_other_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    // No block map: the boot partition is written whole (64 MiB).
    let base = base(tmp.path(), "raspios-trixie", "");
    let len = std::fs::metadata(&base).expect("base").len() as usize;
    let backing = |name: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, vec![0xAAu8; len]).expect("backing");
        p
    };
    let (fast, slow) = (
        Loop::over(&backing("fast.bin")),
        Loop::over(&backing("slow.bin")),
    );
    let _limit = Throttle::new(&slow, 1 << 20);
    let ledger = tmp.path().join("ledger.jsonl");
    let o = run(&[
        "flash",
        s(&site),
        "--base",
        s(&base),
        "--tmp-dir",
        s(tmp.path()),
        "--force",
        "--stall-timeout",
        "1",
        "--ledger",
        s(&ledger),
        "--node",
        &format!("lb1={}", fast.0.display()),
        "--node",
        &format!("lb2={}", slow.0.display()),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "1 of 2 cards failed: node lb2 on {}: no progress for 1 s (--stall-timeout): the card is too slow or stuck",
            slow.0.display()
        )) && err.contains("the other cards were written and verified"),
        "{err}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&ledger)
        .expect("ledger")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        (&lines[0]["node"], &lines[0]["result"]),
        (&"lb1".into(), &"verified".into()),
        "{}",
        lines[0]
    );
    assert_eq!(
        (&lines[1]["node"], &lines[1]["result"]),
        (&"lb2".into(), &"failed".into()),
        "{}",
        lines[1]
    );
}

/// A card too small for the image is refused before the base is
/// decompressed when its size is known (a raw base), and before any card is
/// written otherwise (an xz base): sizes in human units, the other card
/// untouched, no scratch image made in the first case.
#[test]
fn a_card_too_small_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let raw = base(tmp.path(), "raspios-trixie", "");
    let len = std::fs::metadata(&raw).expect("base").len() as usize;
    let backing = |name: &str, len: usize| {
        let p = tmp.path().join(name);
        std::fs::write(&p, vec![0xAAu8; len]).expect("backing");
        p
    };
    let big = Loop::over(&backing("big.bin", len));
    let small = Loop::over(&backing("small.bin", len / 2));
    let scratch = tmp.path().join("scratch");
    for (base, scratch_made) in [
        (raw.clone(), false),
        (base(tmp.path(), "raspios-trixie", "xz"), true),
    ] {
        let o = run(&[
            "flash",
            s(&site),
            "--base",
            s(&base),
            "--tmp-dir",
            s(&scratch),
            "--force",
            "-q",
            "--node",
            &format!("lb1={}", big.0.display()),
            "--node",
            &format!("lb2={}", small.0.display()),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "{} holds 64.0 MiB ({} bytes) but the image is 128.0 MiB ({len} bytes)",
                small.0.display(),
                len / 2
            )) && err.contains("nothing was written"),
            "{err}"
        );
        assert_eq!(
            scratch.exists(),
            scratch_made,
            "{}: scratch",
            base.display()
        );
        for card in [&big, &small] {
            let back = std::fs::read(&card.0).expect("card");
            assert!(
                back.iter().all(|&b| b == 0xAA),
                "{} was written",
                card.0.display()
            );
        }
    }
}

/// `--all` gives the cards to the site's flashable nodes in order: a count
/// that does not match is refused, naming the nodes; the assignment is not
/// taken without --yes when nobody can be asked; with --yes every node gets
/// its image.
#[test]
fn flash_all_assigns_cards_in_the_sites_order_and_wants_a_confirmation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let base = base(tmp.path(), "raspios-trixie", "xz");
    let nodes = ["lb1", "lb2", "master1", "master2", "master3"];
    let cards: Vec<PathBuf> = nodes
        .iter()
        .map(|n| {
            let p = tmp.path().join(format!("{n}.card"));
            std::fs::write(&p, b"").expect("card");
            p
        })
        .collect();
    let flash = |cards: &[PathBuf], extra: &[&str]| {
        let mut args = vec![
            "flash",
            s(&site),
            "--base",
            s(&base),
            "--tmp-dir",
            s(tmp.path()),
            "--force",
            "--all",
        ];
        for c in cards {
            args.extend(["--device", s(c)]);
        }
        args.extend_from_slice(extra);
        common::haseed()
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("haseed runs")
    };
    let o = flash(&cards[..2], &["--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "--all: 5 nodes to flash (lb1, lb2, master1, master2, master3) but 2 --device cards"
        ),
        "{}",
        stderr(&o)
    );
    let o = flash(&cards, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("confirm with --yes")
            && stderr(&o).contains(&format!("master3 -> {}", cards[4].display())),
        "{}",
        stderr(&o)
    );
    assert!(
        cards
            .iter()
            .all(|c| std::fs::metadata(c).expect("card").len() == 0),
        "written unconfirmed"
    );
    let o = flash(&cards, &["--yes", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let listed: Vec<&str> = doc["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .map(|c| c["node"].as_str().expect("node"))
        .collect();
    assert_eq!(listed, nodes, "{doc}");
    // Each card its own node's identity: the instance ids differ.
    let mut ids: Vec<&str> = doc["cards"]
        .as_array()
        .expect("cards")
        .iter()
        .map(|c| c["instance_id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5, "{doc}");
}

/// `haseed image` writes a block map beside each image that the real
/// bmaptool (Debian's bmap-tools) finds, accepts and checks while it copies
/// (issue 23 item 3, in part). With the base's own block map (made here by
/// `bmaptool create` on the sparse test base, as pi-gen makes Raspberry Pi
/// OS's) it maps the base's ranges plus the boot partition: bmaptool
/// copies fewer bytes than the image holds, onto a loop device filled with
/// 0xAA, and every mapped byte is the image's while unmapped ones stay 0xAA.
/// Without one it maps every block. A block map that is not the base's, or
/// that was edited, is refused with nothing left behind.
#[test]
fn images_get_a_block_map_that_bmaptool_copies_and_checks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let raw = base(tmp.path(), "raspios-trixie", "");
    let read_map = |p: &Path| {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let field = |name: &str| -> u64 {
            text.split(&format!("<{name}>"))
                .nth(1)
                .and_then(|s| s.split('<').next())
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        (
            field("BlocksCount"),
            field("MappedBlocksCount"),
            field("BlockSize"),
        )
    };
    // No base map: every block.
    let plain = tmp.path().join("plain/lb1.img");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&raw),
        "-o",
        s(&plain),
        s(&site),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // (Without the base's map: its file systems', tested below.)
    let (blocks, mapped, _) = read_map(&tmp.path().join("plain/lb1.img.bmap"));
    assert!(mapped < blocks);
    let want = std::fs::read(&plain).expect("image");

    // The base's own map, as bmaptool makes it; then a compressed base and
    // a compressed image (the map is named after the raw image).
    sh(Command::new("bmaptool")
        .arg("create")
        .arg("-o")
        .arg(tmp.path().join("raspios-trixie.img.bmap"))
        .arg(&raw));
    let xz = base(tmp.path(), "raspios-trixie", "xz");
    let packed = tmp.path().join("mapped/lb1.img.xz");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&xz),
        "-o",
        s(&packed),
        s(&site),
        "-q",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let map = tmp.path().join("mapped/lb1.img.bmap");
    assert_eq!(doc["images"][0]["bmap"], s(&map), "{doc}");
    let (blocks, mapped, block) = read_map(&map);
    assert!(
        mapped < blocks,
        "the test base is sparse: {mapped} of {blocks} blocks mapped"
    );
    assert_eq!(doc["images"][0]["mapped_bytes"], mapped * block, "{doc}");
    // The base's blocks and those haseed changed in the boot partition
    // (every block where the image differs from the base), not the boot
    // partition whole: its free clusters, holes in the test base, stay
    // unmapped, as `bmaptool copy` of the base would leave them.
    let (_, ranges) = bmap_ranges(&map);
    let (_, base_ranges) = bmap_ranges(&tmp.path().join("raspios-trixie.img.bmap"));
    let in_map = |blk: u64, r: &[(u64, u64)]| r.iter().any(|&(a, b)| a <= blk && blk <= b);
    let base_bytes = std::fs::read(&raw).expect("base");
    let mut changed = 0;
    for blk in 0..want.len() as u64 / block {
        let (a, b) = ((blk * block) as usize, ((blk + 1) * block) as usize);
        let differs = want[a..b] != base_bytes[a..b];
        changed += u64::from(differs);
        assert_eq!(
            in_map(blk, &ranges),
            differs || in_map(blk, &base_ranges),
            "block {blk}: changed {differs}"
        );
    }
    assert!(changed > 0, "the seed changed no block");
    let boot = (BOOT_OFFSET / block)..((BOOT_OFFSET + BOOT_LEN) / block);
    assert!(
        boot.clone().any(|blk| !in_map(blk, &ranges)),
        "boot partition blocks {boot:?} mapped whole: {ranges:?}"
    );

    // bmaptool copies it to a "card" and checks every range's sha256.
    let card = tmp.path().join("card.bin");
    std::fs::write(&card, vec![0xAAu8; want.len()]).expect("card");
    let dev = Loop::over(&card);
    let o = Command::new("bmaptool")
        .arg("copy")
        .arg(&packed)
        .arg(&dev.0)
        .output()
        .expect("bmaptool runs");
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains(&format!("discovered bmap file '{}'", map.display())),
        "{said}"
    );
    let back = std::fs::read(&dev.0).expect("card");
    let mut covered = 0u64;
    for &(a, b) in &ranges {
        let (start, end) = (
            (a * block) as usize,
            (((b + 1) * block) as usize).min(want.len()),
        );
        assert!(
            back[start..end] == want[start..end],
            "blocks {a}-{b} differ"
        );
        covered += (end - start) as u64;
    }
    assert_eq!(covered, mapped * block);
    assert!(back.contains(&0xAA), "bmaptool wrote unmapped blocks too");
    // The card boots what haseed made: its boot partition, free clusters
    // full of the card's old bytes, is clean and holds the seed.
    let card_boot = boot_partition(&dev.0, tmp.path());
    let boot_bytes = std::fs::read(&card_boot).expect("boot partition");
    assert!(
        boot_bytes.contains(&0xAA),
        "the card's boot partition was written whole"
    );
    sh(Command::new("fsck.vfat").arg("-n").arg(&card_boot));
    let built = built(tmp.path(), &site);
    assert_eq!(
        mtype(&card_boot, 0, "user-data"),
        std::fs::read(built.join("lb1/user-data")).expect("built user-data")
    );

    // haseed flash writes and reads back the same ranges (what lies in the
    // first MiB last), not the whole image.
    std::fs::write(&dev.0, vec![0xAAu8; want.len()]).expect("refill");
    let ledger = tmp.path().join("ledger.jsonl");
    let o = run(&[
        "flash",
        s(&site),
        "--base",
        s(&xz),
        "--tmp-dir",
        s(tmp.path()),
        "--force",
        "-q",
        "--ledger",
        s(&ledger),
        "--node",
        &format!("lb1={}", dev.0.display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&ledger).expect("ledger").trim())
            .expect("json");
    // Exactly the bytes bmaptool copy writes: the map (block 0, the MBR's,
    // is in it); the card held no GPT to clear.
    assert!(ranges.first().is_some_and(|&(a, _)| a == 0), "{ranges:?}");
    assert_eq!(line["bytes_written"], mapped * block, "{line}");
    let back = std::fs::read(&dev.0).expect("card");
    for &(a, b) in &ranges {
        let (start, end) = (
            (a * block) as usize,
            (((b + 1) * block) as usize).min(want.len()),
        );
        assert!(
            back[start..end] == want[start..end],
            "flash: blocks {a}-{b} differ"
        );
    }
    assert!(back.contains(&0xAA), "flash wrote unmapped blocks");

    // A base that is not its map's (one byte changed in the last mapped
    // range): flash checks the checksums while writing and stops the card
    // before that range, without its first MiB.
    let damaged = tmp.path().join("damaged");
    std::fs::create_dir(&damaged).expect("mkdir");
    let (base_block, base_ranges) = bmap_ranges(&tmp.path().join("raspios-trixie.img.bmap"));
    let &(bad_first, bad_last) = base_ranges.last().expect("the base map has ranges");
    let mut bytes = std::fs::read(&raw).expect("base");
    bytes[(bad_first * base_block) as usize] ^= 0xFF;
    std::fs::write(damaged.join("raspios-trixie.img"), &bytes).expect("write");
    std::fs::copy(
        tmp.path().join("raspios-trixie.img.bmap"),
        damaged.join("raspios-trixie.img.bmap"),
    )
    .expect("copy");
    std::fs::write(&dev.0, vec![0xAAu8; want.len()]).expect("refill");
    let o = run(&[
        "flash",
        s(&site),
        "--base",
        s(&damaged.join("raspios-trixie.img")),
        "--tmp-dir",
        s(tmp.path()),
        "--force",
        "-q",
        "--node",
        &format!("lb1={}", dev.0.display()),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let said = stderr(&o);
    assert!(
        said.contains(&format!("blocks {bad_first}-{bad_last}"))
            && said.contains("not this base's block map, or the base is damaged")
            && said.contains("does not boot"),
        "{said}"
    );
    let back = std::fs::read(&dev.0).expect("card");
    let bad =
        (bad_first * base_block) as usize..(((bad_last + 1) * base_block) as usize).min(back.len());
    assert!(
        back[..1 << 20].iter().all(|&b| b == 0xAA),
        "the stopped card got its first MiB"
    );
    assert!(
        back[bad].iter().all(|&b| b == 0xAA),
        "blocks {bad_first}-{bad_last} reached the card"
    );

    // --bmap names a map kept elsewhere.
    let elsewhere = tmp.path().join("maps");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    let bare = elsewhere.join("base.img");
    std::fs::copy(&raw, &bare).expect("copy");
    let named = elsewhere.join("kept.bmap");
    std::fs::copy(tmp.path().join("raspios-trixie.img.bmap"), &named).expect("copy");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&bare),
        "--bmap",
        s(&named),
        "-o",
        s(&elsewhere.join("lb1.img")),
        s(&site),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_map(&elsewhere.join("lb1.img.bmap")).1, mapped);

    // Not this base's map (one byte of the base changed in a mapped range:
    // the MBR's disk signature), or a map edited by hand: refused, and no
    // image or map is left.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    let mut changed = std::fs::read(&raw).expect("base");
    changed[440] ^= 0xFF;
    std::fs::write(other.join("raspios-trixie.img"), &changed).expect("write");
    std::fs::copy(
        tmp.path().join("raspios-trixie.img.bmap"),
        other.join("raspios-trixie.img.bmap"),
    )
    .expect("copy");
    let out = tmp.path().join("refused");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&other.join("raspios-trixie.img")),
        "-o",
        s(&out.join("lb1.img")),
        s(&site),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("block map")
            && stderr(&o).contains("not this base's block map, or the base is damaged"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "left behind: {out:?}");
    let edited = std::fs::read_to_string(other.join("raspios-trixie.img.bmap"))
        .expect("map")
        .replacen("<BlockSize>", "<BlockSize> ", 1);
    std::fs::write(other.join("raspios-trixie.img.bmap"), edited).expect("write");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&other.join("raspios-trixie.img")),
        "-o",
        s(&out.join("lb1.img")),
        s(&site),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the file's own checksum is wrong"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "left behind: {out:?}");
}

/// The ranges of a block map: (first, last) block numbers, and its block
/// size.
fn bmap_ranges(path: &Path) -> (u64, Vec<(u64, u64)>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let block = text
        .split("<BlockSize>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|s| s.trim().parse().ok())
        .expect("BlockSize");
    let ranges = text
        .lines()
        .filter(|l| l.trim_start().starts_with("<Range"))
        .filter_map(|l| l.split("> ").nth(1)?.split(" </Range>").next())
        .map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            (a.parse().expect("first"), b.parse().expect("last"))
        })
        .collect();
    (block, ranges)
}

/// A base without a block map is mapped from its own file systems
/// (issue 23 item 3): the disk before the first partition and the boot
/// partition whole, the root partition's blocks that its ext4 bitmaps say
/// are used. Checked against e2fsprogs' own account (dumpe2fs's free
/// blocks per group), block for block; and a card that gets only the mapped
/// blocks over garbage (bmaptool copy onto a loop device full of 0xAA)
/// holds file systems that e2fsck and fsck.vfat find clean.
#[test]
fn a_base_without_a_block_map_is_mapped_from_its_file_systems() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let raw = base(tmp.path(), "raspios-trixie", "");
    let img = tmp.path().join("out/lb1.img");
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&raw),
        "-o",
        s(&img),
        s(&site),
        "-q",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let made = &doc["images"][0];
    assert!(
        made["bmap_from"]
            .as_str()
            .is_some_and(|f| f.contains("partition 2's ext4 block bitmaps")),
        "{made}"
    );
    assert!(
        made["mapped_bytes"].as_u64() < made["image_bytes"].as_u64(),
        "{made}"
    );
    let (block, ranges) = bmap_ranges(&tmp.path().join("out/lb1.img.bmap"));
    let ours: std::collections::BTreeSet<u64> = ranges.iter().flat_map(|&(a, b)| a..=b).collect();

    // e2fsprogs' account of the root file system (partition 2).
    let root = BOOT_OFFSET + BOOT_LEN;
    let len = std::fs::metadata(&raw).expect("base").len() - root;
    let part = sh(Command::new("losetup")
        .args([
            "--find",
            "--show",
            "--read-only",
            "--offset",
            &root.to_string(),
            "--sizelimit",
            &len.to_string(),
        ])
        .arg(&raw));
    let part = Loop(PathBuf::from(part.trim()));
    let dump = sh(Command::new("dumpe2fs").arg(&part.0));
    let header = |name: &str| -> u64 {
        dump.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in dumpe2fs"))
    };
    let (count, fs_block, first) = (
        header("Block count:"),
        header("Block size:"),
        header("First block:"),
    );
    let mut used = vec![true; count as usize];
    for list in dump
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Free blocks: "))
    {
        for item in list.split(", ").filter(|i| !i.trim().is_empty()) {
            let (a, b) = item
                .trim()
                .split_once('-')
                .unwrap_or((item.trim(), item.trim()));
            let (a, b): (u64, u64) = (a.parse().expect("free"), b.parse().expect("free"));
            for k in a..=b {
                used[k as usize] = false;
            }
        }
    }
    assert!(
        used.iter().any(|u| !u),
        "dumpe2fs listed no free block: {dump}"
    );
    let _ = first;
    // Image blocks: everything before the boot partition; of the boot
    // partition, what its FAT (FAT32 here) uses in the base or in the image
    // (the reserved sectors and FATs, and every cluster whose FAT entry is
    // neither free nor bad: a cluster haseed freed stays mapped, one it
    // filled is added); every image block holding a used ext4 block.
    let mut expected: std::collections::BTreeSet<u64> = (0..BOOT_OFFSET / block).collect();
    let fat_used = |bytes: &[u8]| -> Vec<(u64, u64)> {
        let (_, fat, data, cluster) = fat32_geometry(bytes);
        let clusters = (BOOT_OFFSET + BOOT_LEN - data) / cluster;
        let mut spans = vec![(BOOT_OFFSET, data)];
        for c in 2..clusters + 2 {
            let at = (fat + 4 * c) as usize;
            let e =
                u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) & 0x0FFF_FFFF;
            if e != 0 && e != 0x0FFF_FFF7 {
                let start = data + (c - 2) * cluster;
                spans.push((start, start + cluster));
            }
        }
        spans
    };
    let image_bytes = std::fs::read(&img).expect("image");
    let base_bytes = std::fs::read(&raw).expect("base");
    for (a, b) in fat_used(&base_bytes)
        .into_iter()
        .chain(fat_used(&image_bytes))
    {
        expected.extend(a / block..b.div_ceil(block));
    }
    assert!(
        expected.len() < ((BOOT_OFFSET + BOOT_LEN) / block) as usize,
        "the test's boot partition has no free cluster"
    );
    for (k, _) in used.iter().enumerate().filter(|(_, u)| **u) {
        let at = root + k as u64 * fs_block;
        expected.extend(at / block..(at + fs_block).div_ceil(block));
    }
    assert_eq!(
        ours.len(),
        expected.len(),
        "mapped blocks: ours vs e2fsprogs'"
    );
    assert!(
        ours == expected,
        "the block map differs from dumpe2fs's used blocks"
    );

    // Only the mapped blocks onto garbage: the file systems are whole.
    let card = tmp.path().join("card.bin");
    let size = std::fs::metadata(&img).expect("image").len() as usize;
    std::fs::write(&card, vec![0xAAu8; size]).expect("card");
    let dev = Loop::over(&card);
    sh(Command::new("bmaptool").arg("copy").arg(&img).arg(&dev.0));
    drop(dev);
    let back = Loop(PathBuf::from(
        sh(Command::new("losetup")
            .args([
                "--find",
                "--show",
                "--read-only",
                "--offset",
                &root.to_string(),
                "--sizelimit",
                &len.to_string(),
            ])
            .arg(&card))
        .trim(),
    ));
    let o = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&back.0)
        .output()
        .expect("e2fsck");
    assert!(
        o.status.success(),
        "e2fsck: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let boot = Loop(PathBuf::from(
        sh(Command::new("losetup")
            .args([
                "--find",
                "--show",
                "--read-only",
                "--offset",
                &BOOT_OFFSET.to_string(),
                "--sizelimit",
                &BOOT_LEN.to_string(),
            ])
            .arg(&card))
        .trim(),
    ));
    let o = Command::new("fsck.vfat")
        .arg("-n")
        .arg(&boot.0)
        .output()
        .expect("fsck.vfat");
    assert!(
        o.status.success(),
        "fsck.vfat: {}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

/// Runs `haseed image` with a deadline; returns the exit status, stderr, the
/// time taken and the peak resident memory in KiB, the kernel's VmHWM of the
/// process, polled every 10 ms while it runs (wait4's ru_maxrss would count
/// this test process's memory, shared with the child until its exec). A run
/// past the deadline is killed and fails the test.
fn image_bounded(args: &[&str], deadline: Duration) -> (Option<i32>, String, Duration, u64) {
    let err = tempfile::NamedTempFile::new().expect("stderr file");
    let start = Instant::now();
    let mut child = common::haseed()
        .arg("image")
        .args(args)
        .arg("-q")
        .stdout(Stdio::null())
        .stderr(err.reopen().expect("reopen"))
        .spawn()
        .expect("haseed runs");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "haseed image {args:?} still ran after {deadline:?}: {}",
                std::fs::read_to_string(err.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (
        status.code(),
        std::fs::read_to_string(err.path()).unwrap_or_default(),
        start.elapsed(),
        peak,
    )
}

/// The boot partition's geometry, read from its boot sector (FAT32, as
/// make-base.sh makes it): (bytes per sector, FAT offset, data offset,
/// cluster size), offsets from the start of the image.
fn fat32_geometry(img: &[u8]) -> (u64, u64, u64, u64) {
    let b = &img[BOOT_OFFSET as usize..];
    let u16_at = |at: usize| u64::from(u16::from_le_bytes([b[at], b[at + 1]]));
    let u32_at =
        |at: usize| u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]));
    let bps = u16_at(0x0B);
    let spc = u64::from(b[0x0D]);
    let fat = BOOT_OFFSET + u16_at(0x0E) * bps;
    let data = fat + u64::from(b[0x10]) * u32_at(0x24) * bps;
    (bps, fat, data, bps * spc)
}

/// The clusters of a file on the boot partition, as mtools' mshowfat
/// lists them ("<2345>" or "<2345-2350>").
fn clusters_of(img: &Path, name: &str) -> Vec<u32> {
    let out = sh(Command::new("mshowfat")
        .arg("-i")
        .arg(format!("{}@@{BOOT_OFFSET}", img.display()))
        .arg(format!("::{name}")));
    let inner = out
        .split('<')
        .nth(1)
        .and_then(|r| r.split('>').next())
        .unwrap_or_else(|| panic!("mshowfat {name}: {out}"));
    let mut v = Vec::new();
    for run in inner.split(',') {
        let run = run.trim();
        let (a, b) = run.split_once('-').unwrap_or((run, run));
        v.extend(a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap());
    }
    v
}

fn set_fat32(img: &mut [u8], cluster: u32, value: u32) {
    let (_, fat, _, _) = fat32_geometry(img);
    let at = (fat + u64::from(cluster) * 4) as usize;
    img[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// The root directory entry of an 8.3 name (as stored: "CMDLINE TXT").
fn dir_entry(img: &[u8], short: &[u8; 11]) -> usize {
    let (_, _, data, _) = fat32_geometry(img);
    let from = data as usize;
    from + img[from..from + (1 << 20)]
        .windows(11)
        .position(|w| w == short)
        .expect("the entry is in the root directory")
}

/// Corrupt FAT bases and broken partition tables: each is refused with a
/// message saying what is wrong, within seconds and a bounded memory, and
/// leaves nothing behind. fsck.vfat agrees each FAT case is corrupt, so the
/// corruption is real and not an artefact of haseed's reading.
#[test]
fn corrupt_fat_bases_are_refused_in_bounded_time_and_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let good = base(tmp.path(), "raspios-trixie", "");
    let bytes = std::fs::read(&good).unwrap();
    let (bps, _, _, cluster) = fat32_geometry(&bytes);
    assert_eq!((bps, cluster), (512, 512), "make-base.sh's layout");
    let cmdline = clusters_of(&good, "cmdline.txt");
    let config = clusters_of(&good, "config.txt");
    assert_eq!((cmdline.len(), config.len()), (1, 1));
    let (c, k) = (cmdline[0], config[0]);
    let cmdline_entry = dir_entry(&bytes, b"CMDLINE TXT");

    // (name, image, what the error says, whether fsck.vfat must object)
    let mut cases: Vec<(&str, Vec<u8>, &str, bool)> = Vec::new();
    let mut poke =
        |name: &'static str, want: &'static str, fsck: bool, f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes.clone();
            f(&mut b);
            cases.push((name, b, want, fsck));
        };
    // The FAT32 root directory starts at cluster 2; make it its own successor.
    poke(
        "root-loop",
        "the cluster chain of the root directory loops: cluster 2",
        true,
        &|b| set_fat32(b, 2, 2),
    );
    poke(
        "file-loop",
        "the cluster chain of cmdline.txt loops",
        true,
        &|b| set_fat32(b, c, c),
    );
    // 4 GiB claimed over a chain that loops: refused before anything is read.
    poke(
        "4gib-loop",
        "the cluster chain of cmdline.txt loops",
        true,
        &|b| {
            set_fat32(b, c, c);
            b[cmdline_entry + 28..cmdline_entry + 32].copy_from_slice(&u32::MAX.to_le_bytes());
        },
    );
    poke(
        "out-of-range",
        "points at cluster 268435440 after cluster",
        true,
        &|b| set_fat32(b, c, 0x0FFF_FFF0),
    );
    poke("cross-link", "cross-linked with", true, &|b| {
        set_fat32(b, k, c)
    });
    poke("free-in-chain", "runs into the free cluster", true, &|b| {
        set_fat32(b, c, 0)
    });
    // A size the chain does not hold (one cluster for 4 GiB).
    poke(
        "size-mismatch",
        "cmdline.txt claims 4294967295 bytes but its cluster chain holds 1 clusters",
        true,
        &|b| b[cmdline_entry + 28..cmdline_entry + 32].copy_from_slice(&u32::MAX.to_le_bytes()),
    );
    poke("bad-cluster-size", "3 sectors per cluster", true, &|b| {
        b[BOOT_OFFSET as usize + 0x0D] = 3
    });
    poke(
        "fat-past-partition",
        "but the partition holds only",
        false,
        &|b| {
            let at = BOOT_OFFSET as usize + 0x20;
            b[at..at + 4].copy_from_slice(&(1u32 << 20).to_le_bytes());
        },
    );
    // The MBR: partition 2 moved into partition 1, then onto sector 0.
    let entry2 = 446 + 16;
    poke(
        "overlap",
        "partitions 1 (sectors 8192..139264) and 2 (sectors 10000..",
        false,
        &|b| b[entry2 + 8..entry2 + 12].copy_from_slice(&10000u32.to_le_bytes()),
    );
    poke(
        "over-mbr",
        "partition 2 starts at sector 0, over the MBR",
        false,
        &|b| b[entry2 + 8..entry2 + 12].copy_from_slice(&0u32.to_le_bytes()),
    );

    // A real, clean cmdline.txt that is too large to read whole.
    let big = tmp.path().join("big.img");
    std::fs::copy(&good, &big).unwrap();
    let text = tmp.path().join("cmdline.txt");
    std::fs::write(&text, "quiet ".repeat(12 << 10)).unwrap();
    sh(Command::new("mcopy")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{BOOT_OFFSET}", big.display()))
        .arg(&text)
        .arg("::cmdline.txt"));
    sh(Command::new("fsck.vfat")
        .arg("-n")
        .arg(boot_partition(&big, tmp.path())));
    cases.push((
        "big-cmdline",
        std::fs::read(&big).unwrap(),
        "cmdline.txt is 73728 bytes, more than haseed reads (65536 bytes)",
        false,
    ));

    for (name, data, want, fsck) in cases {
        let input = tmp.path().join("in").join(format!("{name}.img"));
        std::fs::create_dir_all(input.parent().unwrap()).unwrap();
        std::fs::write(&input, &data).unwrap();
        if fsck {
            let o = Command::new("fsck.vfat")
                .arg("-n")
                .arg(boot_partition(&input, tmp.path()))
                .output()
                .expect("fsck.vfat runs");
            assert!(
                !o.status.success(),
                "{name}: fsck.vfat -n finds nothing wrong: {}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
        let out = tmp.path().join("out").join(name);
        std::fs::create_dir_all(&out).unwrap();
        let (code, err, took, rss_kib) = image_bounded(
            &[
                "--node",
                "lb1",
                "--base",
                s(&input),
                "-o",
                s(&out.join("lb1.img")),
                s(&site),
            ],
            Duration::from_secs(60),
        );
        assert_eq!(code, Some(1), "{name}: {err}");
        assert!(err.contains(want), "{name}: want {want:?} in {err}");
        if !name.starts_with("over") {
            assert!(
                err.contains("partition 1") && err.contains("use an unmodified base image"),
                "{name}: {err}"
            );
        }
        assert!(!err.contains("panicked"), "{name}: {err}");
        // The good base takes about as long and as much; a loop would not end,
        // a 4 GiB read would take 4 GiB.
        assert!(took < Duration::from_secs(30), "{name}: took {took:?}");
        assert!(
            rss_kib > 0 && rss_kib < 256 << 10,
            "{name}: {rss_kib} KiB resident"
        );
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "{name}: left a file"
        );
        eprintln!("{name}: refused in {took:?}, {rss_kib} KiB peak");
    }
}

/// `-o` naming the base itself, by any path, is refused and the base is
/// untouched.
#[test]
fn output_that_is_the_base_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let dir = tmp.path().join("bases");
    std::fs::create_dir(&dir).unwrap();
    let base = base(&dir, "raspios-trixie", "");
    let before = std::fs::read(&base).unwrap();
    let link = tmp.path().join("link.img");
    std::os::unix::fs::symlink(&base, &link).unwrap();
    let hard = tmp.path().join("hard.img");
    std::fs::hard_link(&base, &hard).unwrap();
    let spelled = dir
        .join("..")
        .join("bases")
        .join(".")
        .join("raspios-trixie.img");
    for out in [base.clone(), link, hard, spelled] {
        let o = image(&[
            "--node",
            "lb1",
            "--base",
            s(&base),
            "-o",
            s(&out),
            s(&site),
            "-q",
        ]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}: {}",
            out.display(),
            stderr(&o)
        );
        let err = stderr(&o);
        assert!(
            err.contains("is the base image") && err.contains("would replace the base"),
            "{}: {err}",
            out.display()
        );
    }
    // The base given through the symlink, the output its real path.
    let o = image(&[
        "--node",
        "lb1",
        "--base",
        s(&tmp.path().join("link.img")),
        "-o",
        s(&base),
        s(&site),
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(std::fs::read(&base).unwrap() == before, "the base changed");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["raspios-trixie.img"], "a temporary file was left");
}

/// A 2 GiB trixie base that is mostly data, not holes: copying it takes
/// seconds.
fn big_base(dir: &Path) -> PathBuf {
    use std::io::Write;
    let base = base(dir, "raspios-trixie", "");
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&base)
        .unwrap();
    let mut w = std::io::BufWriter::new(f);
    let block: Vec<u8> = (0..(16 << 20)).map(|i| (i % 251) as u8 | 1).collect();
    for _ in 0..120 {
        w.write_all(&block).unwrap();
    }
    w.flush().unwrap();
    base
}

/// SIGINT while `flash` writes the card: it stops, says the card does not
/// boot (its first MiB, written last, is not there), exits 130 and removes
/// its scratch image.
#[test]
fn a_signal_while_flashing_stops_with_an_unbootable_card_and_no_scratch() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let base = big_base(tmp.path());
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let card = tmp.path().join("card.bin");
    std::fs::write(&card, b"").unwrap();
    let child = common::haseed()
        .args(["flash", s(&site), "--node", "lb1", "--base", s(&base)])
        .args(["--tmp-dir", s(&scratch), "--force", "-q", s(&card)])
        .stderr(Stdio::piped())
        .spawn()
        .expect("haseed runs");
    // The card file is sized first, then filled: wait for 64 MiB of data.
    let start = Instant::now();
    while std::fs::metadata(&card).unwrap().blocks() * 512 < 64 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "flash never started writing"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("partly written") && err.contains("does not boot") && err.contains("SIGINT"),
        "{err}"
    );
    let mut head = [0u8; 512];
    std::os::unix::fs::FileExt::read_exact_at(&std::fs::File::open(&card).unwrap(), &mut head, 0)
        .unwrap();
    assert_ne!(head[510..], [0x55, 0xAA], "the card has a partition table");
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "scratch left: {left:?}");
}

/// SIGINT and SIGTERM while the images are being written: the run stops,
/// every temporary output is removed, the exit status is 128 + the signal.
#[test]
fn a_signal_while_writing_leaves_no_partial_image() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let base = big_base(tmp.path());
    for (sig, code, args) in [
        (libc::SIGINT, 130, vec!["--node", "lb1"]),
        (libc::SIGTERM, 143, vec!["--all"]),
    ] {
        let out = tmp.path().join(format!("out-{sig}"));
        std::fs::create_dir(&out).unwrap();
        let dest = if args[0] == "--all" {
            out.clone()
        } else {
            out.join("lb1.img")
        };
        let child = common::haseed()
            .arg("image")
            .args(&args)
            .args(["--base", s(&base), "-o", s(&dest), s(&site), "-q"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("haseed runs");
        // Wait until a temporary output holds data, then signal.
        let start = Instant::now();
        loop {
            let writing = std::fs::read_dir(&out).unwrap().any(|e| {
                let e = e.unwrap();
                e.file_name().to_string_lossy().ends_with(".part")
                    && e.metadata().unwrap().len() > (64 << 20)
            });
            if writing {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "haseed never started writing"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        let signalled = Instant::now();
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{err}");
        assert!(
            err.contains("interrupted by SIG")
                && err.contains("every temporary output was removed"),
            "{err}"
        );
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "took {:?} to stop",
            signalled.elapsed()
        );
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// SIGHUP (a closed terminal) stops a run like SIGINT does, unless the
/// parent ignored it (`nohup`): then the run goes on to the end.
#[test]
fn sighup_stops_a_run_unless_nohup_ignored_it() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    // A base of about 2 GiB: the run is still writing when the signal comes,
    // however fast the machine (a 128 MiB base finished in under 400 ms with
    // a warm plugin cache: exit 0 instead of 129).
    let base = big_base(tmp.path());
    for ignored in [false, true] {
        let out = tmp.path().join(format!("out-{ignored}"));
        std::fs::create_dir(&out).unwrap();
        let mut cmd = common::haseed();
        cmd.args(["image", "--node", "lb1", "--base", s(&base), "-o"])
            .arg(out.join("lb1.img"))
            .args([s(&site), "-q"])
            .stderr(Stdio::piped());
        if ignored {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::signal(libc::SIGHUP, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("haseed runs");
        // Once a temporary output holds data, the run is in its long part.
        let start = Instant::now();
        while !std::fs::read_dir(&out).unwrap().any(|e| {
            let e = e.unwrap();
            e.file_name().to_string_lossy().ends_with(".part")
                && e.metadata().unwrap().len() > (64 << 20)
        }) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "haseed never started writing"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) };
        let o = child.wait_with_output().unwrap();
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        if ignored {
            assert!(o.status.success(), "{}", stderr(&o));
            let mut left = left;
            left.sort();
            assert_eq!(left, ["lb1.img", "lb1.img.bmap"]);
        } else {
            assert_eq!(o.status.code(), Some(129), "{}", stderr(&o));
            assert!(
                stderr(&o).contains("interrupted by SIGHUP"),
                "{}",
                stderr(&o)
            );
            assert!(left.is_empty(), "left behind: {left:?}");
        }
    }
}

/// Output mistakes are refused before the long work, in the user's words,
/// and a failure leaves no directory it created (issue 21 item 8).
#[test]
fn output_mistakes_are_refused_early_and_leave_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let t = tmp.path();

    // seed -o an existing directory: said once, before any work.
    std::fs::create_dir(t.join("d")).unwrap();
    let o = run(&[
        "-q",
        "seed",
        s(&site),
        "--node",
        "lb1",
        "-o",
        s(&t.join("d")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("is a directory; give the seed disk's file name"),
        "{err}"
    );
    assert_eq!(err.matches("directory").count(), 1, "{err}");
    assert_eq!(std::fs::read_dir(t.join("d")).unwrap().count(), 0);

    // Two nodes into what names one image file: no directory two.img.
    let two = t.join("two.img");
    let base = base(t, "raspios-trixie", "");
    let o = image(&[
        "--node",
        "lb1",
        "--node",
        "lb2",
        "--base",
        s(&base),
        "-o",
        s(&two),
        s(&site),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("names an image file, but the images of lb1, lb2 go into a directory"),
        "{err}"
    );
    assert!(!two.exists());

    // An unknown --platform: clap names the choices.
    let o = image(&[
        "--all",
        "--platform",
        "raspbian",
        "--base",
        s(&base),
        "-o",
        s(&t.join("out/")),
        s(&site),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("[possible values: raspios, raspios-legacy, ubuntu-raspi]"),
        "{err}"
    );

    // A base that is no image: the directories made for the outputs go too.
    let junk = t.join("junk.img");
    std::fs::write(&junk, b"not a disk image").unwrap();
    let o = image(&[
        "--all",
        "--base",
        s(&junk),
        "-o",
        s(&t.join("new/a/b/")),
        s(&site),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!t.join("new").exists(), "left {:?}", t.join("new"));

    // flash --help shows its default once.
    let o = run(&["flash", "--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert_eq!(help.matches("[default: /var/tmp]").count(), 1, "{help}");
}

/// On a terminal the progress line shows bytes and rate until the total is
/// known, then the bar: its first frame is never "0 B/0 B" (issue 21 item
/// 8). util-linux's `script` gives haseed a pseudo-terminal.
#[test]
fn the_progress_bar_never_shows_zero_of_zero() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let base = base(tmp.path(), "raspios-trixie", "gz");
    let out = tmp.path().join("o/lb1.img");
    let cmd = format!(
        "HASEED_CACHE_DIR='{}' '{}' image '{}' --node lb1 --base '{}' -o '{}'",
        common::cache_dir().display(),
        env!("CARGO_BIN_EXE_haseed"),
        site.display(),
        base.display(),
        out.display()
    );
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    let tty = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{tty}");
    assert!(tty.contains("decompress"), "no progress drawn: {tty}");
    assert!(!tty.contains("0 B/0 B"), "{tty}");
    assert!(out.exists());
}

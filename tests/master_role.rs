//! End-to-end: the default policy makes `master` nodes ready for kubeadm
//! (swap off, overlay + br_netfilter, forwarding and bridge sysctls,
//! containerd with the systemd cgroup driver, the pkgs.k8s.io repository with
//! kubeadm/kubelet/kubectl, a kubeadm configuration naming the VIP), and load
//! balancers get none of it.

mod common;

use common::*;
use std::path::Path;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn masters_are_ready_for_kubeadm_and_lbs_are_not() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let site = example("pi-k8s");
    let o = build(&site, &out);
    assert!(o.status.success(), "build failed: {}", stderr(&o));

    let master = out.join("master1");
    let kubeadm = read(&master.join("files/etc/kubeadm/haseed-kubeadm.yaml"));
    for line in [
        "apiVersion: kubeadm.k8s.io/v1beta4",
        "kind: ClusterConfiguration",
        "controlPlaneEndpoint: \"192.168.3.240:9000\"",
        "apiServer:\n  certSANs:\n    - \"192.168.3.240\"\n    - \"192.168.3.251\"\n    - \"master1\"\n",
    ] {
        assert!(
            kubeadm.contains(line),
            "kubeadm config lacks {line:?}:\n{kubeadm}"
        );
    }
    assert_eq!(
        read(&master.join("files/etc/modules-load.d/k8s.conf")),
        "overlay\nbr_netfilter\n"
    );
    let bridge = read(&master.join("files/etc/sysctl.d/91-haseed-k8s.conf"));
    for line in [
        "net.bridge.bridge-nf-call-iptables = 1\n",
        "net.bridge.bridge-nf-call-ip6tables = 1\n",
    ] {
        assert!(
            bridge.contains(line),
            "bridge sysctls lack {line:?}:\n{bridge}"
        );
    }
    let sysctl = read(&master.join("files/etc/sysctl.d/90-haseed.conf"));
    assert!(
        sysctl.contains("net.ipv4.ip_forward = 1\n"),
        "sysctl drop-in lacks ip_forward:\n{sysctl}"
    );
    // Plan sysctls are applied with `sysctl -w` at first boot, before
    // br_netfilter exists: the bridge keys must not be among them.
    assert!(!sysctl.contains("net.bridge."), "{sysctl}");
    let unit = read(&master.join("files/etc/systemd/system/haseed-swapoff.service"));
    for line in [
        "Type=oneshot\n",
        "ExecStart=/sbin/swapoff -a\n",
        "WantedBy=multi-user.target\n",
    ] {
        assert!(unit.contains(line), "swapoff unit lacks {line:?}:\n{unit}");
    }

    let user_data = read(&master.join("user-data"));
    for needle in [
        "packages: [\"containerd\",\"curl\",\"gpg\",\"ca-certificates\"]",
        "path: \"/etc/haseed/kubernetes-apt.env\"",
        "[\"systemctl\",\"restart\",\"haseed-kubernetes-apt.service\"]",
        "[\"systemctl\",\"--no-reload\",\"enable\",\"containerd\"]",
        "[\"systemctl\",\"--no-reload\",\"enable\",\"haseed-swapoff.service\"]",
        "[\"sysctl\",\"-w\",\"net.ipv4.ip_forward=1\"]",
        "path: \"/etc/kubeadm/haseed-kubeadm.yaml\"",
        "permissions: \"0600\"",
        "path: \"/etc/modules-load.d/k8s.conf\"",
        "path: \"/etc/containerd/config.toml\"",
    ] {
        assert!(
            user_data.contains(needle),
            "master1 user-data lacks {needle:?}:\n{user_data}"
        );
    }

    let lb = out.join("lb1");
    for file in [
        "files/etc/kubeadm/haseed-kubeadm.yaml",
        "files/etc/modules-load.d/k8s.conf",
        "files/etc/sysctl.d/91-haseed-k8s.conf",
        "files/etc/systemd/system/haseed-swapoff.service",
        "files/etc/containerd/config.toml",
    ] {
        assert!(!lb.join(file).exists(), "lb1 has {file}");
    }
    let lb_data = read(&lb.join("user-data"));
    for needle in [
        "containerd",
        "kubeadm",
        "modules-load.d",
        "swapoff",
        "ip_forward",
        "bridge-nf-call",
        "pkgs.k8s.io",
        "kubelet",
    ] {
        assert!(
            !lb_data.contains(needle),
            "lb1 user-data mentions {needle:?}:\n{lb_data}"
        );
    }
}

#[test]
fn masters_without_a_fronting_service_get_a_warning() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The example site without its service: nothing fronts the masters.
    let text = std::fs::read_to_string(example("pi-k8s")).expect("example site");
    let (head, rest) = text.split_once("[[service]]").expect("a service");
    let (_, tail) = rest.split_once("[[node]]").expect("nodes after it");
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, format!("{head}[[node]]{tail}")).expect("write site");
    let out = tmp.path().join("out");
    let o = build(&site, &out);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        all.contains("no service fronts the masters: kubeadm gets no controlPlaneEndpoint"),
        "no warning in the build output:\n{all}"
    );
    let kubeadm = read(&out.join("master2/files/etc/kubeadm/haseed-kubeadm.yaml"));
    assert!(!kubeadm.contains("controlPlaneEndpoint"), "{kubeadm}");
    assert!(
        kubeadm.contains("  certSANs:\n    - \"192.168.3.252\"\n    - \"master2\"\n"),
        "{kubeadm}"
    );
}

/// Workers get the node preparation (swap off, modules, sysctls, containerd,
/// the Pi cgroup words) but no kubeadm control-plane configuration.
#[test]
fn workers_are_prepared_without_a_control_plane_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut text = std::fs::read_to_string(example("pi-k8s")).expect("example");
    text.push_str(
        "\n[[node]]\nname = \"worker1\"\nroles = [\"worker\"]\naddress = \"192.168.3.11\"\n",
    );
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, text).expect("write");
    let out = tmp.path().join("out");
    let o = build(&site, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let worker = out.join("worker1");
    assert_eq!(
        read(&worker.join("files/etc/modules-load.d/k8s.conf")),
        "overlay\nbr_netfilter\n"
    );
    assert!(worker
        .join("files/etc/systemd/system/haseed-swapoff.service")
        .exists());
    let user_data = read(&worker.join("user-data"));
    // Workers join with kubeadm too: the repository and its packages.
    for needle in [
        "containerd",
        "K8S_REPO=https://pkgs.k8s.io/core:/stable:/v1.37/deb/\\n",
        "K8S_PACKAGES=kubelet kubeadm kubectl\\n",
        "[\"systemctl\",\"restart\",\"haseed-kubernetes-apt.service\"]",
    ] {
        assert!(user_data.contains(needle), "worker1 lacks {needle:?}");
    }
    assert!(read(&worker.join("files/etc/containerd/config.toml")).contains("SystemdCgroup = true"));
    assert!(
        !worker.join("files/etc/kubeadm").exists(),
        "a worker got a control-plane config"
    );

    let o = run(&["plan", site.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let worker = doc["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == "worker1")
        .expect("worker1");
    assert_eq!(
        worker["plan"]["kernel_cmdline"],
        serde_json::json!(["cgroup_enable=memory", "cgroup_memory=1"])
    );
}

/// A throwaway GnuPG home for making test keys (never the user's).
struct Keys {
    home: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        let home = tempfile::tempdir().expect("tempdir");
        Keys { home }
    }

    fn gpg(&self, args: &[&str]) -> std::process::Output {
        let o = std::process::Command::new("gpg")
            .arg("--batch")
            .arg("--homedir")
            .arg(self.home.path())
            .args(args)
            .output()
            .expect("gpg runs (Debian package gpg, .ci/install-deps)");
        assert!(o.status.success(), "gpg {args:?}: {}", stderr(&o));
        o
    }

    /// A new ed25519 key for `uid`; `faked` generates it at that past time
    /// with `expire` (e.g. "1d": long expired). Returns (fingerprint, armor).
    fn make(&self, uid: &str, expire: &str, faked: Option<&str>) -> (String, String) {
        let mut args = vec!["--passphrase", ""];
        if let Some(time) = faked {
            args.extend(["--faked-system-time", time]);
        }
        args.extend(["--quick-gen-key", uid, "ed25519", "sign", expire]);
        self.gpg(&args);
        let listing = stdout(&self.gpg(&["--with-colons", "--list-keys", uid]));
        let fpr = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:::::::::"))
            .and_then(|rest| rest.split(':').next())
            .expect("a fingerprint")
            .to_string();
        let armor = stdout(&self.gpg(&["--armor", "--export", &fpr]));
        assert!(
            armor.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
            "{armor}"
        );
        (fpr, armor)
    }
}

/// The primary key fingerprints in a key file (armored or binary).
fn fingerprints(file: &Path) -> Vec<String> {
    let home = tempfile::tempdir().expect("tempdir");
    let o = std::process::Command::new("gpg")
        .arg("--batch")
        .arg("--homedir")
        .arg(home.path())
        .args(["--show-keys", "--with-colons"])
        .arg(file)
        .output()
        .expect("gpg runs");
    assert!(o.status.success(), "{}: {}", file.display(), stderr(&o));
    let text = stdout(&o);
    let mut primary = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        match fields[0] {
            "pub" => primary = true,
            "fpr" if primary => {
                out.push(fields[9].to_string());
                primary = false;
            }
            "sub" => primary = false,
            _ => {}
        }
    }
    out
}

/// A loopback HTTP server answering GET /NAME with `files[NAME]`, 404
/// otherwise. The thread lives as long as the test process.
fn serve(files: Vec<(&'static str, String)>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // Drain the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let body = files
                .iter()
                .find(|(name, _)| path.strip_prefix('/') == Some(*name))
                .map(|(_, body)| body.as_str());
            let reply = match body {
                Some(body) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string(),
            };
            let _ = (&stream).write_all(reply.as_bytes());
        }
    });
    format!("http://{addr}")
}

/// Runs the generated script's key step with these settings.
fn key_step(
    script: &Path,
    url: &str,
    pin: &str,
    fallback: &Path,
    keyring: &Path,
) -> std::process::Output {
    std::process::Command::new("sh")
        .arg(script)
        .arg("key")
        .env("K8S_KEY_URL", url)
        .env("K8S_KEY_FINGERPRINT", pin)
        .env("K8S_FALLBACK_KEY", fallback)
        .env("K8S_KEYRING", keyring)
        .output()
        .expect("sh runs")
}

/// The fetch-and-verify step a Kubernetes node runs at boot: it installs a
/// served key only when the file is exactly one primary key with the pinned
/// fingerprint and not expired; otherwise it keeps a valid installed key or
/// the embedded copy, and fails naming why when neither is valid.
#[test]
fn the_node_accepts_only_the_pinned_unexpired_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let o = build(&example("pi-k8s"), &out);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let files = out.join("master1/files");
    let script = files.join("usr/local/sbin/haseed-kubernetes-apt");
    let o = std::process::Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(&script)
        .output()
        .expect("shellcheck runs");
    assert!(o.status.success(), "shellcheck: {}", stdout(&o));

    // The embedded copy is the pinned key.
    let env = read(&files.join("etc/haseed/kubernetes-apt.env"));
    assert!(
        env.contains("K8S_KEY_FINGERPRINT=DE15B14486CD377B9E876E1A234654DA9A296436\n"),
        "{env}"
    );
    assert_eq!(
        fingerprints(&files.join("usr/local/lib/haseed/pkgs-k8s-io.asc")),
        ["DE15B14486CD377B9E876E1A234654DA9A296436"]
    );

    let keys = Keys::new();
    let (right, right_armor) = keys.make("right <right@example.invalid>", "never", None);
    let (_, wrong_armor) = keys.make("wrong <wrong@example.invalid>", "never", None);
    let (old, old_armor) = keys.make("old <old@example.invalid>", "1d", Some("20200101T000000"));
    let url = serve(vec![
        ("right.asc", right_armor.clone()),
        ("wrong.asc", wrong_armor.clone()),
        ("both.asc", format!("{right_armor}{wrong_armor}")),
        ("old.asc", old_armor),
        ("junk.asc", "<html>not a key</html>\n".into()),
    ]);
    let dir = tmp.path();
    let right_file = dir.join("right.asc");
    let wrong_file = dir.join("wrong.asc");
    std::fs::write(&right_file, &right_armor).expect("write");
    std::fs::write(&wrong_file, &wrong_armor).expect("write");
    let none = dir.join("no-such-file.asc");

    // Refused: another key, the pinned key with an extra one, an expired key,
    // not a key. Nothing is installed.
    for (case, path, pin, says) in [
        ("wrong key", "wrong.asc", right.as_str(), "not the pinned"),
        (
            "extra key",
            "both.asc",
            right.as_str(),
            "holds 2 primary keys",
        ),
        ("expired key", "old.asc", old.as_str(), "expired"),
        (
            "not a key",
            "junk.asc",
            right.as_str(),
            "not an OpenPGP public key",
        ),
    ] {
        let keyring = dir.join(format!("{}.gpg", case.replace(' ', "-")));
        let o = key_step(&script, &format!("{url}/{path}"), pin, &none, &keyring);
        let err = stderr(&o);
        assert!(!o.status.success(), "{case}: accepted:\n{err}");
        assert!(
            err.contains("REJECTED") && err.contains(says),
            "{case}:\n{err}"
        );
        assert!(err.contains("no valid signing key"), "{case}:\n{err}");
        assert!(!keyring.exists(), "{case}: a keyring was written");
    }

    // Accepted: the pinned key, written alone as the keyring.
    let keyring = dir.join("kubernetes-apt-keyring.gpg");
    let o = key_step(
        &script,
        &format!("{url}/right.asc"),
        &right,
        &none,
        &keyring,
    );
    assert!(o.status.success(), "right key refused:\n{}", stderr(&o));
    assert_eq!(fingerprints(&keyring), vec![right.clone()]);
    let installed = std::fs::read(&keyring).expect("keyring");

    // A later run whose fetch is refused keeps the valid installed key.
    let o = key_step(
        &script,
        &format!("{url}/wrong.asc"),
        &right,
        &none,
        &keyring,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("keeping the installed key"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&keyring).expect("keyring"), installed);

    // Fetch fails (404): the embedded copy is used when it is the pinned key,
    // refused when it is not.
    let fresh = dir.join("fresh.gpg");
    let o = key_step(
        &script,
        &format!("{url}/missing"),
        &right,
        &right_file,
        &fresh,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("installed the embedded copy"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fingerprints(&fresh), vec![right.clone()]);
    let other = dir.join("other.gpg");
    let o = key_step(
        &script,
        &format!("{url}/missing"),
        &right,
        &wrong_file,
        &other,
    );
    assert!(!o.status.success(), "a wrong embedded copy was accepted");
    assert!(
        stderr(&o).contains("embedded copy: holds key"),
        "{}",
        stderr(&o)
    );
    assert!(!other.exists());
}

/// `haseed build` warns, with the node, the site and the date, about a
/// pinned key expiring within 60 days and a minor past its end of life; the
/// date is injected with `--today`.
#[test]
fn build_warns_about_end_of_life_and_expiring_keys_at_the_given_date() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = example("pi-k8s");
    let build_on = |site: &Path, today: &str| {
        let out = tmp.path().join(format!("out-{today}"));
        let _ = std::fs::remove_dir_all(&out);
        let o = run(&[
            "--today",
            today,
            "build",
            site.to_str().expect("utf-8"),
            "-o",
            out.to_str().expect("utf-8"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let key = "the pinned pkgs.k8s.io signing key DE15B14486CD377B9E876E1A234654DA9A296436";
    let err = build_on(&site, "2026-12-06");
    assert!(
        err.contains(&format!(
            "warning: site pi-k8s, nodes master1, master2, master3: {key}"
        )) && err.contains("expires on 2026-12-29, 23 days after the build date 2026-12-06"),
        "{err}"
    );
    assert!(
        !err.contains("end of life"),
        "the default minor is supported: {err}"
    );
    let err = build_on(&site, "2026-10-01");
    assert!(!err.contains(key), "89 days before expiry: {err}");

    let old = tmp.path().join("old.toml");
    let text = std::fs::read_to_string(&site).expect("example");
    std::fs::write(
        &old,
        format!("{text}\n[default_policy]\nkubernetes_version = \"1.31\"\n"),
    )
    .expect("write");
    let err = build_on(&old, "2026-10-01");
    assert!(
        err.contains("warning: site pi-k8s, nodes master1, master2, master3: Kubernetes 1.31 reached its upstream end of life on 2025-10-28 (build date 2026-10-01)"),
        "{err}"
    );
    // v1beta4 is not known before kubeadm 1.31.
    std::fs::write(
        &old,
        format!("{text}\n[default_policy]\nkubernetes_version = \"1.30\"\n"),
    )
    .expect("write");
    let _ = build_on(&old, "2026-10-01");
    let kubeadm = read(
        &tmp.path()
            .join("out-2026-10-01/master1/files/etc/kubeadm/haseed-kubeadm.yaml"),
    );
    assert!(
        kubeadm.contains("apiVersion: kubeadm.k8s.io/v1beta3\n"),
        "{kubeadm}"
    );

    let o = run(&[
        "--today",
        "2026-02-30",
        "plan",
        site.to_str().expect("utf-8"),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not a date YYYY-MM-DD"),
        "{}",
        stderr(&o)
    );
}

/// The default minor is the newest one in the host's end-of-life table, and
/// that one is supported (its end of life is after the table was read).
#[test]
fn the_default_minor_is_the_newest_known() {
    let (newest, eol) = haseed::kubernetes::MINORS.last().expect("a table");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let o = build(&example("pi-k8s"), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let env = read(&out.join("master1/files/etc/haseed/kubernetes-apt.env"));
    assert!(env.contains(&format!("K8S_MINOR=1.{newest}\n")), "{env}");
    let read_on = haseed::kubernetes::Day::parse("2026-12-06").expect("date");
    assert!(haseed::kubernetes::Day::parse(eol).expect("date") > read_on);
}

/// The kubeadm configuration against the upstream types (no kubeadm binary
/// here): every key is a JSON field of `ClusterConfiguration` (with
/// `TypeMeta`'s `apiVersion`/`kind`) or of `APIServer`, as declared in
/// kubernetes/kubernetes `cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go` at
/// 13299357 (v1beta3 has the same names for the fields written here);
/// `certSANs` is a list of strings and `controlPlaneEndpoint` a string.
#[test]
fn the_kubeadm_config_has_only_fields_of_the_upstream_types() {
    const CLUSTER: &[&str] = &[
        "apiVersion",
        "kind",
        "etcd",
        "networking",
        "kubernetesVersion",
        "controlPlaneEndpoint",
        "apiServer",
        "controllerManager",
        "scheduler",
        "dns",
        "proxy",
        "certificatesDir",
        "imageRepository",
        "featureGates",
        "clusterName",
        "encryptionAlgorithm",
        "certificateValidityPeriod",
        "caCertificateValidityPeriod",
    ];
    const API_SERVER: &[&str] = &["extraArgs", "extraVolumes", "extraEnvs", "certSANs"];

    /// Every problem with `text`, empty when it fits the types.
    fn problems(text: &str) -> Vec<String> {
        let mut bad = Vec::new();
        let mut section = "";
        let mut list = "";
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let indent = line.len() - line.trim_start().len();
            let body = line.trim_start();
            if let Some(item) = body.strip_prefix("- ") {
                if list != "certSANs" || serde_json::from_str::<String>(item).is_err() {
                    bad.push(format!("list item {item:?} under {list:?}"));
                }
                continue;
            }
            let Some((key, value)) = body.split_once(':') else {
                bad.push(format!("not a key: {line:?}"));
                continue;
            };
            let value = value.trim();
            match indent {
                0 => {
                    section = if value.is_empty() { key } else { "" };
                    if !CLUSTER.contains(&key) {
                        bad.push(format!("{key} is not a ClusterConfiguration field"));
                    }
                    if key == "controlPlaneEndpoint"
                        && serde_json::from_str::<String>(value).is_err()
                    {
                        bad.push(format!("controlPlaneEndpoint {value:?} is not a string"));
                    }
                }
                2 if section == "apiServer" => {
                    list = if value.is_empty() { key } else { "" };
                    if !API_SERVER.contains(&key) {
                        bad.push(format!("apiServer.{key} is not an APIServer field"));
                    }
                }
                _ => bad.push(format!("unexpected nesting: {line:?}")),
            }
        }
        bad
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let o = build(&example("pi-k8s"), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    for master in ["master1", "master2", "master3"] {
        let text = read(&out.join(format!("{master}/files/etc/kubeadm/haseed-kubeadm.yaml")));
        assert!(text.contains("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"));
        assert_eq!(problems(&text), Vec::<String>::new(), "{master}:\n{text}");
    }
    // The checker itself refuses what kubeadm would: a v1beta3-style map of
    // extraArgs is nesting this config never writes, a misspelt field, a SAN
    // that is not a string.
    for (bad, says) in [
        (
            "apiServer:\n  extraArgs:\n    audit-log-maxage: \"30\"\n",
            "unexpected nesting",
        ),
        (
            "controlPlaneEndPoint: \"10.0.0.1:6443\"\n",
            "not a ClusterConfiguration field",
        ),
        (
            "apiServer:\n  certSANS:\n    - \"a\"\n",
            "not an APIServer field",
        ),
        ("apiServer:\n  certSANs:\n    - [1]\n", "list item"),
    ] {
        let found = problems(bad);
        assert!(found.iter().any(|p| p.contains(says)), "{bad:?}: {found:?}");
    }
}

/// The whole unit run with apt replaced by stubs that log their arguments:
/// the key is checked before the repository is enabled (the list names the
/// checked keyring), the missing packages are installed, then all three are
/// held (`apt-mark hold`, as the kubeadm install guide does). With the
/// repository configured elsewhere (`K8S_REPO` empty) nothing is fetched and
/// the packages are still held.
#[test]
fn the_unit_enables_the_repository_after_the_key_and_holds_the_packages() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let o = build(&example("pi-k8s"), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = out.join("master1/files/usr/local/sbin/haseed-kubernetes-apt");

    let dir = tmp.path();
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let log = dir.join("apt.log");
    for (name, body) in [
        // Nothing installed yet; each call logged.
        ("dpkg-query", "exit 1"),
        ("apt-get", "exit 0"),
        ("apt-mark", "exit 0"),
    ] {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >>'{}'\n{body}\n",
                log.display()
            ),
        )
        .expect("stub");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let keys = Keys::new();
    let (pin, armor) = keys.make("repo <repo@example.invalid>", "never", None);
    let url = serve(vec![("deb/Release.key", armor)]);
    let keyring = dir.join("keyrings/kubernetes-apt-keyring.gpg");
    let list = dir.join("kubernetes.list");
    let run_unit = |repo: &str| {
        std::process::Command::new("sh")
            .arg(&script)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("K8S_KEY_URL", format!("{url}/deb/Release.key"))
            .env("K8S_KEY_FINGERPRINT", &pin)
            .env("K8S_FALLBACK_KEY", dir.join("none.asc"))
            .env("K8S_KEYRING", &keyring)
            .env("K8S_REPO", repo)
            .env("K8S_LIST", &list)
            .env("K8S_PACKAGES", "kubelet kubeadm kubectl")
            .output()
            .expect("sh runs")
    };

    let o = run_unit(&format!("{url}/deb/"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fingerprints(&keyring), vec![pin.clone()]);
    assert_eq!(
        read(&list),
        format!("deb [signed-by={}] {url}/deb/ /\n", keyring.display())
    );
    let calls = read(&log);
    let apt: Vec<&str> = calls.lines().filter(|l| l.starts_with("apt-")).collect();
    assert_eq!(
        apt,
        [
            "apt-get -o DPkg::Lock::Timeout=600 update",
            "apt-get -o DPkg::Lock::Timeout=600 install -y kubelet kubeadm kubectl",
            "apt-mark hold kubelet kubeadm kubectl",
        ],
        "{calls}"
    );

    // Repository configured elsewhere (an earlier plugin's mirror).
    std::fs::remove_file(&log).expect("rm");
    std::fs::remove_file(&list).expect("rm");
    std::fs::remove_file(&keyring).expect("rm");
    let o = run_unit("");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!keyring.exists() && !list.exists());
    assert!(read(&log).ends_with("apt-mark hold kubelet kubeadm kubectl\n"));
}

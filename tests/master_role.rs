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
        "apiVersion: kubeadm.k8s.io/v1beta3",
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
        "packages: [\"containerd\",\"kubelet\",\"kubeadm\",\"kubectl\"]",
        "deb [signed-by=$KEY_FILE] https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /",
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
        "https://pkgs.k8s.io/core:/stable:/v1.31/deb/",
        "\"kubelet\",\"kubeadm\",\"kubectl\"",
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

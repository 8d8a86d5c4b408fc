//! Where a Kubernetes node (master or worker) gets kubelet, kubeadm and
//! kubectl from, and how it keeps trusting that repository.
//!
//! The problem this solves: the pkgs.k8s.io signing key ("isv:kubernetes OBS
//! Project", fingerprint DE15 B144 86CD 377B 9E87 6E1A 2346 54DA 9A29 6436)
//! that earlier versions embedded as a cloud-init APT source key expires on
//! 2026-12-29 (unix 1798508024, `gpg --show-keys` of `pkgs-k8s-io.asc`). A
//! seed built before that date and booted after it would get `EXPKEYSIG` from
//! apt, and because cloud-init installs every `packages` entry in one
//! `apt-get install`, no package at all.
//!
//! The mechanism (decision): **fetch the key at first boot over HTTPS and
//! accept it only if it is exactly one primary key with the pinned
//! fingerprint**, neither expired nor revoked; then write that key alone, as
//! a binary keyring, to `/etc/apt/keyrings/kubernetes-apt-keyring.gpg` (the
//! path of the kubeadm install guide,
//! <https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/>).
//! Upstream extends an OBS key by publishing a new self-signature on the same
//! key, so the fingerprint stays the pin and the fetched copy carries the new
//! expiry. If the fetch fails or is rejected, a still valid installed key is
//! kept, else the embedded copy (checked the same way) is used; with none
//! valid the unit fails and says why. A key that passes nothing is never
//! installed. The script is `kubernetes-apt.sh` (installed as
//! `/usr/local/sbin/haseed-kubernetes-apt`); `tests/master_role.rs` serves it
//! wrong, doubled, expired and right keys over loopback HTTP.
//!
//! Why a systemd oneshot and not cloud-init's `apt.sources` + `packages`:
//! cloud-init's module order (canonical/cloud-init `config/cloud.cfg.tmpl`,
//! tag 22.4.2 = 606a0a7c, Debian 12's version, and main 04eacd06) is
//! `bootcmd`, `write_files` (init stage), `apt_configure`, `runcmd` (config
//! stage: `runcmd` only writes the script, `cc_runcmd.py`), then
//! `package_update_upgrade_install` before `scripts_user` (final stage). The
//! `packages` step therefore runs before anything the plan can run, with
//! whatever key `apt_configure` wrote: an expired embedded key breaks it.
//! So the repository is not a plan APT source: the unit
//! `haseed-kubernetes-apt.service` (a plan service, so the host starts it
//! from `runcmd` after `packages`, and Raspberry Pi OS Bookworm's first-boot
//! script starts it after its packages too) refreshes the key, only then
//! writes `/etc/apt/sources.list.d/kubernetes.list`, installs the three
//! packages and holds them. It runs on every boot (`WantedBy=
//! multi-user.target`), so the keyring of a running node is refreshed too and
//! later `apt-get update`s keep working after 2026-12-29.
//!
//! `apt-mark hold kubelet kubeadm kubectl`: the kubeadm install guide does it
//! so an unattended upgrade cannot move the cluster to a new version outside
//! `kubeadm upgrade` (same page as above).
//!
//! The settings (`settings.rs`): `kubernetes_version` (the minor; default
//! [`DEFAULT_MINOR`]), `kubernetes_key_fingerprint` (the pin) and
//! `kubernetes_key` (the embedded copy). A site plugin (it runs after this
//! policy) pins a mirror by rewriting `K8S_REPO`, `K8S_KEY_URL` and
//! `K8S_KEY_FINGERPRINT` in [`ENV_PATH`]. A plan that already carries an APT
//! source named `kubernetes` when this policy sees it keeps it: the packages
//! then come through cloud-init from that source and the unit only holds them
//! (`K8S_REPO` empty; in haseed's own chain this policy runs first, so that
//! plan only comes from another host).
//!
//! The host reads [`ENV_PATH`] (`K8S_MINOR`, `K8S_KEY_FINGERPRINT`) to warn
//! when the minor is past its end of life or the pinned key expires within
//! 60 days of the build (`builder/src/kubernetes.rs`): the plugin's clock is
//! fixed, the host knows the build date.
//!
//! Cost: O(1) per node; the texts are built per node (a few hundred bytes).

use crate::haseed::policy::plan::NodePlan;
use crate::master::push_file;
use crate::{push_unique, Policy};

/// The newest upstream-supported minor haseed knows (kubernetes.io/releases,
/// read 2026-12-06: 1.37 released 2026-08-26, end of life 2027-10-28). The
/// host's table (`builder/src/kubernetes.rs`) is checked against it by a test.
pub(crate) const DEFAULT_MINOR: &str = "1.37";
/// The pkgs.k8s.io key, the same for every minor version (see the module doc).
pub(crate) const DEFAULT_FINGERPRINT: &str = "DE15B14486CD377B9E876E1A234654DA9A296436";
/// Its embedded copy (expires 2026-12-29).
const EMBEDDED_KEY: &str = include_str!("pkgs-k8s-io.asc");
const SCRIPT: &str = include_str!("kubernetes-apt.sh");

/// The APT source's name an earlier plugin may use for a mirror.
pub(crate) const K8S_SOURCE: &str = "kubernetes";
/// kubeadm enables the kubelet itself.
const K8S_PACKAGES: [&str; 3] = ["kubelet", "kubeadm", "kubectl"];
/// What the script needs besides the base system: curl for the fetch, gpg
/// for the check (Debian's `gpg` package; `gpgv`, always there, cannot list
/// keys), CA certificates for HTTPS.
const TOOLS: [&str; 3] = ["curl", "gpg", "ca-certificates"];

pub(crate) const UNIT: &str = "haseed-kubernetes-apt.service";
const UNIT_PATH: &str = "/etc/systemd/system/haseed-kubernetes-apt.service";
pub(crate) const SCRIPT_PATH: &str = "/usr/local/sbin/haseed-kubernetes-apt";
/// Read by the unit and by the host (see the module doc).
pub(crate) const ENV_PATH: &str = "/etc/haseed/kubernetes-apt.env";
const FALLBACK_KEY_PATH: &str = "/usr/local/lib/haseed/pkgs-k8s-io.asc";
const KEYRING_PATH: &str = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg";
const LIST_PATH: &str = "/etc/apt/sources.list.d/kubernetes.list";

const UNIT_TEXT: &str =
    "# Generated by haseed. kubelet, kubeadm and kubectl from pkgs.k8s.io, signing key\n\
# checked against its pinned fingerprint; runs on every boot to refresh the key.\n\
[Unit]\n\
Description=Kubernetes packages with a verified pkgs.k8s.io key (haseed)\n\
Wants=network-online.target\n\
After=network-online.target\n\
\n\
[Service]\n\
Type=oneshot\n\
EnvironmentFile=/etc/haseed/kubernetes-apt.env\n\
ExecStart=/usr/local/sbin/haseed-kubernetes-apt\n\
TimeoutStartSec=30min\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n";

impl Policy {
    /// The pkgs.k8s.io repository for the configured minor version, its key
    /// handling and the kubeadm/kubelet/kubectl packages, held.
    pub(crate) fn kubernetes_packages(&self, plan: &mut NodePlan) {
        let mirror = plan.apt_sources.iter().any(|a| a.name == K8S_SOURCE);
        let minor = &self.settings.kubernetes_version;
        let repo = format!("https://pkgs.k8s.io/core:/stable:/v{minor}/deb/");
        if mirror {
            // The earlier plugin's source is configured by cloud-init before
            // `packages`; it owns its key.
            for package in K8S_PACKAGES {
                push_unique(&mut plan.packages, package);
            }
        } else {
            for tool in TOOLS {
                push_unique(&mut plan.packages, tool);
            }
        }
        let key = self
            .settings
            .kubernetes_key
            .clone()
            .unwrap_or_else(|| EMBEDDED_KEY.to_string());
        let env = format!(
            "# Generated by haseed. Read by {UNIT} (and by haseed build, for its warnings).\n\
             K8S_MINOR={minor}\n\
             K8S_REPO={repo_line}\n\
             K8S_KEY_URL={repo}Release.key\n\
             K8S_KEY_FINGERPRINT={fpr}\n\
             K8S_FALLBACK_KEY={FALLBACK_KEY_PATH}\n\
             K8S_KEYRING={KEYRING_PATH}\n\
             K8S_LIST={LIST_PATH}\n\
             K8S_PACKAGES={packages}\n",
            repo_line = if mirror { "" } else { repo.as_str() },
            fpr = self.settings.kubernetes_key_fingerprint,
            packages = K8S_PACKAGES.join(" "),
        );
        push_file(plan, ENV_PATH, 0o644, env);
        push_file(plan, SCRIPT_PATH, 0o755, SCRIPT.into());
        push_file(plan, FALLBACK_KEY_PATH, 0o644, key);
        push_file(plan, UNIT_PATH, 0o644, UNIT_TEXT.into());
        push_unique(&mut plan.services, UNIT);
    }
}

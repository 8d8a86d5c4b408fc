//! Base image descriptions (`images/*.toml`), compiled in.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Deserialize;

/// How a base image reads a node's configuration at first boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeedKind {
    /// cloud-init NoCloud: `user-data`, `meta-data`, `network-config` on the
    /// boot partition.
    Nocloud,
    /// A first-boot script on the boot partition, started from the kernel
    /// command line (Raspberry Pi OS Bookworm).
    Firstrun,
}

/// How a release's image build creates the first user (pi-gen
/// `stage1/01-sys-tweaks/00-run.sh`, when no password is set). Either way
/// cloud-init skips an existing user, so the seed fixes its shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirstUser {
    /// `adduser --disabled-password`: a bash shell, no password.
    PasswordDisabled,
    /// `adduser --disabled-login`: the nologin shell (pi-gen 4b9cd15c).
    LoginDisabled,
}

/// One release of a base image, as its stock boot partition shows it: what
/// `haseed image` identifies a base by (the boot partition only; the root
/// file system is never read).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub name: String,
    /// The pi-gen commits the release's images were built from, as their
    /// `issue.txt` names them. A base whose issue.txt names one of these is
    /// that release, whatever else it looks like.
    #[serde(default)]
    pub pi_gen_commits: Vec<String>,
    /// The seed placeholders its boot partition carries; empty: it carries
    /// none (neither user-data nor meta-data).
    #[serde(default)]
    pub placeholders: Vec<String>,
    /// Words its stock cmdline.txt carries that tell it from the others.
    #[serde(default)]
    pub cmdline_words: Vec<String>,
    /// The `os_prefix` its config.txt puts before the boot assets
    /// (Ubuntu 25.10 on: "current/"); none: they are at the root.
    #[serde(default)]
    pub os_prefix: Option<String>,
    /// How its image build creates the first user; none: the seed creates
    /// it (Ubuntu: cloud-init's default user).
    #[serde(default)]
    pub first_user: Option<FirstUser>,
}

/// One supported base image.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseImage {
    pub name: String,
    pub description: String,
    /// The inventory platform whose nodes this base is for.
    pub platform: String,
    pub seed: SeedKind,
    pub default_user: String,
    /// MBR partition number (1-4) of the FAT boot partition.
    pub boot_partition: u8,
    pub boot_labels: Vec<String>,
    pub boot_files: Vec<String>,
    /// Without `releases`: the placeholders the stock boot partition
    /// carries, exactly (none: neither user-data nor meta-data).
    #[serde(default)]
    pub placeholders: Vec<String>,
    /// The releases it covers, each with how its boot partition looks;
    /// when given, these identify the base instead of `placeholders`.
    #[serde(default)]
    pub releases: Vec<Release>,
    /// Words appended to cmdline.txt, with `{instance_id}` and
    /// `{firstrun_path}` substituted.
    pub cmdline: Vec<String>,
    #[serde(default)]
    pub firstrun_path: Option<String>,
    #[serde(default)]
    pub package_names: BTreeMap<String, String>,
}

const SOURCES: &[(&str, &str)] = &[
    (
        "images/raspios-trixie.toml",
        include_str!("../../assets/images/raspios-trixie.toml"),
    ),
    (
        "images/raspios-bookworm.toml",
        include_str!("../../assets/images/raspios-bookworm.toml"),
    ),
    (
        "images/ubuntu-raspi.toml",
        include_str!("../../assets/images/ubuntu-raspi.toml"),
    ),
];

/// Every description, in a fixed order.
pub fn all() -> anyhow::Result<Vec<BaseImage>> {
    SOURCES
        .iter()
        .map(|(path, text)| {
            let b: BaseImage = toml::from_str(text).with_context(|| format!("parsing {path}"))?;
            anyhow::ensure!(
                (1..=4).contains(&b.boot_partition),
                "{path}: boot_partition must be 1-4"
            );
            anyhow::ensure!(
                b.seed == SeedKind::Nocloud || b.firstrun_path.is_some(),
                "{path}: a firstrun image needs firstrun_path"
            );
            for r in &b.releases {
                for c in &r.pi_gen_commits {
                    anyhow::ensure!(
                        c.len() == 40 && c.bytes().all(|x| x.is_ascii_hexdigit()),
                        "{path}: release {}: pi_gen_commits holds {c:?}, not a full 40-digit commit",
                        r.name
                    );
                }
            }
            Ok(b)
        })
        .collect()
}

impl BaseImage {
    /// The words to append to cmdline.txt.
    pub fn cmdline_words(&self, instance_id: &str) -> Vec<String> {
        self.cmdline
            .iter()
            .map(|w| {
                w.replace("{instance_id}", instance_id).replace(
                    "{firstrun_path}",
                    self.firstrun_path.as_deref().unwrap_or(""),
                )
            })
            .collect()
    }

    /// The file name of the first-boot script on the boot partition.
    pub fn firstrun_file(&self) -> Option<&str> {
        self.firstrun_path
            .as_deref()
            .and_then(|p| p.rsplit('/').next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Platform;

    #[test]
    fn descriptions_parse_and_cover_the_pi_platforms() {
        let all = all().expect("descriptions parse");
        for p in [
            Platform::Raspios,
            Platform::RaspiosLegacy,
            Platform::UbuntuRaspi,
        ] {
            assert_eq!(
                all.iter().filter(|b| b.platform == p.as_str()).count(),
                1,
                "{}",
                p.as_str()
            );
        }
        let trixie = all.iter().find(|b| b.name == "raspios-trixie").unwrap();
        assert_eq!(
            trixie.cmdline_words("haseed-abc"),
            ["ds=nocloud;i=haseed-abc"]
        );
        let bookworm = all.iter().find(|b| b.name == "raspios-bookworm").unwrap();
        assert_eq!(bookworm.firstrun_file(), Some("firstrun.sh"));
        assert_eq!(
            bookworm.cmdline_words("x")[0],
            "systemd.run=/boot/firstrun.sh"
        );
    }
}

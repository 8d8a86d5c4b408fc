//! Which file the Raspberry Pi firmware reads the kernel command line from,
//! as the boot partition's `config.txt` decides it.
//!
//! The firmware reads `cmdline.txt` unless `cmdline=` names another file, and
//! puts `os_prefix` before the names of the "operating system files":
//! kernels, initramfs, cmdline.txt, .dtbs and overlays; a name starting with
//! `/` bypasses the prefix (raspberrypi/documentation
//! `documentation/asciidoc/computers/config_txt/boot.adoc` @ 01b0f1d0,
//! sections `cmdline` and `os_prefix`). Ubuntu for Raspberry Pi uses it from
//! 25.10 on for A/B boot: the boot assets (kernel, initrd, .dtbs,
//! cmdline.txt) live in `current/`, `new/` or `old/`, and config.txt says
//! `[all] os_prefix=current/` and `[tryboot] os_prefix=new/` (Ubuntu's
//! "A/B boot on Ubuntu for Raspberry Pi", packages flash-kernel-piboot and
//! piboot-try). A seed appended to the root `cmdline.txt` there is never
//! read.
//!
//! Sections: lines before any `[filter]`, and under `[all]`, always apply;
//! under a model or other conditional filter (`[pi4]`, `[cm5]`, `[gpio4=1]`,
//! ...) they may; under `[tryboot]` only on a one-shot trial boot, and under
//! `[none]` never, so those two are left out (config.txt's "Conditional
//! filters", `conditional.adoc` in the same directory). `include FILE` reads
//! another file of the boot partition in place.

use anyhow::bail;

/// The most of config.txt (and each included file) read.
pub const CONFIG_MAX: u64 = 64 << 10;
/// `include` nests at most this deep; deeper is refused (a loop, most likely).
const INCLUDE_DEPTH: usize = 4;

/// Where a setting came from: the file, its line (1-based) and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub file: String,
    pub number: usize,
    pub text: String,
}

/// A file the firmware may read the command line from, and the settings
/// that put it there (none: the default `cmdline.txt` at the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    pub path: String,
    /// The `os_prefix` in force for it ("" when none, or when its name is
    /// absolute).
    pub prefix: String,
    pub set_by: Vec<Line>,
}

impl Cmdline {
    /// "config.txt line 2 sets os_prefix=current/", or the default's reason.
    pub fn why(&self) -> String {
        if self.set_by.is_empty() {
            return "config.txt sets neither os_prefix nor cmdline".to_string();
        }
        self.set_by
            .iter()
            .map(|l| format!("{} line {} sets {}", l.file, l.number, l.text))
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

/// One setting's possible values at a point of the file: the value in
/// force if no conditional section applies, then those a conditional
/// section may have set after it.
#[derive(Default)]
struct Values {
    base: Option<(String, Line)>,
    maybe: Vec<(String, Line)>,
}

impl Values {
    fn set(&mut self, value: &str, line: Line, always: bool) {
        if always {
            self.base = Some((value.to_string(), line));
            self.maybe.clear();
        } else {
            self.maybe.push((value.to_string(), line));
        }
    }

    /// Every value it may have, the unconditional one first.
    fn all(&self, default: &str) -> Vec<(String, Option<Line>)> {
        let mut out = vec![match &self.base {
            Some((v, l)) => (v.clone(), Some(l.clone())),
            None => (default.to_string(), None),
        }];
        for (v, l) in &self.maybe {
            if !out.iter().any(|(o, _)| o == v) {
                out.push((v.clone(), Some(l.clone())));
            }
        }
        out
    }
}

#[derive(Default)]
struct State {
    os_prefix: Values,
    cmdline: Values,
    /// Whether the current section applies on a normal boot: `Some(true)`
    /// always, `Some(false)` maybe, `None` never ([tryboot], [none]).
    applies: Option<bool>,
}

/// The files the firmware may read the command line from, the one of a
/// board without conditional sections first. `read` gives a boot-partition
/// file's first `CONFIG_MAX + 1` bytes, or `None` if it is missing.
pub fn cmdlines(read: &mut dyn FnMut(&str) -> Option<Vec<u8>>) -> anyhow::Result<Vec<Cmdline>> {
    let mut st = State {
        applies: Some(true),
        ..State::default()
    };
    if let Some(text) = read("config.txt") {
        parse(read, "config.txt", &text, &mut st, 0)?;
    }
    let mut out: Vec<Cmdline> = Vec::new();
    for (prefix, by_prefix) in st.os_prefix.all("") {
        for (name, by_name) in st.cmdline.all("cmdline.txt") {
            let (path, used, set_by) = match name.strip_prefix('/') {
                // An absolute name bypasses the prefix.
                Some(abs) => (abs.to_string(), "", by_name.into_iter().collect()),
                None => (
                    format!("{prefix}{name}"),
                    prefix.as_str(),
                    by_prefix.iter().cloned().chain(by_name).collect(),
                ),
            };
            if !out.iter().any(|c| c.path.eq_ignore_ascii_case(&path)) {
                out.push(Cmdline {
                    path,
                    prefix: used.to_string(),
                    set_by,
                });
            }
        }
    }
    Ok(out)
}

fn parse(
    read: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
    file: &str,
    bytes: &[u8],
    st: &mut State,
    depth: usize,
) -> anyhow::Result<()> {
    if bytes.len() as u64 > CONFIG_MAX {
        bail!(
            "{file} on the boot partition is longer than haseed reads ({CONFIG_MAX} bytes): not a real config.txt"
        );
    }
    let text = String::from_utf8_lossy(bytes);
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let line = || Line {
            file: file.to_string(),
            number: i + 1,
            text: l.to_string(),
        };
        if let Some(filter) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            st.applies = match filter.trim().to_ascii_lowercase().as_str() {
                "all" => Some(true),
                "tryboot" | "none" => None,
                _ => Some(false),
            };
            continue;
        }
        let Some(always) = st.applies else { continue };
        if let Some(name) = l
            .strip_prefix("include")
            .filter(|r| r.starts_with([' ', '\t']))
        {
            let name = name.trim();
            if depth + 1 > INCLUDE_DEPTH {
                bail!(
                    "{file} line {} includes {name} more than {INCLUDE_DEPTH} deep: an include loop?",
                    i + 1
                );
            }
            // A missing include is skipped, as the firmware does.
            if let Some(inner) = read(name) {
                let outer = st.applies;
                parse(read, name, &inner, st, depth + 1)?;
                // A section an included file opens ends with it.
                st.applies = outer;
            }
            continue;
        }
        let Some((key, value)) = l.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "os_prefix" => st.os_prefix.set(value, line(), always),
            "cmdline" => st.cmdline.set(value, line(), always),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn paths(files: &[(&str, &str)]) -> Vec<(String, String)> {
        let files: BTreeMap<String, Vec<u8>> = files
            .iter()
            .map(|(n, t)| (n.to_string(), t.as_bytes().to_vec()))
            .collect();
        cmdlines(&mut |n| files.get(n).cloned())
            .expect("parses")
            .into_iter()
            .map(|c| {
                let why = c.why();
                (c.path, why)
            })
            .collect()
    }

    #[test]
    fn no_config_or_no_setting_is_the_root_cmdline() {
        assert_eq!(paths(&[])[0].0, "cmdline.txt");
        let p = paths(&[("config.txt", "arm_64bit=1\n[pi4]\nmax_framebuffers=2\n")]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "cmdline.txt");
        assert_eq!(p[0].1, "config.txt sets neither os_prefix nor cmdline");
    }

    /// Ubuntu 25.10's A/B layout: `current/` always, `new/` on tryboot only.
    #[test]
    fn ubuntu_ab_boot_reads_current() {
        let p = paths(&[(
            "config.txt",
            "[all]\nkernel=vmlinuz\nos_prefix=current/\n\n[tryboot]\nos_prefix=new/\n",
        )]);
        assert_eq!(
            p,
            [(
                "current/cmdline.txt".to_string(),
                "config.txt line 3 sets os_prefix=current/".to_string()
            )]
        );
    }

    #[test]
    fn later_unconditional_settings_override_and_conditional_ones_add() {
        let p = paths(&[(
            "config.txt",
            "[pi4]\nos_prefix=a/\n[all]\nos_prefix=b/\n[pi5]\ncmdline=c.txt\n[none]\nos_prefix=x/\n",
        )]);
        let got: Vec<&str> = p.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(got, ["b/cmdline.txt", "b/c.txt"]);
        assert!(p[1].1.contains("line 4 sets os_prefix=b/"), "{}", p[1].1);
        assert!(p[1].1.contains("line 6 sets cmdline=c.txt"), "{}", p[1].1);
    }

    #[test]
    fn an_absolute_cmdline_bypasses_the_prefix_and_includes_are_read() {
        let p = paths(&[
            ("config.txt", "include syscfg.txt\n[all]\n"),
            ("syscfg.txt", "os_prefix=p/\ncmdline=/boot.txt\n"),
        ]);
        assert_eq!(p[0].0, "boot.txt");
        assert_eq!(p[0].1, "syscfg.txt line 2 sets cmdline=/boot.txt");
    }

    #[test]
    fn include_loops_and_huge_configs_are_refused() {
        let files: BTreeMap<&str, Vec<u8>> = [("config.txt", b"include config.txt\n".to_vec())]
            .into_iter()
            .collect();
        let e = cmdlines(&mut |n| files.get(n).cloned()).unwrap_err();
        assert!(e.to_string().contains("include loop"), "{e}");
        let big = vec![b'#'; CONFIG_MAX as usize + 1];
        let e = cmdlines(&mut |_| Some(big.clone())).unwrap_err();
        assert!(e.to_string().contains("longer than haseed reads"), "{e}");
    }
}

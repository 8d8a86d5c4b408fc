//! Reads the `Exec*=` hooks out of generated systemd drop-ins, so the lab runs
//! exactly the commands haseed wrote for the node (there is no systemd in the
//! lab). Pure: text in, commands out.

/// One `ExecStartPre=`/`ExecStartPost=`/`ExecStopPost=` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecCommand {
    /// Program, then arguments, unquoted as systemd does.
    pub argv: Vec<String>,
    /// A leading `-`: systemd ignores the command's failure.
    pub ignore_failure: bool,
    /// Where it was read: `what` given to [`Hooks::add_dropin`] and the line.
    pub at: String,
}

/// The hooks of one service, in file order (drop-ins applied in name order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    pub start_pre: Vec<ExecCommand>,
    pub start_post: Vec<ExecCommand>,
    pub stop_post: Vec<ExecCommand>,
    /// `ExecStart=`: the lab runs it only for a unit of haseed's own it
    /// recognises whole (the watcher); in a drop-in it is also listed in
    /// `other_exec`.
    pub start: Vec<ExecCommand>,
    /// Other `Exec*=` settings (`ExecStart=`, `ExecStop=`, `ExecReload=`,
    /// `ExecCondition=`...), which the lab does not emulate: `(what, key)`.
    pub other_exec: Vec<(String, String)>,
}

impl Hooks {
    /// Adds the hooks of one drop-in's text; `what` names it in errors. An
    /// empty assignment (`ExecStopPost=`) clears the list, as in systemd.
    pub fn add_dropin(&mut self, text: &str, what: &str) -> Result<(), String> {
        let mut section = String::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') && line.ends_with(']') {
                section = line[1..line.len() - 1].to_string();
                continue;
            }
            if section != "Service" {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let list = match key.trim() {
                "ExecStartPre" => &mut self.start_pre,
                "ExecStartPost" => &mut self.start_post,
                "ExecStopPost" => &mut self.stop_post,
                "ExecStart" => {
                    self.other_exec
                        .push((format!("{what} line {}", n + 1), "ExecStart".into()));
                    &mut self.start
                }
                k if k.starts_with("Exec") => {
                    self.other_exec
                        .push((format!("{what} line {}", n + 1), k.to_string()));
                    continue;
                }
                _ => continue,
            };
            let value = value.trim();
            if value.is_empty() {
                list.clear();
                continue;
            }
            let mut rest = value;
            let mut ignore_failure = false;
            while let Some(c) = rest.chars().next().filter(|c| "-@:+!".contains(*c)) {
                ignore_failure |= c == '-';
                rest = &rest[1..];
            }
            let argv = split_words(rest).map_err(|e| format!("{what} line {}: {e}", n + 1))?;
            if argv.first().is_none_or(|p| !p.starts_with('/')) {
                return Err(format!(
                    "{what} line {}: {key} needs an absolute program path",
                    n + 1
                ));
            }
            list.push(ExecCommand {
                argv,
                ignore_failure,
                at: format!("{what} line {}", n + 1),
            });
        }
        Ok(())
    }
}

/// systemd's command-line splitting: words separated by whitespace, single
/// and double quotes group, a backslash escapes the next character.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                let next = chars.next().ok_or("trailing backslash")?;
                cur.push(next);
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hooks_of_the_service_section_only() {
        let mut h = Hooks::default();
        h.add_dropin(
            "[Unit]\nAfter=haproxy.service\nExecStartPre=/bin/false\n\n[Service]\n# c\n\
             ExecStartPre=-/bin/mkdir -p /var/lib/haseed\n\
             ExecStartPost=/bin/sh -c 'echo 0 > /x'\n\
             ExecStopPost=/bin/sh -c \"sleep 0.5; ip addr del 10.0.0.1/24 dev eth0\"\n",
            "d.conf",
        )
        .expect("parses");
        assert_eq!(
            h.start_pre,
            [ExecCommand {
                argv: vec!["/bin/mkdir".into(), "-p".into(), "/var/lib/haseed".into()],
                ignore_failure: true,
                at: "d.conf line 7".into(),
            }]
        );
        assert_eq!(h.start_post[0].argv, ["/bin/sh", "-c", "echo 0 > /x"]);
        assert_eq!(
            h.stop_post[0].argv,
            [
                "/bin/sh",
                "-c",
                "sleep 0.5; ip addr del 10.0.0.1/24 dev eth0"
            ]
        );
        // Other Exec settings are noted, for the lab to refuse.
        h.add_dropin("[Service]\nExecStart=\nExecStart=/bin/true\n", "x.conf")
            .expect("parses");
        assert_eq!(
            h.other_exec,
            [
                ("x.conf line 2".to_string(), "ExecStart".to_string()),
                ("x.conf line 3".to_string(), "ExecStart".to_string())
            ]
        );
        // An empty assignment resets the list.
        h.add_dropin("[Service]\nExecStopPost=\n", "e.conf")
            .expect("parses");
        assert!(h.stop_post.is_empty());
    }

    #[test]
    fn rejects_what_systemd_would_not_run() {
        let mut h = Hooks::default();
        let e = h
            .add_dropin("[Service]\nExecStartPost=/bin/sh -c 'x\n", "d.conf")
            .expect_err("unterminated");
        assert!(e.contains("d.conf line 2") && e.contains("quote"), "{e}");
        let e = h
            .add_dropin("[Service]\nExecStopPost=sh -c x\n", "d.conf")
            .expect_err("relative");
        assert!(e.contains("absolute"), "{e}");
        assert_eq!(split_words("a\\ b  'c d'e").expect("ok"), ["a b", "c de"]);
    }
}

//! Hostile test plugin (hostile-terminal-escapes): misbehaves on purpose so the tests can prove
//! the host's sandbox and output checks. Never use it in a site.
//!
//! Everything here is text a terminal would act on if printed raw: ESC and 8-bit CSI sequences
//! (clear the screen, retitle the window), a carriage return (overwrite the line), the bidi
//! overrides, isolates and marks ("Trojan Source") and the Unicode line separator. They go
//! where a plugin's text reaches the user: its log (stdout and stderr), a warning (which the
//! checker lets carry bidi characters, right-to-left text needs them) and a file's content
//! (shown by `haseed plugin check` and `haseed plan --json`).

include!("../../common.rs");

const SCOPE: Option<&[&str]> = None;

use haseed::policy::plan::File;

/// The warning: bidi controls only (control characters and line separators are refused).
pub const WARNING: &str =
    "reversed: \u{202e}exe.txt\u{202c} isolated: \u{2066}x\u{2069} marks: \u{200e}\u{200f}\u{61c}";

fn misbehave(proposed: NodePlan) -> Result<NodePlan, PolicyError> {
    let mut plan = proposed;
    println!(
        "stdout: \u{1b}]0;owned\u{7} \u{1b}[2J \u{9b}31m \u{202e}desrever\u{202c} one\u{2028}two\rover"
    );
    eprintln!("stderr: \u{2066}isolate\u{2069} \u{200f}mark \u{2029}para \u{7f}del");
    plan.warnings.push(WARNING.into());
    plan.files.push(File {
        path: "/etc/haseed/banner".into(),
        mode: 0o644,
        owner: "root:root".into(),
        content: "\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}1m \u{202e}desrever\u{202c}\u{2028}\r\n".into(),
    });
    Ok(plan)
}

//! Hostile test plugin (hostile-reads-world): misbehaves on purpose so the tests can prove
//! the host's sandbox and output checks. Never use it in a site.

include!("../../common.rs");

const SCOPE: Option<&[&str]> = None;

// It must not fail: it records what the sandbox let it see in the plan's
// warnings, so the tests can prove the sandbox hides the world and that two
// builds see the same clock and the same "random" bytes.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

fn misbehave(proposed: NodePlan) -> Result<NodePlan, PolicyError> {
    let mut plan = proposed;
    plan.warnings
        .push(match std::fs::read_to_string("/etc/passwd") {
            Ok(text) => format!("fs: {} bytes", text.len()),
            Err(_) => "fs: denied".into(),
        });
    plan.warnings
        .push(format!("env: {} vars", std::env::vars_os().count()));
    plan.warnings
        .push(format!("args: {}", std::env::args_os().count()));
    plan.warnings
        .push(match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(mut stream) => {
                let _ = stream.write_all(b"hello");
                "net: connected".into()
            }
            Err(_) => "net: denied".into(),
        });
    plan.warnings
        .push(match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => format!("clock: {}", since.as_secs()),
            Err(_) => "clock: before 1970".into(),
        });
    let mut bytes = [0u8; 8];
    plan.warnings.push(match getrandom::fill(&mut bytes) {
        Ok(()) => format!(
            "random: {}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        Err(e) => format!("random: error {e}"),
    });
    Ok(plan)
}

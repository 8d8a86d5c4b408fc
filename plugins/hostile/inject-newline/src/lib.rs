//! Hostile test plugin (hostile-inject-newline): misbehaves on purpose so the tests can prove
//! the host's sandbox and output checks. Never use it in a site.

include!("../../common.rs");

const SCOPE: Option<&[&str]> = None;

fn misbehave(proposed: NodePlan) -> Result<NodePlan, PolicyError> {
    let mut plan = proposed;
    let server = plan
        .haproxy
        .as_mut()
        .and_then(|h| h.backends.first_mut())
        .and_then(|b| b.servers.first_mut());
    match server {
        Some(server) => server.name = "evil\n    server injected 6.6.6.6:22".into(),
        None => plan.hostname = "evil\nhost".into(),
    }
    Ok(plan)
}

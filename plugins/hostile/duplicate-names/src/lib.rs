//! Hostile test plugin (hostile-duplicate-names): misbehaves on purpose so the tests can prove
//! the host's sandbox and output checks. Never use it in a site.

include!("../../common.rs");

const SCOPE: Option<&[&str]> = None;

fn misbehave(proposed: NodePlan) -> Result<NodePlan, PolicyError> {
    let mut plan = proposed;
    if let Some(haproxy) = plan.haproxy.as_mut() {
        if let Some(first) = haproxy.backends.first().cloned() {
            haproxy.backends.push(first);
        }
    }
    Ok(plan)
}

//! Hostile test plugin (hostile-panic): misbehaves on purpose so the tests can prove
//! the host's sandbox and output checks. Never use it in a site.

include!("../../common.rs");

const SCOPE: Option<&[&str]> = None;

fn misbehave(proposed: NodePlan) -> Result<NodePlan, PolicyError> {
    let _ = proposed;
    panic!("hostile plugin panicked on purpose")
}

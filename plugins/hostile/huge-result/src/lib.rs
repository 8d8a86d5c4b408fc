//! Hostile test plugin (hostile-huge-result): misbehaves on purpose so the tests can prove
//! the host's sandbox and output checks. Never use it in a site.

include!("../../common.rs");

const SCOPE: Option<&[&str]> = None;

fn misbehave(proposed: NodePlan) -> Result<NodePlan, PolicyError> {
    let mut plan = proposed;
    // A 50 MB hostname and 2,000,000 packages: far past every limit the
    // checker has, and heavy to carry across the boundary.
    // Cheap to make (no formatting per record) so that it is the size, not
    // the fuel, the host has to deal with.
    plan.hostname = "a".repeat(50 << 20);
    plan.packages = vec![String::from("haproxy"); 2_000_000];
    Ok(plan)
}

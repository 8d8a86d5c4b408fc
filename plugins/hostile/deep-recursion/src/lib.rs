//! Hostile test plugin (hostile-deep-recursion): misbehaves on purpose so the tests can prove
//! the host's sandbox and output checks. Never use it in a site.

include!("../../common.rs");

const SCOPE: Option<&[&str]> = None;

fn misbehave(proposed: NodePlan) -> Result<NodePlan, PolicyError> {
    // Non-tail recursion: the addition after the call keeps every frame alive.
    let depth = dive(core::hint::black_box(0));
    let _ = core::hint::black_box(depth);
    Ok(proposed)
}

fn dive(depth: u64) -> u64 {
    if core::hint::black_box(depth) == u64::MAX {
        return depth;
    }
    let below = dive(core::hint::black_box(depth + 1));
    core::hint::black_box(below).wrapping_add(depth)
}

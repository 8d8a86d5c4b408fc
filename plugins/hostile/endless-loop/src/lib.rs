//! Hostile test plugin (hostile-endless-loop): misbehaves on purpose so the tests can prove
//! the host's sandbox and output checks. Never use it in a site.

include!("../../common.rs");

const SCOPE: Option<&[&str]> = None;

fn misbehave(proposed: NodePlan) -> Result<NodePlan, PolicyError> {
    let mut counter: u64 = 0;
    loop {
        counter = core::hint::black_box(counter.wrapping_add(1));
        if core::hint::black_box(counter) == u64::MAX {
            return Ok(proposed);
        }
    }
}

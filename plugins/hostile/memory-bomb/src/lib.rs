//! Hostile test plugin (hostile-memory-bomb): misbehaves on purpose so the tests can prove
//! the host's sandbox and output checks. Never use it in a site.

include!("../../common.rs");

const SCOPE: Option<&[&str]> = None;

fn misbehave(proposed: NodePlan) -> Result<NodePlan, PolicyError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for byte in chunk.iter_mut().step_by(4096) {
            *byte = 1;
        }
        hoard.push(core::hint::black_box(chunk));
        if hoard.len() == usize::MAX {
            return Ok(proposed);
        }
    }
}

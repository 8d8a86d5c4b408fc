//! Mutated reference plans -> checker -> renderer -> `haproxy -c -dW` and `keepalived -t`.
//! The property lives in `haseed::fuzzing::PlanRender` (replayed by tests/fuzz_corpus.rs).
//! Needs root (keepalived runs in a throwaway network namespace).
#![no_main]

use std::sync::OnceLock;

use haseed::fuzzing::PlanRender;
use libfuzzer_sys::fuzz_target;

fn property() -> &'static PlanRender {
    static P: OnceLock<PlanRender> = OnceLock::new();
    P.get_or_init(|| PlanRender::new().expect("the validators are installed"))
}

fuzz_target!(|data: &[u8]| {
    if let Err(why) = property().run(data) {
        panic!("plan_render property violated: {why}");
    }
});

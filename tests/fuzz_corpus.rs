//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/<target>/`) through the same property
//! functions the fuzz targets call (`haseed::fuzzing`), on the stable toolchain, with the real
//! validators for every plan the checker accepts. Every input the fuzzer ever found a bug
//! with stays in the corpus, so this is the regression test for all of them.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use haseed::fuzzing::{self, InventoryOutcome, PlanOutcome, PlanRender};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = common::repo_root().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "{}: only {} inputs",
        dir.display(),
        files.len()
    );
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).expect("read corpus file");
            (p, data)
        })
        .collect()
}

#[test]
fn inventory_corpus() {
    let start = Instant::now();
    let (mut accepted, mut rejected) = (0, 0);
    for (path, data) in corpus("inventory") {
        match fuzzing::inventory(&data) {
            Ok(InventoryOutcome::Accepted) => accepted += 1,
            Ok(InventoryOutcome::Rejected) => rejected += 1,
            Err(why) => panic!("{}: {why}", path.display()),
        }
    }
    // Both sides of the parser are exercised.
    assert!(
        accepted >= 3 && rejected >= 3,
        "{accepted} accepted, {rejected} rejected"
    );
    eprintln!(
        "inventory corpus: {accepted} accepted, {rejected} rejected in {:?}",
        start.elapsed()
    );
}

#[test]
fn plan_render_corpus() {
    let start = Instant::now();
    let property = PlanRender::new().expect("validators installed (.ci/install-deps)");
    let (mut unrepresentable, mut rejected, mut accepted, mut lacks) = (0, 0, 0, 0);
    for (path, data) in corpus("plan_render") {
        match property.run(&data) {
            Ok(PlanOutcome::Unrepresentable) => unrepresentable += 1,
            Ok(PlanOutcome::Rejected(_)) => rejected += 1,
            Ok(PlanOutcome::Accepted) => accepted += 1,
            Ok(PlanOutcome::HostLacks(_)) => lacks += 1,
            Err(why) => panic!("{}: {why}", path.display()),
        }
    }
    // The validators really ran on accepted plans, and the checker really refused some.
    assert!(
        accepted >= 3 && rejected >= 3,
        "{accepted} accepted, {rejected} rejected"
    );
    eprintln!(
        "plan_render corpus: {accepted} accepted (haproxy -c -dW and keepalived -t passed), \
         {lacks} haproxy only (keepalived needs what only the node has), {rejected} rejected, \
         {unrepresentable} unrepresentable in {:?}",
        start.elapsed()
    );
}

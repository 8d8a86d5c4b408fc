//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/<target>/`) through the same property
//! functions the fuzz targets call (`haseed::fuzzing`), on the stable toolchain, with the real
//! validators for every plan the checker accepts. Every input the fuzzer ever found a bug
//! with stays in the corpus, so this is the regression test for all of them.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use haseed::fuzzing::{self, InventoryOutcome, PlanOutcome, PlanRender};
use haseed::image::fatfuzz::{self, FatOutcome};

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

/// Runs the FAT property on one input in a thread, with a deadline: a chain
/// the check missed would make fatfs loop forever.
fn fat_bounded(data: &[u8]) -> Result<FatOutcome, String> {
    let data = data.to_vec();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(fatfuzz::fat(&data));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(r) => r,
        Err(_) => Err("did not end within 20 s (a chain loop the check missed?)".into()),
    }
}

#[test]
fn fat_corpus() {
    let start = Instant::now();
    let mut seen = std::collections::BTreeMap::new();
    for (path, data) in corpus("fat") {
        match fat_bounded(&data) {
            Ok(o) => *seen.entry(format!("{o:?}")).or_insert(0) += 1,
            Err(why) => panic!("{}: {why}", path.display()),
        }
    }
    // Both sides of the check are exercised, and the edit ran.
    assert!(
        seen.get("Refused").copied().unwrap_or(0) >= 3
            && seen.get("Edited").copied().unwrap_or(0) >= 3,
        "{seen:?}"
    );
    eprintln!("fat corpus: {seen:?} in {:?}", start.elapsed());
}

/// Random single pokes (a byte, a 16- or 32-bit value) into the metadata of
/// FAT12, FAT16 and FAT32 boot partitions, each checked by haseed and by
/// dosfstools' fsck.vfat -n on the same bytes. Whatever fsck.vfat finds
/// clean, haseed accepts and edits; whatever haseed accepts, its edit ends
/// without a panic and leaves a volume the check accepts again (the
/// property of `fatfuzz::fat`). haseed may refuse what fsck.vfat would only
/// repair (it never repairs), never the reverse.
#[test]
fn fat_single_corruptions_agree_with_fsck() {
    let start = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut tally = std::collections::BTreeMap::new();
    for case in 0..600u32 {
        let r = next();
        let mut input = vec![(case % 3) as u8];
        input.extend_from_slice(&r.to_le_bytes()[..7]);
        let disk = fatfuzz::corrupted(&input);
        let img = tmp.path().join(format!("case-{case}.img"));
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::create(&img).expect("image file");
            f.set_len(disk.len()).unwrap();
            for (at, bytes) in disk.pages() {
                f.write_all_at(bytes, at).unwrap();
            }
        }
        let fsck = std::process::Command::new("fsck.vfat")
            .arg("-n")
            .arg(&img)
            .output()
            .expect("fsck.vfat runs (dosfstools)");
        std::fs::remove_file(&img).unwrap();
        let outcome = fat_bounded(&input)
            .unwrap_or_else(|why| panic!("case {case} {}: {why}", hex::encode(&input)));
        if fsck.status.success() {
            assert_ne!(
                outcome,
                FatOutcome::Refused,
                "case {case} {}: fsck.vfat -n finds nothing wrong, haseed refuses",
                hex::encode(&input)
            );
        }
        *tally
            .entry((fsck.status.success(), format!("{outcome:?}")))
            .or_insert(0) += 1;
    }
    eprintln!(
        "fat single corruptions (fsck clean, haseed): {tally:?} in {:?}",
        start.elapsed()
    );
    // The sample is not degenerate: fsck.vfat found damage that haseed
    // refused, and haseed edited volumes fsck.vfat finds clean.
    assert!(
        tally.get(&(false, "Refused".into())).copied().unwrap_or(0) >= 20,
        "{tally:?}"
    );
    assert!(
        tally.get(&(true, "Edited".into())).copied().unwrap_or(0) >= 20,
        "{tally:?}"
    );
}

//! `haseed flash`: one card or many in one run (issue 23). The cards are
//! checked before the site is read, each card's image prepared from one
//! decompression of the base (`cards.rs`: the node's edited head over the
//! shared base, no whole image per card), every card's size checked before
//! any is written, then each card written and read back on its own thread
//! (`flash::write`) while one more thread checks the base's block map; a
//! card that fails is reported by node and device while the others finish,
//! and `--ledger` records every card.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use super::base::{self, BaseImage};
use super::cli::{flashable_nodes, interruptible, jobs, node_index, prepare, FLASHABLE};
use super::progress::Progress;
use super::{flash, Made};
use crate::cli::{Global, Planned};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  sudo haseed flash site.toml --base raspios.img.xz --node lb1 /dev/sdb
  sudo haseed flash site.toml --base raspios.img.xz --node lb1=/dev/sdb --node lb2=/dev/sdc
  sudo haseed flash site.toml --base raspios.img.xz --all --device /dev/sdb --device /dev/sdc --yes

Several cards are written at once from one decompression of the base, each with its own
identity, its own safety checks (before any card is written) and its own read-back. A card
that fails is reported by node and device while the others finish; the exit status is 1 if
any card failed.")]
pub struct FlashArgs {
    /// The site inventory (TOML).
    pub site: PathBuf,
    /// Apply the inventory's [stage.NAME] overlay.
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<String>,
    /// A node and its card, NODE=DEVICE (repeatable: one card per node); or a single NODE
    /// whose card is the last argument.
    #[arg(
        long = "node",
        value_name = "NODE[=DEVICE]",
        required_unless_present = "all"
    )]
    pub nodes: Vec<String>,
    /// Every node whose platform has a flashable base image, given the --device cards in the
    /// site's order; the assignment is printed and must be confirmed (or --yes).
    #[arg(long, conflicts_with = "nodes", requires = "devices")]
    pub all: bool,
    /// With --all: only nodes of this platform.
    #[arg(long, value_name = "PLATFORM", requires = "all", value_parser = FLASHABLE)]
    pub platform: Option<String>,
    /// With --all: a card, one per node in the site's order (repeatable).
    #[arg(long = "device", value_name = "DEVICE", requires = "all")]
    pub devices: Vec<PathBuf>,
    /// Confirm --all's assignment of nodes to cards without asking.
    #[arg(long)]
    pub yes: bool,
    /// Append one JSON line per card to FILE: time, node, device, the card's model and
    /// serial (sysfs), instance id, bytes written and their sha256 (read back), result.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// The base image: raw .img, .img.xz or .img.gz.
    #[arg(long, value_name = "FILE")]
    pub base: PathBuf,
    /// The base's block map (bmaptool's .bmap) [default: BASE.bmap beside the base, found as
    /// bmaptool finds it, if there is one]: only its blocks and the boot partition are written
    /// (and read back), its checksums checked while writing (a mismatch stops every card before
    /// that range); without one, what the base's file systems use (ext4 block bitmaps), or every
    /// block where they cannot be read.
    #[arg(long, value_name = "FILE")]
    pub bmap: Option<PathBuf>,
    /// The card of a single --node NODE: a whole removable block device, e.g. /dev/sdX or
    /// /dev/mmcblk0.
    pub device: Option<PathBuf>,
    /// Write even if a target is not a removable block device, is mounted or holds the
    /// running system.
    #[arg(long)]
    pub force: bool,
    /// Scratch space: a compressed base is decompressed here once, and each card's boot
    /// partition edited in a sparse copy of the image's head; a raw base is read in place.
    #[arg(long, value_name = "DIR", default_value = "/var/tmp")]
    pub tmp_dir: PathBuf,
    /// Give up a card that makes no progress for this many seconds: too slow or stuck (a
    /// failing card or reader). A healthy card, even at Class 2's 2 MB/s, takes about 2 s for
    /// each 4 MiB chunk; the others carry on and the report names it.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub stall_timeout: u64,
    #[arg(long, help = crate::cli::JSON_HELP)]
    pub json: bool,
}

pub fn flash_cmd(global: &Global, args: &FlashArgs) -> anyhow::Result<ExitCode> {
    interruptible(global, "flash", || flash_inner(global, args))
}

fn flash_inner(global: &Global, args: &FlashArgs) -> anyhow::Result<ExitCode> {
    // Refuse a wrong target before the long work (and before the site is
    // read: a wrong card is the costlier mistake).
    let specs = card_specs(args)?;
    let mut targets = Vec::with_capacity(specs.len());
    let mut refused = Vec::new();
    for (_, device) in &specs {
        let target = flash::inspect(device)?;
        refused.extend(target.refusals.iter().cloned());
        targets.push(target);
    }
    if !refused.is_empty() {
        if !args.force {
            bail!(
                "refusing to flash {}: {} (--force overrides)",
                specs
                    .iter()
                    .map(|(_, d)| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                refused.join("; ")
            );
        }
        for r in &refused {
            if global.out.json() {
                global
                    .out
                    .warn(crate::envelope::Notice::new(format!("--force: {r}")));
            } else {
                eprintln!("warning: --force: {r}");
            }
        }
    }
    // Cards too small for the image, before the base is decompressed, when
    // its size is known without that (a raw base, or its block map).
    if let Some(len) = known_image_len(&args.base, args.bmap.as_deref()) {
        refuse_small(targets.iter().map(|t| (None, t, len)))?;
    }
    let all = base::all()?;
    let (planned, rendered) = prepare(global, &args.site, args.stage.as_deref(), &all)?;
    let picks = assign(&planned, &all, args, &specs)?;
    if args.all || picks.len() > 1 {
        confirm(global, args, &planned, &picks, &specs)?;
    }
    std::fs::create_dir_all(&args.tmp_dir)
        .with_context(|| format!("creating {}", args.tmp_dir.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("haseed-flash-")
        .tempdir_in(&args.tmp_dir)
        .with_context(|| format!("creating a scratch directory in {}", args.tmp_dir.display()))?;
    // Job outputs name the scratch files nothing writes: a card's image is
    // its node's head over the shared base (`cards.rs`).
    let images: Vec<(usize, PathBuf)> = picks
        .iter()
        .map(|&(i, _)| {
            let name = &planned.inv.site.nodes[i].name;
            (i, scratch.path().join(format!("{name}.img")))
        })
        .collect();
    let jobs = jobs(&planned, &rendered, &all, &images)?;
    // One decompression of the base for every card.
    let cards = super::cards::prepare(
        &args.base,
        args.bmap.as_deref(),
        &jobs,
        &all,
        global.quiet,
        scratch.path(),
    )?;
    let made = &cards.made;
    // Every card big enough before any is written.
    refuse_small(
        picks
            .iter()
            .zip(made)
            .map(|(&(k, _), m)| (Some(m.node.as_str()), &targets[k], m.image_bytes)),
    )?;
    let multi = indicatif::MultiProgress::new();
    let several = picks.len() > 1;
    let checker = match &cards.base_map {
        Some(_) => super::bmap::Checker::default(),
        None => super::bmap::Checker::passed(),
    };
    let stall = std::time::Duration::from_secs(args.stall_timeout.max(1));
    let watches: Vec<flash::Watch> = picks.iter().map(|_| flash::Watch::default()).collect();
    std::thread::scope(|scope| {
        if let Some((map, _)) = &cards.base_map {
            let (checker, base) = (&checker, cards.base());
            scope.spawn(move || checker.run(map, base));
        }
        let handles: Vec<_> = picks
            .iter()
            .zip(made)
            .zip(&watches)
            .enumerate()
            .map(|(j, ((&(k, _), m), watch))| {
                let target = &targets[k];
                let label = |what: &str| {
                    if several {
                        format!("{} {what}", m.node)
                    } else {
                        what.to_string()
                    }
                };
                let (write, verify) = (
                    Progress::in_multi(&multi, &label("write"), global.quiet),
                    Progress::in_multi(&multi, &label("verify"), global.quiet),
                );
                let (image, checker) = (cards.image(j), &checker);
                scope.spawn(move || {
                    let meters = flash::Meters {
                        write: &write,
                        verify: &verify,
                        watch,
                    };
                    flash::write(&image, m.image_bytes, &m.ranges, checker, target, &meters)
                })
            })
            .collect();
        // Every card finishes, fails, or is given up after `stall` without
        // progress (its thread may stay blocked in the kernel until the card
        // answers; the others do not wait for it).
        loop {
            let mut waiting = false;
            for (h, w) in handles.iter().zip(&watches) {
                if h.is_finished() || w.given_up() {
                    continue;
                }
                if w.idle() > stall {
                    w.give_up();
                } else {
                    waiting = true;
                }
            }
            if !waiting {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let stuck = handles.iter().any(|h| !h.is_finished());
        let results: Vec<anyhow::Result<flash::Written>> = handles
            .into_iter()
            .zip(&watches)
            .map(|(h, w)| {
                if w.given_up() {
                    return Err(anyhow::anyhow!(
                        "no progress for {} s (--stall-timeout): the card is too slow or stuck; given up, it does not boot",
                        stall.as_secs()
                    ));
                }
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a card writer panicked")))
            })
            .collect();
        let concluded = conclude(global, args, &picks, made, &targets, results);
        if stuck {
            // Leaving this scope would wait for the stuck writer: report
            // now, and exit.
            let code = match &concluded {
                Ok(code) if *code == ExitCode::SUCCESS => 0,
                _ => 1,
            };
            if global.out.json() {
                let _ = crate::envelope::print(&global.out.document("flash", &concluded));
            } else if let Err(e) = &concluded {
                eprintln!("error: {e:#}");
            }
            std::process::exit(code);
        }
        concluded
    })
}

/// The cards' outcomes: the ledger, the report, the exit status.
fn conclude(
    global: &Global,
    args: &FlashArgs,
    picks: &[(usize, usize)],
    made: &[Made],
    targets: &[flash::Target],
    results: Vec<anyhow::Result<flash::Written>>,
) -> anyhow::Result<ExitCode> {
    let report: Vec<Card> = picks
        .iter()
        .zip(made)
        .zip(&results)
        .map(|((&(k, _), m), r)| Card::of(m, &targets[k], r))
        .collect();
    if let Some(ledger) = &args.ledger {
        append_ledger(ledger, &report)?;
    }
    // A signal stopped the writers: the interrupt path reports it.
    if let Some(e) = results.into_iter().filter_map(Result::err).find(|e| {
        e.chain()
            .any(|c| c.downcast_ref::<crate::interrupt::Interrupted>().is_some())
    }) {
        return Err(e);
    }
    let failed: Vec<&Card> = report.iter().filter(|c| c.error.is_some()).collect();
    if global.out.json() {
        if let [card] = report.as_slice() {
            // One card: the fields this command has always had.
            let m = &made[0];
            global.out.field("node", &card.node)?;
            global.out.field("device", &card.device)?;
            global.out.field("bytes", m.image_bytes)?;
            global.out.field("verified", card.error.is_none())?;
            global.out.field("seed", m.seed)?;
            global.out.field("instance_id", &m.instance_id)?;
            global.out.field("base", &m.base)?;
        }
        global.out.field("cards", &report)?;
    } else if !global.quiet {
        for (c, m) in report.iter().zip(made) {
            if let Some(written) = c.bytes_written {
                eprintln!(
                    "{}: wrote and verified {written} bytes of the {}-byte image on {} (the blocks its block map covers and the first MiB; {} seed, instance {})",
                    c.node, m.image_bytes, c.device, m.seed, m.instance_id
                );
            }
        }
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let message = format!(
        "{} of {} cards failed: {}{}",
        failed.len(),
        report.len(),
        failed
            .iter()
            .map(|c| format!(
                "node {} on {}: {}",
                c.node,
                c.device,
                c.error.as_deref().unwrap_or_default()
            ))
            .collect::<Vec<_>>()
            .join("; "),
        if failed.len() < report.len() {
            "; the other cards were written and verified"
        } else {
            ""
        }
    );
    if global.out.json() {
        global.out.error(crate::envelope::Notice::new(message));
    } else {
        eprintln!("error: {message}");
    }
    Ok(ExitCode::FAILURE)
}

/// Refuses, naming each, the block devices smaller than their image
/// (`(node, card, image bytes)`); nothing has been written yet.
fn refuse_small<'t>(
    cards: impl Iterator<Item = (Option<&'t str>, &'t flash::Target, u64)>,
) -> anyhow::Result<()> {
    let small: Vec<String> = cards
        .filter_map(|(node, t, len)| {
            let size = t.size.filter(|_| t.block_device)?;
            (size < len).then(|| {
                let why = flash::too_small(&t.path, size, len);
                node.map_or_else(|| why.clone(), |n| format!("{n}: {why}"))
            })
        })
        .collect();
    if !small.is_empty() {
        bail!(
            "refusing to flash: {}; nothing was written",
            small.join("; ")
        );
    }
    Ok(())
}

/// The decompressed base's size, where it is known before decompressing:
/// its block map's `ImageSize`, or a raw base's length.
fn known_image_len(base: &Path, bmap: Option<&Path>) -> Option<u64> {
    match super::bmap::for_base(base, bmap) {
        Ok(Some((map, _))) => return Some(map.image_size),
        Ok(None) => {}
        Err(_) => return None,
    }
    let mut head = [0u8; 8];
    let f = std::fs::File::open(base).ok()?;
    let n = std::os::unix::fs::FileExt::read_at(&f, &mut head, 0).ok()?;
    match super::source::sniff(&head[..n]) {
        Ok(super::source::Format::Raw) => f.metadata().ok().map(|m| m.len()),
        _ => None,
    }
}

/// The cards on the command line: (the node's name, unless --all, device).
fn card_specs(args: &FlashArgs) -> anyhow::Result<Vec<(Option<String>, PathBuf)>> {
    let specs: Vec<(Option<String>, PathBuf)> = if args.all {
        if let Some(d) = &args.device {
            bail!(
                "--all takes its cards as --device {} (one per node, in the site's order), not as the last argument",
                d.display()
            );
        }
        args.devices.iter().map(|d| (None, d.clone())).collect()
    } else {
        let paired = args.nodes.iter().any(|n| n.contains('='));
        match (&args.device, args.nodes.as_slice()) {
            (Some(d), [one]) if !paired => vec![(Some(one.clone()), d.clone())],
            (Some(d), _) => bail!(
                "the last argument ({}) is the card of a single --node NODE; for several cards give --node NODE=DEVICE for each",
                d.display()
            ),
            (None, nodes) => nodes
                .iter()
                .map(|spec| match spec.split_once('=') {
                    Some((n, d)) if !n.is_empty() && !d.is_empty() => {
                        Ok((Some(n.to_string()), PathBuf::from(d)))
                    }
                    _ => bail!(
                        "--node {spec}: which card? give --node NODE=DEVICE (or a single --node NODE with the device as the last argument)"
                    ),
                })
                .collect::<anyhow::Result<_>>()?,
        }
    };
    // A device listed twice, by any name (a symlink such as
    // /dev/disk/by-id/...), would get two images at once.
    let mut seen: Vec<(PathBuf, &Path, Option<&str>)> = Vec::new();
    for (node, device) in &specs {
        let real = std::fs::canonicalize(device).unwrap_or_else(|_| device.clone());
        if let Some((_, first, other)) = seen.iter().find(|(r, _, _)| *r == real) {
            let who = |n: Option<&str>| n.map(|n| format!(" (node {n})")).unwrap_or_default();
            bail!(
                "{} and {} are the same card{}{}: one node per card; nothing was written",
                first.display(),
                device.display(),
                who(*other),
                who(node.as_deref())
            );
        }
        seen.push((real, device, node.as_deref()));
    }
    Ok(specs)
}

/// Each card's node: (node index, index into the cards).
fn assign(
    planned: &Planned,
    all: &[BaseImage],
    args: &FlashArgs,
    specs: &[(Option<String>, PathBuf)],
) -> anyhow::Result<Vec<(usize, usize)>> {
    let site = &planned.inv.site;
    let nodes: Vec<usize> = if args.all {
        let nodes = flashable_nodes(site, all, args.platform.as_deref())?;
        if nodes.len() != specs.len() {
            bail!(
                "--all: {} nodes to flash ({}) but {} --device cards: give one card per node, in this order",
                nodes.len(),
                nodes
                    .iter()
                    .map(|&i| site.nodes[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                specs.len()
            );
        }
        nodes
    } else {
        specs
            .iter()
            .map(|(n, _)| node_index(planned, n.as_deref().unwrap_or_default()))
            .collect::<anyhow::Result<_>>()?
    };
    for (a, &i) in nodes.iter().enumerate() {
        if let Some(b) = nodes[..a].iter().position(|&j| j == i) {
            bail!(
                "node {} is given two cards ({} and {}): one card per node; nothing was written",
                site.nodes[i].name,
                specs[b].1.display(),
                specs[a].1.display()
            );
        }
    }
    Ok(nodes.into_iter().enumerate().map(|(k, i)| (i, k)).collect())
}

/// Prints which node goes on which card; with --all (cards matched to nodes
/// by order) asks, unless --yes.
fn confirm(
    global: &Global,
    args: &FlashArgs,
    planned: &Planned,
    picks: &[(usize, usize)],
    specs: &[(Option<String>, PathBuf)],
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let lines: Vec<String> = picks
        .iter()
        .map(|&(i, k)| {
            format!(
                "  {} -> {}",
                planned.inv.site.nodes[i].name,
                specs[k].1.display()
            )
        })
        .collect();
    if !global.quiet && !global.out.json() {
        eprintln!("haseed flash: {} cards:\n{}", picks.len(), lines.join("\n"));
    }
    if !args.all || args.yes {
        return Ok(());
    }
    if global.out.json() || !std::io::stdin().is_terminal() {
        bail!(
            "--all gives the cards to the nodes in the site's order ({}): check it and confirm with --yes; nothing was written",
            lines
                .iter()
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprint!("Write these cards? Everything on them is lost. [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("not confirmed; nothing was written");
    }
    Ok(())
}

/// One card's outcome, for the report and the ledger.
#[derive(serde::Serialize)]
struct Card {
    time: String,
    node: String,
    device: String,
    model: Option<String>,
    serial: Option<String>,
    instance_id: String,
    base: String,
    bytes_written: Option<u64>,
    sha256: Option<String>,
    result: &'static str,
    error: Option<String>,
}

impl Card {
    fn of(m: &Made, target: &flash::Target, r: &anyhow::Result<flash::Written>) -> Card {
        let (model, serial) = flash::identity(target);
        let (written, error) = match r {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        Card {
            time: crate::kubernetes::utc_now(),
            node: m.node.clone(),
            device: target.path.display().to_string(),
            model,
            serial,
            instance_id: m.instance_id.clone(),
            base: m.base.clone(),
            bytes_written: written.map(|w| w.bytes),
            sha256: written.map(|w| w.sha256.clone()),
            result: if error.is_none() {
                "verified"
            } else {
                "failed"
            },
            error,
        }
    }
}

/// Appends one JSON line per card (one write each, O_APPEND: lines from
/// runs side by side do not interleave).
fn append_ledger(path: &Path, cards: &[Card]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the ledger {}", path.display()))?;
    for c in cards {
        let mut line = serde_json::to_vec(c)?;
        line.push(b'\n');
        f.write_all(&line)
            .with_context(|| format!("appending to the ledger {}", path.display()))?;
    }
    Ok(())
}

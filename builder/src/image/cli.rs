//! The `image`, `flash` and `seed` subcommands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::base::{self, BaseImage};
use super::{flash, Job, Made};
use crate::cli::{plan_site, Global, Planned};
use crate::pipeline;

#[derive(Args, Debug)]
pub struct ImageArgs {
    /// The site inventory (TOML).
    pub site: PathBuf,
    /// Apply the inventory's [stage.NAME] overlay.
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// The node(s) to make images for (repeatable).
    #[arg(long, value_name = "NODE", required_unless_present = "all")]
    pub node: Vec<String>,
    /// Every node whose platform has a flashable base image (narrow with --platform).
    #[arg(long, conflicts_with = "node")]
    pub all: bool,
    /// With --all: only nodes of this platform.
    #[arg(long, value_name = "PLATFORM", requires = "all", value_parser = FLASHABLE)]
    pub platform: Option<String>,
    /// The base image: raw .img, .img.xz or .img.gz (recognised by content).
    #[arg(long, value_name = "FILE")]
    pub base: PathBuf,
    /// Output: a file for one --node (.img, .img.xz or .img.gz), else a directory that gets NODE.img per node.
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
    /// Compression of the images written into an output directory.
    #[arg(long, value_enum, default_value_t = Compress::None)]
    pub compress: Compress,
    #[arg(long, help = crate::cli::JSON_HELP)]
    pub json: bool,
}

/// The platforms with a base description in images/ (a test keeps the two
/// in step).
pub const FLASHABLE: [&str; 3] = ["raspios", "raspios-legacy", "ubuntu-raspi"];

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compress {
    None,
    Gz,
    Xz,
}

#[derive(Args, Debug)]
pub struct FlashArgs {
    /// The site inventory (TOML).
    pub site: PathBuf,
    /// Apply the inventory's [stage.NAME] overlay.
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// The node whose card this is.
    #[arg(long, value_name = "NODE")]
    pub node: String,
    /// The base image: raw .img, .img.xz or .img.gz.
    #[arg(long, value_name = "FILE")]
    pub base: PathBuf,
    /// The card: a whole removable block device, e.g. /dev/sdX or /dev/mmcblk0.
    pub device: PathBuf,
    /// Write even if the target is not a removable block device, is mounted or holds the running system.
    #[arg(long)]
    pub force: bool,
    /// Where the image is assembled before writing.
    #[arg(long, value_name = "DIR", default_value = "/var/tmp")]
    pub tmp_dir: PathBuf,
    #[arg(long, help = crate::cli::JSON_HELP)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// The site inventory (TOML).
    pub site: PathBuf,
    /// Apply the inventory's [stage.NAME] overlay.
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// The node whose seed to write.
    #[arg(long, value_name = "NODE")]
    pub node: String,
    /// The seed disk to write (a FAT volume labelled cidata).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[arg(long, help = crate::cli::JSON_HELP)]
    pub json: bool,
}

/// Plans the site with each node's packages named as its base image names them,
/// and renders.
fn prepare(
    global: &Global,
    site: &Path,
    stage: Option<&str>,
    all: &[BaseImage],
) -> anyhow::Result<(Planned, Vec<(String, crate::render::NodeArtifacts)>)> {
    let mut planned = plan_site(global, site, stage)?;
    for (node, plan) in planned.inv.site.nodes.iter().zip(planned.plans.iter_mut()) {
        if let Some(b) = all.iter().find(|b| b.platform == node.platform.as_str()) {
            super::apply_package_names(plan, b);
        }
    }
    let nodes = pipeline::render(&planned.inv, &planned.plans)?;
    Ok((planned, nodes))
}

fn node_index(planned: &Planned, name: &str) -> anyhow::Result<usize> {
    planned
        .inv
        .site
        .nodes
        .iter()
        .position(|n| n.name == name)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no node named {name:?} (nodes: {})",
                planned.inv.path.display(),
                planned
                    .inv
                    .site
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn jobs<'a>(
    planned: &'a Planned,
    rendered: &'a [(String, crate::render::NodeArtifacts)],
    all: &'a [BaseImage],
    picks: &[(usize, PathBuf)],
) -> anyhow::Result<Vec<Job<'a>>> {
    picks
        .iter()
        .map(|(i, out)| {
            let node = &planned.inv.site.nodes[*i];
            Ok(Job {
                node: &node.name,
                base: super::base_for(all, &node.name, node.platform.as_str())?,
                site: &planned.inv.site,
                node_index: *i as u32,
                plan: &planned.plans[*i],
                artifacts: &rendered[*i].1,
                ssh_authorized_keys: &planned.inv.node_extras[*i].ssh_authorized_keys,
                output: out.clone(),
            })
        })
        .collect()
}

fn report(global: &Global, made: &[Made]) -> anyhow::Result<()> {
    if global.out.json() {
        global.out.field("images", made)?;
    } else if !global.quiet {
        for m in made {
            eprintln!(
                "{}: {} ({} seed, {}, instance {})",
                m.node,
                m.output.display(),
                m.seed,
                m.base,
                m.instance_id
            );
        }
    }
    Ok(())
}

/// SIGINT, SIGTERM or SIGHUP during `image` or `flash`: the temporary
/// outputs are gone by the time the error gets here (they remove themselves
/// as the error unwinds); say so and exit 128 + the signal.
fn interruptible(
    global: &Global,
    what: &str,
    run: impl FnOnce() -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    crate::interrupt::install();
    match run() {
        Err(e) => match e
            .chain()
            .find_map(|c| c.downcast_ref::<crate::interrupt::Interrupted>())
        {
            Some(i) => {
                let message = format!("{e:#}; every temporary output was removed");
                eprintln!("haseed {what}: {message}");
                global.out.error(crate::envelope::Notice::new(message));
                Ok(ExitCode::from(i.exit_code()))
            }
            None => Err(e),
        },
        ok => ok,
    }
}

pub fn image(global: &Global, args: &ImageArgs) -> anyhow::Result<ExitCode> {
    interruptible(global, "image", || image_inner(global, args))
}

fn image_inner(global: &Global, args: &ImageArgs) -> anyhow::Result<ExitCode> {
    let all = base::all()?;
    let (planned, rendered) = prepare(global, &args.site, args.stage.as_deref(), &all)?;
    let site = &planned.inv.site;
    let mut picks: Vec<usize> = if args.all {
        let flashable = |p: &str| all.iter().any(|b| b.platform == p);
        let chosen: Vec<usize> = (0..site.nodes.len())
            .filter(|&i| {
                let p = site.nodes[i].platform.as_str();
                flashable(p) && args.platform.as_deref().is_none_or(|want| want == p)
            })
            .collect();
        let mut platforms: Vec<&str> = chosen
            .iter()
            .map(|&i| site.nodes[i].platform.as_str())
            .collect();
        platforms.sort_unstable();
        platforms.dedup();
        if platforms.len() > 1 {
            bail!(
                "--all: the site's nodes have several flashable platforms ({}), each needing its own base image: add --platform",
                platforms.join(", ")
            );
        }
        if chosen.is_empty() {
            bail!(
                "--all: no node of the site has a flashable platform{}",
                args.platform
                    .as_deref()
                    .map(|p| format!(" {p}"))
                    .unwrap_or_default()
            );
        }
        chosen
    } else {
        args.node
            .iter()
            .map(|n| node_index(&planned, n))
            .collect::<anyhow::Result<_>>()?
    };
    picks.dedup();
    let single_file = picks.len() == 1 && !args.all && !args.output.is_dir();
    if !single_file {
        let names = picks
            .iter()
            .map(|&i| site.nodes[i].name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let out = args.output.display();
        let file_like = [".img", ".img.xz", ".img.gz"]
            .iter()
            .any(|e| args.output.to_string_lossy().ends_with(e));
        if args.output.exists() && !args.output.is_dir() {
            bail!(
                "-o {out}: is a file, but the images of {names} go into a directory (one NODE.img each): give a directory (e.g. out/images/)"
            );
        }
        if file_like && !args.output.exists() {
            bail!(
                "-o {out}: names an image file, but the images of {names} go into a directory (one NODE.img each): give a directory (e.g. out/images/), or a single --node"
            );
        }
    }
    let ext = match args.compress {
        Compress::None => "img",
        Compress::Gz => "img.gz",
        Compress::Xz => "img.xz",
    };
    let picks: Vec<(usize, PathBuf)> = picks
        .into_iter()
        .map(|i| {
            let out = if single_file {
                args.output.clone()
            } else {
                args.output.join(format!("{}.{ext}", site.nodes[i].name))
            };
            (i, out)
        })
        .collect();
    let jobs = jobs(&planned, &rendered, &all, &picks)?;
    let made = super::make(&args.base, &jobs, &all, global.quiet)?;
    report(global, &made)?;
    Ok(ExitCode::SUCCESS)
}

pub fn flash_cmd(global: &Global, args: &FlashArgs) -> anyhow::Result<ExitCode> {
    interruptible(global, "flash", || flash_inner(global, args))
}

fn flash_inner(global: &Global, args: &FlashArgs) -> anyhow::Result<ExitCode> {
    // Refuse a wrong target before the long work.
    let target = flash::inspect(&args.device)?;
    if !target.refusals.is_empty() {
        if args.force {
            for r in &target.refusals {
                if global.out.json() {
                    global
                        .out
                        .warn(crate::envelope::Notice::new(format!("--force: {r}")));
                } else {
                    eprintln!("warning: --force: {r}");
                }
            }
        } else {
            bail!(
                "refusing to flash {}: {} (--force overrides)",
                args.device.display(),
                target.refusals.join("; ")
            );
        }
    }
    let all = base::all()?;
    let (planned, rendered) = prepare(global, &args.site, args.stage.as_deref(), &all)?;
    let i = node_index(&planned, &args.node)?;
    std::fs::create_dir_all(&args.tmp_dir)
        .with_context(|| format!("creating {}", args.tmp_dir.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("haseed-flash-")
        .tempdir_in(&args.tmp_dir)
        .with_context(|| format!("creating a scratch directory in {}", args.tmp_dir.display()))?;
    let img = scratch.path().join(format!("{}.img", args.node));
    let jobs = jobs(&planned, &rendered, &all, &[(i, img.clone())])?;
    let made = super::make(&args.base, &jobs, &all, global.quiet)?;
    let file = std::fs::File::open(&img)?;
    flash::write(&file, made[0].image_bytes, &target, global.quiet)?;
    if global.out.json() {
        global.out.field("node", &args.node)?;
        global
            .out
            .field("device", args.device.display().to_string())?;
        global.out.field("bytes", made[0].image_bytes)?;
        global.out.field("verified", true)?;
        global.out.field("seed", made[0].seed)?;
        global.out.field("instance_id", &made[0].instance_id)?;
        global.out.field("base", &made[0].base)?;
    } else if !global.quiet {
        eprintln!(
            "{}: wrote and verified {} bytes on {} ({} seed, instance {})",
            args.node,
            made[0].image_bytes,
            args.device.display(),
            made[0].seed,
            made[0].instance_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn seed_cmd(global: &Global, args: &SeedArgs) -> anyhow::Result<ExitCode> {
    let planned = plan_site(global, &args.site, args.stage.as_deref())?;
    let i = node_index(&planned, &args.node)?;
    let rendered = pipeline::render(&planned.inv, &planned.plans)?;
    let size = super::seed::write(&rendered[i].1, &args.output)?;
    if global.out.json() {
        global.out.field("node", &args.node)?;
        global
            .out
            .field("output", args.output.display().to_string())?;
        global.out.field("bytes", size)?;
        global.out.field("label", "cidata")?;
        global
            .out
            .field("instance_id", super::instance_id(&rendered[i].1))?;
    } else if !global.quiet {
        eprintln!(
            "{}: NoCloud seed disk {} ({} bytes, label cidata, instance {})",
            args.node,
            args.output.display(),
            size,
            super::instance_id(&rendered[i].1)
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_choices_are_the_described_bases() {
        let mut described: Vec<String> = base::all()
            .expect("descriptions parse")
            .into_iter()
            .map(|b| b.platform)
            .collect();
        described.sort();
        let mut listed: Vec<&str> = FLASHABLE.to_vec();
        listed.sort_unstable();
        assert_eq!(described, listed);
    }
}

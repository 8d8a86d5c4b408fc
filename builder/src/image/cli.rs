//! The `image`, `flash` and `seed` subcommands (`flash` in `flash_cmd.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::base::{self, BaseImage};
pub use super::flash_cmd::{flash_cmd, FlashArgs};
use super::{Job, Made};
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
    /// The base's block map (bmaptool's .bmap) [default: BASE.bmap beside the base, found as
    /// bmaptool finds it, if there is one]: only its blocks and the boot partition are mapped in
    /// the image's own block map (and written to cards); without one, every block.
    #[arg(long, value_name = "FILE")]
    pub bmap: Option<PathBuf>,
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
pub(super) fn prepare(
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

pub(super) fn node_index(planned: &Planned, name: &str) -> anyhow::Result<usize> {
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

pub(super) fn jobs<'a>(
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
pub(super) fn interruptible(
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

/// `--all`: every node whose platform has a base description (of one
/// platform, or `platform`), in the site's order.
pub(super) fn flashable_nodes(
    site: &crate::contract::Site,
    all: &[BaseImage],
    platform: Option<&str>,
) -> anyhow::Result<Vec<usize>> {
    let flashable = |p: &str| all.iter().any(|b| b.platform == p);
    let chosen: Vec<usize> = (0..site.nodes.len())
        .filter(|&i| {
            let p = site.nodes[i].platform.as_str();
            flashable(p) && platform.is_none_or(|want| want == p)
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
            platform.map(|p| format!(" {p}")).unwrap_or_default()
        );
    }
    Ok(chosen)
}

pub fn image(global: &Global, args: &ImageArgs) -> anyhow::Result<ExitCode> {
    interruptible(global, "image", || image_inner(global, args))
}

fn image_inner(global: &Global, args: &ImageArgs) -> anyhow::Result<ExitCode> {
    let all = base::all()?;
    let (planned, rendered) = prepare(global, &args.site, args.stage.as_deref(), &all)?;
    let site = &planned.inv.site;
    let mut picks: Vec<usize> = if args.all {
        flashable_nodes(site, &all, args.platform.as_deref())?
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
    let made = super::make(&args.base, args.bmap.as_deref(), &jobs, &all, global.quiet)?;
    report(global, &made)?;
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

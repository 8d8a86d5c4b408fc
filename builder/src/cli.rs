//! Command-line types (clap) and one function per subcommand. Files,
//! processes and the terminal are touched here and in `output`, nowhere else.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::inventory::Inventory;
use crate::pipeline::{self, BuildError};
use crate::policy::{CompileLimits, CompileNotice, Compiler, Host, Limits, PluginLog};
use crate::{output, term, validate, view};

/// `println!` through [`term::safe`]: every line this module prints may quote a plugin or the
/// site file, so none reaches the terminal raw. Use these, never `println!`/`eprintln!`.
macro_rules! outln {
    ($($arg:tt)*) => {
        println!("{}", term::safe(&format!($($arg)*)))
    };
}

/// `eprintln!` through [`term::safe`] (see [`outln`]).
macro_rules! errln {
    ($($arg:tt)*) => {
        eprintln!("{}", term::safe(&format!($($arg)*)))
    };
}

#[derive(Parser, Debug)]
#[command(
    name = "haseed",
    version,
    about = "Turn one site inventory into ready-to-boot HA cluster nodes",
    long_about = "haseed reads a site inventory (TOML: networks, VIPs, services, nodes with roles), \
lets a chain of sandboxed WebAssembly policy plugins decide each node's configuration (the built-in \
default policy first, then the site's [[plugin]]s in order), checks every decision, and renders \
keepalived.conf, haproxy.cfg and a cloud-init NoCloud seed (user-data, meta-data, network-config) per node.",
    after_help = "Examples:\n  \
haseed plan examples/pi-k8s/site.toml                 table of per-node decisions\n  \
haseed plan examples/pi-k8s/site.toml --format json   the same for machines\n  \
haseed plan examples/pi-k8s/site.toml --format dot | dot -Tsvg > topology.svg\n  \
haseed build examples/pi-k8s/site.toml -o out/        every node's artifacts + out/pi-k8s.tar.gz\n  \
haseed validate examples/pi-k8s/site.toml             build in memory, run the real validators\n  \
haseed diff examples/pi-k8s/site.toml -i ~/.ssh/id_ed25519   what the live nodes hold against this build\n  \
haseed apply examples/pi-k8s/site.toml --dry-run      the roll onto them: steps, order and why\n\n\
Every command that reports a result takes --json: one JSON document on stdout, errors included \
(with file, line and column)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Args, Debug)]
pub struct Global {
    /// Where compiled plugins are cached [default: $HASEED_CACHE_DIR, $XDG_CACHE_HOME/haseed or ~/.cache/haseed].
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile plugins afresh and keep nothing on disk.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Print only errors (no plugin log, no warnings).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The date (YYYY-MM-DD, UTC) the build-date warnings are judged against: a Kubernetes minor
    /// past its end of life, a pinned signing key expiring within 60 days [default: today].
    /// Changes no artifact.
    #[arg(long, global = true, value_name = "DATE", value_parser = parse_day)]
    pub today: Option<crate::kubernetes::Day>,
    /// What a `--json` run gathers for its envelope (fields, warnings, errors).
    #[arg(skip)]
    pub out: crate::envelope::Sink,
}

/// The help of every command's `--json`.
pub const JSON_HELP: &str = "Print one JSON document on stdout instead of text: \
{\"haseed\": {version, schema, command, contract}, \"ok\", the command's own fields, \"warnings\", \"errors\"}, \
each error with its file, line and column when known (README: JSON output). Nothing else goes to \
stdout; progress stays on stderr; the exit status is the same.";

fn parse_day(text: &str) -> Result<crate::kubernetes::Day, String> {
    crate::kubernetes::Day::parse(text).ok_or_else(|| format!("{text:?} is not a date YYYY-MM-DD"))
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Decide every node and show the plan (nothing is written).
    Plan(PlanArgs),
    /// Decide, check and render every node into an output directory.
    ///
    /// Writes DIR/NODE/{user-data,meta-data,network-config}, DIR/NODE/files/... (the files as they
    /// land on the node) and DIR/SITE.tar.gz. The directory is replaced atomically: after an error
    /// nothing from this run is left.
    Build(BuildArgs),
    /// Build in memory and run the real validators on every node's output:
    /// `haproxy -c -dW`, `keepalived -t` (in a throwaway network namespace, needs root)
    /// and `cloud-init schema`.
    Validate(ValidateArgs),
    /// Write one node's EC2 user-data (the rendered cloud-config) for run-instances or a
    /// launch template.
    ///
    /// EC2 accepts 16384 bytes: a larger cloud-config is gzip-compressed (cloud-init inflates
    /// it); when even that is too large the command fails with both sizes and the largest
    /// files to trim. --gzip compresses always.
    UserData(UserDataArgs),
    /// Prove failover in network namespaces with the real haproxy and keepalived running the
    /// site's generated configuration (needs root); non-zero exit when the objective is broken.
    ///
    /// The objective is the longest outage a client may see: `--max-outage-ms`, else the
    /// VIP's `max_outage_ms` in the inventory, else 100 ms.
    #[command(after_help = "Examples:\n  \
        sudo haseed lab site.toml --trials 5\n  \
        sudo haseed lab site.toml --vip k8s-api --scenario haproxy-killed --trials 10 --json\n  \
        sudo haseed lab site.toml --svg timelines/\n  \
        sudo haseed lab site.toml --change site-next.toml --trials 10   # your change, rolled as apply would\n\n\
        In the inventory:\n  \
        [[vip]]\n  name = \"db\"\n  ...\n  max_outage_ms = 250   # this VIP's objective")]
    Lab(crate::lab::LabArgs),
    /// Compare live nodes with this build over SSH: files added, changed (unified diff) or
    /// removed, packages missing, services not active, and the build last applied there.
    ///
    /// Exit 0 when every node is in sync, 1 when one drifted, 2 when a node cannot be read. Needs
    /// the nodes' host keys in known_hosts (an unknown or changed key is refused) and sudo on them.
    Diff(crate::apply::DiffArgs),
    /// Roll this build onto live nodes over SSH, hitless: validated on the node, swapped in at
    /// once, reloaded (not restarted where a reload takes effect), rolled back on failure.
    ///
    /// Each VIP's backups go first, one at a time, its active holder last (its VIP handed to a
    /// peer first when its keepalived configuration changes); other nodes one per role at a
    /// time. A node whose validation or health check fails gets its previous files back and the
    /// roll stops. Changes a running node cannot take (its name, address, platform, network)
    /// are refused before anything is done. --dry-run prints the plan and why.
    Apply(crate::apply::ApplyArgs),
    /// Work with policy plugins: inspect a component, pin one in a site.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Make flashable images: the base image with the node's seed on its boot partition.
    ///
    /// The base (raw, .xz or .gz, recognised by content) is decompressed once, as a stream, into
    /// every requested node's image; only the FAT boot partition's files change (the NoCloud seed
    /// or a first-boot script, and cmdline.txt), edited in the image file: no mount, no root.
    /// The same site and base give byte-identical images.
    #[command(after_help = "Examples:\n  \
haseed image site.toml --node lb1 --base 2025-11-24-raspios-trixie-arm64-lite.img.xz -o lb1.img\n  \
haseed image site.toml --node lb1 --base raspios.img.xz -o lb1.img.xz      compressed output\n  \
haseed image site.toml --all --base ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz -o out/images/")]
    Image(crate::image::cli::ImageArgs),
    /// Write nodes' images straight to SD cards (one or many at once), then read each back.
    ///
    /// Refuses a target that is not a whole removable block device, is mounted or holds the running
    /// system, unless --force. The first MiB is written last; everything is synced and read back.
    Flash(crate::image::cli::FlashArgs),
    /// Write a node's NoCloud seed as a small FAT disk labelled cidata (for VMs).
    #[command(
        after_help = "Example:\n  haseed seed site.toml --node db1 -o db1-seed.img\n  \
qemu-system-x86_64 ... -drive file=db1-seed.img,format=raw,if=virtio"
    )]
    Seed(crate::image::cli::SeedArgs),
    /// Print the site file's JSON Schema (Draft 4, for taplo / Even Better TOML) or its reference
    /// page, both made from what the reader itself reads.
    #[command(after_help = "Examples:\n  \
haseed schema > site.schema.json     then `#:schema site.schema.json` on a site file's first line\n  \
haseed schema --format markdown      every key: type, required, default, range, meaning")]
    Schema(SchemaArgs),
    /// Print a shell completion script for haseed's commands and options.
    #[command(after_help = "Install (the files each shell reads at start-up):\n  \
haseed completions bash > /etc/bash_completion.d/haseed    (or ~/.local/share/bash-completion/completions/haseed)\n  \
haseed completions zsh > \"${fpath[1]}/_haseed\"\n  \
haseed completions fish > ~/.config/fish/completions/haseed.fish")]
    Completions(CompletionsArgs),
    /// Write man pages: haseed.1 and one page per command (haseed-build.1, haseed-plugin-test.1,
    /// ...), generated from the same help text as --help.
    #[command(
        after_help = "Example:\n  haseed man -o /usr/local/share/man/man1 && man haseed-build"
    )]
    Man(ManArgs),
    /// Internal: the bounded compiler process (component on stdin, native code on stdout).
    #[command(name = crate::policy::compile::CHILD_SUBCOMMAND, hide = true)]
    CompileComponent,
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    /// json: the JSON Schema; markdown: the reference page (docs/inventory.md).
    #[arg(long, value_enum, default_value_t = SchemaFormat::Json)]
    pub format: SchemaFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaFormat {
    Json,
    Markdown,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing).
    #[arg(short = 'o', long = "out", value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Show what a plugin component is: the contract version it was built against, its name,
    /// version, description, settings and change scope (the plan fields it may change, from its
    /// own info()), its imports and exports, and whether this host can run it.
    Inspect(InspectArgs),
    /// Pin a plugin in a site file: adds (or updates) its [[plugin]] entry with the file's
    /// sha256 and the change scope it declares (`scope = [...]`: the plan fields it may
    /// change; narrow it by hand to restrict the plugin further), after checking that it
    /// loads, accepts its settings and keeps to its scope on that site. A plugin that declares
    /// no scope may change any field: added with a warning.
    Add(AddArgs),
    /// Try a plugin on a site before pinning it: runs the site's chain without and with the plugin
    /// (appended last) and shows, per node, what it changed in the plan and in the rendered files,
    /// its log output and warnings. Exits non-zero when the plugin fails on any node.
    Check(CheckArgs),
    /// Run a plugin's fixtures (its regression tests) and report pass/fail per fixture.
    ///
    /// Every *.toml in FIXTURES (default ./fixtures) names a site
    /// (`site`, default site.toml next to it), the plugin's `settings`, and what must come out
    /// when the plugin runs last in that site's chain: `[[expect]]` entries (`node` plus either
    /// `plan` = a JSON pointer into the node's plan as `haseed plan --json` prints it, with
    /// `equals` or `contains`, or `file` = a path on the node, with `contains` or
    /// `equals_file`), or an `[error]` the plugin must fail with (`contains`, optional `node`).
    /// Prints pass/fail per fixture with a diff; --json, --junit FILE; exits 1 on any failure.
    Test(TestArgs),
    /// Start a plugin: a Rust project that builds with plain cargo for wasm32-wasip2 (and with
    /// cargo-component), with this host's WIT, a README and an example test.
    New(NewArgs),
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The plugin's name (lowercase letters, digits, '-'); also its directory.
    pub name: String,
    /// Where to create the project [default: ./NAME].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The plugin's language: rust (plain cargo / cargo-component) or python (componentize-py).
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The plugin component (.wasm).
    pub file: PathBuf,
    /// The site to try it on.
    #[arg(long, value_name = "SITE")]
    pub site: PathBuf,
    /// Settings for the plugin, as a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    pub settings: String,
    /// Only show this node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    #[arg(long, help = JSON_HELP)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// The plugin component (.wasm).
    pub file: PathBuf,
    /// The fixtures directory [default: ./fixtures].
    pub fixtures: Option<PathBuf>,
    #[arg(long, help = JSON_HELP)]
    pub json: bool,
    /// Also write the outcomes as JUnit XML to FILE (for CI systems).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The plugin component (.wasm).
    pub file: PathBuf,
    #[arg(long, help = JSON_HELP)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The plugin component (.wasm).
    pub file: PathBuf,
    /// The site file to pin it in (edited in place, comments kept).
    #[arg(long, value_name = "SITE")]
    pub site: PathBuf,
    /// Settings for the plugin, as a JSON object (stored as a TOML table).
    #[arg(long, value_name = "JSON")]
    pub settings: Option<String>,
    #[arg(long, help = JSON_HELP)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The site inventory (TOML).
    pub site: PathBuf,
    /// Apply this stage's `[stage.NAME]` overlays to the inventory.
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Same as --format json: the plan in the JSON envelope (README: JSON output).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A table, one row per node.
    Table,
    /// The site and every node's plan as JSON.
    Json,
    /// Graphviz dot: VIPs, holders, services, backends (pipe into `dot -Tsvg`).
    Dot,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The site inventory (TOML).
    pub site: PathBuf,
    /// Apply this stage's `[stage.NAME]` overlays to the inventory.
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// Output directory (created or replaced as a whole).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    #[arg(long, help = JSON_HELP)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct UserDataArgs {
    /// The site inventory (TOML).
    pub site: PathBuf,
    /// Apply this stage's `[stage.NAME]` overlays to the inventory.
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// The node whose user-data to write.
    #[arg(long, value_name = "NODE")]
    pub node: String,
    /// Compress with gzip even when the cloud-config fits uncompressed.
    #[arg(long)]
    pub gzip: bool,
    /// Where to write it ("-": stdout, not with --json).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[arg(long, help = JSON_HELP)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The site inventory (TOML).
    pub site: PathBuf,
    /// Apply this stage's `[stage.NAME]` overlays to the inventory.
    #[arg(long, value_name = "NAME")]
    pub stage: Option<String>,
    /// Print every validator's output, not only failures.
    #[arg(long, short)]
    pub verbose: bool,
    #[arg(long, help = JSON_HELP)]
    pub json: bool,
}

impl Command {
    /// The command's words in the JSON envelope when it was asked for JSON (`--json`, or
    /// `plan --format json`); `None` for text.
    pub fn json(&self) -> Option<&'static str> {
        let (json, name) = match self {
            Command::Plan(a) => (a.json || a.format == Format::Json, "plan"),
            Command::Build(a) => (a.json, "build"),
            Command::Validate(a) => (a.json, "validate"),
            Command::UserData(a) => (a.json, "user-data"),
            Command::Lab(a) => (a.json, "lab"),
            Command::Diff(a) => (a.json, "diff"),
            Command::Apply(a) => (a.json, "apply"),
            Command::Image(a) => (a.json, "image"),
            Command::Flash(a) => (a.json, "flash"),
            Command::Seed(a) => (a.json, "seed"),
            Command::Plugin(PluginCommand::Inspect(a)) => (a.json, "plugin inspect"),
            Command::Plugin(PluginCommand::Add(a)) => (a.json, "plugin add"),
            Command::Plugin(PluginCommand::Check(a)) => (a.json, "plugin check"),
            Command::Plugin(PluginCommand::Test(a)) => (a.json, "plugin test"),
            Command::Plugin(PluginCommand::New(_))
            | Command::Schema(_)
            | Command::Completions(_)
            | Command::Man(_)
            | Command::CompileComponent => (false, ""),
        };
        json.then_some(name)
    }
}

/// A command line clap refused (or `--help`, `--version`): clap's text and exit code as
/// always, plus, when the words name a command that takes `--json` and `--json` (or plan's
/// `--format json`) is among them, the envelope on stdout with `ok: false` and the error (its
/// first line as the message, clap's usage as the help), so a script reading stdout gets JSON
/// for every failure. Help and version output stay text.
pub fn usage_error(args: &[std::ffi::OsString], e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !informational {
        if let Some(command) = json_command(args) {
            // clap's text: the error's paragraph, then tips and usage, blank lines between.
            let text = e.render().to_string();
            let (first, rest) = text.split_once("\n\n").unwrap_or((&text, ""));
            let words = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
            let message = words(first.trim_start_matches("error: "));
            let help = words(rest);
            let out = crate::envelope::Sink::default();
            out.set_json(true);
            let mut notice = crate::envelope::Notice::new(message);
            if !help.is_empty() {
                notice.help = Some(help);
            }
            out.error(notice);
            let doc = out.document(&command, &Ok(ExitCode::from(2)));
            let _ = crate::envelope::print(&doc);
        }
    }
    e.exit()
}

/// The `--json` command the words of `args` name, if they ask for JSON: the subcommands the
/// words walk down (`plugin inspect`), as clap's own command tree has them, when the last one
/// takes `--json` and `--json`, `--format json` or `--format=json` is among the words.
fn json_command(args: &[std::ffi::OsString]) -> Option<String> {
    let words: Vec<&str> = args.iter().skip(1).filter_map(|a| a.to_str()).collect();
    let wants = words.iter().enumerate().any(|(i, w)| {
        *w == "--json"
            || *w == "--format=json"
            || (*w == "--format" && words.get(i + 1) == Some(&"json"))
    });
    if !wants {
        return None;
    }
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut path: Vec<&str> = Vec::new();
    for w in words.iter().filter(|w| !w.starts_with('-')) {
        let Some(sub) = command.find_subcommand(w).cloned() else {
            continue;
        };
        path.push(w);
        command = sub;
    }
    let takes_json = command.get_arguments().any(|a| a.get_id() == "json");
    (!path.is_empty() && takes_json).then(|| path.join(" "))
}

/// Runs the parsed command line; errors are printed here (on stderr, and with `--json` in
/// the envelope on stdout too).
pub fn run(cli: Cli) -> ExitCode {
    let json = cli.command.json();
    cli.global.out.set_json(json.is_some());
    let result = match &cli.command {
        Command::Plan(args) => plan(&cli.global, args),
        Command::Build(args) => build(&cli.global, args),
        Command::Validate(args) => validate_cmd(&cli.global, args),
        Command::UserData(args) => user_data(&cli.global, args),
        Command::Lab(args) => lab_cmd(&cli.global, args),
        Command::Diff(args) => crate::apply::diff_cmd(&cli.global, args),
        Command::Apply(args) => crate::apply::apply_cmd(&cli.global, args),
        Command::Image(args) => crate::image::cli::image(&cli.global, args),
        Command::Flash(args) => crate::image::cli::flash_cmd(&cli.global, args),
        Command::Seed(args) => crate::image::cli::seed_cmd(&cli.global, args),
        Command::Plugin(PluginCommand::Inspect(args)) => plugin_inspect(&cli.global, args),
        Command::Plugin(PluginCommand::Add(args)) => plugin_add(&cli.global, args),
        Command::Plugin(PluginCommand::Check(args)) => plugin_check(&cli.global, args),
        Command::Plugin(PluginCommand::Test(args)) => plugin_test(&cli.global, args),
        Command::Plugin(PluginCommand::New(args)) => plugin_new(args),
        Command::CompileComponent => return crate::policy::compile::child_main(),
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "haseed", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(args) => write_man_pages(&args.out),
        Command::Schema(args) => {
            match args.format {
                SchemaFormat::Json => println!("{:#}", crate::inventory::schema::json_schema()),
                SchemaFormat::Markdown => print!("{}", crate::inventory::schema::markdown()),
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    if let Err(e) = &result {
        match e.downcast_ref::<BuildError>() {
            Some(build) => errln!("{build}"),
            None => errln!("error: {e:#}"),
        }
    }
    if let Some(command) = json {
        let doc = cli.global.out.document(command, &result);
        if let Err(e) = crate::envelope::print(&doc) {
            errln!("error: writing stdout: {e}");
            return ExitCode::FAILURE;
        }
    }
    // diff says "drifted" with 1: its own failures (a node not read, a site not built) are 2.
    let failed = if matches!(cli.command, Command::Diff(_)) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    };
    result.unwrap_or(failed)
}

fn host(global: &Global) -> anyhow::Result<Host> {
    let cache = if global.no_cache {
        None
    } else {
        global.cache_dir.clone().or_else(Host::default_cache_dir)
    };
    let mut host = Host::new(cache, Limits::default())?
        .with_compiler(Compiler::this_binary(CompileLimits::default()));
    if !global.quiet {
        host = host.with_compile_notice(|n| match n {
            CompileNotice::Started { name, bytes } => errln!(
                "compiling plugin {name} ({:.1} MiB) for this machine: first use, cached afterwards",
                *bytes as f64 / (1 << 20) as f64
            ),
            CompileNotice::Finished { name, elapsed } => {
                errln!("compiled plugin {name} in {:.1} s", elapsed.as_secs_f64())
            }
        });
    }
    if let Some(why) = host.cache_warning() {
        if global.out.json() {
            global.out.warn(crate::envelope::Notice::new(why));
        } else if !global.quiet {
            errln!("warning: {why}");
        }
    }
    Ok(host)
}

/// A plugin file as `plugin inspect/add/check` read it: a regular file under
/// the size cap, hashed as read.
fn read_plugin_file(path: &Path) -> anyhow::Result<crate::policy::source::Source> {
    crate::policy::source::read_component(path)
        .map_err(|e| anyhow::anyhow!("plugin {}: {e}", path.display()))
}

pub(crate) struct Planned {
    pub(crate) inv: Inventory,
    pub(crate) plans: Vec<crate::contract::NodePlan>,
}

pub(crate) fn plan_site(
    global: &Global,
    site: &Path,
    stage: Option<&str>,
) -> anyhow::Result<Planned> {
    plan_inventory(global, load_staged(site, stage)?)
}

fn load_staged(site: &Path, stage: Option<&str>) -> Result<Inventory, BuildError> {
    crate::inventory::load_stage(site, stage)
        .and_then(Inventory::refuse_unreachable)
        .map_err(BuildError::Inventory)
}

fn plan_inventory(global: &Global, inv: Inventory) -> anyhow::Result<Planned> {
    use crate::envelope::Notice;
    let json = global.out.json();
    if json {
        let mut d = crate::diag::Diagnostics::new(&inv.path, inv.source.as_str());
        d.items = inv.warnings.clone();
        for w in Notice::from_diagnostics(&d) {
            global.out.warn(w);
        }
    } else if !global.quiet {
        for w in inv.warning_lines() {
            errln!("{w}");
        }
    }
    let host = host(global)?;
    let chain = pipeline::load_chain(&host, &inv)?;
    let (plans, logs) = pipeline::plan(&host, &inv, &chain)?;
    let today = global.today.unwrap_or_else(crate::kubernetes::Day::today);
    if json {
        // Plugin log lines stay a stream on stderr; warnings go into the envelope.
        if !global.quiet {
            print_logs(&logs);
        }
        for (i, (node, plan)) in inv.site.nodes.iter().zip(&plans).enumerate() {
            for w in &plan.warnings {
                let at = inv
                    .node_spans
                    .get(i)
                    .map(|s| pipeline::locate(&inv, s.start));
                global
                    .out
                    .warn(Notice::new(w).at(at.as_ref()).node(&node.name));
            }
        }
        for w in crate::kubernetes::warnings(&inv.site, &plans, today)
            .into_iter()
            .chain(crate::check::advisories(&inv.site, &plans))
        {
            let w = w.strip_prefix("warning: ").unwrap_or(&w);
            global.out.warn(Notice::new(w));
        }
    } else if !global.quiet {
        print_logs(&logs);
        for (node, plan) in inv.site.nodes.iter().zip(&plans) {
            for w in &plan.warnings {
                errln!("warning: node {}: {}", node.name, w);
            }
        }
        for w in crate::kubernetes::warnings(&inv.site, &plans, today)
            .into_iter()
            .chain(crate::check::advisories(&inv.site, &plans))
        {
            eprintln!("{w}");
        }
    }
    Ok(Planned { inv, plans })
}

fn print_logs(logs: &[PluginLog]) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for log in logs {
        let _ = writeln!(
            err,
            "{}",
            term::safe(&format!("[{}] {}", log.plugin, log.line))
        );
    }
}

fn plan(global: &Global, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let planned = plan_site(global, &args.site, args.stage.as_deref())?;
    let format = if args.json { Format::Json } else { args.format };
    let text = match format {
        Format::Table => term::safe(&view::table(&planned.inv.site, &planned.plans)).into_owned(),
        Format::Json => {
            // `site` and `nodes` in the envelope, printed by `run`.
            global
                .out
                .fields(view::json(&planned.inv.site, &planned.plans)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        Format::Dot => term::safe(&view::dot(&planned.inv.site, &planned.plans)).into_owned(),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn build(global: &Global, args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let planned = plan_site(global, &args.site, args.stage.as_deref())?;
    let nodes = pipeline::render(&planned.inv, &planned.plans)?;
    output::write_build_with(
        &args.output,
        &planned.inv.site.name,
        &nodes,
        crate::aws::build_files(&planned.inv.site),
    )
    .with_context(|| format!("writing {}", args.output.display()))?;
    if global.out.json() {
        let site = &planned.inv.site.name;
        global.out.field("site", site)?;
        global
            .out
            .field("output", args.output.display().to_string())?;
        global.out.field(
            "bundle",
            args.output
                .join(format!("{site}.tar.gz"))
                .display()
                .to_string(),
        )?;
        let nodes: Vec<_> = nodes
            .iter()
            .map(|(name, _)| {
                serde_json::json!({
                    "name": name,
                    "dir": args.output.join(name).display().to_string(),
                })
            })
            .collect();
        global.out.field("nodes", nodes)?;
    } else if !global.quiet {
        errln!(
            "built {} node(s) of site {} into {} (bundle {}.tar.gz)",
            nodes.len(),
            planned.inv.site.name,
            args.output.display(),
            planned.inv.site.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn user_data(global: &Global, args: &UserDataArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !(args.json && args.output.as_os_str() == "-"),
        "--json and -o - both want stdout: write the user-data to a file (-o FILE)"
    );
    let inv = load_staged(&args.site, args.stage.as_deref())?;
    let Some(index) = inv.site.nodes.iter().position(|n| n.name == args.node) else {
        let names: Vec<&str> = inv.site.nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(crate::envelope::Located {
            at: None,
            node: None,
            message: format!(
                "{}: no node named {:?} (nodes: {})",
                args.site.display(),
                args.node,
                names.join(", ")
            ),
        }
        .into());
    };
    let planned = plan_inventory(global, inv)?;
    let inv = &planned.inv;
    let art = crate::render::Renderer::new()
        .render_node(
            &inv.site,
            index as u32,
            &planned.plans[index],
            &inv.node_extras[index].ssh_authorized_keys,
        )
        .map_err(|e| BuildError::Render {
            node: args.node.clone(),
            message: format!("{e:#}"),
        })?;
    let files: Vec<(String, usize)> = art
        .files
        .iter()
        .map(|f| (f.path.clone(), f.content.len()))
        .collect();
    let at = pipeline::locate(inv, inv.node_spans[index].start);
    let packed = crate::aws::pack_user_data(&args.node, &art.user_data, args.gzip, &files)
        .map_err(|e| crate::envelope::Located {
            at: Some(at),
            node: Some(args.node.clone()),
            message: e.to_string(),
        })?;
    if args.output.as_os_str() == "-" {
        std::io::stdout()
            .write_all(&packed.bytes)
            .context("writing stdout")?;
    } else {
        output::write_file_atomic(&args.output, 0o600, &packed.bytes)
            .with_context(|| format!("writing {}", args.output.display()))?;
    }
    if global.out.json() {
        global.out.field("node", &args.node)?;
        global
            .out
            .field("output", args.output.display().to_string())?;
        global.out.field("bytes", packed.bytes.len())?;
        global.out.field("gzip", packed.gzip)?;
        global.out.field("raw_bytes", packed.raw_len)?;
    } else if !global.quiet {
        errln!(
            "user-data of node {}: {} bytes{}",
            args.node,
            packed.bytes.len(),
            if packed.gzip {
                format!(" (gzip of {} bytes)", packed.raw_len)
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn lab_cmd(global: &Global, args: &crate::lab::LabArgs) -> anyhow::Result<ExitCode> {
    crate::lab::require_root()?;
    if args.change.is_none() && args.scenario.iter().any(|s| s == "change-site") {
        anyhow::bail!(
            "scenario change-site rolls your changed site onto the lab: give it with --change NEW_SITE"
        );
    }
    let planned = plan_site(global, &args.site, args.stage.as_deref())?;
    let nodes = pipeline::render(&planned.inv, &planned.plans)?;
    // The config-change scenarios' builds: the site with one setting changed, planned by the
    // same plugins (the files a change touches are the plugins' to decide).
    let host = host(global)?;
    let mut changes = Vec::new();
    for change in crate::lab::changes_of(args) {
        let inv = match (change, &args.change) {
            (crate::lab::Change::Site, Some(path)) => {
                let inv = load_staged(path, args.stage.as_deref())?;
                // The lab's nodes are the site's: the changed site keeps them, in order.
                let new = &inv.site.nodes;
                if let Some((k, o)) = planned
                    .inv
                    .site
                    .nodes
                    .iter()
                    .enumerate()
                    .find(|(k, o)| new.get(*k).is_none_or(|n| n.name != o.name))
                {
                    anyhow::bail!(
                        "{}: node {} {}: the changed site must keep the site's nodes, in the \
                         same order (new nodes may follow them)",
                        path.display(),
                        o.name,
                        match new.get(k) {
                            Some(n) => format!("is {} there", n.name),
                            None => "is missing there".into(),
                        }
                    );
                }
                inv
            }
            _ => change
                .edit(&planned.inv, &planned.plans)
                .with_context(|| format!("changing the site for the lab's {change:?} change"))?,
        };
        let chain = pipeline::load_chain(&host, &inv)?;
        let (plans, _) = pipeline::plan(&host, &inv, &chain)?;
        let nodes = pipeline::render(&inv, &plans)?;
        changes.push(crate::lab::Changed {
            change,
            plans,
            nodes,
        });
    }
    crate::lab::run(
        &planned.inv.site,
        &planned.inv.vip_max_outage_ms,
        &planned.plans,
        &nodes,
        &changes,
        args,
        &global.out,
    )
}

fn validate_cmd(global: &Global, args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    // The site's own errors first: they are the user's to fix whatever this machine lacks.
    let planned = plan_site(global, &args.site, args.stage.as_deref())?;
    let validators = validate::Validators::find().map_err(|e| anyhow::anyhow!("{e}"))?;
    let nodes = pipeline::render(&planned.inv, &planned.plans)?;
    let scratch = tempfile::Builder::new()
        .prefix("haseed-validate-")
        .tempdir()
        .context("creating a scratch directory")?;
    let dir = scratch.path().join("out");
    output::write_build(&dir, &planned.inv.site.name, &nodes)?;

    // Validators are separate processes: run two nodes at a time.
    let names: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                let r = validate::validate_node(&validators, name, &dir.join(name));
                results
                    .lock()
                    .expect("no panics hold this lock")
                    .push((i, r));
            });
        }
    });
    let mut results = results.into_inner().expect("threads joined");
    results.sort_by_key(|(i, _)| *i);
    let (mut passed, mut failed) = (0, 0);
    let json = global.out.json();
    let mut checks = Vec::new();
    for (i, r) in results {
        let findings = r.with_context(|| format!("validating node {}", names[i]))?;
        for f in findings {
            let rel = f
                .file
                .strip_prefix(&dir)
                .unwrap_or(&f.file)
                .display()
                .to_string();
            if json {
                if f.ok {
                    passed += 1;
                } else {
                    failed += 1;
                    global.out.error(
                        crate::envelope::Notice::new(format!(
                            "{} refused {rel}: {}",
                            f.validator, f.output
                        ))
                        .node(&f.node),
                    );
                }
                checks.push(serde_json::json!({
                    "node": f.node,
                    "validator": f.validator,
                    "file": rel,
                    "ok": f.ok,
                    "output": f.output,
                }));
            } else if f.ok {
                passed += 1;
                outln!("ok    {:<10} {:<11} {}", f.node, f.validator, rel);
                if args.verbose && !f.output.is_empty() {
                    outln!("{}", indent(&f.output));
                }
            } else {
                failed += 1;
                outln!("FAIL  {:<10} {:<11} {}", f.node, f.validator, rel);
                outln!("{}", indent(&f.output));
            }
        }
    }
    if json {
        global.out.field("checks", checks)?;
        global.out.field("passed", passed)?;
        global.out.field("failed", failed)?;
    } else {
        outln!("{passed} passed, {failed} failed");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("      | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn plugin_inspect(global: &Global, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let source = read_plugin_file(&args.file)?;
    let report = host(global)?.inspect(&args.file.display().to_string(), &source.bytes)?;
    if args.json {
        global.out.field("file", args.file.display().to_string())?;
        global.out.fields(&report)?;
        if let Some(why) = &report.reason {
            global.out.error(
                crate::envelope::Notice::new(format!("not runnable here: {why}"))
                    .plugin(args.file.display().to_string()),
            );
        }
    } else {
        let none = "-".to_string();
        outln!("file:         {}", args.file.display());
        outln!("sha256:       {}", report.sha256);
        outln!("size:         {} bytes", report.size);
        outln!(
            "built for:    {}",
            report.wit_package.as_ref().unwrap_or(&none)
        );
        outln!("host offers:  {}", report.host_wit_package);
        if let Some(runs) = &report.runs {
            outln!("runs:         {runs}");
        }
        if let Some(info) = &report.info {
            outln!("name:         {}", info.name);
            outln!("version:      {}", info.version);
            outln!("description:  {}", info.description);
            outln!("settings:     {}", info.settings_help);
            outln!("may change:   {}", describe_scope(info.scope.as_deref()));
        }
        outln!("imports:      {}", report.imports.join(", "));
        outln!("exports:      {}", report.exports.join(", "));
        match &report.reason {
            None => outln!("runnable:     yes"),
            Some(why) => outln!("runnable:     no: {why}"),
        }
    }
    Ok(if report.runnable {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plugin_add(global: &Global, args: &AddArgs) -> anyhow::Result<ExitCode> {
    let plugin_source = read_plugin_file(&args.file)?;
    let digest = plugin_source.digest.clone();
    let settings: serde_json::Value = match &args.settings {
        Some(text) => serde_json::from_str(text).context("--settings is not JSON")?,
        None => serde_json::json!({}),
    };
    if !settings.is_object() {
        anyhow::bail!("--settings must be a JSON object, e.g. '{{\"prefer\": \"lb1\"}}'");
    }
    // The path as the site file will hold it: relative to the site's folder, so the site and
    // its plugins move together (an absolute path into cargo's target/ pinned one machine).
    let site_dir = args
        .site
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let abs =
        |p: &Path| std::fs::canonicalize(p).with_context(|| format!("resolving {}", p.display()));
    let (file_abs, dir_abs) = (abs(&args.file)?, abs(site_dir)?);
    let path_text = relative_to(&file_abs, &dir_abs).display().to_string();

    let source = std::fs::read_to_string(&args.site)
        .with_context(|| format!("reading {}", args.site.display()))?;
    let mut doc: toml_edit::DocumentMut = source
        .parse()
        .with_context(|| format!("{} is not valid TOML", args.site.display()))?;
    let table = crate::inventory::settings_table(&settings)?;
    let plugins = doc
        .entry("plugin")
        .or_insert(toml_edit::Item::ArrayOfTables(
            toml_edit::ArrayOfTables::new(),
        ))
        .as_array_of_tables_mut()
        .context("`plugin` in the site file is not an array of tables ([[plugin]])")?;
    // The same plugin already pinned (the same file by whatever path, or the same bytes): update
    // that entry; appending a second one would run the plugin twice.
    let same = |t: &toml_edit::Table| {
        let same_file = t
            .get("path")
            .and_then(|v| v.as_str())
            .and_then(|p| std::fs::canonicalize(dir_abs.join(p)).ok())
            .is_some_and(|p| p == file_abs);
        let same_bytes = t
            .get("sha256")
            .and_then(|v| v.as_str())
            .is_some_and(|h| h.eq_ignore_ascii_case(&digest));
        same_file || same_bytes
    };
    let existing = plugins.iter_mut().find(|t| same(t));
    let updated = existing.is_some();
    let entry = match existing {
        Some(t) => {
            t["path"] = toml_edit::value(path_text.clone());
            t
        }
        None => {
            let mut t = toml_edit::Table::new();
            t["path"] = toml_edit::value(path_text.clone());
            plugins.push(t);
            plugins.iter_mut().last().expect("just pushed")
        }
    };
    entry["sha256"] = toml_edit::value(digest.clone());
    if args.settings.is_some() || !updated {
        entry["settings"] = toml_edit::value(table);
    }
    let previous_grant: Option<Vec<String>> = entry.get("scope").and_then(|v| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
    });
    let entry_index = plugins
        .iter()
        .position(&same)
        .expect("the entry was just written");

    // Load the chain once (the plugin compiled once) and ask the plugin its scope.
    let planned_host = host(global)?;
    let first =
        crate::inventory::parse(&args.site, &doc.to_string()).map_err(BuildError::Inventory)?;
    let mut chain = pipeline::load_chain(&planned_host, &first)?;
    let declared = planned_host
        .info(&chain.plugins[entry_index + 1])
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .scope;
    // The grant travels with the pin: the plugin's declared scope, which the site may narrow
    // by hand later. A plugin that declares none may change any field: said, not written.
    let entry = doc["plugin"]
        .as_array_of_tables_mut()
        .and_then(|a| a.get_mut(entry_index))
        .expect("the entry was just written");
    match &declared {
        Some(paths) => {
            let mut list = toml_edit::Array::new();
            for p in paths {
                list.push(p.as_str());
            }
            entry["scope"] = toml_edit::value(list);
        }
        None => {
            entry.remove("scope");
        }
    }
    let new_source = doc.to_string();

    // Prove the new site loads and plans (the plugin accepts its settings and keeps to its
    // scope) before writing.
    let inv = crate::inventory::parse(&args.site, &new_source).map_err(BuildError::Inventory)?;
    chain.scopes = std::iter::once(None)
        .chain(inv.plugins.iter().map(|p| p.scope.clone()))
        .collect();
    pipeline::plan(&planned_host, &inv, &chain)?;

    let dir = args
        .site
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing next to {}", args.site.display()))?;
    tmp.write_all(new_source.as_bytes())?;
    if let Ok(meta) = std::fs::metadata(&args.site) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(&args.site)
        .map_err(|e| e.error)
        .with_context(|| format!("replacing {}", args.site.display()))?;
    if global.out.json() {
        global
            .out
            .field("action", if updated { "updated" } else { "added" })?;
        global.out.field("path", &path_text)?;
        global.out.field("site", args.site.display().to_string())?;
        global.out.field("sha256", &digest)?;
        global.out.field("scope", &declared)?;
    } else {
        errln!(
            "{} plugin {} in {} (sha256 {})",
            if updated { "updated" } else { "added" },
            path_text,
            args.site.display(),
            digest
        );
        errln!("  may change: {}", describe_scope(declared.as_deref()));
        if let (Some(before), Some(now)) = (&previous_grant, &declared) {
            let widened: Vec<&str> = now
                .iter()
                .filter(|p| !crate::policy::scope::covers(before, p))
                .map(String::as_str)
                .collect();
            if !widened.is_empty() {
                errln!(
                    "  the grant widens: {} (the site's scope said {})",
                    widened.join(", "),
                    describe_scope(Some(before))
                );
            }
        }
    }
    if declared.is_none() {
        let warning = format!(
            "plugin {path_text} declares no change scope: it may change any field of any node's \
             plan. Restrict it with scope = [\"FIELD.PATH\", ...] in its [[plugin]] entry \
             (haseed plugin inspect shows what it is for)"
        );
        if global.out.json() {
            global
                .out
                .warn(crate::envelope::Notice::new(warning).plugin(path_text.clone()));
        } else {
            errln!("warning: {warning}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A change scope as one line: the paths, or what none and an empty list mean.
fn describe_scope(scope: Option<&[String]>) -> String {
    match scope {
        None => "any field (it declares no change scope)".to_string(),
        Some([]) => "nothing (it only checks or refuses)".to_string(),
        Some(paths) => paths.join(", "),
    }
}

/// `to` as a path relative to the directory `from` (both absolute and canonical), going up
/// with `..` where needed: `../../target/wasm32-wasip2/release/x.wasm`.
fn relative_to(to: &Path, from: &Path) -> PathBuf {
    let (to, from): (Vec<_>, Vec<_>) = (to.components().collect(), from.components().collect());
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

/// haseed.1 and a page per visible command and subcommand (haseed-plugin-test.1), each written
/// atomically; hidden commands get none.
fn write_man_pages(dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = <Cli as clap::CommandFactory>::command().version(env!("CARGO_PKG_VERSION"));
    /// `path`: the command's words, e.g. ["haseed", "plugin", "test"].
    fn walk(
        cmd: &clap::Command,
        path: &[&str],
        dir: &Path,
        written: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        // The page is haseed-plugin-test(1); its synopsis says `haseed plugin test`.
        let page = cmd.clone().name(path.join("-")).bin_name(path.join(" "));
        let mut text = Vec::new();
        clap_mangen::Man::new(page).render(&mut text)?;
        let file = format!("{}.1", path.join("-"));
        crate::output::write_file_atomic(&dir.join(&file), 0o644, &text)
            .with_context(|| format!("writing {}", dir.join(&file).display()))?;
        written.push(file);
        for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
            let mut deeper = path.to_vec();
            deeper.push(sub.get_name());
            walk(sub, &deeper, dir, written)?;
        }
        Ok(())
    }
    let mut written = Vec::new();
    walk(&cmd, &["haseed"], dir, &mut written)?;
    errln!("wrote {} man pages into {}", written.len(), dir.display());
    Ok(ExitCode::SUCCESS)
}

fn plugin_test(global: &Global, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let host = host(global)?;
    let source = read_plugin_file(&args.file)?;
    let name = args.file.display().to_string();
    let plugin = host.load_source(&name, &source)?;
    let dir = args
        .fixtures
        .clone()
        .unwrap_or_else(|| PathBuf::from("fixtures"));
    let started = std::time::Instant::now();
    let outcomes = crate::plugin_test::run_all(&host, &plugin, &dir)?;
    let total = started.elapsed();
    if let Some(path) = &args.junit {
        crate::output::write_file_atomic(
            path,
            0o644,
            crate::plugin_test::junit(&name, &outcomes, total).as_bytes(),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if args.json {
        global.out.field("plugin", &name)?;
        global.out.field("fixtures", &outcomes)?;
        global.out.field("passed", outcomes.len() - failed)?;
        global.out.field("failed", failed)?;
        for o in outcomes.iter().filter(|o| !o.passed) {
            let mut n = crate::envelope::Notice::new(format!(
                "fixture {} failed: {}",
                o.name,
                o.failures.join("; ")
            ))
            .plugin(&name);
            n.file = Some(o.file.clone());
            global.out.error(n);
        }
    } else {
        for o in &outcomes {
            if o.passed {
                outln!("ok    {}", o.name);
                continue;
            }
            outln!("FAIL  {} ({})", o.name, o.file);
            for f in &o.failures {
                for line in f.lines() {
                    outln!("      {line}");
                }
            }
        }
        outln!(
            "plugin {name}: {} passed, {failed} failed ({:.0} ms)",
            outcomes.len() - failed,
            total.as_secs_f64() * 1e3
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plugin_check(global: &Global, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let settings: serde_json::Value =
        serde_json::from_str(&args.settings).context("--settings is not JSON")?;
    anyhow::ensure!(settings.is_object(), "--settings must be a JSON object");
    let inv = pipeline::load_inventory(&args.site)?;
    let focus = match &args.node {
        Some(name) => Some(
            inv.site
                .nodes
                .iter()
                .position(|n| &n.name == name)
                .with_context(|| format!("no node named {name} in {}", args.site.display()))?,
        ),
        None => None,
    };
    let host = host(global)?;
    let source = read_plugin_file(&args.file)?;
    let name = args.file.display().to_string();
    let candidate = host.load_source(&name, &source)?;

    // Without: the site's chain, minus this plugin if the site already pins it.
    // A site that pins this plugin already holds it to that entry's scope here too.
    let (base, pinned_scope) = pipeline::load_chain(&host, &inv)?.without(&candidate.digest);
    let (before, _) = pipeline::plan(&host, &inv, &base)?;
    let before_files = pipeline::render(&inv, &before)?;
    let mut with = base;
    with.push(candidate, settings.to_string(), pinned_scope);
    let json = global.out.json();
    if json {
        global.out.field("plugin", &name)?;
        global.out.field("site", args.site.display().to_string())?;
    }
    let (after, logs) = match pipeline::plan(&host, &inv, &with) {
        Ok(ok) => ok,
        Err(e) if json => {
            // The failure is the result: its errors (node, place) in the envelope.
            errln!("{e}");
            for n in crate::envelope::Notice::from_error(&anyhow::Error::from(e)) {
                global.out.error(n);
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            errln!("{e}");
            outln!("plugin {name} FAILED on this site (errors above)");
            return Ok(ExitCode::FAILURE);
        }
    };
    let after_files = pipeline::render(&inv, &after)?;
    print_logs(&logs);
    let mut reports = Vec::new();

    let mut changed_nodes = 0;
    for (i, node) in inv.site.nodes.iter().enumerate() {
        if focus.is_some_and(|f| f != i) {
            continue;
        }
        let plan_a = serde_json::to_string_pretty(&before[i])?;
        let plan_b = serde_json::to_string_pretty(&after[i])?;
        let mut sections = Vec::new();
        if plan_a != plan_b {
            sections.push(unified(&plan_a, &plan_b, "plan (before)", "plan (after)"));
        }
        for (path, a, b) in artifact_pairs(&before_files[i].1, &after_files[i].1) {
            if a != b {
                sections.push(unified(&a, &b, &format!("a{path}"), &format!("b{path}")));
            }
        }
        let new_warnings: Vec<_> = after[i]
            .warnings
            .iter()
            .filter(|w| !before[i].warnings.contains(w))
            .collect();
        if json {
            let changed = !(sections.is_empty() && new_warnings.is_empty());
            changed_nodes += usize::from(changed);
            let mut files: Vec<String> = artifact_pairs(&before_files[i].1, &after_files[i].1)
                .into_iter()
                .filter(|(_, a, b)| a != b)
                .map(|(path, _, _)| path)
                .collect();
            if plan_a != plan_b {
                files.insert(0, "plan".to_string());
            }
            reports.push(serde_json::json!({
                "node": node.name,
                "changed": changed,
                "changed_files": files,
                "new_warnings": new_warnings,
                "diff": sections.concat(),
            }));
            continue;
        }
        if sections.is_empty() && new_warnings.is_empty() {
            outln!("= node {}: unchanged", node.name);
            continue;
        }
        changed_nodes += 1;
        outln!("~ node {}:", node.name);
        for w in new_warnings {
            outln!("  warning: {w}");
        }
        for s in sections {
            print!("{}", term::safe(&s));
        }
    }
    if json {
        global.out.field("changed_nodes", changed_nodes)?;
        global.out.field("nodes", reports)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "plugin {name}: changed {changed_nodes} of {} node(s); no errors",
        if focus.is_some() {
            1
        } else {
            inv.site.nodes.len()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Every artifact of a node in both builds, keyed by its path on the node
/// (seed files under "/seed/").
fn artifact_pairs(
    a: &crate::render::NodeArtifacts,
    b: &crate::render::NodeArtifacts,
) -> Vec<(String, String, String)> {
    let flat = |x: &crate::render::NodeArtifacts| {
        let mut m = std::collections::BTreeMap::new();
        // The files inside user-data are diffed on their own, readably.
        let user_data: String = x
            .user_data
            .lines()
            .filter(|l| !l.trim_start().starts_with("content: "))
            .map(|l| format!("{l}\n"))
            .collect();
        m.insert("/seed/user-data".to_string(), user_data);
        m.insert("/seed/meta-data".to_string(), x.meta_data.clone());
        m.insert("/seed/network-config".to_string(), x.network_config.clone());
        for f in &x.files {
            m.insert(f.path.clone(), f.content.clone());
        }
        m
    };
    let (ma, mb) = (flat(a), flat(b));
    let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            (
                k.clone(),
                ma.get(k).cloned().unwrap_or_default(),
                mb.get(k).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

fn unified(a: &str, b: &str, name_a: &str, name_b: &str) -> String {
    similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(2)
        .header(name_a, name_b)
        .to_string()
}

fn plugin_new(args: &NewArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    anyhow::ensure!(
        valid,
        "plugin name {name:?}: use lowercase letters, digits and '-', starting with a letter"
    );
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    anyhow::ensure!(
        !dir.exists(),
        "{} already exists; choose another name or --dir",
        dir.display()
    );
    let fill = |t: &str| {
        t.replace("{{NAME}}", name)
            .replace("{{CRATE}}", &name.replace('-', "_"))
            .replace("{{WIT_VERSION}}", crate::contract::WIT_VERSION)
    };
    // The contract this host speaks is pinned by copying it into the project.
    let wit = (
        "wit/policy.wit",
        include_str!("../assets/wit/policy.wit").to_string(),
    );
    // One passing fixture on the reference site, for `haseed plugin test`.
    let fixtures = [
        (
            "fixtures/site.toml",
            include_str!("../assets/examples/pi-k8s/site.toml").to_string(),
        ),
        (
            "fixtures/tunes-checks.toml",
            fill(include_str!("../templates/plugin-new/fixture.toml.tmpl")),
        ),
    ];
    let files: Vec<(&str, String)> = match args.lang {
        Lang::Rust => vec![
            (
                "Cargo.toml",
                fill(include_str!("../templates/plugin-new/Cargo.toml.tmpl")),
            ),
            (
                "src/lib.rs",
                fill(include_str!("../templates/plugin-new/lib.rs.tmpl")),
            ),
            (
                "README.md",
                fill(include_str!("../templates/plugin-new/README.md.tmpl")),
            ),
            wit,
            (".gitignore", "/target\n".to_string()),
        ]
        .into_iter()
        .chain(fixtures.clone())
        .collect(),
        Lang::Python => vec![
            (
                "app.py",
                fill(include_str!("../templates/plugin-new/app.py.tmpl")),
            ),
            (
                "policy.py",
                fill(include_str!("../templates/plugin-new/policy.py.tmpl")),
            ),
            (
                "README.md",
                fill(include_str!("../templates/plugin-new/README.py.md.tmpl")),
            ),
            wit,
            (".gitignore", "*.wasm\n__pycache__/\n".to_string()),
        ]
        .into_iter()
        .chain(fixtures)
        .collect(),
    };
    // Staged next to the target and renamed: no half-made project after an error.
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let stage = tempfile::Builder::new()
        .prefix(".haseed-new-")
        .tempdir_in(parent)?;
    for (rel, text) in &files {
        let path = stage.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(stage.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(stage.keep(), &dir).with_context(|| format!("creating {}", dir.display()))?;
    let krate = name.replace('-', "_");
    let steps = match args.lang {
        Lang::Rust => format!(
            "cargo build --release --target wasm32-wasip2\n  cargo test\n  haseed plugin inspect target/wasm32-wasip2/release/{krate}.wasm"
        ),
        Lang::Python => format!(
            "componentize-py -d wit -w policy-plugin componentize app -o {krate}.wasm\n  haseed plugin inspect {krate}.wasm"
        ),
    };
    outln!(
        "created {dir}: a {lang:?} plugin for haseed:policy@{v}\n\n  cd {dir}\n  {steps}",
        dir = dir.display(),
        lang = args.lang,
        v = crate::contract::WIT_VERSION,
    );
    Ok(ExitCode::SUCCESS)
}

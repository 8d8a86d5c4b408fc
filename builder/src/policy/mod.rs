//! The policy stage: runs the chain of Wasm policy plugins over a resolved site.
//!
//! Owns the wasmtime engine, the on-disk compile cache and the sandbox each
//! plugin runs in. It must never give a plugin the filesystem, environment,
//! arguments, network, a live clock or real randomness, and never let a
//! plugin's failure pass as a plan: a trap, a timeout, a memory cap hit, an
//! error result or a plan the checker rejects all end the chain with one
//! [`PolicyError`] naming the plugin and (where there is one) the node.
//!
//! Cost model (see wit/policy.wit): one store per plugin per build; the site
//! crosses the boundary once (`decider.open`); each node costs one `decide`.
//!
//! Submodules: [`source`] reads a plugin file (bounded, hashed as read),
//! [`compile`] turns it into native code in a bounded child process,
//! [`cache`] keeps that native code between builds, authenticated, [`adapt`] runs plugins
//! built against an earlier contract, [`scope`] holds each plugin to the plan fields it
//! may change.

pub mod adapt;
pub mod cache;
pub mod compile;
pub mod scope;
pub mod source;

pub use compile::{CompileLimits, Compiler, MAX_COMPONENT_BYTES, MAX_NATIVE_BYTES};

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use self::adapt::Contract;
use self::cache::CompileCache;
use self::compile::Compiled;
use crate::check;
use crate::contract::{NodePlan, PluginInfo, PolicyPluginPre, Site};

/// The built-in default policy, compiled from `plugins/default-policy` by build.rs.
pub static DEFAULT_POLICY_WASM: &[u8] = include_bytes!(env!("HASEED_DEFAULT_POLICY_WASM"));

/// Limits applied to every plugin. The defaults bound a call to about 2 s of
/// CPU and an instance to 256 MiB; the tests lower them to prove they hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Fuel (roughly wasm instructions) for one `decide` call.
    pub fuel_per_call: u64,
    /// Fuel for `open`, plus `fuel_per_node_open` for each node of the site.
    pub fuel_open: u64,
    pub fuel_per_node_open: u64,
    /// Wall-clock bound for one call, enforced with epoch interruption.
    pub call_timeout: Duration,
    /// Linear memory cap of one plugin instance.
    pub memory_bytes: usize,
    /// Cap on the elements of any one table (funcref tables cost 8 bytes an
    /// element and escape `memory_bytes` otherwise).
    pub table_elements: usize,
    /// Cap on what one plugin may print (stdout and stderr each) in one build.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_call: 2_000_000_000,
            fuel_open: 500_000_000,
            fuel_per_node_open: 200_000,
            call_timeout: Duration::from_secs(2),
            memory_bytes: 256 << 20,
            // The largest table of any real plugin is the Python example's
            // 5,674 entries (the Rust plugins of plugins/: at most 108;
            // measured, README "Security"); 65,536 leaves 11 times that,
            // and with at most 64 tables a store's tables stay under 32 MiB.
            table_elements: 65_536,
            output_bytes: 1 << 20,
        }
    }
}

const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why the chain stopped.
#[derive(Debug)]
pub struct PolicyError {
    pub plugin: String,
    /// The plugin's place in the chain (0: the default policy).
    pub link: usize,
    pub node: Option<String>,
    /// A refusal of the plugin's settings (field `settings` or
    /// `settings.KEY`), and the key it names: what the caller points at.
    pub refused_settings: bool,
    pub setting: Option<String>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.node {
            Some(node) => write!(f, "plugin {}: node {}: {}", self.plugin, node, self.message),
            None => write!(f, "plugin {}: {}", self.plugin, self.message),
        }
    }
}

impl std::error::Error for PolicyError {}

/// One line a plugin printed, kept for the user's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginLog {
    pub plugin: String,
    pub stream: &'static str,
    pub line: String,
}

/// Everything the host keeps per store.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A clock that never moves: plugins cannot make two builds differ by reading it.
struct FixedClock;

/// 2000-01-01T00:00:00Z: obviously not "now" when a plugin prints it.
const FIXED_WALL_SECS: u64 = 946_684_800;

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(FIXED_WALL_SECS)
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The wasmtime engine, linker and compile cache, built once per process.
pub struct Host {
    engine: Engine,
    /// Stops the epoch thread when the host goes away.
    ticker_stop: Arc<AtomicBool>,
    linker: Linker<HostState>,
    cache: Option<CompileCache>,
    /// Why the cache is not used (said once by the CLI), when it is not.
    cache_warning: Option<String>,
    compiler: Compiler,
    /// How many components this host compiled (cache hits not counted).
    compilations: AtomicUsize,
    /// Told before and after each compilation (see [`CompileNotice`]).
    compile_notice: Option<Arc<NoticeFn>>,
    pub limits: Limits,
}

/// What [`Host::with_compile_notice`] calls.
type NoticeFn = dyn Fn(&CompileNotice<'_>) + Send + Sync;

/// A component is being compiled for this machine, not fetched from the cache: the Python
/// example takes 22 s of CPU the first time, which a user should hear about once rather than
/// wait through in silence (issue 22).
pub enum CompileNotice<'a> {
    Started { name: &'a str, bytes: usize },
    Finished { name: &'a str, elapsed: Duration },
}

impl Drop for Host {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A plugin compiled and linked, ready to be instantiated per build.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// How errors and logs name it: "default-policy" or the inventory path.
    pub name: String,
    /// sha256 of the component bytes (lowercase hex).
    pub digest: String,
    pre: adapt::Pre,
}

impl LoadedPlugin {
    /// The contract it runs through: natively or through an adapter.
    pub fn contract(&self) -> Contract {
        self.pre.contract()
    }
}

/// A plugin with the settings the inventory gives it.
pub struct ChainLink<'a> {
    pub plugin: &'a LoadedPlugin,
    /// JSON object text.
    pub settings: &'a str,
    /// The change scope the site grants it (`scope` in its `[[plugin]]` entry), if it says.
    pub site_scope: Option<&'a [String]>,
}

impl Host {
    /// Builds the engine. `cache_dir`: where compiled plugins are kept
    /// (None disables the cache). A cache directory that cannot be trusted is
    /// not used (see [`Host::cache_warning`]). Components are compiled in this
    /// process until [`Host::with_compiler`] says otherwise.
    pub fn new(cache_dir: Option<PathBuf>, limits: Limits) -> anyhow::Result<Host> {
        let engine = Engine::new(&compile::engine_config())
            .map_err(|e| anyhow!("creating the wasmtime engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        // A Rust std guest imports WASI even when unused; an empty context
        // satisfies those imports without granting anything.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow!("linking WASI: {e:#}"))?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        let (cache, cache_warning) = match cache_dir {
            Some(dir) => match CompileCache::open(&dir, engine_key.clone()) {
                Ok(cache) => (Some(cache), None),
                Err(why) => (
                    None,
                    Some(format!(
                        "not using the compile cache {}: {why}. Plugins are compiled afresh; \
                         fix the directory, pick another with --cache-dir, or pass --no-cache",
                        dir.display()
                    )),
                ),
            },
            None => (None, None),
        };
        let ticker = engine.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_ticker = stop.clone();
        // Epoch interruption needs a clock: a thread ticks the engine until the host drops.
        std::thread::Builder::new()
            .name("haseed-epoch".into())
            .spawn(move || {
                while !stop_ticker.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker.increment_epoch();
                }
            })
            .context("starting the epoch thread")?;
        Ok(Host {
            ticker_stop: stop,
            engine,
            linker,
            cache,
            cache_warning,
            compiler: Compiler::InProcess,
            compilations: AtomicUsize::new(0),
            compile_notice: None,
            limits,
        })
    }

    /// Where components get compiled: the CLI passes
    /// [`Compiler::this_binary`], a bounded child process.
    pub fn with_compiler(mut self, compiler: Compiler) -> Host {
        self.compiler = compiler;
        self
    }

    /// Calls `notice` before and after each component this host compiles (cache misses only).
    pub fn with_compile_notice(
        mut self,
        notice: impl Fn(&CompileNotice<'_>) + Send + Sync + 'static,
    ) -> Host {
        self.compile_notice = Some(Arc::new(notice));
        self
    }

    /// How many components this host has compiled (not fetched from the
    /// cache): what shows that a component pinned twice compiles once.
    pub fn compilations(&self) -> usize {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Why the compile cache given to [`Host::new`] is not used, if it is not.
    pub fn cache_warning(&self) -> Option<&str> {
        self.cache_warning.as_deref()
    }

    /// The default cache directory: $HASEED_CACHE_DIR, else $XDG_CACHE_HOME/haseed,
    /// else ~/.cache/haseed.
    pub fn default_cache_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("HASEED_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("haseed"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("haseed"))
    }

    /// Loads the built-in default policy.
    pub fn load_default_policy(&self) -> anyhow::Result<LoadedPlugin> {
        self.load_bytes("default-policy", DEFAULT_POLICY_WASM)
    }

    /// Loads a plugin file and refuses it unless its sha256 is `expected_sha256`.
    pub fn load_file(
        &self,
        name: &str,
        path: &Path,
        expected_sha256: &str,
    ) -> anyhow::Result<LoadedPlugin> {
        let source = read_pinned(name, path, expected_sha256)?;
        self.load_source(name, &source)
    }

    /// Compiles (or fetches from the cache) and links a component.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> anyhow::Result<LoadedPlugin> {
        self.load_source(
            name,
            &source::Source {
                digest: sha256_hex(bytes),
                bytes: bytes.to_vec(),
            },
        )
    }

    /// Compiles (or fetches from the cache) and links a component read by
    /// [`source::read_component`].
    pub fn load_source(&self, name: &str, source: &source::Source) -> anyhow::Result<LoadedPlugin> {
        let (bytes, digest) = (&source.bytes, source.digest.clone());
        let component = self.compile(name, &digest, bytes)?;
        let surface = Surface::of(&component, &self.engine);
        // Say which contract the plugin needs before wasmtime says "missing export".
        let contract = match &surface.wit_version {
            Some(version) if Contract::of(version).is_none() => {
                return Err(anyhow!(
                    "plugin {name}: built against haseed:policy@{version}, but this host offers \
                     haseed:policy@{host} (it runs plugins built against {range}). Rebuild the plugin \
                     against wit/ of this haseed, or use a haseed that offers {version}.",
                    host = crate::contract::WIT_VERSION,
                    range = compatible_range(),
                ))
            }
            None => {
                return Err(anyhow!(
                    "plugin {name}: exports no haseed:policy/policy interface (exports: {});                      is it a haseed policy plugin (world policy-plugin of wit/policy.wit)?",
                    if surface.exports.is_empty() {
                        "none".to_string()
                    } else {
                        surface.exports.join(", ")
                    }
                ))
            }
            Some(version) => Contract::of(version).expect("checked above"),
        };
        let pre = self
            .link(&component, contract)
            .map_err(|e| anyhow!("plugin {name}: {e}"))?;
        Ok(LoadedPlugin {
            name: name.to_string(),
            digest,
            pre,
        })
    }

    fn compile(&self, name: &str, digest: &str, bytes: &[u8]) -> anyhow::Result<Component> {
        if !bytes.starts_with(b"\0asm") {
            return Err(anyhow!(
                "plugin {name}: not a WebAssembly file (no \\0asm header)"
            ));
        }
        if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            return Err(anyhow!(
                "plugin {name}: this is a core wasm module, not a component; build it for wasm32-wasip2 \
                 (cargo build --target wasm32-wasip2) or with cargo-component"
            ));
        }
        if bytes.len() > MAX_COMPONENT_BYTES {
            return Err(anyhow!(
                "plugin {name}: {}",
                compile::too_large(bytes.len() as u64)
            ));
        }
        if let Some(native) = self.cache.as_ref().and_then(|c| c.get(digest)) {
            // SAFETY: `get` returns only bytes whose HMAC, under a key only
            // this user can read, proves this host's haseed stored them as
            // the native code of this very component for this engine.
            if let Ok(component) = unsafe { Component::deserialize(&self.engine, &native) } {
                return Ok(component);
            }
        }
        let fail = |e: String| anyhow!("plugin {name}: {e}");
        self.compilations.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        if let Some(notice) = &self.compile_notice {
            notice(&CompileNotice::Started {
                name,
                bytes: bytes.len(),
            });
        }
        let compiled = compile::compile(&self.compiler, &self.engine, bytes).map_err(fail)?;
        if let Some(notice) = &self.compile_notice {
            notice(&CompileNotice::Finished {
                name,
                elapsed: started.elapsed(),
            });
        }
        let component = match compiled {
            Compiled::Component(component) => {
                if let (Some(cache), Ok(native)) = (&self.cache, component.serialize()) {
                    let _ = cache.put(digest, &native);
                }
                component
            }
            Compiled::Native(native) => {
                // SAFETY: this process's own binary (/proc/self/exe) compiled
                // these bytes from the component a moment ago, with the
                // same engine configuration.
                let component = unsafe { Component::deserialize(&self.engine, &native) }
                    .map_err(|e| fail(format!("cannot load its compiled code: {e:#}")))?;
                if let Some(cache) = &self.cache {
                    let _ = cache.put(digest, &native);
                }
                component
            }
        };
        Ok(component)
    }

    fn link(&self, component: &Component, contract: Contract) -> Result<adapt::Pre, String> {
        let instance_pre = self.linker.instantiate_pre(component).map_err(|e| {
            format!(
                "this host cannot run it: {e:#}. The host offers haseed:policy@{} and sandboxed WASI only \
                 (no filesystem, network, environment or arguments).",
                crate::contract::WIT_VERSION
            )
        })?;
        let expected = |e: wasmtime::Error| {
            format!(
                "does not export the haseed:policy/policy interface this host expects \
                 (haseed:policy@{}, {}): {e:#}",
                crate::contract::WIT_VERSION,
                contract.describe()
            )
        };
        Ok(match contract {
            Contract::Current => {
                adapt::Pre::Current(PolicyPluginPre::new(instance_pre).map_err(expected)?)
            }
            Contract::V0_1 => adapt::Pre::V0_1(
                crate::contract::v0_1::PolicyPluginPre::new(instance_pre).map_err(expected)?,
            ),
            Contract::V0_2 => adapt::Pre::V0_2(
                crate::contract::v0_2::PolicyPluginPre::new(instance_pre).map_err(expected)?,
            ),
        })
    }

    /// What `haseed plugin inspect` reports: the component's surface, its
    /// own description of itself, and whether this host runs it.
    pub fn inspect(&self, name: &str, bytes: &[u8]) -> anyhow::Result<Inspection> {
        let digest = sha256_hex(bytes);
        let component = self.compile(name, &digest, bytes)?;
        let surface = Surface::of(&component, &self.engine);
        let contract = surface.wit_version.as_deref().and_then(Contract::of);
        let (runnable, info) = if let Some(contract) = contract {
            match self.link(&component, contract) {
                Ok(pre) => {
                    let plugin = LoadedPlugin {
                        name: name.into(),
                        digest: digest.clone(),
                        pre,
                    };
                    match self.info(&plugin) {
                        Ok(info) => (Ok(()), Some(info)),
                        Err(e) => (Err(format!("info() failed: {}", e.message)), None),
                    }
                }
                Err(e) => (Err(e), None),
            }
        } else {
            (
                Err(match &surface.wit_version {
                    Some(v) => format!(
                        "built against haseed:policy@{v}; this host offers {} (runs {})",
                        crate::contract::WIT_VERSION,
                        compatible_range()
                    ),
                    None => "exports no haseed:policy/policy interface".into(),
                }),
                None,
            )
        };
        Ok(Inspection {
            sha256: digest,
            size: bytes.len(),
            wit_package: surface
                .wit_version
                .as_ref()
                .map(|v| format!("haseed:policy@{v}")),
            host_wit_package: format!("haseed:policy@{}", crate::contract::WIT_VERSION),
            runs: contract.map(Contract::describe),
            imports: surface.imports,
            exports: surface.exports,
            runnable: runnable.is_ok(),
            reason: runnable.err(),
            info,
        })
    }

    fn new_store(&self) -> (Store<HostState>, MemoryOutputPipe, MemoryOutputPipe) {
        let stdout = MemoryOutputPipe::new(self.limits.output_bytes);
        let stderr = MemoryOutputPipe::new(self.limits.output_bytes);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(wasmtime_wasi::Deterministic::new(
                b"haseed: plugins get seeded randomness".to_vec(),
            ))
            .insecure_random(wasmtime_wasi::Deterministic::new(
                b"haseed: insecure random, seeded".to_vec(),
            ))
            .insecure_random_seed(0x6861_7365_6564)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .table_elements(self.limits.table_elements)
                .instances(16)
                .tables(64)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        (store, stdout, stderr)
    }

    fn arm(&self, store: &mut Store<HostState>, fuel: u64) -> anyhow::Result<()> {
        store.set_fuel(fuel)?;
        let ticks = (self.limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        Ok(())
    }

    /// Asks a plugin who it is (name, version, settings help).
    pub fn info(&self, plugin: &LoadedPlugin) -> Result<PluginInfo, PolicyError> {
        let (mut store, _out, _err) = self.new_store();
        let fail = |message: String| PolicyError {
            plugin: plugin.name.clone(),
            link: 0,
            node: None,
            refused_settings: false,
            setting: None,
            message,
        };
        self.arm(&mut store, self.limits.fuel_open)
            .map_err(|e| fail(e.to_string()))?;
        let instance = plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| fail(describe_trap(&e, &self.limits)))?;
        instance
            .info(&mut store)
            .map_err(|e| fail(describe_trap(&e, &self.limits)))
    }

    /// Runs `chain` over every node of `site`. The first plugin gets empty
    /// plans; each later one the previous plugin's plans. Every plan is
    /// checked right after the plugin that returned it.
    /// Plugin log lines land in `logs` whether the chain succeeds or not (a
    /// panicking plugin's message is the most useful line of all).
    pub fn run_chain(
        &self,
        site: &Site,
        chain: &[ChainLink<'_>],
        logs: &mut Vec<PluginLog>,
    ) -> Result<Vec<NodePlan>, Vec<PolicyError>> {
        let mut plans: Vec<NodePlan> = site
            .nodes
            .iter()
            .map(|n| NodePlan::empty(&n.name))
            .collect();
        for (at, link) in chain.iter().enumerate() {
            self.run_plugin(site, at, link, &mut plans, logs)?;
        }
        let issues = check::check_site(site, &plans);
        if !issues.is_empty() {
            let last = chain
                .last()
                .map(|l| l.plugin.name.clone())
                .unwrap_or_default();
            return Err(issues
                .into_iter()
                .map(|issue| PolicyError {
                    plugin: last.clone(),
                    link: chain.len().saturating_sub(1),
                    node: Some(issue.node.clone()),
                    refused_settings: false,
                    setting: None,
                    message: format!("{}: {}", issue.field, issue.message),
                })
                .collect());
        }
        Ok(plans)
    }

    fn run_plugin(
        &self,
        site: &Site,
        at: usize,
        link: &ChainLink<'_>,
        plans: &mut [NodePlan],
        logs: &mut Vec<PluginLog>,
    ) -> Result<(), Vec<PolicyError>> {
        let name = &link.plugin.name;
        let (mut store, stdout, stderr) = self.new_store();
        let mut printed = (0usize, 0usize);
        let fail = |node: Option<&str>, message: String| PolicyError {
            plugin: name.clone(),
            link: at,
            node: node.map(str::to_string),
            refused_settings: false,
            setting: None,
            message,
        };
        let open_fuel = self.limits.fuel_open.saturating_add(
            self.limits
                .fuel_per_node_open
                .saturating_mul(site.nodes.len() as u64),
        );
        // A trap names the guest's language when its output says which runtime aborted.
        let trapped =
            |e: &wasmtime::Error, output: &[PluginLog]| match e.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::UnreachableCodeReached) => {
                    guest_abort(output).unwrap_or_else(|| describe_trap(e, &self.limits))
                }
                _ => describe_trap(e, &self.limits),
            };
        self.arm(&mut store, open_fuel)
            .map_err(|e| vec![fail(None, e.to_string())])?;
        let mark = logs.len();
        let instance = match link.plugin.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => {
                drain_logs(name, &stdout, &stderr, &mut printed, logs);
                return Err(vec![fail(None, trapped(&e, &logs[mark..]))]);
            }
        };
        // Its declared change scope, checked before anything is decided.
        let declared = match instance.info(&mut store) {
            Ok(info) => info.scope,
            Err(e) => {
                drain_logs(name, &stdout, &stderr, &mut printed, logs);
                return Err(vec![fail(None, trapped(&e, &logs[mark..]))]);
            }
        };
        if let Some(declared) = &declared {
            scope::check(declared).map_err(|why| {
                vec![fail(
                    None,
                    format!("declares a change scope this host cannot enforce: {why}"),
                )]
            })?;
        }
        // Each scope given must grant a change; one that grants everything needs no diff.
        let scopes: Vec<(&[String], &str)> = [
            declared.as_deref().map(|s| (s, "it declares")),
            link.site_scope
                .map(|s| (s, "its [[plugin]] entry in the site grants")),
        ]
        .into_iter()
        .flatten()
        .filter(|(s, _)| !scope::covers_everything(s))
        .collect();
        let opened = instance.open(&mut store, site, link.settings);
        drain_logs(name, &stdout, &stderr, &mut printed, logs);
        let decider: ResourceAny = match opened {
            Ok(Ok(d)) => d,
            Ok(Err(refusal)) => {
                // A field `settings` or `settings.KEY` is about the settings:
                // said once, in the plugin's words, located by the caller.
                let about = refusal
                    .field
                    .as_deref()
                    .and_then(|f| f.strip_prefix("settings"))
                    .filter(|rest| rest.is_empty() || rest.starts_with('.'));
                return Err(vec![match about {
                    Some(rest) => {
                        let key = rest
                            .strip_prefix('.')
                            .and_then(|k| k.split('.').next())
                            .filter(|k| !k.is_empty())
                            .map(one_line);
                        let message = one_line(&refusal.message);
                        // The field is said unless the message starts with the key.
                        let said = match &key {
                            Some(k) if !message.starts_with(k.as_str()) => {
                                describe_refusal(&refusal)
                            }
                            _ => message,
                        };
                        PolicyError {
                            refused_settings: true,
                            setting: key,
                            ..fail(None, format!("rejected its settings: {said}"))
                        }
                    }
                    None => fail(
                        None,
                        format!(
                            "rejected its settings or the site: {}",
                            describe_refusal(&refusal)
                        ),
                    ),
                }]);
            }
            Err(e) => return Err(vec![fail(None, trapped(&e, &logs[mark..]))]),
        };
        let mut errors = Vec::new();
        for (index, plan) in plans.iter_mut().enumerate() {
            let node_name = &site.nodes[index].name;
            self.arm(&mut store, self.limits.fuel_per_call)
                .map_err(|e| vec![fail(Some(node_name), e.to_string())])?;
            let mark = logs.len();
            let result = instance.decide(&mut store, decider, index as u32, plan);
            drain_logs(name, &stdout, &stderr, &mut printed, logs);
            match result {
                Ok(Ok(new_plan)) => {
                    let outside = out_of_scope(&scopes, plan, &new_plan);
                    let issues = check::check_node(site, index as u32, &new_plan);
                    if !outside.is_empty() {
                        errors.extend(outside.into_iter().map(|m| fail(Some(node_name), m)));
                    } else if issues.is_empty() {
                        *plan = new_plan;
                    } else {
                        errors.extend(issues.into_iter().map(|issue| {
                            fail(
                                Some(node_name),
                                format!(
                                    "returned a plan the checker rejects: {}: {}",
                                    issue.field, issue.message
                                ),
                            )
                        }));
                    }
                }
                Ok(Err(refusal)) => errors.push(fail(Some(node_name), describe_refusal(&refusal))),
                // A trap poisons the instance: no further call can be made.
                Err(e) => {
                    errors.push(fail(Some(node_name), trapped(&e, &logs[mark..])));
                    return Err(errors);
                }
            }
            if errors.len() >= 50 {
                break;
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Why `after` is refused as a decision on `before` under `scopes` (each with who gives it):
/// one message per changed field some scope does not grant.
fn out_of_scope(scopes: &[(&[String], &str)], before: &NodePlan, after: &NodePlan) -> Vec<String> {
    if scopes.is_empty() {
        return Vec::new();
    }
    let mut refused = Vec::new();
    for path in scope::changed(before, after) {
        if let Some((granted, who)) = scopes.iter().find(|(s, _)| !scope::covers(s, &path)) {
            let granted = if granted.is_empty() {
                "nothing".to_string()
            } else {
                granted.join(", ")
            };
            refused.push(format!(
                "changed {path}, outside its change scope ({who}: {granted})"
            ));
        }
    }
    refused
}

/// Imports and exports of a compiled component, and the contract version it
/// was built against (from its `haseed:policy/policy@X` export).
struct Surface {
    imports: Vec<String>,
    exports: Vec<String>,
    wit_version: Option<String>,
}

impl Surface {
    fn of(component: &Component, engine: &Engine) -> Surface {
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let wit_version = exports.iter().find_map(|e| {
            e.strip_prefix("haseed:policy/policy@")
                .map(str::to_string)
                .or_else(|| (e == "haseed:policy/policy").then(|| "unversioned".to_string()))
        });
        Surface {
            imports,
            exports,
            wit_version,
        }
    }
}

/// Semver compatibility with this host's contract: same major, and for 0.x
/// the same minor; a plugin may be older (patch or minor) but not newer.
pub fn wit_compatible(plugin: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let core = v.split(['-', '+']).next()?;
        let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    let (Some(p), Some(h)) = (parse(plugin), parse(crate::contract::WIT_VERSION)) else {
        return false;
    };
    if p.0 != h.0 {
        return false;
    }
    if h.0 == 0 {
        p.1 == h.1 && p.2 <= h.2
    } else {
        (p.1, p.2) <= (h.1, h.2)
    }
}

fn compatible_range() -> String {
    let v = crate::contract::WIT_VERSION;
    let mut parts = v.split('.');
    let (major, minor) = (parts.next().unwrap_or("0"), parts.next().unwrap_or("0"));
    let first = if major == "0" {
        format!("0.{minor}.0")
    } else {
        format!("{major}.0.0")
    };
    let native = if first == v {
        v.to_string()
    } else {
        format!("{first} to {v}")
    };
    let adapted: Vec<&str> = adapt::ADAPTED.iter().map(|(version, _)| *version).collect();
    if adapted.is_empty() {
        native
    } else {
        format!("{native}, and {} through an adapter", adapted.join(", "))
    }
}

/// The answer of `haseed plugin inspect`.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    pub sha256: String,
    pub size: usize,
    /// The contract the plugin was built against, e.g. "haseed:policy@0.1.0".
    pub wit_package: Option<String>,
    pub host_wit_package: String,
    /// How this host runs it: "native", or through which adapter and what it then cannot
    /// see or decide; none when it cannot run it.
    pub runs: Option<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub runnable: bool,
    /// Why this host cannot run it.
    pub reason: Option<String>,
    /// The plugin's own `info()`: name, version, description, settings help.
    pub info: Option<PluginInfo>,
}

/// Turns a wasmtime error into one line a site engineer can act on.
fn describe_trap(e: &wasmtime::Error, limits: &Limits) -> String {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::OutOfFuel => format!(
                "ran out of fuel ({} units per call): the plugin loops or does too much work",
                limits.fuel_per_call
            ),
            wasmtime::Trap::Interrupt => format!(
                "exceeded the time limit of {} ms per call",
                limits.call_timeout.as_millis()
            ),
            wasmtime::Trap::StackOverflow => {
                "overflowed its stack (unbounded recursion?)".to_string()
            }
            wasmtime::Trap::UnreachableCodeReached => {
                "trapped: unreachable code reached (its runtime aborted; see its output above)"
                    .to_string()
            }
            wasmtime::Trap::AllocationTooLarge => {
                format!("hit the memory cap of {} MiB", limits.memory_bytes >> 20)
            }
            other => format!("trapped: {other}"),
        };
    }
    // The outer message carries a wasm backtrace; the root cause says what happened.
    let cause = e.root_cause().to_string();
    let cause = cause.lines().next().unwrap_or_default();
    if cause.contains("memory") {
        return format!(
            "hit the memory cap of {} MiB ({})",
            limits.memory_bytes >> 20,
            one_line(cause)
        );
    }
    format!("failed: {}", one_line(cause))
}

/// Which language's runtime aborted, read from what the guest printed during the call that
/// trapped, or `None` when its output names neither.
///
/// - Python (componentize-py): the interpreter prints the traceback, then componentize-py's
///   own Rust runtime panics ("Python function threw an unexpected exception"), so a Python
///   error looks like a Rust panic unless the traceback is looked for first. The exception is
///   the first unindented line after the last `Traceback (most recent call last):`.
/// - Rust: std prints `thread '...' panicked at FILE:LINE:COL:` and the message on the next line.
fn guest_abort(lines: &[PluginLog]) -> Option<String> {
    let err: Vec<&str> = lines
        .iter()
        .filter(|l| l.stream == "stderr")
        .map(|l| l.line.as_str())
        .collect();
    if let Some(tb) = err
        .iter()
        .rposition(|l| l.trim_end() == "Traceback (most recent call last):")
    {
        let exception = err[tb + 1..]
            .iter()
            .find(|l| !l.starts_with(' ') && !l.trim().is_empty())
            .map_or("(no exception line)", |l| l.trim());
        return Some(format!(
            "raised a Python exception: {exception} (its traceback is above)"
        ));
    }
    let p = err.iter().rposition(|l| l.contains(" panicked at "))?;
    let at = err[p]
        .split(" panicked at ")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .trim_end_matches(':');
    let message = err.get(p + 1).map_or("", |l| l.trim());
    Some(format!("a Rust panic at {at}: {message}"))
}

/// Rust's std prints this after a panic; a wasm guest has no backtrace to give, so the advice
/// only misleads (issue 22).
const RUST_BACKTRACE_NOTE: &str = "note: run with `RUST_BACKTRACE=1`";

/// A plugin's structured refusal as one line: "field: message".
fn describe_refusal(e: &crate::contract::PolicyRefusal) -> String {
    match &e.field {
        Some(field) => format!("{}: {}", one_line(field), one_line(&e.message)),
        None => one_line(&e.message),
    }
}

/// Collapses a plugin-supplied message to one printable line.
pub fn one_line(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 2000 {
        let mut cut = 2000;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

fn drain_logs(
    plugin: &str,
    stdout: &MemoryOutputPipe,
    stderr: &MemoryOutputPipe,
    printed: &mut (usize, usize),
    logs: &mut Vec<PluginLog>,
) {
    for (stream, pipe, seen) in [
        ("stdout", stdout, &mut printed.0),
        ("stderr", stderr, &mut printed.1),
    ] {
        let contents = pipe.contents();
        if contents.len() <= *seen {
            continue;
        }
        let fresh = &contents[*seen..];
        // Keep a partial last line for the next call.
        let upto = match fresh.iter().rposition(|&b| b == b'\n') {
            Some(pos) => pos + 1,
            None => continue,
        };
        for line in String::from_utf8_lossy(&fresh[..upto]).lines() {
            if stream == "stderr" && line.starts_with(RUST_BACKTRACE_NOTE) {
                continue;
            }
            logs.push(PluginLog {
                plugin: plugin.to_string(),
                stream,
                line: one_line(line),
            });
        }
        *seen += upto;
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a plugin file ([`source::read_component`]: a regular file under the
/// size cap, hashed as read) and refuses it unless its sha256 is `expected`.
pub fn read_pinned(name: &str, path: &Path, expected: &str) -> anyhow::Result<source::Source> {
    let source = source::read_component(path).map_err(|e| anyhow!("plugin {name}: {e}"))?;
    if !source.digest.eq_ignore_ascii_case(expected) {
        return Err(anyhow!(
            "plugin {name}: sha256 mismatch for {}: the inventory pins {expected} but the file has {digest}. \
             If you rebuilt the plugin on purpose, update the pin (sha256 = \"{digest}\").",
            path.display(),
            digest = source.digest
        ));
    }
    Ok(source)
}

/// Loads each distinct component once: the same sha256 under another name
/// shares the compiled code (its settings and its store stay its own).
#[derive(Default)]
pub struct LoadOnce {
    by_digest: HashMap<String, LoadedPlugin>,
}

impl LoadOnce {
    pub fn load(
        &mut self,
        host: &Host,
        name: &str,
        source: &source::Source,
    ) -> anyhow::Result<LoadedPlugin> {
        if let Some(loaded) = self.by_digest.get(&source.digest) {
            return Ok(LoadedPlugin {
                name: name.to_string(),
                ..loaded.clone()
            });
        }
        let loaded = host.load_source(name, source)?;
        self.by_digest.insert(source.digest.clone(), loaded.clone());
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_pinned_twice_is_compiled_once() {
        let host = Host::new(None, Limits::default()).expect("host");
        let source = source::Source {
            bytes: DEFAULT_POLICY_WASM.to_vec(),
            digest: sha256_hex(DEFAULT_POLICY_WASM),
        };
        let mut once = LoadOnce::default();
        let first = once.load(&host, "a.wasm", &source).expect("load");
        let second = once.load(&host, "b.wasm", &source).expect("load");
        assert_eq!(host.compilations(), 1);
        assert_eq!(
            (first.name.as_str(), second.name.as_str()),
            ("a.wasm", "b.wasm")
        );
        assert_eq!(first.digest, second.digest);
        // Each keeps its own name in what it reports.
        assert_eq!(host.info(&second).expect("info").name, "default-policy");
        // Without LoadOnce, the same bytes compile again (no cache here).
        host.load_source("c.wasm", &source).expect("load");
        assert_eq!(host.compilations(), 2);
    }

    #[test]
    fn tables_past_the_element_cap_are_refused() {
        // A component instantiating one core module whose table has `min`
        // funcref elements.
        fn with_table(min: u32) -> Vec<u8> {
            let mut table = vec![1, 0x70, 0x00];
            let mut n = min;
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                table.push(if n == 0 { byte } else { byte | 0x80 });
                if n == 0 {
                    break;
                }
            }
            let mut module = b"\0asm\x01\0\0\0".to_vec();
            module.push(4);
            module.push(table.len() as u8);
            module.extend_from_slice(&table);
            let mut component = b"\0asm\x0d\0\x01\0".to_vec();
            component.push(1);
            component.push(module.len() as u8);
            component.extend_from_slice(&module);
            // Core instance section: instantiate module 0 with no arguments.
            component.extend_from_slice(&[2, 4, 1, 0, 0, 0]);
            component
        }
        let limits = Limits::default();
        let host = Host::new(None, limits.clone()).expect("host");
        let instantiate = |min: u32| {
            let component = Component::new(&host.engine, with_table(min)).expect("compiles");
            let (mut store, _, _) = host.new_store();
            host.linker
                .instantiate(&mut store, &component)
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        };
        instantiate(limits.table_elements as u32).expect("a table at the cap");
        let err = instantiate(limits.table_elements as u32 + 1).expect_err("past the cap");
        assert!(err.contains("table"), "{err}");
        // The review's funcref tables filled at start: 2^28 elements.
        assert!(instantiate(1 << 28).is_err());
    }

    #[test]
    fn contract_versions_follow_semver() {
        // The host offers 0.3.0: for 0.x only the same minor, not newer.
        assert!(wit_compatible("0.3.0"));
        assert!(
            !wit_compatible("0.3.1"),
            "a newer patch may use what the host lacks"
        );
        assert!(
            !wit_compatible("0.2.0"),
            "0.2 plugins declare no scope: they run through the adapter (adapt.rs), not natively"
        );
        assert!(!wit_compatible("0.1.0"));
        assert!(!wit_compatible("0.4.0"));
        assert!(!wit_compatible("1.1.0"));
        assert!(!wit_compatible("unversioned"));
        assert!(!wit_compatible(""));
    }
}

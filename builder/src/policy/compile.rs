//! Compiling a component to native code, with bounds.
//!
//! Fuel, the deadline and the memory cap bound what a plugin does when it
//! runs; compiling it is work the host does before any of those apply, and
//! Cranelift's cost is not linear in the input (a few hundred KB of wasm can
//! need gigabytes). So the component's size is capped before it is read
//! whole, and the compiler runs in a child process: this same binary
//! (`/proc/self/exe`, the inode we run, even if the file was replaced since),
//! re-executed with a hidden subcommand under `setrlimit` (data segment, CPU
//! time, no core file, no file writes) and killed at a wall-clock deadline.
//! The child reads the component on stdin and writes the serialized native
//! code on stdout; the parent caps what it reads, and only then trusts it as
//! code (it came from our own binary) and hands it to the cache.
//!
//! It must never store or load anything for a component it refused.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// Largest component accepted, in bytes. The largest real plugin is the
/// Python example (plugins/python, componentize-py bundles CPython):
/// 18,354,724 bytes (measured, README "Security"); 64 MiB leaves 3.6 times that.
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// Largest native code accepted from the compiler (and read from the cache).
/// The Python example compiles to 39,654,904 bytes (measured, README);
/// 256 MiB leaves 6.7 times that.
pub const MAX_NATIVE_BYTES: usize = 256 << 20;

/// The hidden subcommand the child runs (see [`child_main`]).
pub const CHILD_SUBCOMMAND: &str = "__compile-component";

/// Bounds on one compilation.
#[derive(Clone, Debug)]
pub struct CompileLimits {
    /// RLIMIT_DATA of the compiler process (heap and private writable
    /// mappings, thread stacks included).
    pub memory_bytes: u64,
    /// Wall-clock bound; the child is killed past it.
    pub timeout: Duration,
    /// RLIMIT_CPU (all threads together), a second line behind the timeout.
    pub cpu_secs: u64,
}

impl Default for CompileLimits {
    /// The Python example (the largest plugin) compiles in 414 MB of
    /// resident memory, 22.5 s of CPU and 49 to 56 s of wall-clock time on a
    /// shared two-core machine (debug build, dependencies at opt-level 1;
    /// measured, README "Security"). 2 GiB, 300 s of wall-clock time and
    /// 300 s of CPU leave about 5, 5 and 13 times that, and stop the
    /// review's components (over 6 GiB; 68 s and 5.8 GiB) at the memory limit.
    fn default() -> Self {
        CompileLimits {
            memory_bytes: 2 << 30,
            timeout: Duration::from_secs(300),
            cpu_secs: 300,
        }
    }
}

/// Where components are compiled.
#[derive(Clone, Debug)]
pub enum Compiler {
    /// In this process, bounded by the size cap only: for embedders that
    /// load only components they trust (the benches).
    InProcess,
    /// In a child process running `exe` with [`CHILD_SUBCOMMAND`].
    Child { exe: PathBuf, limits: CompileLimits },
}

impl Compiler {
    /// This very binary as the compiler (the `haseed` command).
    pub fn this_binary(limits: CompileLimits) -> Compiler {
        Compiler::Child {
            exe: PathBuf::from("/proc/self/exe"),
            limits,
        }
    }
}

/// The engine configuration, the same in the host and the compiler child
/// (native code only loads into an engine configured like the one that made it).
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(1 << 20);
    config.wasm_component_model(true);
    config
}

/// What a compilation produced.
pub enum Compiled {
    /// Compiled in this process.
    Component(Component),
    /// Serialized native code from the compiler child.
    Native(Vec<u8>),
}

/// Compiles `bytes`, bounded as [`Compiler`] says. The error is one line that
/// finishes "plugin X: ...".
pub fn compile(compiler: &Compiler, engine: &Engine, bytes: &[u8]) -> Result<Compiled, String> {
    if bytes.len() > MAX_COMPONENT_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    match compiler {
        Compiler::InProcess => Component::new(engine, bytes)
            .map(Compiled::Component)
            .map_err(|e| format!("cannot compile the component: {e:#}")),
        Compiler::Child { exe, limits } => {
            compile_in_child(exe, limits, bytes).map(Compiled::Native)
        }
    }
}

pub fn too_large(size: u64) -> String {
    format!(
        "the component is {size} bytes; at most {} MiB are accepted (the largest real plugin, \
         the Python example, is about 19 MB). Strip debug sections (wasm-tools strip) or \
         split the plugin",
        MAX_COMPONENT_BYTES >> 20
    )
}

fn compile_in_child(
    exe: &std::path::Path,
    limits: &CompileLimits,
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    let mut command = Command::new(exe);
    command
        .arg(CHILD_SUBCOMMAND)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (memory, cpu) = (limits.memory_bytes, limits.cpu_secs);
    // SAFETY: the closure runs between fork and exec and calls only
    // async-signal-safe functions (setrlimit, prctl), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            let set_soft_hard = |resource, soft: u64, hard: u64| {
                let limit = libc::rlimit {
                    rlim_cur: soft as libc::rlim_t,
                    rlim_max: hard as libc::rlim_t,
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            set_soft_hard(libc::RLIMIT_DATA, memory, memory)?;
            // SIGXCPU at the soft limit says why; SIGKILL 5 s later if ignored.
            set_soft_hard(libc::RLIMIT_CPU, cpu, cpu + 5)?;
            set_soft_hard(libc::RLIMIT_CORE, 0, 0)?;
            set_soft_hard(libc::RLIMIT_FSIZE, 0, 0)?;
            // The compiler dies with us (a killed build leaves no compiler behind).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the compiler process {}: {e}", exe.display()))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let started = Instant::now();
    let (status, native, message, timed_out) = std::thread::scope(|scope| {
        scope.spawn(move || {
            // A child that died early closes the pipe: its status says why.
            let _ = stdin.write_all(bytes);
        });
        let reader = scope.spawn(move || {
            let mut native = Vec::new();
            let _ = (&mut stdout)
                .take(MAX_NATIVE_BYTES as u64 + 1)
                .read_to_end(&mut native);
            // Past the cap, closing the pipe makes the child's next write fail.
            drop(stdout);
            native
        });
        let errors = scope.spawn(move || {
            let mut text = Vec::new();
            let _ = (&mut stderr).take(64 << 10).read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if !timed_out && started.elapsed() > limits.timeout {
                timed_out = true;
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let native = reader.join().unwrap_or_default();
        let message = errors.join().unwrap_or_default();
        (status, native, message, timed_out)
    });
    let status = status.map_err(|e| format!("waiting for the compiler process: {e}"))?;
    let message = message.trim();
    if timed_out {
        return Err(format!(
            "compiling it took longer than {} s (the compile time limit); it was stopped and \
             nothing was cached",
            limits.timeout.as_secs()
        ));
    }
    if native.len() > MAX_NATIVE_BYTES {
        return Err(format!(
            "its native code exceeds {} MiB; refused and nothing was cached",
            MAX_NATIVE_BYTES >> 20
        ));
    }
    if status.signal() == Some(libc::SIGXCPU) {
        return Err(format!(
            "compiling it used more than {} s of CPU (the compile time limit); it was stopped \
             and nothing was cached",
            limits.cpu_secs
        ));
    }
    if status.signal() == Some(libc::SIGKILL) {
        return Err(
            "the compiler process was killed (past its CPU limit, or by the system's \
             out-of-memory killer); nothing was cached"
                .to_string(),
        );
    }
    if message.contains("memory allocation of") || status.signal() == Some(libc::SIGABRT) {
        return Err(format!(
            "compiling it needed more than {} MiB of memory (the compile memory limit); it was \
             stopped and nothing was cached",
            limits.memory_bytes >> 20
        ));
    }
    if !status.success() {
        let cause = message.lines().last().unwrap_or("no message");
        return Err(match status.code() {
            Some(CHILD_INVALID) => format!("cannot compile the component: {message}"),
            _ => format!("the compiler process failed ({status}): {cause}"),
        });
    }
    Ok(native)
}

/// Exit code of the child for a component wasmtime refuses (stderr says why).
const CHILD_INVALID: i32 = 3;

/// The compiler child: component on stdin, serialized native code on stdout.
/// Runs under the limits its parent set before exec.
pub fn child_main() -> ExitCode {
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(MAX_COMPONENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
    {
        eprintln!("reading the component: {e}");
        return ExitCode::FAILURE;
    }
    if bytes.len() > MAX_COMPONENT_BYTES {
        eprintln!("{}", too_large(bytes.len() as u64));
        return ExitCode::from(CHILD_INVALID as u8);
    }
    let engine = match Engine::new(&engine_config()) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("creating the wasmtime engine: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let native = match Component::new(&engine, &bytes).and_then(|c| c.serialize()) {
        Ok(native) => native,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(CHILD_INVALID as u8);
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(&native).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing the native code: {e}");
            ExitCode::FAILURE
        }
    }
}

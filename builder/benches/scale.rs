//! Scale benchmark: parse, plan (default policy + one site plugin) and render
//! generated sites of 10, 1,000 and 10,000 nodes, and report the per-node cost
//! and the plugin-call cost. The per-node cost must stay flat as the site grows
//! (the site crosses the sandbox once per plugin per build).
//!
//! Run: `cargo bench -p haseed --bench scale` (add `-- --quick` for 10 and 1,000 only).
//! Compiled plugins come from a warm on-disk cache, as on a second run.

use std::time::{Duration, Instant};

use haseed::inventory;
use haseed::pipeline;
use haseed::policy::{Host, Limits};

fn site_text(nodes: usize, plugin: &std::path::Path, digest: &str) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "[site]\nname = \"scale-{nodes}\"\n\n[defaults]\nplatform = \"ubuntu\"\ninterface = \"eth0\"\nuser = \"ops\"\n\
ssh_authorized_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKey ops@example\"]\n\n\
[[network]]\nname = \"lan\"\ncidr = \"10.0.0.0/16\"\ngateway = \"10.0.0.1\"\ndns = [\"10.0.0.1\"]\n\n\
[[vip]]\nname = \"api\"\naddress = \"10.0.0.10\"\nnetwork = \"lan\"\n\n\
[[service]]\nname = \"kube-apiserver\"\nvip = \"api\"\nport = 6443\nbackend_role = \"master\"\n\n\
[[service]]\nname = \"nodeport\"\nvip = \"api\"\nport_range = \"30000-30100\"\nbackend_role = \"worker\"\n\
check = {{ port = 29499, inter_ms = 5000, rise = 15, fall = 1 }}\n\n"
    ));
    for i in 0..nodes {
        let (name, role) = match i {
            0 | 1 => (format!("lb{}", i + 1), "lb"),
            2..=4 => (format!("master{}", i - 1), "master"),
            _ => (format!("worker{}", i - 4), "worker"),
        };
        let addr = 256 + i; // 10.0.1.0 onwards
        s.push_str(&format!(
            "[[node]]\nname = \"{name}\"\nroles = [\"{role}\"]\naddress = \"10.0.{}.{}\"\n\n",
            addr / 256,
            addr % 256
        ));
    }
    s.push_str(&format!(
        "[[plugin]]\npath = \"{}\"\nsha256 = \"{digest}\"\nsettings = {{ prefer = \"lb1\", rise = 5 }}\n",
        plugin.display()
    ));
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[usize] = if quick {
        &[10, 1_000]
    } else {
        &[10, 1_000, 10_000]
    };
    let plugin = std::path::Path::new(env!("HASEED_PLUGIN_DIR")).join("prefer_lb1.wasm");
    let digest = haseed::policy::sha256_hex(&std::fs::read(&plugin)?);
    let cache = tempfile::tempdir()?;
    let host = Host::new(Some(cache.path().to_path_buf()), Limits::default())?;

    // Warm the compile cache (what a second `haseed build` sees), and measure it.
    let t = Instant::now();
    host.load_default_policy()?;
    let cold = t.elapsed();
    let t = Instant::now();
    host.load_default_policy()?;
    let warm = t.elapsed();
    println!(
        "default policy: compile {:.1} ms, load from cache {:.2} ms ({:.0}x faster)",
        ms(cold),
        ms(warm),
        cold.as_secs_f64() / warm.as_secs_f64()
    );

    // The site plugin is warmed too: every row measures a second run.
    host.load_file("prefer-lb1", &plugin, &digest)?;

    println!(
        "{:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11} {:>13}",
        "nodes",
        "parse ms",
        "load ms",
        "plan ms",
        "render ms",
        "total ms",
        "us/node",
        "us/plugin call"
    );
    let mut per_node = Vec::new();
    for &n in sizes {
        let text = site_text(n, &plugin, &digest);
        let path = std::path::Path::new("bench-site.toml");
        let t0 = Instant::now();
        let inv = inventory::parse(path, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let t1 = Instant::now();
        let chain = pipeline::load_chain(&host, &inv).map_err(|e| anyhow::anyhow!("{e}"))?;
        let t2 = Instant::now();
        let (plans, _logs) =
            pipeline::plan(&host, &inv, &chain).map_err(|e| anyhow::anyhow!("{e}"))?;
        let t3 = Instant::now();
        let rendered = pipeline::render(&inv, &plans).map_err(|e| anyhow::anyhow!("{e}"))?;
        let t4 = Instant::now();
        assert_eq!(rendered.len(), n);
        let total = t4 - t0;
        let calls = (n * chain.plugins.len()) as f64;
        let us_node = total.as_secs_f64() * 1e6 / n as f64;
        per_node.push((n, us_node));
        println!(
            "{:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>11.1} {:>11.1} {:>13.1}",
            n,
            ms(t1 - t0),
            ms(t2 - t1),
            ms(t3 - t2),
            ms(t4 - t3),
            ms(total),
            us_node,
            (t3 - t2).as_secs_f64() * 1e6 / calls
        );
    }
    scope_cost(&host, *sizes.last().expect("sizes"))?;
    python_plugin(&host_for_python()?)?;
    if let (Some(first), Some(last)) = (per_node.get(1), per_node.last()) {
        println!(
            "per-node cost ratio {} nodes / {} nodes: {:.2} (flat is 1.0; O(n^2) would be {:.0})",
            last.0,
            first.0,
            last.1 / first.1,
            last.0 as f64 / first.0 as f64
        );
    }
    Ok(())
}

/// What holding a plugin to its change scope costs (issue 22 item 3): the comparison the host
/// makes of every plan prefer-lb1 returns with the plan it was given (`policy::scope::changed`),
/// timed alone over the site's nodes, against the whole plan of the same site. Best of five.
fn scope_cost(host: &Host, n: usize) -> anyhow::Result<()> {
    let plugin = std::path::Path::new(env!("HASEED_PLUGIN_DIR")).join("prefer_lb1.wasm");
    let digest = haseed::policy::sha256_hex(&std::fs::read(&plugin)?);
    let text = site_text(n, &plugin, &digest);
    let inv = inventory::parse(std::path::Path::new("bench-site.toml"), &text)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let chain = pipeline::load_chain(host, &inv).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (after, _) = pipeline::plan(host, &inv, &chain).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (base, _) = pipeline::load_chain(host, &inv)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .without(&digest);
    let (before, _) = pipeline::plan(host, &inv, &base).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut plan, mut diff, mut changed) = (Duration::MAX, Duration::MAX, 0);
    for _ in 0..5 {
        let t = Instant::now();
        pipeline::plan(host, &inv, &chain).map_err(|e| anyhow::anyhow!("{e}"))?;
        plan = plan.min(t.elapsed());
        let t = Instant::now();
        changed = before
            .iter()
            .zip(&after)
            .map(|(b, a)| haseed::policy::scope::changed(b, a).len())
            .sum::<usize>();
        diff = diff.min(t.elapsed());
    }
    println!(
        "scope check, {n} nodes: {:.1} ms comparing plans ({changed} changed fields) of {:.1} ms \
         planning ({:.1}%)",
        ms(diff),
        ms(plan),
        100.0 * diff.as_secs_f64() / plan.as_secs_f64()
    );
    Ok(())
}

fn host_for_python() -> anyhow::Result<(Host, tempfile::TempDir)> {
    let cache = tempfile::tempdir()?;
    Ok((
        Host::new(Some(cache.path().to_path_buf()), Limits::default())?,
        cache,
    ))
}

/// The Python plugin (plugins/python/weights, ~18 MB with its interpreter):
/// cold compile against a load from the compile cache, and a plan of the
/// example site through default policy + Python plugin once cached.
fn python_plugin((host, _cache): &(Host, tempfile::TempDir)) -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir()?;
    let wasm = dir.path().join("weights.wasm");
    let built = std::process::Command::new("componentize-py")
        .arg("-d")
        .arg(root.join("wit"))
        .args(["-w", "policy-plugin", "componentize", "-p"])
        .arg(root.join("plugins/python/weights"))
        .arg("app")
        .arg("-o")
        .arg(&wasm)
        .output();
    match built {
        Ok(o) if o.status.success() => {}
        _ => {
            println!("python plugin: skipped (componentize-py not installed: .ci/install-deps)");
            return Ok(());
        }
    }
    let bytes = std::fs::read(&wasm)?;
    let t = Instant::now();
    host.load_bytes("weights", &bytes)?;
    let cold = t.elapsed();
    let t = Instant::now();
    host.load_bytes("weights", &bytes)?;
    let warm = t.elapsed();
    let digest = haseed::policy::sha256_hex(&bytes);
    let mut text = std::fs::read_to_string(root.join("examples/pi-k8s/site.toml"))?;
    text.push_str(&format!(
        "\n[[plugin]]\npath = \"{}\"\nsha256 = \"{digest}\"\nsettings = {{ drain = [\"master3\"] }}\n",
        wasm.display()
    ));
    let t = Instant::now();
    let inv = inventory::parse(std::path::Path::new("site.toml"), &text)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let chain = pipeline::load_chain(host, &inv).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (plans, _) = pipeline::plan(host, &inv, &chain).map_err(|e| anyhow::anyhow!("{e}"))?;
    pipeline::render(&inv, &plans).map_err(|e| anyhow::anyhow!("{e}"))?;
    let site = t.elapsed();
    println!(
        "python plugin ({:.1} MB): compile {:.0} ms, load from cache {:.1} ms ({:.0}x); example site planned+rendered with it, cached: {:.1} ms",
        bytes.len() as f64 / 1e6,
        ms(cold),
        ms(warm),
        cold.as_secs_f64() / warm.as_secs_f64(),
        ms(site)
    );
    Ok(())
}

//! End-to-end: the roles beyond the load balancer (Kubernetes masters' package
//! repository and API check, OpenStack-style controllers, MariaDB Galera db
//! nodes) through the real binary on the example sites `openstack` and
//! `nodeport`: golden files, the real validators, and the generated scripts
//! run (shellcheck, and for real on temporary files and a fake client).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn contains_all(what: &str, text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "{what} lacks {n:?}:\n{text}");
    }
}

/// Builds `site` into a fresh directory under `tmp`, asserting success.
fn built(tmp: &Path, site: &Path) -> PathBuf {
    let out = tmp.join("out");
    let o = build(site, &out);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    out
}

/// A copy of an example site with `edit` applied to its text.
fn variant(tmp: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let site = tmp.join("site.toml");
    std::fs::write(&site, edit(read(&example(name)))).expect("write site");
    site
}

/// Compares the build of an example with `tests/golden/NAME`
/// (UPDATE_GOLDEN=1 rewrites it).
fn golden(name: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = built(tmp.path(), &example(name));
    assert_golden(&out, name);
}

fn validate(site: &Path) {
    let o = run(&["validate", site.to_str().expect("utf-8")]);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "validate failed:\n{text}");
    assert!(text.contains(" 0 failed"), "{text}");
}

/// The golden files; and the VIP stays local on lo only on the plain load
/// balancers: a controller holding the database VIP uses it itself, and a
/// local VIP would keep its own connections on the node whoever holds it.
#[test]
fn openstack_example_matches_golden_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = built(tmp.path(), &example("openstack"));
    assert_golden(&out, "openstack");
    let dropin = |node: &str| {
        read(
            &out.join(node)
                .join("files/etc/systemd/system/keepalived.service.d/50-haseed-failover.conf"),
        )
    };
    for lb in ["lb1", "lb2"] {
        let text = dropin(lb);
        assert!(text.contains("/32 dev lo'\n"), "{lb}:\n{text}");
        assert!(text.contains("arp_ignore=1"), "{lb}:\n{text}");
    }
    for ctl in ["ctl1", "ctl2", "ctl3"] {
        let text = dropin(ctl);
        assert!(text.contains("ExecStopPost="), "{ctl}:\n{text}");
        assert!(!text.contains("dev lo"), "{ctl}:\n{text}");
        assert!(!text.contains("arp_ignore"), "{ctl}:\n{text}");
    }
}

#[test]
fn nodeport_example_matches_golden_files() {
    golden("nodeport");
}

#[test]
fn real_validators_pass_on_every_node_of_the_role_examples() {
    validate(&example("openstack"));
    validate(&example("nodeport"));
}

#[test]
fn controllers_get_api_listeners_hosts_time_and_the_database_vip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = built(tmp.path(), &example("openstack"));

    // The LBs: one listener per API service, the controller profile.
    let lb = read(&out.join("lb1/files/etc/haproxy/haproxy.cfg"));
    // 14 API services, plus the failover policy's loopback monitor frontend.
    let frontends = lb.matches("\nfrontend ").count();
    assert_eq!(frontends, 15, "{lb}");
    assert!(lb.contains("\nfrontend haseed_monitor\n"), "{lb}");
    contains_all(
        "lb1 haproxy.cfg",
        &lb,
        &[
            // HTTP frontends pass the client's address on (X-Forwarded-For).
            "frontend glance-api\n    bind *:9292\n    mode http\n    option tcpka\n    option forwardfor\n",
            "backend glance-api\n    mode http\n    balance roundrobin\n    option redispatch 1\n    option tcpka\n    option httpchk\n    http-check send meth GET uri /\n",
            "server ctl1 10.20.0.21:9292 check inter 2000ms rise 2 fall 5\n",
            "server ctl3 10.20.0.23:8776 check inter 2000ms rise 2 fall 5\n",
            // The inventory's per-service check wins.
            "http-check send meth GET uri /v3\n",
            "server ctl2 10.20.0.22:5000 check inter 2000ms rise 3 fall 5\n",
            // TCP pass-through: no HTTP check; the site asks for `balance source`.
            "backend horizon-tls\n    mode tcp\n    balance source\n    option redispatch 1\n    option tcpka\n    server ctl1",
            "timeout client 60000ms",
            // A TCP frontend carries no HTTP header.
            "frontend horizon-tls\n    bind *:443\n    mode tcp\n    option tcpka\n    default_backend horizon-tls\n",
        ],
    );
    // The database VIP is the controllers' business, not the LBs'.
    assert!(!lb.contains("mariadb"), "{lb}");
    let lb_ka = read(&out.join("lb1/files/etc/keepalived/keepalived.conf"));
    assert!(
        lb_ka.contains("10.20.0.10/24") && !lb_ka.contains("10.20.0.20/24"),
        "{lb_ka}"
    );

    // The controllers hold the database VIP: keepalived + haproxy.
    for ctl in ["ctl1", "ctl2", "ctl3"] {
        let dir = out.join(ctl);
        let ka = read(&dir.join("files/etc/keepalived/keepalived.conf"));
        contains_all(
            &format!("{ctl} keepalived.conf"),
            &ka,
            &["10.20.0.20/24", "track_script"],
        );
        let cfg = read(&dir.join("files/etc/haproxy/haproxy.cfg"));
        contains_all(
            &format!("{ctl} haproxy.cfg"),
            &cfg,
            &[
                "frontend mariadb\n    bind *:3306\n",
                "timeout client 3600000ms",
                "server db1 10.20.0.31:3306 check inter 2000ms rise 2 fall 5 port 9200 on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions\n",
                "server db2 10.20.0.32:3306 check inter 2000ms rise 2 fall 5 port 9200 backup on-marked-down shutdown-sessions\n",
                "server db3 10.20.0.33:3306 check inter 2000ms rise 2 fall 5 port 9200 backup on-marked-down shutdown-sessions\n",
            ],
        );
        assert!(!cfg.contains("keystone"), "{cfg}");
        // Host entries for every node of the site, and the unit that
        // re-adds them after cloud-init rewrote /etc/hosts.
        let hosts = read(&dir.join("files/etc/haseed/hosts"));
        assert_eq!(
            hosts.lines().filter(|l| !l.starts_with('#')).count(),
            8,
            "{hosts}"
        );
        contains_all(
            "hosts",
            &hosts,
            &["10.20.0.11 lb1\n", "10.20.0.23 ctl3\n", "10.20.0.33 db3\n"],
        );
        let unit = read(&dir.join("files/etc/systemd/system/haseed-hosts.service"));
        contains_all(
            "haseed-hosts.service",
            &unit,
            &[
                "After=",
                "cloud-config.service",
                "ExecStart=/usr/local/sbin/haseed-hosts",
            ],
        );
        let time = read(&dir.join("files/etc/systemd/timesyncd.conf.d/haseed.conf"));
        assert!(time.contains("[Time]\nNTP=10.20.0.1 10.20.0.2\n"), "{time}");
        let ud = read(&dir.join("user-data"));
        contains_all(
            &format!("{ctl} user-data"),
            &ud,
            &[
                "\"systemd-timesyncd\"",
                "[\"systemctl\",\"--no-reload\",\"enable\",\"haseed-hosts.service\"]",
                "[\"systemctl\",\"restart\",\"systemd-timesyncd\"]",
            ],
        );
    }
    // Neither LBs nor db nodes get the hosts block.
    assert!(!out.join("lb1/files/etc/haseed/hosts").exists());
    assert!(!out.join("db1/files/etc/haseed/hosts").exists());
}

#[test]
fn db_nodes_form_one_galera_cluster_bootstrapped_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = built(tmp.path(), &example("openstack"));
    for (db, address) in [
        ("db1", "10.20.0.31"),
        ("db2", "10.20.0.32"),
        ("db3", "10.20.0.33"),
    ] {
        let dir = out.join(db);
        let cnf = read(&dir.join("files/etc/mysql/mariadb.conf.d/99-haseed-galera.cnf"));
        contains_all(
            &format!("{db} galera cnf"),
            &cnf,
            &[
                &format!("bind-address = {address}\n"),
                "binlog_format = ROW\n",
                "innodb_autoinc_lock_mode = 2\n",
                "wsrep_on = ON\n",
                "wsrep_provider = /usr/lib/galera/libgalera_smm.so\n",
                "wsrep_cluster_name = openstack\n",
                "wsrep_cluster_address = gcomm://10.20.0.31,10.20.0.32,10.20.0.33\n",
                &format!("wsrep_node_address = {address}\n"),
                &format!("wsrep_node_name = {db}\n"),
                // Non-blocking SST, through MariaDB's own mysql@localhost
                // (unix_socket): no password on disk.
                "wsrep_sst_method = mariabackup\nwsrep_sst_auth = mysql:\n",
            ],
        );
        let ud = read(&dir.join("user-data"));
        let first = db == "db1";
        let packages = if first {
            // The bootstrap asks its peers over HTTP.
            "packages: [\"mariadb-server\",\"galera-4\",\"mariadb-backup\",\"curl\",\"systemd-timesyncd\"]"
        } else {
            "packages: [\"mariadb-server\",\"galera-4\",\"mariadb-backup\",\"systemd-timesyncd\"]"
        };
        contains_all(
            &format!("{db} user-data"),
            &ud,
            &[
                packages,
                // Written after the packages: group mysql exists, and the
                // package's first start is a plain server.
                "owner: \"root:mysql\"\n    permissions: \"0640\"\n    defer: true\n",
                "[\"systemctl\",\"--no-reload\",\"enable\",\"haseed-galera-health.socket\"]",
            ],
        );
        let socket = read(&dir.join("files/etc/systemd/system/haseed-galera-health.socket"));
        contains_all("socket", &socket, &["ListenStream=9200\n", "Accept=yes\n"]);
        assert_eq!(
            dir.join("files/etc/default/haseed-galera").exists(),
            first,
            "{db}: only the first db node asks its peers"
        );
        assert_eq!(
            dir.join("files/etc/systemd/system/haseed-galera-bootstrap.service")
                .exists(),
            first,
            "{db}: only the first db node bootstraps"
        );
        assert_eq!(
            ud.contains("haseed-galera-bootstrap.service"),
            first,
            "{ud}"
        );
        // The joiners restart mariadb to join; the first node must not (a
        // plain start would look for peers that are not there yet).
        assert_eq!(
            ud.contains("[\"systemctl\",\"restart\",\"mariadb\"]"),
            !first,
            "{ud}"
        );
    }
    let unit = read(&out.join("db1/files/etc/systemd/system/haseed-galera-bootstrap.service"));
    contains_all(
        "bootstrap unit",
        &unit,
        &[
            "ConditionPathExists=!/var/lib/haseed/galera-bootstrapped\n",
            // It waits for its peers: cloud-init's runcmd must not.
            "Type=simple\n",
        ],
    );
    let conf = read(&out.join("db1/files/etc/default/haseed-galera"));
    contains_all(
        "bootstrap conf",
        &conf,
        &[
            "\nHASEED_GALERA_PEERS=\"10.20.0.32 10.20.0.33\"\n",
            // No automatic new cluster unless the site says it is new.
            "\nHASEED_GALERA_BOOTSTRAP=manual\n",
            "\nHASEED_GALERA_WAIT=600\n",
        ],
    );
    let script = read(&out.join("db1/files/usr/local/sbin/haseed-galera-bootstrap"));
    contains_all(
        "bootstrap script",
        &script,
        &[
            "    galera_new_cluster\n",
            "marker=${HASEED_GALERA_MARKER:-/var/lib/haseed/galera-bootstrapped}\n",
            "--new-cluster) operator=yes ;;\n",
        ],
    );

    // One writer: the active server takes its sessions back from the
    // backups when it returns, and every server closes its sessions when
    // it is marked down (haproxy 2.6 configuration.txt, on-marked-up,
    // on-marked-down).
    for ctl in ["ctl1", "ctl2", "ctl3"] {
        let cfg = read(&out.join(ctl).join("files/etc/haproxy/haproxy.cfg"));
        contains_all(
            &format!("{ctl} haproxy.cfg"),
            &cfg,
            &[
                "    server db1 10.20.0.31:3306 check inter 2000ms rise 2 fall 5 port 9200 on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions\n",
                "    server db2 10.20.0.32:3306 check inter 2000ms rise 2 fall 5 port 9200 backup on-marked-down shutdown-sessions\n",
                "    server db3 10.20.0.33:3306 check inter 2000ms rise 2 fall 5 port 9200 backup on-marked-down shutdown-sessions\n",
            ],
        );
    }

    // The settings: rsync kept as a choice (no SST account then), the
    // bootstrap mode, and a word that is neither refused.
    let tmp2 = tempfile::tempdir().expect("tempdir");
    let site = variant(tmp2.path(), "openstack", |t| {
        format!("{t}\n[default_policy]\ngalera_sst = \"rsync\"\ngalera_bootstrap = \"new-site\"\n")
    });
    let out = built(tmp2.path(), &site);
    let cnf = read(&out.join("db2/files/etc/mysql/mariadb.conf.d/99-haseed-galera.cnf"));
    assert!(cnf.ends_with("wsrep_sst_method = rsync\n"), "{cnf}");
    assert!(read(&out.join("db2/user-data")).contains("\"rsync\""));
    let conf = read(&out.join("db1/files/etc/default/haseed-galera"));
    assert!(
        conf.contains("\nHASEED_GALERA_BOOTSTRAP=new-site\n"),
        "{conf}"
    );
    for bad in ["galera_bootstrap = \"auto\"", "galera_sst = \"xtrabackup\""] {
        let site = variant(tmp2.path(), "openstack", |t| {
            format!("{t}\n[default_policy]\n{bad}\n")
        });
        let o = run(&["plan", site.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        let key = bad.split(' ').next().expect("key");
        assert!(stderr(&o).contains(key), "{bad}: {}", stderr(&o));
    }
}

#[test]
fn generated_scripts_pass_shellcheck() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = built(tmp.path(), &example("openstack"));
    let scripts = [
        out.join("ctl1/files/usr/local/sbin/haseed-hosts"),
        out.join("db1/files/usr/local/sbin/haseed-galera-health"),
        out.join("db1/files/usr/local/sbin/haseed-galera-bootstrap"),
    ];
    for s in &scripts {
        let o = Command::new("shellcheck")
            .args(["-s", "sh"])
            .arg(s)
            .output()
            .expect("shellcheck (Debian package shellcheck, .ci/install-deps)");
        assert!(
            o.status.success(),
            "shellcheck {}:\n{}{}",
            s.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Runs the health script with a fake `mariadb` first on PATH that prints
/// `reply` (or fails when None), feeding it an HTTP request.
fn health(script: &Path, bin: &Path, reply: Option<&str>) -> String {
    health_with(script, bin, reply, None)
}

/// `health`, with HASEED_GALERA_DATADIR set to `data` (where the script
/// reads grastate.dat) when given.
fn health_with(script: &Path, bin: &Path, reply: Option<&str>, data: Option<&Path>) -> String {
    let fake = bin.join("mariadb");
    let body = match reply {
        Some(state) => format!("#!/bin/sh\nprintf 'wsrep_local_state_comment\\t%s\\n' '{state}'\n"),
        None => "#!/bin/sh\necho 'ERROR 2002 (HY000): Can'\\''t connect' >&2\nexit 1\n".into(),
    };
    std::fs::write(&fake, body).expect("fake client");
    let mut perm = std::fs::metadata(&fake).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&fake, perm).expect("chmod");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let mut cmd = Command::new("/bin/sh");
    if let Some(d) = data {
        cmd.env("HASEED_GALERA_DATADIR", d);
    }
    let mut child = cmd
        .arg(script)
        .env("PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run health script");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"GET / HTTP/1.0\r\nHost: db1\r\n\r\n")
            .expect("request");
    }
    let o = child.wait_with_output().expect("health output");
    assert!(o.status.success());
    String::from_utf8(o.stdout).expect("utf-8")
}

#[test]
fn health_endpoint_is_up_only_when_synced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = built(tmp.path(), &example("openstack"));
    let script = out.join("db2/files/usr/local/sbin/haseed-galera-health");
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");

    let up = health(&script, &bin, Some("Synced"));
    assert!(up.starts_with("HTTP/1.1 200 OK\r\n"), "{up:?}");
    let (head, body) = up.split_once("\r\n\r\n").expect("head and body");
    assert_eq!(body, "Galera node is Synced.\n");
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );

    for reply in [
        Some("Donor/Desynced"),
        Some("Joining: receiving State Transfer"),
        None,
    ] {
        let down = health(&script, &bin, reply);
        assert!(
            down.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{reply:?}: {down:?}"
        );
        let (head, body) = down.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
    }
}

/// X-Haseed-Galera-State names the cluster state UUID of grastate.dat, or
/// none for a node that never was in a cluster (what the first node's
/// bootstrap asks), whatever the server says.
#[test]
fn health_endpoint_names_the_cluster_state_of_grastate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = built(tmp.path(), &example("openstack"));
    let script = out.join("db2/files/usr/local/sbin/haseed-galera-health");
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("data");
    let grastate = |uuid: &str| {
        std::fs::write(
            data.join("grastate.dat"),
            format!("# GALERA saved state\nversion: 2.1\nuuid:    {uuid}\nseqno:   -1\nsafe_to_bootstrap: 0\n"),
        )
        .expect("grastate")
    };
    // The script reads HASEED_GALERA_DATADIR (default /var/lib/mysql).
    let with_data = |reply: Option<&str>| health_with(&script, &bin, reply, Some(&data));
    let uuid = "3f0c2d62-1a7b-11f0-9c1e-5f1b2a3c4d5e";
    for (setup, reply, want) in [
        (None, None, "X-Haseed-Galera-State: none\r\n"),
        (
            Some("00000000-0000-0000-0000-000000000000"),
            Some("Joining: receiving State Transfer"),
            "X-Haseed-Galera-State: none\r\n",
        ),
        (
            Some(uuid),
            None,
            &format!("X-Haseed-Galera-State: {uuid}\r\n") as &str,
        ),
        (
            Some(uuid),
            Some("Synced"),
            &format!("X-Haseed-Galera-State: {uuid}\r\n"),
        ),
        (
            Some("3f0c2d62\r\nX-Injected: 1"),
            None,
            "X-Haseed-Galera-State: unreadable\r\n",
        ),
    ] {
        let _ = std::fs::remove_file(data.join("grastate.dat"));
        if let Some(u) = setup {
            grastate(u);
        }
        let answer = with_data(reply);
        let (head, _) = answer.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(want), "{setup:?} {reply:?}: {answer:?}");
        assert!(!head.contains("X-Injected"), "{answer:?}");
    }
}

/// What one run of the generated bootstrap script did.
struct BootRun {
    code: Option<i32>,
    stderr: String,
    /// The fake systemctl's and galera_new_cluster's command lines.
    calls: String,
    marked: bool,
}

/// Runs db1's generated bootstrap script with fake peers (a fake `curl`
/// answering each peer's health endpoint as given; None: no answer), a
/// fake `systemctl` and `galera_new_cluster` that only record their
/// arguments, this node's grastate.dat UUID (`local`), the bootstrap mode
/// and no wait.
fn bootstrap(
    out: &Path,
    dir: &Path,
    mode: &str,
    local: Option<&str>,
    peers: &[(&str, Option<&str>)],
    args: &[&str],
) -> BootRun {
    let _ = std::fs::remove_dir_all(dir);
    let bin = dir.join("bin");
    let data = dir.join("data");
    for d in [&bin, &data] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    if let Some(uuid) = local {
        std::fs::write(
            data.join("grastate.dat"),
            format!("# GALERA saved state\nversion: 2.1\nuuid:    {uuid}\nseqno:   -1\nsafe_to_bootstrap: 0\n"),
        )
        .expect("grastate");
    }
    for (peer, reply) in peers {
        if let Some(r) = reply {
            std::fs::write(dir.join(format!("peer-{peer}")), r).expect("peer");
        }
    }
    let calls = dir.join("calls");
    let fakes = [
        (
            "curl",
            format!(
                "#!/bin/sh\nfor a; do url=$a; done\nhost=${{url#http://}}\nhost=${{host%%:*}}\n\
                 [ -f {d}/peer-$host ] || exit 7\ncat {d}/peer-$host\n",
                d = dir.display()
            ),
        ),
        (
            "systemctl",
            format!("#!/bin/sh\necho \"systemctl $*\" >>{}\n", calls.display()),
        ),
        (
            "galera_new_cluster",
            format!(
                "#!/bin/sh\necho \"galera_new_cluster $*\" >>{}\n",
                calls.display()
            ),
        ),
    ];
    for (name, body) in fakes {
        let f = bin.join(name);
        std::fs::write(&f, body).expect("fake");
        let mut perm = std::fs::metadata(&f).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&f, perm).expect("chmod");
    }
    let marker = dir.join("marker/galera-bootstrapped");
    let conf = dir.join("haseed-galera");
    std::fs::write(
        &conf,
        format!(
            "{}HASEED_GALERA_BOOTSTRAP={mode}\nHASEED_GALERA_WAIT=0\nHASEED_GALERA_DATADIR={}\nHASEED_GALERA_MARKER={}\n",
            read(&out.join("db1/files/etc/default/haseed-galera")),
            data.display(),
            marker.display()
        ),
    )
    .expect("conf");
    let o = Command::new("/bin/sh")
        .arg(out.join("db1/files/usr/local/sbin/haseed-galera-bootstrap"))
        .args(args)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HASEED_GALERA_CONF", &conf)
        .stdin(Stdio::null())
        .output()
        .expect("run bootstrap");
    BootRun {
        code: o.status.code(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        calls: std::fs::read_to_string(&calls).unwrap_or_default(),
        marked: marker.exists(),
    }
}

/// The first db node's bootstrap (issue 19): it joins whenever a peer is
/// Synced or holds cluster state, or it holds state itself; it starts a
/// new cluster only for a new site: every peer answered with no state
/// (`new-site`) or the operator's `--new-cluster`; otherwise it fails and
/// says what to do. Each rule has the case that would break it.
#[test]
fn galera_bootstrap_joins_unless_the_site_is_new() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = built(tmp.path(), &example("openstack"));
    let dir = tmp.path().join("boot");
    let uuid = "3f0c2d62-1a7b-11f0-9c1e-5f1b2a3c4d5e";
    let synced = format!(
        "HTTP/1.1 200 OK\r\nX-Haseed-Galera-State: {uuid}\r\nContent-Length: 23\r\n\r\nGalera node is Synced.\n"
    );
    let holding = format!(
        "HTTP/1.1 503 Service Unavailable\r\nX-Haseed-Galera-State: {uuid}\r\n\r\nGalera node is not synced (no answer from MariaDB).\n"
    );
    let fresh = "HTTP/1.1 503 Service Unavailable\r\nX-Haseed-Galera-State: none\r\n\r\nGalera node is not synced (no answer from MariaDB).\n".to_string();
    // An endpoint that does not say (an older haseed): taken as state.
    let unsaid = "HTTP/1.1 503 Service Unavailable\r\n\r\nGalera node is not synced.\n".to_string();
    let (a, b) = ("10.20.0.32", "10.20.0.33");
    let join = "systemctl restart --no-block mariadb.service\n";
    let new = "galera_new_cluster \n";

    // (mode, this node's state, peers, args) -> exit code, calls, marker.
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        &str,
        Option<&str>,
        Vec<(&str, Option<&str>)>,
        Vec<&str>,
        i32,
        &str,
        bool,
    )> = vec![
        // The re-flashed db1 whose peers run: it joins, whatever the mode.
        (
            "reflashed, a peer synced",
            "new-site",
            None,
            vec![(a, Some(&synced)), (b, Some(&fresh))],
            vec![],
            0,
            join,
            true,
        ),
        (
            "reflashed, peers synced, manual",
            "manual",
            None,
            vec![(a, None), (b, Some(&synced))],
            vec![],
            0,
            join,
            true,
        ),
        // Peers hold the data but none is Primary yet: join and wait, no fork.
        (
            "peers hold state",
            "new-site",
            None,
            vec![(a, Some(&holding)), (b, Some(&fresh))],
            vec![],
            0,
            join,
            true,
        ),
        (
            "peer does not say",
            "new-site",
            None,
            vec![(a, Some(&unsaid)), (b, Some(&fresh))],
            vec![],
            0,
            join,
            true,
        ),
        // This node holds state: never a new cluster from the script.
        (
            "node holds state",
            "new-site",
            Some(uuid),
            vec![(a, Some(&fresh)), (b, Some(&fresh))],
            vec![],
            0,
            join,
            true,
        ),
        // A new site: every peer fresh.
        (
            "new site",
            "new-site",
            None,
            vec![(a, Some(&fresh)), (b, Some(&fresh))],
            vec![],
            0,
            new,
            true,
        ),
        (
            "new site, manual",
            "manual",
            None,
            vec![(a, Some(&fresh)), (b, Some(&fresh))],
            vec![],
            1,
            "",
            false,
        ),
        // A silent peer may hold the data: no automatic new cluster.
        (
            "a peer silent",
            "new-site",
            None,
            vec![(a, Some(&fresh)), (b, None)],
            vec![],
            1,
            "",
            false,
        ),
        // The operator's one-shot bootstrap.
        (
            "operator",
            "manual",
            None,
            vec![(a, Some(&fresh)), (b, None)],
            vec!["--new-cluster"],
            0,
            new,
            true,
        ),
        (
            "operator, a peer synced",
            "manual",
            None,
            vec![(a, Some(&fresh)), (b, Some(&synced))],
            vec!["--new-cluster"],
            1,
            "",
            false,
        ),
        (
            "operator, a peer holds state",
            "manual",
            None,
            vec![(a, Some(&holding)), (b, Some(&fresh))],
            vec!["--new-cluster"],
            1,
            "",
            false,
        ),
        (
            "operator, node holds state",
            "manual",
            Some(uuid),
            vec![(a, None), (b, None)],
            vec!["--new-cluster"],
            1,
            "",
            false,
        ),
        (
            "a zero UUID is fresh",
            "new-site",
            Some("00000000-0000-0000-0000-000000000000"),
            vec![(a, Some(&fresh)), (b, Some(&fresh))],
            vec![],
            0,
            new,
            true,
        ),
    ];
    for (what, mode, local, peers, args, code, calls, marked) in cases {
        let r = bootstrap(&out, &dir, mode, local, &peers, &args);
        assert_eq!(r.code, Some(code), "{what}: {}", r.stderr);
        assert_eq!(r.calls, calls, "{what}: {}", r.stderr);
        assert_eq!(r.marked, marked, "{what}: {}", r.stderr);
        if code != 0 {
            assert!(
                r.stderr.contains("haseed-galera-bootstrap: "),
                "{what}: {}",
                r.stderr
            );
        }
    }
    let r = bootstrap(
        &out,
        &dir,
        "manual",
        None,
        &[(a, Some(&fresh)), (b, None)],
        &[],
    );
    assert!(
        r.stderr
            .contains("run 'haseed-galera-bootstrap --new-cluster' on this node once"),
        "{}",
        r.stderr
    );
    let r = bootstrap(&out, &dir, "manual", None, &[], &["--bogus"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
}

#[test]
fn hosts_block_is_merged_idempotently_and_keeps_other_lines() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = built(tmp.path(), &example("openstack"));
    let script = out.join("ctl1/files/usr/local/sbin/haseed-hosts");
    let entries = out.join("ctl1/files/etc/haseed/hosts");
    let hosts = tmp.path().join("hosts");
    // What cloud-init's template renders.
    let rendered =
        "127.0.1.1 ctl1 ctl1\n127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n";
    std::fs::write(&hosts, rendered).expect("hosts");
    let merge = || {
        let o = Command::new("/bin/sh")
            .arg(&script)
            .arg(&entries)
            .arg(&hosts)
            .output()
            .expect("run haseed-hosts");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        read(&hosts)
    };
    let once = merge();
    assert!(once.starts_with(rendered), "{once}");
    assert!(once.contains("10.20.0.31 db1\n"), "{once}");
    assert_eq!(merge(), once, "a second run changes nothing");
    // A boot later: cloud-init rendered its template again; our block comes
    // back once, not twice.
    std::fs::write(&hosts, format!("{once}192.0.2.9 extra\n")).expect("hosts");
    let again = merge();
    assert_eq!(again.matches("10.20.0.31 db1\n").count(), 1, "{again}");
    assert!(again.contains("192.0.2.9 extra\n"), "{again}");
    assert_eq!(again.matches("# BEGIN haseed").count(), 1, "{again}");
}

#[test]
fn leastconn_setting_makes_every_db_node_active() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = variant(tmp.path(), "openstack", |t| {
        format!("{t}\n[default_policy]\ndb_balance = \"leastconn\"\ngalera_sst = \"mariabackup\"\ngalera_cluster_name = \"osdb\"\n")
    });
    let out = built(tmp.path(), &site);
    let cfg = read(&out.join("ctl2/files/etc/haproxy/haproxy.cfg"));
    assert!(
        cfg.contains("backend mariadb\n    mode tcp\n    balance leastconn\n"),
        "{cfg}"
    );
    assert!(!cfg.contains(" backup"), "{cfg}");
    // Every server active: no backup sessions to take back.
    assert!(!cfg.contains("on-marked"), "{cfg}");
    let cnf = read(&out.join("db3/files/etc/mysql/mariadb.conf.d/99-haseed-galera.cnf"));
    contains_all(
        "cnf",
        &cnf,
        &[
            "wsrep_sst_method = mariabackup\n",
            "wsrep_cluster_name = osdb\n",
        ],
    );
    assert!(read(&out.join("db3/user-data")).contains("\"mariadb-backup\""));

    let site = variant(tmp.path(), "openstack", |t| {
        format!("{t}\n[default_policy]\ndb_balance = \"all\"\n")
    });
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("db_balance"), "{}", stderr(&o));
}

#[test]
fn controllers_acting_as_db_bind_the_vip_and_validate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // No separate db nodes: the controllers are the Galera cluster and hold
    // its VIP, so haproxy and MariaDB share port 3306 on each of them.
    let site = variant(tmp.path(), "openstack", |t| {
        let t = t.replace(
            "roles = [\"controller\"]",
            "roles = [\"controller\", \"db\"]",
        );
        let cut = t.find("[[node]]\nname = \"db1\"").expect("db1");
        t[..cut].to_string()
    });
    let out = built(tmp.path(), &site);
    let cfg = read(&out.join("ctl1/files/etc/haproxy/haproxy.cfg"));
    contains_all(
        "ctl1 haproxy.cfg",
        &cfg,
        &[
            "frontend mariadb\n    bind 10.20.0.20:3306\n",
            "server ctl1 10.20.0.21:3306 check inter 2000ms rise 2 fall 5 port 9200 on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions\n",
            "server ctl2 10.20.0.22:3306 check inter 2000ms rise 2 fall 5 port 9200 backup on-marked-down shutdown-sessions\n",
        ],
    );
    let ud = read(&out.join("ctl1/user-data"));
    contains_all(
        "ctl1 user-data",
        &ud,
        &[
            "[\"sysctl\",\"-w\",\"net.ipv4.ip_nonlocal_bind=1\"]",
            "haseed-galera-bootstrap.service",
        ],
    );
    let cnf = read(&out.join("ctl2/files/etc/mysql/mariadb.conf.d/99-haseed-galera.cnf"));
    assert!(cnf.contains("bind-address = 10.20.0.22\n"), "{cnf}");
    assert!(
        cnf.contains("gcomm://10.20.0.21,10.20.0.22,10.20.0.23\n"),
        "{cnf}"
    );
    validate(&site);
}

#[test]
fn galera_single_writer_plugin_moves_the_writer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let entry = plugin_entry(
        &plugin("galera_single_writer.wasm"),
        Some(r#"{ writer = "db2" }"#),
    );
    let site = variant(tmp.path(), "openstack", |t| format!("{t}\n{entry}"));
    let out = built(tmp.path(), &site);
    let cfg = read(&out.join("ctl3/files/etc/haproxy/haproxy.cfg"));
    contains_all(
        "ctl3 haproxy.cfg",
        &cfg,
        &[
            "server db1 10.20.0.31:3306 check inter 2000ms rise 2 fall 5 port 9200 backup on-marked-down shutdown-sessions\n",
            "server db2 10.20.0.32:3306 check inter 2000ms rise 2 fall 5 port 9200 on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions\n",
            "server db3 10.20.0.33:3306 check inter 2000ms rise 2 fall 5 port 9200 backup on-marked-down shutdown-sessions\n",
        ],
    );
}

#[test]
fn kubernetes_nodes_get_the_package_repository_and_the_api_check_setting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = built(tmp.path(), &example("pi-k8s"));
    let ud = read(&out.join("master2/user-data"));
    contains_all(
        "master2 user-data",
        &ud,
        &[
            "packages: [\"containerd\",\"curl\",\"gpg\",\"ca-certificates\"]",
            "[\"systemctl\",\"restart\",\"haseed-kubernetes-apt.service\"]",
        ],
    );
    // raspios keeps the image's own sources (Raspberry Pi Imager does too),
    // and there is no APT source: the repository is enabled by the unit once
    // its key is checked (plugins/default-policy/src/kubernetes.rs).
    assert!(ud.contains("apt:\n  preserve_sources_list: true\n"), "{ud}");
    assert!(!ud.contains("sources:"), "{ud}");
    contains_all(
        "embedded key copy",
        &read(&out.join("master2/files/usr/local/lib/haseed/pkgs-k8s-io.asc")),
        &[
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n",
            "mQENBGMHoXcBCADukGOEQyleViOgtkMVa7hKifP6POCTh+98xNW4TfHK/nBJN2sm",
        ],
    );
    contains_all(
        "kubernetes-apt.env",
        &read(&out.join("master2/files/etc/haseed/kubernetes-apt.env")),
        &[
            "K8S_MINOR=1.37\n",
            "K8S_REPO=https://pkgs.k8s.io/core:/stable:/v1.37/deb/\n",
            "K8S_KEY_URL=https://pkgs.k8s.io/core:/stable:/v1.37/deb/Release.key\n",
            "K8S_KEY_FINGERPRINT=DE15B14486CD377B9E876E1A234654DA9A296436\n",
            "K8S_KEYRING=/etc/apt/keyrings/kubernetes-apt-keyring.gpg\n",
        ],
    );
    let containerd = read(&out.join("master2/files/etc/containerd/config.toml"));
    contains_all(
        "config.toml",
        &containerd,
        &[
            "version = 2\n",
            "runtime_type = \"io.containerd.runc.v2\"",
            "SystemdCgroup = true\n",
        ],
    );
    assert!(!read(&out.join("lb1/user-data")).contains("\n  sources: "));
    // The default with failover: HTTPS GET /readyz, out within 2 s, back
    // within 2 s (default-policy haproxy.rs).
    let lb = read(&out.join("lb1/files/etc/haproxy/haproxy.cfg"));
    contains_all(
        "lb1 haproxy.cfg",
        &lb,
        &[
            "option httpchk\n    http-check send meth GET uri /readyz\n",
            "server master1 192.168.3.251:6443 check inter 1000ms rise 2 fall 2 check-ssl verify none\n",
        ],
    );
    // "tcp", and failover = false without the setting: the reference's
    // TCP connect.
    for (i, setting) in ["apiserver_check = \"tcp\"", "failover = false"]
        .iter()
        .enumerate()
    {
        let site = variant(tmp.path(), "pi-k8s", |t| {
            format!("{t}\n[default_policy]\n{setting}\n")
        });
        let out = tmp.path().join(format!("tcp{i}"));
        let o = build(&site, &out);
        assert!(o.status.success(), "{setting}: {}", stderr(&o));
        let lb = read(&out.join("lb1/files/etc/haproxy/haproxy.cfg"));
        assert!(
            lb.contains("server master1 192.168.3.251:6443 check inter 3000ms rise 30 fall 3\n"),
            "{setting}: {lb}"
        );
        assert!(
            !lb.contains("httpchk") && !lb.contains("check-ssl"),
            "{setting}: {lb}"
        );
    }

    // Settings: another minor version, the healthz check over TLS.
    let site = variant(tmp.path(), "pi-k8s", |t| {
        format!(
            "{t}\n[default_policy]\nkubernetes_version = \"1.33\"\napiserver_check = \"healthz\"\n"
        )
    });
    let out2 = tmp.path().join("out2");
    let o = build(&site, &out2);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        read(&out2.join("master1/files/etc/haseed/kubernetes-apt.env"))
            .contains("K8S_REPO=https://pkgs.k8s.io/core:/stable:/v1.33/deb/\n")
    );
    let lb = read(&out2.join("lb2/files/etc/haproxy/haproxy.cfg"));
    contains_all(
        "lb2 haproxy.cfg",
        &lb,
        &[
            "option httpchk\n    http-check send meth GET uri /healthz\n",
            "server master1 192.168.3.251:6443 check inter 3000ms rise 30 fall 3 check-ssl verify none\n",
        ],
    );
    validate(&site);

    for (bad, says) in [
        ("kubernetes_version = \"v1.31\"", "kubernetes_version"),
        ("kubernetes_key = \"not a key\"", "kubernetes_key"),
        (
            "kubernetes_key_fingerprint = \"DE15B144\"",
            "kubernetes_key_fingerprint",
        ),
        (
            "kubernetes_key_fingerprint = \"XE15B14486CD377B9E876E1A234654DA9A296436\"",
            "kubernetes_key_fingerprint",
        ),
        ("apiserver_check = \"http\"", "apiserver_check"),
    ] {
        let site = variant(tmp.path(), "pi-k8s", |t| {
            format!("{t}\n[default_policy]\n{bad}\n")
        });
        let o = run(&["plan", site.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(stderr(&o).contains(says), "{bad}: {}", stderr(&o));
    }
}

/// Processes and a network namespace that go away with the test, even when
/// an assertion fails half-way.
struct Lab {
    ns: String,
    children: Vec<std::process::Child>,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab::bare(&format!("haseed-galera-{}", std::process::id()));
        // The site's addresses, on the namespace's loopback: no traffic
        // leaves the namespace.
        for address in ["10.99.0.31/32", "10.99.0.11/32", "10.99.0.10/32"] {
            lab.exec(&["ip", "addr", "add", address, "dev", "lo"]);
        }
        lab
    }

    /// A namespace with only its loopback up.
    fn bare(ns: &str) -> Lab {
        let lab = Lab {
            ns: ns.to_string(),
            children: Vec::new(),
        };
        lab.ip(&["netns", "add", &lab.ns]);
        lab.exec(&["ip", "link", "set", "lo", "up"]);
        lab
    }

    /// Stops the `i`th process started here with SIGTERM (mariadbd shuts
    /// down cleanly and leaves the cluster) and waits for it, at most `secs`.
    fn stop(&mut self, i: usize, secs: u64) {
        let child = &mut self.children[i];
        let pid = child.id().to_string();
        let o = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(o.map(|s| s.success()).unwrap_or(false), "kill -TERM {pid}");
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while child.try_wait().expect("wait").is_none() {
            assert!(
                std::time::Instant::now() < end,
                "process {pid} did not stop within {secs} s"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn ip(&self, args: &[&str]) {
        let o = Command::new("ip")
            .args(args)
            .output()
            .expect("ip (iproute2)");
        assert!(
            o.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Runs a command in the namespace to completion; (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn exec(&self, args: &[&str]) {
        let (ok, _, err) = self.run(args);
        assert!(ok, "{args:?}: {err}");
    }

    /// Starts a long-running command in the namespace, output to `log`.
    fn spawn(&mut self, args: &[&str], log: &Path) {
        let out = std::fs::File::create(log).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn");
        self.children.push(child);
    }

    /// Polls `args` until its stdout contains `want`, for at most `secs`.
    fn wait_for(&self, args: &[&str], want: &str, secs: u64) -> String {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let (_, out, err) = self.run(args);
            if out.contains(want) {
                return out;
            }
            if std::time::Instant::now() > end {
                panic!("{args:?} did not answer {want:?} within {secs} s: {out}{err}");
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // What those forked (socat's per-connection children) goes too.
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// The generated Galera configuration loaded by a real MariaDB with Debian's
/// galera-4 provider: a one-node cluster inside a network namespace, the
/// generated health script behind a socket like its systemd unit
/// (`systemd-socket-activate --accept`), and the generated haproxy.cfg
/// routing a client through the VIP to it. Needs root and the Debian
/// packages mariadb-server and galera-4 (.ci/install-deps).
#[test]
fn galera_one_node_cluster_is_synced_and_haproxy_routes_to_it() {
    assert!(
        is_root(),
        "this test needs root (network namespace, mariadbd); CI runs tests as root"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    // One LB holding the VIP, one db node; addresses live in the namespace.
    let site = d.join("site.toml");
    std::fs::write(
        &site,
        r#"[site]
name = "galera-lab"

[defaults]
platform = "ubuntu"
# keepalived is not started here (the checker refuses VRRP on lo); the
# namespace carries every address on its loopback.
interface = "eth0"
user = "ops"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHaseedExampleKeyReplaceMeWithYours0000000 ops@example"]

[[network]]
name = "lab"
cidr = "10.99.0.0/24"

[[vip]]
name = "db"
address = "10.99.0.10"
network = "lab"

[[service]]
name = "galera"
vip = "db"
port = 13306
backend_role = "db"
backend_port = 3306
mode = "tcp"

[[node]]
name = "lb1"
roles = ["lb"]
address = "10.99.0.11"

[[node]]
name = "db1"
roles = ["db"]
address = "10.99.0.31"
"#,
    )
    .expect("site");
    let out = built(d, &site);
    let galera = out.join("db1/files/etc/mysql/mariadb.conf.d/99-haseed-galera.cnf");
    let health = out.join("db1/files/usr/local/sbin/haseed-galera-health");
    assert!(read(&galera).contains("wsrep_cluster_address = gcomm://10.99.0.31\n"));

    // Where this test's server keeps its files (the node uses Debian's
    // defaults); the generated file is included unchanged.
    let data = d.join("data");
    let sock = d.join("mysqld.sock");
    let base = format!(
        "[mysqld]\ndatadir = {}\nsocket = {}\npid-file = {}\nlog-error = {}\nport = 3306\nuser = root\n",
        data.display(),
        sock.display(),
        d.join("mysqld.pid").display(),
        d.join("error.log").display()
    );
    std::fs::write(d.join("base.cnf"), &base).expect("base.cnf");
    std::fs::write(
        d.join("my.cnf"),
        format!("{base}\n!include {}\n", galera.display()),
    )
    .expect("my.cnf");
    let o = Command::new("mariadb-install-db")
        .arg(format!("--defaults-file={}", d.join("base.cnf").display()))
        .args(["--user=root", "--auth-root-authentication-method=socket"])
        .output()
        .expect("mariadb-install-db (Debian package mariadb-server, .ci/install-deps)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bin = d.join("bin");
    let client = mariadb_client(&bin, &sock);
    let client = client.to_str().expect("utf-8").to_string();

    let mut lab = Lab::new();
    let my_cnf = format!("--defaults-file={}", d.join("my.cnf").display());
    // What galera_new_cluster does on the first node.
    lab.spawn(
        &[
            "/usr/sbin/mariadbd",
            &my_cnf,
            "--user=root",
            "--wsrep-new-cluster",
        ],
        &d.join("mariadbd.log"),
    );
    let state = "SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'";
    lab.wait_for(&[&client, "-N", "-B", "-e", state], "Synced", 90);
    let (ok, size, err) = lab.run(&[
        &client,
        "-N",
        "-B",
        "-e",
        "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'",
    ]);
    assert!(ok && size.contains("wsrep_cluster_size\t1"), "{size}{err}");

    // The health endpoint, as haseed-galera-health.socket runs it.
    let path = format!("PATH={}:/usr/bin:/bin", bin.display());
    lab.spawn(
        &[
            "systemd-socket-activate",
            "--listen=9200",
            "--accept",
            "--inetd",
            "-E",
            &path,
            "/bin/sh",
            health.to_str().expect("utf-8"),
        ],
        &d.join("health.log"),
    );
    let answer = lab.wait_for(
        &[
            "curl",
            "-s",
            "-i",
            "--max-time",
            "5",
            "http://10.99.0.31:9200/",
        ],
        "HTTP/1.1 200 OK",
        20,
    );
    assert!(answer.contains("Galera node is Synced."), "{answer}");

    // haproxy from the generated configuration; only the admin socket moves
    // (the host's /run/haproxy may not exist or may be in use).
    let cfg = read(&out.join("lb1/files/etc/haproxy/haproxy.cfg")).replace(
        "stats socket /run/haproxy/admin.sock",
        &format!("stats socket {}", d.join("admin.sock").display()),
    );
    let cfg_path = d.join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).expect("haproxy.cfg");
    lab.spawn(
        &["haproxy", "-db", "-f", cfg_path.to_str().expect("utf-8")],
        &d.join("haproxy.log"),
    );
    lab.exec(&[
        &client,
        "-e",
        "CREATE USER 'probe'@'%' IDENTIFIED BY 'probe'; GRANT USAGE ON *.* TO 'probe'@'%';",
    ]);
    // rise 2, inter 2000 ms: db1 is up after about 4 s.
    let routed = lab.wait_for(
        &[
            "/usr/bin/mariadb",
            "--no-defaults",
            "-h",
            "10.99.0.10",
            "-P",
            "13306",
            "--protocol=tcp",
            "--connect-timeout=3",
            "-u",
            "probe",
            "-pprobe",
            "-N",
            "-B",
            "-e",
            "SELECT @@wsrep_node_name, @@wsrep_on",
        ],
        "db1\t1",
        30,
    );
    assert_eq!(routed.trim(), "db1\t1");

    // Desynced on purpose: the endpoint says 503 and haproxy takes db1 out.
    lab.exec(&[&client, "-e", "SET GLOBAL wsrep_desync = ON"]);
    let answer = lab.wait_for(
        &[
            "curl",
            "-s",
            "-i",
            "--max-time",
            "5",
            "http://10.99.0.31:9200/",
        ],
        "503 Service Unavailable",
        20,
    );
    assert!(answer.contains("not synced (Donor/Desynced)"), "{answer}");
    drop(lab);
    assert!(
        !Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout)
                .contains(&format!("haseed-galera-{}", std::process::id())))
            .unwrap_or(true),
        "the namespace is gone"
    );
}

/// One db node of the two-node test: its own datadir, socket and client,
/// owned by `mysql` as Debian's mariadb-server sets them up.
struct DbNode {
    dir: PathBuf,
    data: PathBuf,
    my_cnf: String,
    client: String,
}

impl DbNode {
    /// `mariadb-install-db --user=mysql` as Debian's postinst runs it (so
    /// `mysql@localhost` exists via unix_socket), and the generated Galera
    /// cnf included unchanged.
    fn new(root: &Path, name: &str, galera_cnf: &Path) -> DbNode {
        let dir = root.join(name);
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).expect("node dir");
        let sock = dir.join("mysqld.sock");
        let base = format!(
            "[client]\nsocket = {sock}\n\n[mysqld]\ndatadir = {data}\nsocket = {sock}\npid-file = {pid}\nlog-error = {log}\nport = 3306\nuser = mysql\n",
            sock = sock.display(),
            data = data.display(),
            pid = dir.join("mysqld.pid").display(),
            log = dir.join("error.log").display()
        );
        std::fs::write(dir.join("base.cnf"), &base).expect("base.cnf");
        // Readable by the SST scripts, which run as mysql; same content.
        let galera = dir.join("galera.cnf");
        std::fs::write(&galera, read(galera_cnf)).expect("galera.cnf");
        std::fs::write(
            dir.join("my.cnf"),
            format!("{base}\n!include {}\n", galera.display()),
        )
        .expect("my.cnf");
        let bin = dir.join("bin");
        let client = mariadb_client(&bin, &sock);
        let node = DbNode {
            my_cnf: format!("--defaults-file={}", dir.join("my.cnf").display()),
            client: client.to_str().expect("utf-8").to_string(),
            dir,
            data,
        };
        node.install();
        node
    }

    /// A fresh datadir, as the package leaves it on a new (or re-flashed) card.
    fn install(&self) {
        let _ = std::fs::remove_dir_all(&self.data);
        let o = Command::new("chown")
            .args(["-R", "mysql:mysql"])
            .arg(&self.dir)
            .output()
            .expect("chown");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = Command::new("mariadb-install-db")
            .arg(format!(
                "--defaults-file={}",
                self.dir.join("base.cnf").display()
            ))
            .args(["--user=mysql", "--skip-test-db"])
            .output()
            .expect("mariadb-install-db (Debian package mariadb-server, .ci/install-deps)");
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// One status or variable value, asked in `lab`.
    fn value(&self, lab: &Lab, sql: &str) -> String {
        let (ok, out, err) = lab.run(&[&self.client, "-N", "-B", "-e", sql]);
        assert!(ok, "{sql}: {err}");
        out.split('\t').nth(1).unwrap_or(&out).trim().to_string()
    }
}

/// Issue 19: a re-flashed first db node must rejoin, not fork. Two db nodes
/// in two network namespaces joined by a veth, real MariaDB + galera-4 as
/// user mysql, the generated configuration (mariabackup SST through
/// mysql@localhost, unix_socket) and the generated bootstrap script, with
/// `systemctl` and `galera_new_cluster` standing in (no systemd here: they
/// record what the script asked and the test starts mariadbd the same way).
/// 1. A new site (`galera_bootstrap = "new-site"`): db2 answers fresh, so
///    db1's script starts a new cluster; db2 joins by mariabackup SST.
/// 2. db1 stops cleanly, a row is written on db2, db1's datadir is replaced
///    by a fresh one and its marker removed (a re-flashed card); its script
///    sees db2 Synced and joins; the operator's `--new-cluster` is refused.
/// 3. db1 rejoins by SST: cluster size 2 on both nodes, the same cluster
///    state UUID as before, the row written while it was away.
#[test]
fn galera_two_nodes_reflashed_first_node_rejoins_instead_of_forking() {
    assert!(
        is_root(),
        "this test needs root (network namespaces, mariadbd as mysql); CI runs tests as root"
    );
    for tool in ["/usr/bin/mariadb-backup", "/usr/bin/socat", "/usr/bin/curl"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: the two-node Galera test needs mariadb-backup, socat and curl \
             (Debian packages mariadb-backup, socat, curl: .ci/install-deps --tests)"
        );
    }
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    // mysql must reach its files below the test's directory.
    let mut perm = std::fs::metadata(d).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(d, perm).expect("chmod");
    let site = d.join("site.toml");
    std::fs::write(
        &site,
        galera_pair_site(
            "galera-pair",
            "\n[default_policy]\ngalera_bootstrap = \"new-site\"\n",
        ),
    )
    .expect("site");
    let out = built(d, &site);
    let cnf_of = |n: &str| {
        out.join(n)
            .join("files/etc/mysql/mariadb.conf.d/99-haseed-galera.cnf")
    };
    assert!(
        read(&cnf_of("db1")).contains("wsrep_sst_method = mariabackup\nwsrep_sst_auth = mysql:\n"),
        "{}",
        read(&cnf_of("db1"))
    );
    let health = out.join("db1/files/usr/local/sbin/haseed-galera-health");
    let script = out.join("db1/files/usr/local/sbin/haseed-galera-bootstrap");
    let db1 = DbNode::new(d, "db1", &cnf_of("db1"));
    let db2 = DbNode::new(d, "db2", &cnf_of("db2"));

    // Two namespaces, one veth between them: db1's and db2's addresses.
    let pid = std::process::id();
    let mut ns1 = Lab::bare(&format!("haseed-g1-{pid}"));
    let mut ns2 = Lab::bare(&format!("haseed-g2-{pid}"));
    let (v1, v2) = (format!("hg1-{pid}"), format!("hg2-{pid}"));
    ns1.exec(&[
        "ip", "link", "add", &v1, "type", "veth", "peer", "name", &v2,
    ]);
    ns1.exec(&["ip", "link", "set", &v2, "netns", &ns2.ns]);
    for (lab, dev, address) in [(&ns1, &v1, "10.99.1.31/24"), (&ns2, &v2, "10.99.1.32/24")] {
        lab.exec(&["ip", "addr", "add", address, "dev", dev]);
        lab.exec(&["ip", "link", "set", dev, "up"]);
    }

    // The health endpoints, as haseed-galera-health.socket runs them.
    for (lab, node) in [(&mut ns1, &db1), (&mut ns2, &db2)] {
        let path = format!("PATH={}:/usr/bin:/bin", node.dir.join("bin").display());
        let datadir = format!("HASEED_GALERA_DATADIR={}", node.data.display());
        lab.spawn(
            &[
                "systemd-socket-activate",
                "--listen=9200",
                "--accept",
                "--inetd",
                "-E",
                &path,
                "-E",
                &datadir,
                "/bin/sh",
                health.to_str().expect("utf-8"),
            ],
            &node.dir.join("health.log"),
        );
    }
    let fresh = ns1.wait_for(
        &[
            "curl",
            "-s",
            "-i",
            "--max-time",
            "5",
            "http://10.99.1.32:9200/",
        ],
        "X-Haseed-Galera-State: none",
        20,
    );
    assert!(fresh.contains("503 Service Unavailable"), "{fresh}");

    // db1's bootstrap: its generated conf, plus where this test keeps
    // the datadir and the marker.
    let fakes = d.join("fakes");
    std::fs::create_dir_all(&fakes).expect("fakes");
    let calls = d.join("calls");
    for name in ["systemctl", "galera_new_cluster"] {
        let f = fakes.join(name);
        std::fs::write(
            &f,
            format!("#!/bin/sh\necho \"{name} $*\" >>{}\n", calls.display()),
        )
        .expect("fake");
        let mut perm = std::fs::metadata(&f).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&f, perm).expect("chmod");
    }
    let marker = d.join("marker/galera-bootstrapped");
    let conf = d.join("haseed-galera");
    std::fs::write(
        &conf,
        format!(
            "{}HASEED_GALERA_WAIT=60\nHASEED_GALERA_DATADIR={}\nHASEED_GALERA_MARKER={}\n",
            read(&out.join("db1/files/etc/default/haseed-galera")),
            db1.data.display(),
            marker.display()
        ),
    )
    .expect("conf");
    assert!(read(&conf).contains("HASEED_GALERA_PEERS=\"10.99.1.32\"\n"));
    let run_script = |lab: &Lab, args: &[&str]| -> (bool, String, String) {
        let _ = std::fs::remove_file(&calls);
        let path = format!("PATH={}:/usr/bin:/bin", fakes.display());
        let conf = format!("HASEED_GALERA_CONF={}", conf.display());
        let mut argv = vec![
            "env",
            &path,
            &conf,
            "/bin/sh",
            script.to_str().expect("utf-8"),
        ];
        argv.extend_from_slice(args);
        let (ok, _, err) = lab.run(&argv);
        (ok, std::fs::read_to_string(&calls).unwrap_or_default(), err)
    };

    // 1. A new site: db2 answered fresh, so db1 starts the cluster.
    let (ok, did, err) = run_script(&ns1, &[]);
    assert!(ok, "{err}");
    assert_eq!(did, "galera_new_cluster \n", "{err}");
    assert!(marker.exists());
    let t = std::time::Instant::now();
    ns1.spawn(
        &["/usr/sbin/mariadbd", &db1.my_cnf, "--wsrep-new-cluster"],
        &db1.dir.join("mariadbd.log"),
    );
    let state = "SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'";
    ns1.wait_for(&[&db1.client, "-N", "-B", "-e", state], "Synced", 120);
    let bootstrap_s = t.elapsed().as_secs_f64();
    ns1.exec(&[
        &db1.client,
        "-e",
        "CREATE DATABASE pair; CREATE TABLE pair.t (id INT PRIMARY KEY, v VARCHAR(40)); INSERT INTO pair.t VALUES (1, 'before');",
    ]);
    let cluster = db1.value(&ns1, "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_state_uuid'");
    assert_eq!(cluster.len(), 36, "{cluster}");

    // db2 joins (what its `systemctl restart mariadb` does): mariabackup SST.
    let t = std::time::Instant::now();
    ns2.spawn(
        &["/usr/sbin/mariadbd", &db2.my_cnf],
        &db2.dir.join("mariadbd.log"),
    );
    ns2.wait_for(&[&db2.client, "-N", "-B", "-e", state], "Synced", 180);
    let join_s = t.elapsed().as_secs_f64();
    let log2 = read(&db2.dir.join("error.log"));
    assert!(
        log2.contains("wsrep_sst_mariabackup"),
        "db2 did not join by mariabackup SST:\n{log2}"
    );
    for (lab, node) in [(&ns1, &db1), (&ns2, &db2)] {
        assert_eq!(
            node.value(lab, "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'"),
            "2"
        );
    }
    assert_eq!(
        db2.value(&ns2, "SELECT 'v', v FROM pair.t WHERE id = 1"),
        "before"
    );

    // 2. db1 goes away cleanly (db2 stays Primary alone) and comes back
    // re-flashed: a fresh datadir, no marker.
    ns1.stop(1, 60);
    let t = std::time::Instant::now();
    loop {
        if db2.value(&ns2, "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'") == "1" {
            break;
        }
        assert!(t.elapsed().as_secs() < 30, "db2 still counts db1");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(db2.value(&ns2, state), "Synced");
    ns2.exec(&[
        &db2.client,
        "-e",
        "INSERT INTO pair.t VALUES (2, 'while db1 was away')",
    ]);
    db1.install();
    std::fs::remove_file(&marker).expect("marker");
    // The operator's one-shot bootstrap refuses: db2 runs the cluster.
    let (ok, did, err) = run_script(&ns1, &["--new-cluster"]);
    assert!(!ok && did.is_empty(), "{did}{err}");
    assert!(err.contains("10.99.1.32 is Synced"), "{err}");
    // First boot of the re-flashed db1: it joins.
    let (ok, did, err) = run_script(&ns1, &[]);
    assert!(ok, "{err}");
    assert_eq!(
        did, "systemctl restart --no-block mariadb.service\n",
        "{err}"
    );
    assert!(err.contains("10.99.1.32 is Synced"), "{err}");

    // 3. What that restart starts: a plain mariadbd, which joins by SST.
    let t = std::time::Instant::now();
    ns1.spawn(
        &["/usr/sbin/mariadbd", &db1.my_cnf],
        &db1.dir.join("mariadbd-2.log"),
    );
    ns1.wait_for(&[&db1.client, "-N", "-B", "-e", state], "Synced", 180);
    let rejoin_s = t.elapsed().as_secs_f64();
    for (lab, node) in [(&ns1, &db1), (&ns2, &db2)] {
        assert_eq!(
            node.value(lab, "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'"),
            "2"
        );
        assert_eq!(
            node.value(lab, "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_state_uuid'"),
            cluster,
            "one cluster, not a fork"
        );
    }
    assert_eq!(
        db1.value(&ns1, "SELECT 'v', v FROM pair.t WHERE id = 2"),
        "while db1 was away"
    );
    eprintln!(
        "two-node Galera: new cluster Synced after {bootstrap_s:.1} s, db2 joined (mariabackup SST) in \
         {join_s:.1} s, re-flashed db1 rejoined in {rejoin_s:.1} s; whole test {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(ns1);
    drop(ns2);
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains(&format!("haseed-g1-{pid}")), "{list}");
    assert!(!list.contains(&format!("haseed-g2-{pid}")), "{list}");
}

/// `BIN/mariadb`: the client as the generated scripts find it on PATH,
/// pointed at a test server's socket (a node's client uses the default one).
fn mariadb_client(bin: &Path, sock: &Path) -> PathBuf {
    std::fs::create_dir_all(bin).expect("bin");
    let client = bin.join("mariadb");
    std::fs::write(
        &client,
        format!(
            "#!/bin/sh\nexec /usr/bin/mariadb --socket={} \"$@\"\n",
            sock.display()
        ),
    )
    .expect("client");
    let mut perm = std::fs::metadata(&client).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&client, perm).expect("chmod");
    client
}

/// The single writer, live (issue 19 item 4): the generated haproxy.cfg of a
/// two-node database site, run by the real haproxy in a network namespace,
/// with two TCP servers standing in for db1 and db2 (each says its name and
/// keeps the connection) and their health endpoints. db1 is down: a client
/// lands on db2 and keeps its session. db1's health comes back: haproxy
/// marks it up (rise 2, inter 2 s) and `on-marked-up
/// shutdown-backup-sessions` closes the session left on db2, so no client
/// keeps writing to the old node; a new client lands on db1. Without that
/// option (haseed before issue 19) the session stays on db2: the same run
/// shows it.
#[test]
fn a_returning_writer_closes_the_sessions_left_on_the_backup() {
    assert!(
        is_root(),
        "this test needs root (network namespace); CI runs tests as root"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let site = d.join("site.toml");
    std::fs::write(&site, galera_pair_site("writer-lab", "")).expect("site");
    let out = built(d, &site);
    let generated = read(&out.join("lb1/files/etc/haproxy/haproxy.cfg"));
    let writer_line = "server db1 10.99.1.31:3306 check inter 2000ms rise 2 fall 5 port 9200 on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions\n";
    assert!(generated.contains(writer_line), "{generated}");
    let health = d.join("health.sh");
    std::fs::write(
        &health,
        "#!/bin/sh\nread -r _\nprintf 'HTTP/1.1 200 OK\\r\\nContent-Length: 7\\r\\nConnection: close\\r\\n\\r\\nSynced\\n'\n",
    )
    .expect("health.sh");
    std::fs::set_permissions(&health, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");

    // (seconds the db2 session lived after db1's health came back, or None
    // if it was still open after 12 s; the node a new client reached)
    let trial = |name: &str, cfg: &str| -> (Option<f64>, String) {
        let dir = d.join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        let mut lab = Lab::bare(&format!("haseed-writer-{}-{name}", std::process::id()));
        for address in [
            "10.99.1.10/32",
            "10.99.1.11/32",
            "10.99.1.31/32",
            "10.99.1.32/32",
        ] {
            lab.exec(&["ip", "addr", "add", address, "dev", "lo"]);
        }
        for (db, at) in [("db1", "10.99.1.31"), ("db2", "10.99.1.32")] {
            lab.spawn(
                &[
                    "socat",
                    &format!("TCP-LISTEN:3306,bind={at},reuseaddr,fork"),
                    &format!("SYSTEM:echo {db}; exec sleep 600"),
                ],
                &dir.join(format!("{db}.log")),
            );
        }
        let endpoint = |at: &str| {
            vec![
                "socat".to_string(),
                format!("TCP-LISTEN:9200,bind={at},reuseaddr,fork"),
                format!("EXEC:{}", health.display()),
            ]
        };
        let args = endpoint("10.99.1.32");
        lab.spawn(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &dir.join("health-db2.log"),
        );
        let sock = dir.join("admin.sock");
        let cfg_path = dir.join("haproxy.cfg");
        std::fs::write(
            &cfg_path,
            cfg.replace(
                "stats socket /run/haproxy/admin.sock",
                &format!("stats socket {}", sock.display()),
            ),
        )
        .expect("haproxy.cfg");
        lab.spawn(
            &["haproxy", "-db", "-f", cfg_path.to_str().expect("utf-8")],
            &dir.join("haproxy.log"),
        );
        // db1 has no health endpoint yet: haproxy marks it down.
        let state = format!(
            "echo 'show servers state galera' | socat -t 2 - UNIX-CONNECT:{}",
            sock.display()
        );
        let servers = |lab: &Lab| {
            let (_, text, _) = lab.run(&["sh", "-c", &state]);
            // Fields (haproxy's management guide, "show servers state"):
            // srv_name is the 4th, srv_op_state the 6th (0 down, 2 up).
            text.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    Some((f.get(3)?.to_string(), f.get(5)?.to_string()))
                })
                .filter(|(n, _)| n.starts_with("db"))
                .collect::<Vec<_>>()
        };
        let until = |lab: &Lab, want: &[(&str, &str)], secs: u64| {
            let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
            loop {
                let now = servers(lab);
                if want
                    .iter()
                    .all(|(n, s)| now.iter().any(|(a, b)| a == n && b == s))
                {
                    return;
                }
                assert!(
                    std::time::Instant::now() < end,
                    "{name}: servers {now:?}, not {want:?} within {secs} s"
                );
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        };
        until(&lab, &[("db1", "0"), ("db2", "2")], 30);

        // A client through the VIP: it lands on db2 and stays.
        let mut client = Command::new("ip")
            .args(["netns", "exec", &lab.ns])
            .args(["socat", "-u", "TCP:10.99.1.10:13306", "STDOUT"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat");
        let mut first = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(client.stdout.take().expect("stdout")),
            &mut first,
        )
        .expect("the backend's name");
        assert_eq!(first.trim(), "db2", "{name}");

        // db1 is back.
        let args = endpoint("10.99.1.31");
        lab.spawn(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &dir.join("health-db1.log"),
        );
        let back = std::time::Instant::now();
        until(&lab, &[("db1", "2")], 15);
        let mut closed = None;
        while back.elapsed() < std::time::Duration::from_secs(12) {
            if client.try_wait().expect("wait").is_some() {
                closed = Some(back.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = client.kill();
        let _ = client.wait();
        let (_, now, _) = lab.run(&["socat", "-u", "-T", "3", "TCP:10.99.1.10:13306", "STDOUT"]);
        (closed, now.lines().next().unwrap_or_default().to_string())
    };

    let (closed, reached) = trial("generated", &generated);
    let lived = closed.expect("the session on db2 was still open 12 s after db1 came back");
    // rise 2 at inter 2 s: db1 is up 2-4 s after its endpoint answers (the
    // check timer's phase), and the session goes at that moment.
    assert!(lived <= 6.0, "the session on db2 lived {lived:.1} s");
    eprintln!("the session on db2 was closed {lived:.2} s after db1's health endpoint came back");
    assert_eq!(reached, "db1");

    let before = generated.replace(" on-marked-up shutdown-backup-sessions", "");
    let (closed, reached) = trial("without", &before);
    assert_eq!(
        closed, None,
        "without on-marked-up shutdown-backup-sessions the session on db2 stays"
    );
    assert_eq!(reached, "db1", "new clients go to db1 either way");
}

/// The site of the two-node Galera lab tests: one load balancer in front of db1 and db2 on the
/// lab's network, named `name`, with `extra` appended.
fn galera_pair_site(name: &str, extra: &str) -> String {
    format!(
        r#"[site]
name = "{name}"

[defaults]
platform = "ubuntu"
interface = "eth0"
user = "ops"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHaseedExampleKeyReplaceMeWithYours0000000 ops@example"]

[[network]]
name = "lab"
cidr = "10.99.1.0/24"

[[vip]]
name = "db"
address = "10.99.1.10"
network = "lab"

[[service]]
name = "galera"
vip = "db"
port = 13306
backend_role = "db"
backend_port = 3306
mode = "tcp"

[[node]]
name = "lb1"
roles = ["lb"]
address = "10.99.1.11"

[[node]]
name = "db1"
roles = ["db"]
address = "10.99.1.31"

[[node]]
name = "db2"
roles = ["db"]
address = "10.99.1.32"
{extra}"#
    )
}

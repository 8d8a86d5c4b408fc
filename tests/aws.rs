//! End-to-end for `platform = "aws"`: the AWS example sites (one subnet with a
//! secondary IP; across AZs with a route-table VIP) against golden files and the
//! real validators (`keepalived -t` on the unicast configs), the generated notify
//! script through `shellcheck -s sh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn aws_example(file: &str) -> PathBuf {
    repo_root().join("examples/aws").join(file)
}

/// Builds `site` and compares the tree (without the bundle and the marker)
/// with `tests/golden/NAME` (UPDATE_GOLDEN=1 rewrites it). Returns the output dir.
fn golden(site: &Path, name: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let mut args = vec![
        "build",
        site.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    assert_golden(&out, name);
    (tmp, out)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn one_subnet_secondary_ip_matches_golden_files() {
    let (_tmp, out) = golden(&aws_example("site.toml"), "aws", &[]);
    let conf = read(&out.join("lb1/files/etc/keepalived/keepalived.conf"));
    for line in [
        "unicast_src_ip 10.0.1.11",
        "unicast_peer {\n        10.0.1.12\n    }",
        "10.0.1.100/24",
        "notify_master \"/usr/local/sbin/haseed-aws-vip master VI_api secondary-ip 10.0.1.100\"",
        "notify_backup \"/usr/local/sbin/haseed-aws-vip backup VI_api\"",
        "notify_fault \"/usr/local/sbin/haseed-aws-vip fault VI_api\"",
    ] {
        assert!(
            conf.contains(line),
            "keepalived.conf lacks {line:?}:\n{conf}"
        );
    }
    let user_data = read(&out.join("lb1/user-data"));
    assert!(user_data.contains("\"awscli\""), "{user_data}");
    assert!(
        user_data.contains("/usr/local/sbin/haseed-aws-vip"),
        "{user_data}"
    );
    // The EC2 API moves the VIP: no local copy on lo (default policy,
    // failover.rs 7), the crash cleanup stays.
    let dropin = read(
        &out.join("lb1/files/etc/systemd/system/keepalived.service.d/50-haseed-failover.conf"),
    );
    assert!(dropin.contains("ExecStopPost="), "{dropin}");
    assert!(!dropin.contains("dev lo"), "{dropin}");
    // Masters hold no VIP: no script, no AWS CLI.
    let master = read(&out.join("master1/user-data"));
    assert!(!master.contains("awscli"), "{master}");
    // No credentials anywhere in what a node gets.
    for (rel, bytes) in tree(&out) {
        let text = String::from_utf8_lossy(&bytes);
        for word in ["AKIA", "aws_secret_access_key", "AWS_SECRET_ACCESS_KEY="] {
            assert!(!text.contains(word), "{rel} contains {word}");
        }
    }
}

#[test]
fn cross_az_route_table_matches_golden_files() {
    let (_tmp, out) = golden(&aws_example("cross-az.toml"), "aws-cross-az", &[]);
    let conf = read(&out.join("lb2/files/etc/keepalived/keepalived.conf"));
    for line in [
        "unicast_src_ip 10.0.2.12",
        "unicast_peer {\n        10.0.1.11\n    }",
        "172.31.255.10/32",
        "haseed-aws-vip master VI_api route-table 172.31.255.10 rtb-0a1b2c3d4e5f60718 rtb-0f1e2d3c4b5a69788",
    ] {
        assert!(conf.contains(line), "keepalived.conf lacks {line:?}:\n{conf}");
    }
}

#[test]
fn notify_script_passes_shellcheck() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let o = build(&aws_example("site.toml"), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = out.join("lb1/files/usr/local/sbin/haseed-aws-vip");
    let o = Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(&script)
        .output()
        .expect("shellcheck runs (installed by .ci/install-deps)");
    assert!(
        o.status.success(),
        "shellcheck -s sh failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn aws_examples_pass_the_real_validators() {
    for file in ["site.toml", "cross-az.toml"] {
        let o = run(&["validate", aws_example(file).to_str().expect("utf-8")]);
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert!(o.status.success(), "validate {file} failed:\n{text}");
        assert!(
            text.contains("keepalived  lb1/files/etc/keepalived/keepalived.conf"),
            "{text}"
        );
        assert!(text.contains(" 0 failed"), "{text}");
    }
}

// ---------------------------------------------------------------------------------------
// `haseed user-data` at EC2's 16 KiB edge
// ---------------------------------------------------------------------------------------

/// The AWS example with node lb1 given `keys` (instead of the defaults').
fn site_with_lb1_keys(dir: &Path, keys: &[String]) -> PathBuf {
    let base = read(&aws_example("site.toml"));
    let list: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    let text = base.replacen(
        "name = \"lb1\"\nroles = [\"lb\"]",
        &format!(
            "name = \"lb1\"\nroles = [\"lb\"]\nssh_authorized_keys = [{}]",
            list.join(", ")
        ),
        1,
    );
    assert_ne!(text, base);
    let path = dir.join("site.toml");
    std::fs::write(&path, text).expect("write site");
    path
}

/// An ed25519-looking key whose base64 part is `len` characters drawn by
/// `next` (so it compresses as well or as badly as the caller wants).
fn key(len: usize, mut next: impl FnMut() -> u8) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let blob: String = (0..len)
        .map(|_| B64[next() as usize % 64] as char)
        .collect();
    format!("ssh-ed25519 {blob} ops@example")
}

fn user_data(site: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "user-data",
        site.to_str().expect("utf-8"),
        "--node",
        "lb1",
        "-o",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn cloud_init_schema(file: &Path) {
    let o = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(file)
        .output()
        .expect("cloud-init runs (installed by .ci/install-deps)");
    assert!(
        o.status.success(),
        "cloud-init schema failed on {}:\n{}{}",
        file.display(),
        stdout(&o),
        stderr(&o)
    );
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[test]
fn user_data_around_the_16k_limit() {
    const LIMIT: usize = 16384;
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("lb1.user-data");
    let a = || b'A';
    // Measure: the key appears once, so the size grows byte for byte with it.
    let site = site_with_lb1_keys(tmp.path(), &[key(100, a)]);
    let o = user_data(&site, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let base = std::fs::read(&out).expect("written").len();
    assert!(base < LIMIT, "the example alone is {base} bytes");
    let fill = 100 + LIMIT - base;

    // Exactly at the limit: as is.
    let site = site_with_lb1_keys(tmp.path(), &[key(fill, a)]);
    let o = user_data(&site, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).expect("written");
    assert_eq!(bytes.len(), LIMIT, "not linear in the key length");
    assert!(bytes.starts_with(b"#cloud-config\n"));
    cloud_init_schema(&out);

    // One byte over: gzip, which cloud-init inflates; the inflated text passes the schema.
    let site = site_with_lb1_keys(tmp.path(), &[key(fill + 1, a)]);
    let o = user_data(&site, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("(gzip of {} bytes)", LIMIT + 1)),
        "{}",
        stderr(&o)
    );
    let bytes = std::fs::read(&out).expect("written");
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "not gzip");
    assert!(bytes.len() < LIMIT);
    let inflated = gunzip(&bytes);
    assert_eq!(inflated.len(), LIMIT + 1);
    let plain = tmp.path().join("inflated");
    std::fs::write(&plain, &inflated).expect("write");
    cloud_init_schema(&plain);

    // --gzip forces it below the limit too.
    let site = site_with_lb1_keys(tmp.path(), &[key(100, a)]);
    let o = user_data(&site, &out, &["--gzip"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(gunzip(&std::fs::read(&out).expect("written")).len(), base);

    // Too large even gzipped: random base64 (6 bits of entropy per byte) in two keys.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 32) as u8
    };
    let keys = [key(16_000, &mut noise), key(16_000, &mut noise)];
    let site = site_with_lb1_keys(tmp.path(), &keys);
    let gone = tmp.path().join("never.user-data");
    let o = user_data(&site, &gone, &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("user-data of node lb1 is too large for EC2:"),
        "{err}"
    );
    assert!(
        err.contains("bytes gzipped; EC2 accepts 16384 bytes"),
        "{err}"
    );
    assert!(
        err.contains("largest files: /usr/local/sbin/haseed-aws-vip"),
        "{err}"
    );
    assert!(err.contains("site.toml:"), "no file:line in {err}");
    assert!(!gone.exists(), "nothing is written on failure");
}

// ---------------------------------------------------------------------------------------
// Stages
// ---------------------------------------------------------------------------------------

#[test]
fn production_stage_matches_golden_files() {
    let (_tmp, out) = golden(
        &aws_example("site.toml"),
        "aws-production",
        &["--stage", "production"],
    );
    let conf = read(&out.join("lb1/files/etc/keepalived/keepalived.conf"));
    for line in [
        "unicast_src_ip 10.20.1.11",
        "priority 150",
        "haseed-aws-vip master VI_api elastic-ip 10.20.1.100 eipalloc-0a1b2c3d4e5f60718",
    ] {
        assert!(
            conf.contains(line),
            "keepalived.conf lacks {line:?}:\n{conf}"
        );
    }
    let policy = read(&out.join("_aws/api/iam-policy.json"));
    assert!(policy.contains("ec2:AssociateAddress"), "{policy}");
    assert!(
        policy.contains("arn:aws:ec2:*:*:elastic-ip/eipalloc-0a1b2c3d4e5f60718"),
        "{policy}"
    );
}

#[test]
fn stage_flag_on_every_command() {
    let site = aws_example("site.toml");
    let site = site.to_str().expect("utf-8");
    let o = run(&["plan", site, "--stage", "production", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(plan["site"]["stage"], "production", "{plan}");
    let o = run(&["validate", site, "--stage", "production"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("lb2.user-data");
    let o = user_data(Path::new(site), &out, &["--stage", "production"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(read(&out).contains("10.20.1.100"));
    for cmd in ["plan", "validate", "user-data", "build"] {
        let mut args = vec![cmd, site, "--stage", "prod"];
        if cmd == "user-data" {
            args.extend(["--node", "lb1", "-o", "-"]);
        }
        if cmd == "build" {
            args.extend(["-o", "never"]);
        }
        let o = run(&args);
        assert!(!o.status.success(), "{cmd} accepted an unknown stage");
        let err = stderr(&o);
        assert!(
            err.contains("site.toml:") && err.contains("error: unknown stage `prod`"),
            "{cmd}: {err}"
        );
        assert!(
            err.contains("stages defined in this file: production"),
            "{cmd}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The notify script against a fake EC2 + IMDS on loopback, with the real AWS CLI
// ---------------------------------------------------------------------------------------

/// The fake server (Python, started per test, gone after 120 s at the latest).
const FAKE_EC2: &str = include_str!("aws/fake_ec2.py");

struct Fake {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
    seen: usize,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fake {
    fn start(dir: &Path) -> Fake {
        use std::io::BufRead;
        let script = dir.join("fake_ec2.py");
        std::fs::write(&script, FAKE_EC2).expect("write fake");
        let log = dir.join("requests.jsonl");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&log)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port = line.trim().parse().expect("the fake prints its port");
        Fake {
            child,
            port,
            log,
            seen: 0,
        }
    }

    /// The requests since the last call.
    fn take(&mut self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        let new = all[self.seen..].to_vec();
        self.seen = all.len();
        new
    }
}

/// Runs the generated script with the fake as IMDS and EC2 endpoint. Keys in
/// the environment must be ignored (instance profile only).
fn notify(script: &Path, fake: &Fake, run_dir: &Path, args: &[&str]) -> std::process::Output {
    let url = format!("http://127.0.0.1:{}", fake.port);
    Command::new("sh")
        .arg(script)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", run_dir)
        .env("HASEED_IMDS_URL", &url)
        .env("AWS_ENDPOINT_URL_EC2", &url)
        .env("HASEED_AWS_VIP_CONF", run_dir.join("no-such.conf"))
        .env("HASEED_AWS_VIP_RUN_DIR", run_dir)
        .env("HASEED_AWS_VIP_INTERVAL", "1")
        .env("AWS_ACCESS_KEY_ID", "AKIABAKEDKEYNOTUSED0")
        .env("AWS_SECRET_ACCESS_KEY", "baked-secret-not-used")
        .output()
        .expect("sh runs")
}

const ENI: &str = "eni-0a1b2c3d4e5f60718";

/// The EC2 calls among `reqs` (Action and parameters, Version left out), after
/// checking IMDSv2 use and the credentials of every request.
fn ec2_calls(reqs: &[serde_json::Value]) -> Vec<serde_json::Value> {
    assert!(!reqs.is_empty(), "no requests reached the fake");
    let mut token = false;
    let mut calls = Vec::new();
    for r in reqs {
        let path = r["path"].as_str().expect("path");
        match r["method"].as_str().expect("method") {
            "PUT" => {
                assert_eq!(path, "/latest/api/token");
                assert!(r["ttl"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
                token = true;
            }
            "GET" => {
                assert!(token, "IMDS read before a token was fetched: {r}");
                assert_eq!(
                    r["token"], "fake-imds-token-7f3a",
                    "IMDS read without the token: {r}"
                );
            }
            "POST" => {
                let auth = r["authorization"].as_str().expect("signed");
                assert!(
                    auth.contains("Credential=ASIAFAKEINSTANCEPROFILE/")
                        && auth.contains("/eu-west-1/ec2/aws4_request"),
                    "not signed with the instance profile's key for the IMDS region: {auth}"
                );
                let mut p = r["params"].clone();
                assert_eq!(p["Version"], "2016-11-15");
                p.as_object_mut().expect("params").remove("Version");
                calls.push(p);
            }
            m => panic!("unexpected {m} {path}"),
        }
    }
    calls
}

#[test]
fn notify_script_drives_the_ec2_api_through_imdsv2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let o = build(&aws_example("site.toml"), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = out.join("lb1/files/usr/local/sbin/haseed-aws-vip");
    let aws = Command::new("aws").arg("--version").output();
    assert!(
        aws.as_ref().is_ok_and(|o| o.status.success()),
        "the AWS CLI is missing (installed by .ci/install-deps): {aws:?}"
    );
    let run_dir = tmp.path().join("run");
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    let mut fake = Fake::start(tmp.path());
    let ok = |o: &std::process::Output| {
        assert!(
            o.status.success(),
            "script failed:\n{}{}",
            stdout(o),
            stderr(o)
        );
    };

    // Secondary IP, held elsewhere: check reads, then re-assigns.
    ok(&notify(
        &script,
        &fake,
        &run_dir,
        &["check", "secondary-ip", "10.0.1.100"],
    ));
    assert_eq!(
        ec2_calls(&fake.take()),
        vec![
            serde_json::json!({"Action": "DescribeNetworkInterfaces", "NetworkInterfaceId.1": ENI}),
            serde_json::json!({"Action": "AssignPrivateIpAddresses", "NetworkInterfaceId": ENI,
                "PrivateIpAddress.1": "10.0.1.100", "AllowReassignment": "true"}),
        ]
    );
    // Now held here: check only reads.
    ok(&notify(
        &script,
        &fake,
        &run_dir,
        &["check", "secondary-ip", "10.0.1.100"],
    ));
    assert_eq!(
        ec2_calls(&fake.take()),
        vec![
            serde_json::json!({"Action": "DescribeNetworkInterfaces", "NetworkInterfaceId.1": ENI})
        ]
    );

    // Elastic IP.
    let alloc = "eipalloc-0a1b2c3d4e5f60718";
    ok(&notify(
        &script,
        &fake,
        &run_dir,
        &["move", "elastic-ip", "10.0.1.100", alloc],
    ));
    assert_eq!(
        ec2_calls(&fake.take()),
        vec![
            serde_json::json!({"Action": "AssociateAddress", "AllocationId": alloc,
            "NetworkInterfaceId": ENI, "AllowReassociation": "true"})
        ]
    );
    ok(&notify(
        &script,
        &fake,
        &run_dir,
        &["check", "elastic-ip", "10.0.1.100", alloc],
    ));
    assert_eq!(
        ec2_calls(&fake.take()),
        vec![serde_json::json!({"Action": "DescribeAddresses", "AllocationId.1": alloc})]
    );

    // Route tables: every table is pointed at this interface.
    let (a, b) = ("rtb-0a1b2c3d4e5f60718", "rtb-0f1e2d3c4b5a69788");
    ok(&notify(
        &script,
        &fake,
        &run_dir,
        &["check", "route-table", "172.31.255.10", a, b],
    ));
    let replace = |t: &str| {
        serde_json::json!({"Action": "ReplaceRoute", "RouteTableId": t,
            "DestinationCidrBlock": "172.31.255.10/32", "NetworkInterfaceId": ENI})
    };
    assert_eq!(
        ec2_calls(&fake.take()),
        vec![
            serde_json::json!({"Action": "DescribeRouteTables", "RouteTableId.1": a}),
            replace(a),
            replace(b),
        ]
    );
    ok(&notify(
        &script,
        &fake,
        &run_dir,
        &["check", "route-table", "172.31.255.10", a, b],
    ));
    assert_eq!(
        ec2_calls(&fake.take()),
        vec![
            serde_json::json!({"Action": "DescribeRouteTables", "RouteTableId.1": a}),
            serde_json::json!({"Action": "DescribeRouteTables", "RouteTableId.1": b}),
        ]
    );

    // keepalived's notify_master: move at once, start the re-assert loop (its pid
    // recorded); notify_backup stops it.
    ok(&notify(
        &script,
        &fake,
        &run_dir,
        &["master", "VI_api", "secondary-ip", "10.0.1.101"],
    ));
    assert_eq!(
        ec2_calls(&fake.take()),
        vec![
            serde_json::json!({"Action": "AssignPrivateIpAddresses", "NetworkInterfaceId": ENI,
            "PrivateIpAddress.1": "10.0.1.101", "AllowReassignment": "true"})
        ]
    );
    let pid = run_dir.join("VI_api.pid");
    let text = read(&pid);
    assert!(
        text.trim().parse::<u32>().is_ok(),
        "pid file holds {text:?}"
    );
    ok(&notify(&script, &fake, &run_dir, &["backup", "VI_api"]));
    assert!(!pid.exists(), "notify_backup left the loop's pid file");

    // Wrong use fails loudly instead of calling anything.
    let o = notify(
        &script,
        &fake,
        &run_dir,
        &["move", "floating", "10.0.1.100"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("usage:"), "{}", stderr(&o));
}

/// Runs inside a throwaway network namespace: loopback up, the VIP on it (as
/// keepalived's MASTER would have it), the fake on that namespace's 127.0.0.1.
const SPLIT_BRAIN: &str = r#"
set -eu
ip link set lo up
ip addr add 10.0.1.100/32 dev lo
python3 "$FAKE" "$LOG" > "$WORK/port" &
fake=$!
trap 'kill "$fake" 2>/dev/null || true' EXIT
i=0
while [ ! -s "$WORK/port" ]; do i=$((i + 1)); [ "$i" -lt 100 ] || exit 90; sleep 0.1; done
url="http://127.0.0.1:$(cat "$WORK/port")"
export HASEED_IMDS_URL="$url" AWS_ENDPOINT_URL_EC2="$url"
assigns() { grep -c '"Action": "AssignPrivateIpAddresses"' "$LOG" || true; }
sh "$SCRIPT" master VI_api secondary-ip 10.0.1.100
[ "$(assigns)" -eq 1 ] || exit 91
# Another holder takes the address (a split brain); once healed, no notify runs
# again: the loop must see it and move it back.
curl -sf "$url/test/steal/10.0.1.100" >/dev/null
i=0
while [ "$(assigns)" -lt 2 ]; do i=$((i + 1)); [ "$i" -lt 120 ] || exit 92; sleep 0.5; done
sh "$SCRIPT" backup VI_api
sleep 8
before=$(wc -l < "$LOG")
sleep 3
after=$(wc -l < "$LOG")
[ "$before" -eq "$after" ] || exit 93
"#;

#[test]
fn notify_master_loop_takes_the_vip_back_after_a_split_brain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let o = build(&aws_example("site.toml"), &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = out.join("lb1/files/usr/local/sbin/haseed-aws-vip");
    let fake = tmp.path().join("fake_ec2.py");
    std::fs::write(&fake, FAKE_EC2).expect("write fake");
    let log = tmp.path().join("requests.jsonl");
    let o = Command::new("unshare")
        .args(["-n", "sh", "-c", SPLIT_BRAIN])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", tmp.path())
        .env("WORK", tmp.path())
        .env("FAKE", &fake)
        .env("LOG", &log)
        .env("SCRIPT", &script)
        .env("HASEED_AWS_VIP_CONF", tmp.path().join("no-such.conf"))
        .env("HASEED_AWS_VIP_RUN_DIR", tmp.path())
        .env("HASEED_AWS_VIP_INTERVAL", "1")
        .output()
        .expect("unshare runs (util-linux; the tests run as root)");
    assert!(
        o.status.success(),
        "split-brain run failed ({:?}; 91: no move on MASTER, 92: the VIP was not taken back, \
         93: the loop kept running after BACKUP):\n{}{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    let reqs: Vec<serde_json::Value> = read(&log)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let calls: Vec<String> = ec2_calls(&reqs)
        .iter()
        .map(|c| c["Action"].as_str().expect("action").to_string())
        .collect();
    // Move, then checks (reads) until the theft, then a read that finds it gone and the move back.
    assert_eq!(
        calls.first().map(String::as_str),
        Some("AssignPrivateIpAddresses"),
        "{calls:?}"
    );
    let second = calls
        .iter()
        .skip(1)
        .position(|c| c == "AssignPrivateIpAddresses")
        .expect("moved back")
        + 1;
    assert_eq!(calls[second - 1], "DescribeNetworkInterfaces", "{calls:?}");
    assert!(
        calls[1..second]
            .iter()
            .all(|c| c == "DescribeNetworkInterfaces"),
        "{calls:?}"
    );
}

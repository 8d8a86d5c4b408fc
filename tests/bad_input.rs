//! Broken site files: each gets its own clear error with file, line and
//! column, a non-zero exit, no panic and no output.

mod common;

use common::*;

/// The example site with `from` replaced by `to` (which must occur once).
fn broken(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(example("pi-k8s")).expect("example");
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} must occur once in the example"
    );
    text.replacen(from, to, 1)
}

/// Runs `haseed build` on `text` and checks the error names `marker`'s line
/// and says `says`.
fn expect_error(case: &str, text: &str, marker: &str, says: &str) {
    let offset = text
        .find(marker)
        .unwrap_or_else(|| panic!("{case}: marker {marker:?} not in the text"));
    expect_error_at(case, text, offset, says);
}

/// Like `expect_error`, pointing at the marker's last occurrence (the
/// second definition of a duplicate).
fn expect_error_last(case: &str, text: &str, marker: &str, says: &str) {
    let offset = text
        .rfind(marker)
        .unwrap_or_else(|| panic!("{case}: marker {marker:?} not in the text"));
    expect_error_at(case, text, offset, says);
}

fn expect_error_at(case: &str, text: &str, offset: usize, says: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, text).expect("write");
    let out = tmp.path().join("out");
    let o = build(&site, &out);
    let err = stderr(&o);
    assert!(!o.status.success(), "{case}: accepted");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{case}: exit code (a panic exits 101):\n{err}"
    );
    assert!(!err.contains("panicked"), "{case}: panic:\n{err}");
    assert!(!out.exists(), "{case}: output written");
    let line = text[..offset].matches('\n').count() + 1;
    let want = format!("site.toml:{line}:");
    assert!(
        err.contains(&want),
        "{case}: error does not point at line {line}:\n{err}"
    );
    assert!(
        err.to_lowercase().contains(&says.to_lowercase()),
        "{case}: error does not say {says:?}:\n{err}"
    );
}

#[test]
fn syntax_error() {
    let text = broken("name = \"lb2\"", "name = \"lb2");
    expect_error("syntax", &text, "name = \"lb2", "");
}

#[test]
fn unknown_key() {
    let text = broken(
        "backend_port = 6443",
        "backend_port = 6443\nbackend_prot = 1",
    );
    expect_error("unknown key", &text, "backend_prot", "backend_prot");
}

#[test]
fn unknown_role() {
    let text = broken(
        "roles = [\"lb\"]\naddress = \"192.168.3.242\"",
        "roles = [\"loadbalancer\"]\naddress = \"192.168.3.242\"",
    );
    expect_error("unknown role", &text, "\"loadbalancer\"", "loadbalancer");
}

#[test]
fn duplicate_node_name() {
    let text = broken("name = \"master3\"", "name = \"master2\"");
    expect_error_last("duplicate name", &text, "name = \"master2\"", "duplicate");
}

#[test]
fn duplicate_address() {
    let text = broken("address = \"192.168.3.253\"", "address = \"192.168.3.252\"");
    expect_error_last(
        "duplicate address",
        &text,
        "\"192.168.3.252\"",
        "192.168.3.252",
    );
}

#[test]
fn address_outside_its_network() {
    let text = broken(
        "address = \"192.168.3.251\"",
        "address = \"10.0.0.251\"\nnetwork = \"lan\"",
    );
    expect_error("outside network", &text, "\"10.0.0.251\"", "192.168.3.0/24");
}

#[test]
fn vip_without_holders() {
    let text = broken(
        "network = \"lan\"\n# holders",
        "network = \"lan\"\nholders = []\n# holders",
    );
    expect_error("no holders", &text, "holders = []", "holders");
}

#[test]
fn service_without_backends() {
    let text = broken("backend_role = \"master\"", "backend_role = \"db\"");
    expect_error("no backends", &text, "backend_role = \"db\"", "backend");
}

#[test]
fn vrid_collision() {
    let text = broken(
        "network = \"lan\"
# holders",
        "network = \"lan\"
vrid = 7

[[vip]]
name = \"other\"
address = \"192.168.3.239\"
network = \"lan\"
vrid = 7
# holders",
    );
    expect_error_last("vrid collision", &text, "vrid = 7", "vrid");
}

#[test]
fn nopreempt_with_a_master_state() {
    let text = broken(
        "network = \"lan\"\n# holders",
        "network = \"lan\"\nmaster = \"lb1\"\nnopreempt = true\n# holders",
    );
    expect_error("nopreempt+master", &text, "nopreempt = true", "nopreempt");
}

#[test]
fn missing_plugin_file() {
    let mut text = broken("name = \"pi-k8s\"", "name = \"pi-k8s\"");
    text.push_str(&format!(
        "\n[[plugin]]\npath = \"policies/missing.wasm\"\nsha256 = \"{}\"\n",
        "0".repeat(64)
    ));
    expect_error(
        "missing plugin",
        &text,
        "\"policies/missing.wasm\"",
        "missing.wasm",
    );
}

#[test]
fn wrong_type() {
    let text = broken("port = 9000", "port = \"9000\"");
    expect_error("wrong type", &text, "\"9000\"", "");
}

#[test]
fn garbage_and_huge_inputs_do_not_panic() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("binary", (0u8..=255).cycle().take(4096).collect()),
        (
            "nested",
            format!("x = {}{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes(),
        ),
        ("huge", vec![b'#'; 9 << 20]),
    ];
    for (case, bytes) in cases {
        let site = tmp.path().join(format!("{case}.toml"));
        std::fs::write(&site, bytes).expect("write");
        let o = run(&["plan", site.to_str().expect("utf-8")]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{case}: {err}");
        assert!(err.contains("error"), "{case}: {err}");
        assert!(!err.contains("panicked"), "{case}: {err}");
    }
}

#[test]
fn port_range_without_a_check_port() {
    let text = broken("port = 9000", "port_range = \"30000-30010\"");
    expect_error(
        "port_range without check port",
        &text,
        "\"30000-30010\"",
        "check port",
    );
}

/// A SHA-512 crypt(3) hash (`openssl passwd -6 -salt saltsalt hunter2`).
const SHA512: &str = "$6$saltsalt$8iYtNHxjWRl.NF6oNZ5tF.iKFlQREaXBLlSmZKP6dy9l5z3vsooWNW0/GZ6Nej73/TFug6pIPSqbJoCT6dfnj.";

#[test]
fn passwords_only_as_hashes_and_secrets_owner_only() {
    use std::os::unix::fs::PermissionsExt;

    let plaintext = "plaintext-Hunter2-do-not-write";
    let text = broken(
        "user = \"pi\"",
        &format!("user = \"pi\"\npassword = \"{plaintext}\""),
    )
    .replacen(
        "address = \"192.168.3.241\"",
        &format!("address = \"192.168.3.241\"\npassword_hash = \"{SHA512}\""),
        1,
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, &text).expect("write");
    let out = tmp.path().join("out");
    let o = build(&site, &out);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    // Warned with file:line:column, the build goes on without it.
    let line = text[..text.find("password =").unwrap()]
        .matches('\n')
        .count()
        + 1;
    assert!(
        err.contains(&format!(
            "site.toml:{line}:1: warning: plaintext `password` is ignored"
        )),
        "{err}"
    );

    let lb1 = std::fs::read_to_string(out.join("lb1/user-data")).expect("lb1 user-data");
    assert!(
        lb1.contains(&format!(
            "    lock_passwd: false\n    hashed_passwd: \"{SHA512}\"\n"
        )),
        "{lb1}"
    );
    let lb2 = std::fs::read_to_string(out.join("lb2/user-data")).expect("lb2 user-data");
    assert!(lb2.contains("    lock_passwd: true\n"), "{lb2}");
    assert!(!lb2.contains("hashed_passwd"), "{lb2}");

    // The plaintext is nowhere: not in a file, not in the bundle (decompressed).
    let mut bytes = 0;
    for (rel, content) in tree(&out) {
        bytes += content.len();
        let content = if rel.ends_with(".tar.gz") {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(content.as_slice()),
                &mut plain,
            )
            .expect("gunzip");
            assert!(
                plain.windows(SHA512.len()).any(|w| w == SHA512.as_bytes()),
                "the bundle lacks the hash"
            );
            plain
        } else {
            content
        };
        assert!(
            !content
                .windows(plaintext.len())
                .any(|w| w == plaintext.as_bytes()),
            "{rel} holds the plaintext password"
        );
        let mode = std::fs::metadata(out.join(&rel))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        if rel.ends_with("user-data") || rel.ends_with(".tar.gz") {
            assert_eq!(mode, 0o600, "{rel}");
        }
    }
    assert!(bytes > 0);

    // cloud-init's schema accepts the user entry (and every other validator the build).
    let o = run(&["validate", site.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
}

/// A site file's text reaches the terminal escaped: the quoted value and the source line of
/// the snippet alike. Raw in the file: a right-to-left override in a node name and in a
/// comment; through a TOML escape: ESC (clear screen) and a line separator in a value.
#[test]
fn bidi_and_escape_characters_in_a_site_are_printed_escaped() {
    let text = broken(
        "name = \"lb1\"",
        "name = \"lb\u{202e}1\" # \u{2066}comment\u{2069}\ninterface = \"eth\\u001b[2J\\u2028x\"",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, &text).expect("write");
    let o = run(&["plan", site.to_str().expect("utf-8")]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let raw: Vec<char> = err
        .chars()
        .filter(|c| {
            matches!(
                c,
                '\u{1b}' | '\u{202e}' | '\u{2066}' | '\u{2069}' | '\u{2028}'
            )
        })
        .collect();
    assert!(
        raw.is_empty(),
        "printed {raw:?} raw:\n{}",
        err.escape_debug()
    );
    // Still readable: the name and its source line, escaped.
    assert!(err.contains("lb\\u{202e}1"), "{err}");
    assert!(err.contains("\\u{2066}comment\\u{2069}"), "{err}");
    assert!(err.contains("eth\\u{1b}[2J\\u{2028}x"), "{err}");
}

/// A site with no SSH key builds nodes nobody can log into (issue 18 item 8: exit 0 and no
/// word): every such node is an error at its name, and nothing is written. An explicit empty
/// list says so on purpose (console-only nodes): one warning at the list, and the build goes
/// on.
#[test]
fn a_node_nobody_could_log_into_is_refused_unless_the_site_says_so() {
    const KEYS: &str = "ssh_authorized_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHaseedExampleKeyReplaceMeWithYours0000000 ops@example\"]";
    let keyless = broken(&format!("{KEYS}\n"), "");
    expect_error(
        "no ssh_authorized_keys",
        &keyless,
        "name = \"lb1\"",
        "node lb1 has no ssh_authorized_keys: nobody could log into it over SSH",
    );
    // Every node is named, not only the first.
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, &keyless).expect("write");
    let err = stderr(&build(&site, &tmp.path().join("out")));
    for node in ["lb1", "lb2", "master1", "master2", "master3"] {
        assert!(
            err.contains(&format!("node {node} has no ssh_authorized_keys")),
            "{node}:\n{err}"
        );
    }
    assert!(
        err.contains("ssh_authorized_keys = []"),
        "no way out named:\n{err}"
    );

    // Console-only on purpose: built, with one warning at the list's line.
    let console = broken(KEYS, "ssh_authorized_keys = []");
    std::fs::write(&site, &console).expect("write");
    let out = tmp.path().join("console");
    let o = build(&site, &out);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let line = console[..console.find("ssh_authorized_keys = []").expect("list")]
        .matches('\n')
        .count()
        + 1;
    let warning = format!("site.toml:{line}:23: warning: ssh_authorized_keys is empty");
    assert_eq!(err.matches(&warning).count(), 1, "{err}");
    assert!(out.join("lb1/user-data").exists());
}

/// `diff` and `apply` name a node the site does not have, and the nodes it does; diff's own
/// failures exit 2 (1 means drifted).
#[test]
fn day_two_refuses_a_node_not_in_the_site() {
    let site = example("pi-k8s");
    let site = site.to_str().unwrap();
    for (args, code) in [
        (vec!["diff", site, "--node", "lb9"], 2),
        (vec!["apply", site, "--node", "lb9", "--dry-run"], 1),
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("node lb9 is not in site pi-k8s")
                && stderr(&o).contains("its nodes are lb1, lb2, master1"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

//! The default policy's settings: the inventory's `[default_policy]` table,
//! handed over as a JSON object.

use serde::Deserialize;

/// Shown by `haseed` as the plugin's settings help.
pub const HELP: &str = "JSON object (inventory table [default_policy]), all keys optional: \
\"check_script\": \"pgrep\" (default: /usr/bin/pgrep -x haproxy) or \"systemctl\" \
(/usr/bin/systemctl is-active --quiet haproxy), how keepalived checks that haproxy runs; \
\"failover\": true (default) or false, event-driven failover (haproxy.service and \
keepalived.service drop-ins, a keepalived track file written by haproxy's start/stop hooks, an \
watcher of haproxy's monitor-uri, gratuitous ARP refresh; see the module docs of failover.rs); \
\"haproxy_watch\": true (default) or false, with failover: a watcher (haseed-haproxy-watch.service, \
curl every 0.1 s) that gives the VIP up within 1 s when haproxy hangs or has no usable server while \
a peer has; false falls back to a keepalived HTTP check of the monitor-uri every second (a hang \
seen in 2-4 s, lost backends not seen); \
\"advert_int_ms\": VRRP advert interval in ms (default 1000: a holder stalled for less than three \
adverts keeps the VIP; whole seconds up to 255000 use VRRPv2, \
anything else must be 10..40950 in steps of 10 and uses VRRPv3); \
\"priority\": keepalived priority of every VIP holder, 1..254 (default 254 with failover, else 100; \
a VIP's preferred master gets 50 more, at most 254); \
\"kubernetes_version\": \"MAJOR.MINOR\" of the pkgs.k8s.io repository masters and workers install \
kubeadm/kubelet/kubectl from (default \"1.37\", the newest minor upstream supports that haseed knows; \
kubeadm config API v1beta4 from 1.31 on, v1beta3 before); \
\"kubernetes_key_fingerprint\": the 40-hex-digit fingerprint the repository's signing key must have, \
checked on the node when it fetches the key at boot (default DE15B14486CD377B9E876E1A234654DA9A296436, \
isv:kubernetes OBS Project); \
\"kubernetes_key\": the ASCII-armored copy of that key a node uses when the fetch fails, replacing the \
embedded one (which expires 2026-12-29); \
\"apiserver_check\": how haproxy checks the masters' API servers: \"readyz\" (default with failover: \
option httpchk GET /readyz with check-ssl verify none, inter 1000ms rise 2 fall 2, so an API server that \
is not ready, starting or in its shutdown delay, is out within 2 s and back 2 s after it is ready), \
\"tcp\" (default without failover: a TCP connect, inter 3000ms rise 30 fall 3, as in the reference) or \
\"healthz\" (option httpchk GET /healthz with check-ssl verify none, the reference's cadence); \
\"db_balance\": \"single-writer\" (default: the first db node takes every connection, the others \
are backup) or \"leastconn\" (every db node active, balance leastconn); \
\"galera_sst\": \"mariabackup\" (default: the donor keeps serving; MariaDB's own mysql@localhost \
account through unix_socket, wsrep_sst_auth = mysql:) or \"rsync\" (blocks the donor, unencrypted), Galera's \
state snapshot transfer; \
\"galera_bootstrap\": \"manual\" (default) or \"new-site\", who starts a new Galera cluster when the first db \
node boots and no peer runs one: the operator (haseed-galera-bootstrap --new-cluster on that node, once), or the \
node itself when every other db node answers and none holds cluster state (see db.rs); \
\"apiserver_cert_sans\": extra names (IP addresses or DNS names) for kubeadm's apiServer.certSANs on \
every master, e.g. the public address of the API VIP's AWS Elastic IP, which the inventory does not know \
(default none); \
\"galera_cluster_name\": wsrep_cluster_name (default: the site name), letters, digits, '.', '_', '-', \
up to 32.";

/// How keepalived's `chk_haproxy` script checks haproxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckScript {
    /// `pgrep -x haproxy`: a cheap process check. The default, because
    /// `systemctl is-active` was seen to flap on slow nodes.
    #[default]
    Pgrep,
    /// `systemctl is-active --quiet haproxy`, as in the reference cluster.
    Systemctl,
}

impl CheckScript {
    /// The script's command line: absolute program path, then its arguments.
    pub fn command(self) -> Vec<String> {
        let words: &[&str] = match self {
            CheckScript::Pgrep => &["/usr/bin/pgrep", "-x", "haproxy"],
            CheckScript::Systemctl => &["/usr/bin/systemctl", "is-active", "--quiet", "haproxy"],
        };
        words.iter().map(|w| w.to_string()).collect()
    }
}

/// How haproxy checks the Kubernetes API servers behind a `master` service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiserverCheck {
    /// A TCP connect, as in the reference cluster; the default without
    /// failover.
    #[default]
    Tcp,
    /// `option httpchk GET /healthz` over TLS without verifying the
    /// apiserver's certificate (`check-ssl verify none`): a live but broken
    /// apiserver is taken out. `/healthz` is deprecated since Kubernetes
    /// 1.16 and, unlike `/readyz`, keeps answering 200 during a graceful
    /// shutdown's `--shutdown-delay-duration`.
    Healthz,
    /// `option httpchk GET /readyz` over TLS (`check-ssl verify none`) with
    /// a fast cadence (`haproxy.rs`, `READYZ_*`): an API server that is up
    /// but not ready (starting, or in a graceful shutdown's delay) gets no
    /// new connections. The default with failover.
    Readyz,
}

/// How the haproxy backend of a `db` service spreads connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DbBalance {
    /// One writer, the others `backup`: no certification conflicts between
    /// concurrent writers on different Galera nodes.
    #[default]
    SingleWriter,
    /// Every node active, `balance leastconn`: only for workloads known to be
    /// free of write conflicts.
    Leastconn,
}

/// Galera's state snapshot transfer method (decision and sources in
/// `db.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GaleraSst {
    /// Needs no database account; blocks the donor (FLUSH TABLES WITH READ
    /// LOCK) while it copies, and the copy travels unencrypted.
    Rsync,
    /// The default, as kolla-ansible's: the donor keeps taking writes while
    /// mariadb-backup copies. Needs the `mariadb-backup` package on every db
    /// node (installed; socat comes with mariadb-server) and a local account
    /// on the donor: MariaDB's own `mysql@localhost` through unix_socket
    /// (`wsrep_sst_auth = mysql:`, no password).
    #[default]
    Mariabackup,
}

/// Who starts a new Galera cluster when the first db node boots and no
/// other db node runs one (`db.rs`, "Bootstrap").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GaleraBootstrap {
    /// The operator, once, with `haseed-galera-bootstrap --new-cluster` on
    /// the first db node. The node itself only ever joins.
    #[default]
    Manual,
    /// The first db node itself, at its first boot, but only when it holds
    /// no cluster state and every other db node answers that it holds none
    /// either: a new site whose db nodes boot together.
    NewSite,
}

impl GaleraBootstrap {
    /// The value the bootstrap script reads (`HASEED_GALERA_BOOTSTRAP`).
    pub fn word(self) -> &'static str {
        match self {
            GaleraBootstrap::Manual => "manual",
            GaleraBootstrap::NewSite => "new-site",
        }
    }
}

impl GaleraSst {
    pub fn method(self) -> &'static str {
        match self {
            GaleraSst::Rsync => "rsync",
            GaleraSst::Mariabackup => "mariabackup",
        }
    }

    /// The Debian package the SST script needs besides the server.
    pub fn package(self) -> &'static str {
        match self {
            GaleraSst::Rsync => "rsync",
            GaleraSst::Mariabackup => "mariadb-backup",
        }
    }
}

/// Every key is optional; an unknown key is an error (a typo must not be
/// silently ignored).
#[derive(Debug)]
pub struct Settings {
    pub check_script: CheckScript,
    pub advert_int_ms: u32,
    pub priority: u8,
    /// "MAJOR.MINOR" of the pkgs.k8s.io repository.
    pub kubernetes_version: String,
    /// Replaces the embedded copy of the pkgs.k8s.io signing key.
    pub kubernetes_key: Option<String>,
    /// The pin: 40 upper-case hex digits.
    pub kubernetes_key_fingerprint: String,
    pub apiserver_check: ApiserverCheck,
    pub db_balance: DbBalance,
    pub galera_sst: GaleraSst,
    pub galera_bootstrap: GaleraBootstrap,
    /// None: the site's name, made safe.
    pub galera_cluster_name: Option<String>,
    /// Event-driven failover (`failover.rs`).
    pub failover: bool,
    /// Extra `apiServer.certSANs` (IP addresses or DNS names): what clients
    /// reach the API by that the inventory cannot name, e.g. an Elastic IP's
    /// public address (issue 19: the EIP was not in certSANs, so kubectl
    /// through it failed TLS verification).
    pub apiserver_cert_sans: Vec<String>,
    /// The watcher of haproxy's monitor URI (`failover.rs`, decision 3).
    pub haproxy_watch: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            check_script: CheckScript::Pgrep,
            advert_int_ms: 1000,
            priority: 100,
            kubernetes_version: crate::kubernetes::DEFAULT_MINOR.into(),
            kubernetes_key: None,
            kubernetes_key_fingerprint: crate::kubernetes::DEFAULT_FINGERPRINT.into(),
            apiserver_check: ApiserverCheck::Readyz,
            db_balance: DbBalance::SingleWriter,
            galera_sst: GaleraSst::Mariabackup,
            galera_bootstrap: GaleraBootstrap::Manual,
            galera_cluster_name: None,
            failover: true,
            apiserver_cert_sans: Vec::new(),
            haproxy_watch: true,
        }
    }
}

/// The accepted keys, for error messages.
const KEYS: &str = "check_script, advert_int_ms, priority, kubernetes_version, kubernetes_key, \
kubernetes_key_fingerprint, \
apiserver_check, apiserver_cert_sans, db_balance, galera_sst, galera_bootstrap, galera_cluster_name, \
failover, haproxy_watch";

/// A refused setting: the key it is about (None: the table as a whole) and
/// a sentence in the user's words that starts with the key ("priority must
/// be 1..254 (got 300)"). The host points at the key's line in the site.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub key: Option<String>,
    pub message: String,
}

fn refused(key: &str, message: String) -> Refused {
    Refused {
        key: Some(key.to_string()),
        message,
    }
}

impl Settings {
    /// Parses and checks the settings. The host passes "{}" when the inventory
    /// has none; an empty string is taken the same way.
    pub fn parse(json: &str) -> Result<Settings, Refused> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let whole = |message: String| Refused { key: None, message };
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| whole(format!("settings are not JSON: {e}")))?;
        let serde_json::Value::Object(table) = value else {
            return Err(whole("settings must be a table".into()));
        };
        let mut settings = Settings::default();
        let (mut advert, mut priority, mut apiserver_check) = (None, None, None);
        for (key, value) in table {
            let k = key.as_str();
            match k {
                "check_script" => {
                    settings.check_script = field(k, value, "\"pgrep\" or \"systemctl\"")?
                }
                "advert_int_ms" => {
                    advert = Some(field(k, value, "a whole number of milliseconds")?)
                }
                "priority" => {
                    let p: i64 = field(k, value, "a whole number 1..254")?;
                    if !(1..=254).contains(&p) {
                        return Err(refused(k, format!("priority must be 1..254 (got {p})")));
                    }
                    priority = Some(p as u8);
                }
                "failover" => settings.failover = field(k, value, "true or false")?,
                "haproxy_watch" => settings.haproxy_watch = field(k, value, "true or false")?,
                "kubernetes_version" => {
                    settings.kubernetes_version = field(k, value, "a string \"MAJOR.MINOR\"")?
                }
                "kubernetes_key" => settings.kubernetes_key = Some(field(k, value, "a string")?),
                "kubernetes_key_fingerprint" => {
                    let fpr: String = field(k, value, "a string of 40 hex digits")?;
                    settings.kubernetes_key_fingerprint = fpr.to_ascii_uppercase();
                }
                "apiserver_check" => {
                    apiserver_check = Some(field(k, value, "\"readyz\", \"tcp\" or \"healthz\"")?)
                }
                "apiserver_cert_sans" => {
                    settings.apiserver_cert_sans = field(k, value, "a list of strings")?
                }
                "db_balance" => {
                    settings.db_balance = field(k, value, "\"single-writer\" or \"leastconn\"")?
                }
                "galera_sst" => {
                    settings.galera_sst = field(k, value, "\"rsync\" or \"mariabackup\"")?
                }
                "galera_bootstrap" => {
                    settings.galera_bootstrap = field(k, value, "\"manual\" or \"new-site\"")?
                }
                "galera_cluster_name" => {
                    settings.galera_cluster_name = Some(field(k, value, "a string")?)
                }
                _ => {
                    return Err(refused(
                        k,
                        format!(
                            "{key} is not a setting of the default policy; the keys are {KEYS}"
                        ),
                    ))
                }
            }
        }
        let default_advert = 1000;
        let default_priority = if settings.failover { 254 } else { 100 };
        settings.advert_int_ms = advert.unwrap_or(default_advert);
        settings.priority = priority.unwrap_or(default_priority);
        // The reference (failover off) keeps its TCP check.
        settings.apiserver_check = apiserver_check.unwrap_or(if settings.failover {
            ApiserverCheck::Readyz
        } else {
            ApiserverCheck::Tcp
        });
        settings.check()?;
        Ok(settings)
    }

    /// Rejects values the host's plan checker would reject later, so the user
    /// gets one "bad settings" error instead of one error per node.
    fn check(&self) -> Result<(), Refused> {
        let ms = self.advert_int_ms;
        let v2 = ms.is_multiple_of(1000) && (1000..=255_000).contains(&ms);
        let v3 = ms.is_multiple_of(10) && (10..=40_950).contains(&ms);
        if !(v2 || v3) {
            return Err(refused(
                "advert_int_ms",
                format!(
                    "advert_int_ms must be whole seconds up to 255000 (VRRPv2) \
                     or 10..40950 in steps of 10 (VRRPv3) (got {ms})"
                ),
            ));
        }
        for san in &self.apiserver_cert_sans {
            let ip = san.parse::<std::net::IpAddr>().is_ok();
            let dns = !san.is_empty()
                && san.len() <= 253
                && san.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || c == b'-')
                });
            if !(ip || dns) {
                return Err(refused(
                    "apiserver_cert_sans",
                    format!("apiserver_cert_sans: {san:?} is neither an IP address nor a DNS name"),
                ));
            }
        }
        if !(1..=254).contains(&self.priority) {
            return Err(refused(
                "priority",
                format!("priority must be 1..254 (got {})", self.priority),
            ));
        }
        let minor = self
            .kubernetes_version
            .split_once('.')
            .is_some_and(|(a, b)| {
                let digits = |s: &str| {
                    !s.is_empty() && s.len() <= 3 && s.bytes().all(|c| c.is_ascii_digit())
                };
                digits(a) && digits(b)
            });
        if !minor {
            return Err(refused(
                "kubernetes_version",
                format!(
                    "kubernetes_version must be MAJOR.MINOR, e.g. \"1.37\" (got {:?}): pkgs.k8s.io has one repository per minor version",
                    self.kubernetes_version
                ),
            ));
        }
        let fpr = &self.kubernetes_key_fingerprint;
        if fpr.len() != 40 || !fpr.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(refused(
                "kubernetes_key_fingerprint",
                format!(
                    "kubernetes_key_fingerprint must be a 40-hex-digit OpenPGP v4 fingerprint \
                     (got {fpr:?}; gpg --show-keys --with-colons KEYFILE, the fpr line after pub)"
                ),
            ));
        }
        if let Some(key) = &self.kubernetes_key {
            let body = key.trim();
            if !body.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
                || !body.ends_with("-----END PGP PUBLIC KEY BLOCK-----")
            {
                return Err(refused(
                    "kubernetes_key",
                    "kubernetes_key must be an ASCII-armored PGP public key block \
                     (-----BEGIN PGP PUBLIC KEY BLOCK----- ... -----END PGP PUBLIC KEY BLOCK-----)"
                        .into(),
                ));
            }
        }
        if let Some(name) = &self.galera_cluster_name {
            if !is_cluster_name(name) {
                return Err(refused(
                    "galera_cluster_name",
                    format!(
                        "galera_cluster_name must be 1..32 letters, digits, '.', '_', '-' (got {name:?})"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// wsrep_cluster_name: the setting, or the site's name with every other
    /// character replaced by '_' (cut to 32).
    pub fn cluster_name(&self, site: &str) -> String {
        if let Some(name) = &self.galera_cluster_name {
            return name.clone();
        }
        let name: String = site
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(32)
            .collect();
        if name.is_empty() {
            "haseed".into()
        } else {
            name
        }
    }

    /// VRRPv2 only carries whole-second adverts; anything finer needs v3.
    pub fn vrrp_version(&self) -> u8 {
        if self.advert_int_ms.is_multiple_of(1000) {
            2
        } else {
            3
        }
    }
}

/// One settings value; a wrong type is refused in the user's words:
/// "failover must be true or false (got \"yes\")".
fn field<T: serde::de::DeserializeOwned>(
    key: &str,
    value: serde_json::Value,
    expected: &str,
) -> Result<T, Refused> {
    T::deserialize(&value).map_err(|_| {
        let mut got = value.to_string();
        if got.len() > 60 {
            let mut cut = 60;
            while !got.is_char_boundary(cut) {
                cut -= 1;
            }
            got.truncate(cut);
            got.push_str("...");
        }
        refused(key, format!("{key} must be {expected} (got {got})"))
    })
}

/// A Galera cluster name we write unquoted into my.cnf.
fn is_cluster_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

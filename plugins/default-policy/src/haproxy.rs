//! The haproxy part of a VIP holder's plan: the reference haproxy.cfg
//! (`mode tcp`, `balance roundrobin`, `check inter 3000ms rise 30 fall 3`,
//! `retries 6`, the reference timeouts), one frontend + backend per service.
//!
//! The backend's defaults depend on the role behind it; the inventory's
//! per-service `balance` and `check` fields win over all of them:
//!
//! - `master` (Kubernetes API), setting `apiserver_check`:
//!   - `"readyz"`, the default with failover: `option httpchk GET /readyz`
//!     with `check-ssl verify none`, `inter 1000ms rise 2 fall 2`
//!     ([`READYZ_INTER_MS`]). A TCP connect cannot see an API server that
//!     is up but not ready. `/readyz` answers 200 only when it is ready to
//!     serve, and fails while it starts (etcd not reached, post-start hooks
//!     not done) and, in a graceful shutdown, for the whole
//!     `--shutdown-delay-duration` while it still serves: "For a graceful
//!     shutdown you can specify the --shutdown-delay-duration flag with the
//!     /readyz endpoint", and "traffic should be routed away from it" when
//!     `/readyz` fails (Kubernetes docs, "Kubernetes API health endpoints",
//!     <https://kubernetes.io/docs/reference/using-api/health-checks/>);
//!     `--shutdown-delay-duration`: "Time to delay the termination. During
//!     that time the server keeps serving requests normally. The endpoints
//!     /healthz and /livez will return success, but /readyz immediately
//!     returns failure" (the kube-apiserver
//!     command-line reference, `--shutdown-delay-duration`,
//!     <https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/>). `/healthz` is deprecated since 1.16 and stays 200 in
//!     that delay, so it cannot drain a server. The check needs no
//!     credentials: the default ClusterRole `system:public-info-viewer`
//!     lets unauthenticated clients read `/healthz`, `/livez`, `/readyz` and
//!     `/version` (<https://kubernetes.io/docs/reference/access-authn-authz/rbac/#discovery-roles>).
//!     `check-ssl verify none`: the apiserver speaks only TLS, and its
//!     serving certificate is not the LB's to verify (no CA on the LB);
//!     kubeadm's HA guide checks the same way (`http-check connect ssl`,
//!     `GET /healthz`, `check verify none`, kubernetes/kubeadm
//!     docs/ha-considerations.md at 1ee9603), but with `/healthz`.
//!     The cadence: a failing `/readyz` answers at once (500), so a server
//!     that stops being ready is out after `fall` checks, at most `inter x
//!     fall` = 2 s: a shutdown delay longer than that (kube-apiserver's
//!     default is 0 s; a site that wants drains without failed requests
//!     sets `--shutdown-delay-duration` a few seconds above this window)
//!     lets every LB stop sending before the server closes; `fall 2` rather than 1 so one check lost to a loaded Pi (the check
//!     times out after `inter`, haproxy's rule without `timeout check`)
//!     does not take a healthy server out. A server that became ready is
//!     back after `rise 2`: 1-2 s. The reference's `rise 30` (90 s) stood in
//!     for the readiness a TCP check cannot see; with `/readyz` it only
//!     keeps a ready server idle. Cost: one TLS handshake and GET a second
//!     per LB per master, a few ms of an apiserver's CPU.
//!   - `"tcp"`, the default without failover: the reference (`check inter
//!     3000ms rise 30 fall 3`, a TCP connect).
//!   - `"healthz"`: `option httpchk GET /healthz` with `check-ssl verify
//!     none` at the reference's cadence.
//! - `controller` (OpenStack-style APIs): `balance roundrobin`, as
//!   kolla-ansible ships it (`haproxy_defaults_balance: "roundrobin"`,
//!   ansible/roles/loadbalancer/defaults/main.yml at 1a68181; only keystone
//!   with federation and horizon without a shared session store switch to
//!   `source`, which a site sets per service with `balance`). `balance
//!   source`, haseed's earlier default, hashes the client address: the APIs'
//!   busiest callers are the three controllers themselves, so their calls
//!   piled onto one or two API nodes; a websocket (noVNC) stays on its
//!   connection's node either way, and tokens are checked with keys every
//!   node shares. `option tcpka` on both sides (long polls and websockets
//!   through firewalls),
//!   `check inter 2000ms rise 2 fall 5`, and for `mode http` services
//!   `option httpchk GET /` (every OpenStack API answers its version document
//!   there with 200 or 300, which haproxy counts as up).
//! - `db` (MariaDB Galera): the check asks the node's health endpoint
//!   (`GET /` on port 9200, 200 only when `wsrep_local_state_comment` is
//!   Synced, see `db.rs`), `inter 2000ms rise 2 fall 5`, `option tcpka`; one
//!   writer (the first db node) and the others `backup`, unless the setting
//!   `db_balance = "leastconn"` makes them all active with `balance
//!   leastconn`.
//!
//! The `defaults` timeouts: client and server equal, as the haproxy manual
//! asks for TCP proxies (configuration.txt, `timeout client`: "it is highly
//! recommended that the client timeout remains equal to the server timeout
//! in order to avoid complex situations to debug"), and as long as the
//! longest-lived connection of the roles the holder fronts:
//!
//! - Kubernetes masters and workers: 1 h. Watches (`kubectl get -w`,
//!   kubelet's informers), `logs -f`, `exec`, `port-forward` and NodePort
//!   sessions stay silent for seconds to minutes. The reference's client 3 s
//!   / server 60 s cut them: real kubectl lost a watch after 3.4 s and an API
//!   call answered after 5 s died at 3.45 s (issue 19); `haseed lab`'s
//!   `long-lived` scenario shows both (closed after 3.0 s). kubeadm's HA
//!   guide's 20 s (kubernetes/kubeadm docs/ha-considerations.md at 0afcc43)
//!   still cuts a watch quieter than that; OpenShift's on-premise API load
//!   balancer uses 24 h. In TCP mode client = server = 1 h is what `timeout
//!   tunnel 1h` gives (the contract has no tunnel field).
//! - databases: 1 h (pooled connections idle for minutes);
//! - controllers: 60 s (API calls and noVNC sessions idle longer than 3 s).
//!
//! The plan has one `defaults` section per node, so the longest need wins.
//! `"failover": false` keeps the reference's client 3 s / server 60 s for
//! Kubernetes holders, so the lab's before/after comparison stays honest.
//!
//! Connecting to a server that does not answer (a master powered off, its
//! link down: SYNs go unanswered) until its check marks it down: the
//! reference's `timeout connect 3000ms`, `retries 6` and `option
//! redispatch` (which redispatches on the last retry only: haproxy 2.6
//! configuration.txt, `option redispatch <interval>`, "the default of -1
//! preserves the historical behavior of redispatching on the last retry")
//! left a new connection waiting 3 s and more on the dead server, each
//! retry on the same server after a turn-around of min(`timeout connect`,
//! 1 s) (configuration.txt, `retries`); issue 19 measured 4 of 36 new API
//! connections waiting 3 s. The default policy instead gives a connect
//! [`CONNECT_TIMEOUT_MS`] and redispatches on every retry (`option
//! redispatch 1`), with [`RETRIES`] attempts: a connection that meets the
//! dead server waits at most one connect timeout, then goes to another
//! server. 500 ms is hundreds of LAN round trips (a SYN-ACK comes back in
//! well under 1 ms between a Pi and its masters, and in 1-2 ms across AWS
//! availability zones), and shorter than Linux's first SYN retransmission
//! (1 s), so a lost SYN costs a retry on another server rather than a
//! second on the same one. kubeadm's HA guide keeps `timeout connect 5s`
//! with `retries 1` (kubernetes/kubeadm docs/ha-considerations.md at
//! 1ee9603): written for any network, it lets a connection wait 5 s.
//! `haseed lab`'s `backend-unreachable` scenario removes a master's address
//! and judges every probe's wait against the plan's connect timeout.
//!
//! A holder that is itself a backend of a service on the same port (the
//! controllers holding the database VIP while being db nodes) binds that
//! frontend to the VIP, not to every address: the local server already
//! listens on its own address and port (bind-address in its configuration).

use crate::haseed::policy::plan::{
    Backend, Frontend, HaproxyConfig, HaproxyDefaults, HaproxyGlobal, NodePlan, Server,
    ServerCheck, Sysctl,
};
use crate::haseed::policy::site::{Balance, ProxyMode, Role, Service, Vip};
use crate::settings::{ApiserverCheck, DbBalance};
use crate::Policy;

/// Reference `check inter 3000ms rise 30 fall 3`: a backend must answer for
/// 90 s before it gets traffic (an apiserver that just started is not ready),
/// and is out after 9 s of failures.
const CHECK_INTER_MS: u32 = 3000;
const CHECK_RISE: u32 = 30;
const CHECK_FALL: u32 = 3;

/// `apiserver_check = "readyz"` (module docs): out within 2 s of `/readyz`
/// failing, back 1-2 s after it answers 200 again.
const READYZ_INTER_MS: u32 = 1000;
const READYZ_RISE: u32 = 2;
const READYZ_FALL: u32 = 2;

/// OpenStack-style checks (controllers and databases): up after 4 s, out
/// after 10 s of failures.
const FAST_INTER_MS: u32 = 2000;
const FAST_RISE: u32 = 2;
const FAST_FALL: u32 = 5;

/// `timeout connect` and `retries` with failover (module docs): a dead
/// server costs a new connection at most one connect timeout.
const CONNECT_TIMEOUT_MS: u32 = 500;
const RETRIES: u32 = 3;
/// Redispatch on every retry (haproxy 2.6 `option redispatch <interval>`).
const REDISPATCH_EVERY_RETRY: &str = "redispatch 1";

/// Where a db node's health endpoint listens (`db.rs`).
pub(crate) const DB_HEALTH_PORT: u16 = 9200;

/// `defaults` client/server timeouts for holders fronting controllers and
/// databases (see the module docs).
const CONTROLLER_TIMEOUT_MS: u32 = 60_000;
const DB_TIMEOUT_MS: u32 = 3_600_000;
const KUBERNETES_TIMEOUT_MS: u32 = 3_600_000;

/// A backend's role-dependent defaults, before the inventory's overrides.
struct Profile {
    inter_ms: u32,
    rise: u32,
    fall: u32,
    port: Option<u16>,
    ssl: bool,
    balance: Balance,
    options: Vec<String>,
    http_check: Option<String>,
    /// Servers after the first are `backup`.
    single_writer: bool,
}

/// The reference `global` and `defaults` sections.
fn reference_config() -> HaproxyConfig {
    HaproxyConfig {
        global: HaproxyGlobal {
            maxconn: None,
            // Keeps Debian's admin socket, so `hatop`/`socat` keep working.
            stats_socket: true,
        },
        defaults: HaproxyDefaults {
            mode: ProxyMode::Tcp,
            retries: 6,
            timeout_connect_ms: 3000,
            timeout_client_ms: 3000,
            timeout_server_ms: 60000,
            timeout_check_ms: None,
            options: vec!["tcplog".into(), "dontlognull".into()],
        },
        frontends: Vec::new(),
        backends: Vec::new(),
    }
}

impl Policy {
    /// Adds a frontend and a backend for every service of every VIP in `held`
    /// (site order). Sections and proxies an earlier plugin proposed are kept:
    /// a frontend or backend whose name is taken is not added again.
    pub(crate) fn decide_haproxy(&self, plan: &mut NodePlan, node: usize, held: &[u32]) {
        // The longest idle time among the roles this holder fronts.
        let mut idle_ms = None;
        for &v in held {
            for &s in &self.index.services_of[v as usize] {
                let t = match self.site.services[s as usize].backend_role {
                    Role::Db => DB_TIMEOUT_MS,
                    Role::Controller => CONTROLLER_TIMEOUT_MS,
                    Role::Master | Role::Worker if self.settings.failover => KUBERNETES_TIMEOUT_MS,
                    _ => continue,
                };
                idle_ms = idle_ms.max(Some(t));
            }
        }
        let haproxy = plan.haproxy.get_or_insert_with(|| {
            let mut config = reference_config();
            if let Some(ms) = idle_ms {
                config.defaults.timeout_client_ms = ms;
                config.defaults.timeout_server_ms = ms;
            }
            if self.settings.failover {
                config.defaults.timeout_connect_ms = CONNECT_TIMEOUT_MS;
                config.defaults.retries = RETRIES;
            }
            config
        });
        // Binding the VIP itself: the standby does not hold the address, and
        // haproxy could not start there without non-local bind.
        let mut nonlocal_v4 = false;
        let mut nonlocal_v6 = false;
        for &v in held {
            let vip = &self.site.vips[v as usize];
            let services = &self.index.services_of[v as usize];
            if services.is_empty() {
                plan.warnings.push(format!(
                    "VIP {} has no services: haproxy will have no frontends for it",
                    vip.name
                ));
            }
            for &s in services {
                let service = &self.site.services[s as usize];
                if !haproxy.frontends.iter().any(|f| f.name == service.name) {
                    // A backend of its own service on the same port: `*`
                    // would collide with the local server's listener.
                    let bind_vip = service.bind_vip
                        || (service
                            .backend_port
                            .is_none_or(|p| (service.port_first..=service.port_last).contains(&p))
                            && service.backends.contains(&(node as u32)));
                    haproxy.frontends.push(frontend(service, vip, bind_vip));
                    if bind_vip {
                        if is_ipv6(&vip.address) {
                            nonlocal_v6 = true;
                        } else {
                            nonlocal_v4 = true;
                        }
                    }
                }
                if !haproxy.backends.iter().any(|b| b.name == service.name) {
                    haproxy.backends.push(self.backend(service));
                }
            }
        }
        for (needed, key) in [
            (nonlocal_v4, "net.ipv4.ip_nonlocal_bind"),
            (nonlocal_v6, "net.ipv6.ip_nonlocal_bind"),
        ] {
            if needed && !plan.sysctls.iter().any(|s| s.key == key) {
                plan.sysctls.push(Sysctl {
                    key: key.into(),
                    value: "1".into(),
                });
            }
        }
    }

    /// The reference's `option redispatch`, or with failover on every retry.
    fn redispatch(&self) -> String {
        if self.settings.failover {
            REDISPATCH_EVERY_RETRY.into()
        } else {
            "redispatch".into()
        }
    }

    /// The defaults for a backend of `service`'s role (module docs).
    fn profile(&self, service: &Service) -> Profile {
        let reference = Profile {
            inter_ms: CHECK_INTER_MS,
            rise: CHECK_RISE,
            fall: CHECK_FALL,
            port: None,
            ssl: false,
            balance: Balance::Roundrobin,
            // A connection whose server died is retried on another one: on
            // every retry with failover, on the last one in the reference.
            options: vec![self.redispatch()],
            http_check: None,
            single_writer: false,
        };
        match service.backend_role {
            Role::Master => match self.settings.apiserver_check {
                ApiserverCheck::Tcp => reference,
                ApiserverCheck::Healthz => Profile {
                    ssl: true,
                    http_check: Some("GET /healthz".into()),
                    ..reference
                },
                ApiserverCheck::Readyz => Profile {
                    inter_ms: READYZ_INTER_MS,
                    rise: READYZ_RISE,
                    fall: READYZ_FALL,
                    ssl: true,
                    http_check: Some("GET /readyz".into()),
                    ..reference
                },
            },
            Role::Controller => Profile {
                inter_ms: FAST_INTER_MS,
                rise: FAST_RISE,
                fall: FAST_FALL,
                options: vec![self.redispatch(), "tcpka".into()],
                http_check: (service.mode == ProxyMode::Http).then(|| "GET /".into()),
                ..reference
            },
            Role::Db => {
                let leastconn = self.settings.db_balance == DbBalance::Leastconn;
                Profile {
                    inter_ms: FAST_INTER_MS,
                    rise: FAST_RISE,
                    fall: FAST_FALL,
                    port: Some(DB_HEALTH_PORT),
                    balance: if leastconn {
                        Balance::Leastconn
                    } else {
                        Balance::Roundrobin
                    },
                    options: vec![self.redispatch(), "tcpka".into()],
                    http_check: Some("GET /".into()),
                    single_writer: !leastconn,
                    ..reference
                }
            }
            _ => reference,
        }
    }

    /// The backend of `service`: one server per backend node, in inventory
    /// order, named after the node; the inventory's balance and check fields
    /// override the role's profile.
    fn backend(&self, service: &Service) -> Backend {
        let profile = self.profile(service);
        let check = ServerCheck {
            inter_ms: service.check.inter_ms.unwrap_or(profile.inter_ms),
            rise: service.check.rise.unwrap_or(profile.rise),
            fall: service.check.fall.unwrap_or(profile.fall),
            port: service.check.port.or(profile.port),
            ssl: profile.ssl,
        };
        let servers = service
            .backends
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                let node = &self.site.nodes[b as usize];
                Server {
                    name: node.name.clone(),
                    address: node.address.clone(),
                    // None for port ranges: the port the client connected to.
                    port: service.backend_port,
                    check: Some(check),
                    backup: profile.single_writer && i > 0,
                    weight: None,
                }
            })
            .collect();
        Backend {
            name: service.name.clone(),
            mode: service.mode,
            balance: service.balance.unwrap_or(profile.balance),
            options: profile.options,
            http_check: service.check.http.clone().or(profile.http_check),
            servers,
        }
    }
}

/// The frontend of `service`, named like it and sending to the backend of the
/// same name. Binds every address unless the service asks for the VIP.
fn frontend(service: &Service, vip: &Vip, bind_vip: bool) -> Frontend {
    Frontend {
        name: service.name.clone(),
        bind_address: bind_vip.then(|| vip.address.clone()),
        port_first: service.port_first,
        port_last: service.port_last,
        mode: service.mode,
        backend: service.name.clone(),
        options: frontend_options(service),
        monitor_uri: None,
    }
}

/// A service frontend's options:
/// - `tcpka`: client-side keepalives for the long-lived API and database
///   connections (the backend sets the server side);
/// - `forwardfor` on HTTP frontends: the API servers behind see the client's
///   address in `X-Forwarded-For` instead of the load balancer's (their logs,
///   rate limits and audit records); kubeadm's HA guide sets it in its
///   defaults (kubernetes/kubeadm docs/ha-considerations.md at 0afcc43,
///   `option forwardfor except 127.0.0.0/8`). Issue 19 item 8.
fn frontend_options(service: &Service) -> Vec<String> {
    let mut options = Vec::new();
    if matches!(service.backend_role, Role::Controller | Role::Db) {
        options.push("tcpka".into());
    }
    if service.mode == ProxyMode::Http {
        options.push("forwardfor".into());
    }
    options
}

/// The host hands over checked addresses: an IPv6 one is the one with a ':'.
pub(crate) fn is_ipv6(address: &str) -> bool {
    address.contains(':')
}

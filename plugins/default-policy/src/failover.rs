//! Event-driven failover: what makes clients see tens of milliseconds, not
//! seconds, when a load balancer fails. It only adds to a load balancer's
//! plan (haproxy, keepalived, files); it never removes what another part of
//! the policy or an earlier plugin decided, so a later plugin can override
//! every decision here (drop the drop-ins, the track file, the check), and
//! the setting `"failover": false` turns it off.
//!
//! Measured with the real keepalived + haproxy in network namespaces
//! (`haseed lab`, and "Failover" in the field notes), outage when haproxy
//! dies on the active load balancer:
//!
//! - reference settings (VRRPv2, 1 s adverts, check script interval 1 fall 3):
//!   3.3-3.6 s;
//! - polling script, VRRPv3 0.1 s adverts, fall 1: 0.2-1.0 s (never below the
//!   script interval);
//! - event-driven (this module): 0.02-0.04 s in `haseed lab` (10 of 10
//!   trials; 0.2 s in 4 of 10 before decision 7).
//!
//! The decisions:
//!
//! 1. haproxy's service manager reports its death: a `haproxy.service`
//!    drop-in whose `ExecStartPost=` writes 0 and whose `ExecStopPost=` (run
//!    however haproxy ended, SIGKILL included) writes 1 into
//!    `/var/lib/haseed/haproxy-down`. keepalived watches that file
//!    (`track_file`, weight 0, inotify): the instance goes FAULT at once and
//!    sends a priority-0 advert, so the peer takes over without waiting for
//!    missed adverts. The directory is created by the hooks: a track file
//!    whose directory is missing makes keepalived drop the tracker silently.
//!    The file says "down" before haproxy is ready: the drop-in's
//!    `ExecStartPre=` writes 1, so it exists (and says down) from haproxy's
//!    first start attempt on. No `init_file` in keepalived.conf: keepalived
//!    2.2.8 to 2.3.2 write the init value over an existing file at every
//!    start (keepalived `trackers/track_file.c` @ v2.2.8, fixed by 3f386640,
//!    first in v2.3.3), and Ubuntu 24.04 ships 2.2.8: `init_file 1` left
//!    every node FAULT after keepalived's start, which follows haproxy's (the
//!    ubuntu-raspi-noble card twin, tests/twins). A node whose haproxy never
//!    started has no file: keepalived reads that as up, and the process
//!    check and decision 3's watcher (or HTTP check) still hold it FAULT.
//! 2. keepalived starts `After=haproxy.service`: haproxy's start hook has
//!    written its state before keepalived reads it (without the ordering a
//!    start raced the hook and stayed FAULT in 1 of 125 starts).
//! 3. A hung haproxy (alive, not serving) is invisible to the track file and
//!    to a TCP connect (the kernel completes handshakes), and keepalived
//!    2.2.7 polls a `vrrp_script` in whole seconds only (a fractional
//!    `interval` is refused): its HTTP check took 2.2-3.1 s in `haseed lab`.
//!    So a watcher asks haproxy itself: `haseed-haproxy-watch.service` (a
//!    shell loop, `haproxy-watch.sh`) runs one curl that asks the
//!    `monitor-uri` frontend every 100 ms (`--rate`, one process for all
//!    questions), each question waiting at most 200 ms, and writes 1 into its
//!    own track file `/var/lib/haseed/haproxy-unhealthy` (weight 0, so FAULT
//!    and a priority-0 advert at once) after 2 failed answers in a row, 0
//!    after 2 good ones. Its own file, not haproxy's hooks' one: the hooks
//!    write `haproxy-down` whenever haproxy starts or stops, and the two
//!    writers must never undo each other; keepalived goes FAULT when either
//!    says so. No `init_file` (decision 1): a missing file reads as 0
//!    (`process_track_file` @ v2.2.7), so a watcher that never ran takes
//!    nothing away.
//!    Worst-case detection 100 + 2 x 200 = 500 ms; `haseed lab`'s
//!    `haproxy-hung`, 10 trials: outage 415-622 ms (objective 1.0 s, issue
//!    19). Why these numbers: a healthy haproxy answers its monitor in under
//!    1 ms (0.2 ms measured), so 200 ms is a hang, not a slow answer; fall 2
//!    because a whole-node stall (`node-stall`, 500 ms, watcher frozen too)
//!    costs at most the one question under way (no VIP move in the lab);
//!    100 ms between questions keeps the bound under 1 s with room for a
//!    Pi's slower curl. Cost: 0.19 s of CPU in 60 s (0.3 % of one core; the
//!    shell, its subshell and curl, `/proc/PID/stat` utime+stime, x86 Xeon,
//!    2026-12-06); a first version that started curl and sleep for every
//!    question cost 3.87 s in 60 s (6.4 %), 20 times more.
//!    The monitor also answers 503 when a service frontend's backend has no
//!    usable server (the host renders `monitor fail if { nbsrv(B) lt 1 }`
//!    for every frontend's backend; haproxy 2.6 configuration.txt, `monitor
//!    fail` and `nbsrv`). A 503 counts as a failure only while a peer's
//!    monitor answers 200 (the monitor binds every address so peers can
//!    ask): a load balancer that lost its path to every master gives the VIP
//!    to one that still reaches them (`haseed lab`'s `backends-lost`: 8.2-9.1
//!    s in 4 trials, within haproxy's check window inter x fall = 9 s plus
//!    the watcher's 0.5 s), but when every holder lost them the VIP stays
//!    held (`backends-lost-everywhere`, 5 trials; it may move once, to a peer
//!    whose checks saw the loss up to one `inter` later): nobody could serve,
//!    and a VIP dropped by all would turn clients' immediate refusals into
//!    ARP timeouts (~3 s per connect) and add a master-down interval (3 s)
//!    to the recovery once the backends return. `haproxy_watch = false`
//!    (settings) falls back to the whole-second keepalived check, which then
//!    takes any HTTP answer (no `--fail`): a 503 must not put every holder
//!    in FAULT.
//! 4. keepalived crashing (parent and VRRP child SIGKILLed) leaves the VIP on
//!    the dead node while the peer takes it: a duplicate VIP for ~5 s. The
//!    `keepalived.service` drop-in removes the node's VIPs three adverts
//!    plus 0.1 s (3.1 s with the default 1 s adverts) after keepalived ended
//!    (`ExecStopPost=`; at once caused outages of seconds, the peer had not
//!    taken over yet) and flushes stale ones before it starts (`ExecStartPre=`): duplicate VIP <= 0.5 s, outage <= 21 ms
//!    (field notes, with a 0.5 s delay); `haseed lab`, 10 trials: no failed
//!    probe, duplicate VIP 341-946 ms, 0.1 s plus the phase of the last
//!    advert the peer heard (6.9 s with the reference settings; the earlier
//!    94-163 ms came from a lab kill order that let the VRRP child start a
//!    clean shutdown).
//! 5. Gratuitous ARP every second while MASTER (`garp_master_refresh 1`): a
//!    healed split brain converges in ~0.3 s instead of 6-9 s (field notes;
//!    `haseed lab`, 10 trials: no failed probe after the link returned).
//! 6. Priority 254 with keepalived's 1 s adverts (see `settings.rs`): after a
//!    FAULT advert the peer still waits the skew time
//!    `(256 - priority) / 256 x advert`, 0.6 s at priority 100, 7.8 ms at
//!    254. With `nopreempt` and equal priorities that is safe. The advert
//!    interval stays at 1 s: the failover is event-driven (decisions 1, 4),
//!    and a holder that stalls less than three adverts keeps the VIP
//!    (`haseed lab` scenarios vrrp-stall and node-stall; with 0.1 s adverts
//!    a 250 ms stall moved the VIP).
//! 7. The VIP also stays on `lo` as a /32, with `arp_ignore=1` and
//!    `arp_announce=2` on the VRRP interface (the `keepalived.service`
//!    drop-in's `ExecStartPre=`). Clients learn the new holder's MAC from
//!    its gratuitous ARP a few milliseconds after the old holder dropped the
//!    VIP; a SYN sent in that gap still reaches the old holder. Without the
//!    local VIP it is dropped silently: the lab's probe ran out its 200 ms
//!    timeout in 4 of 10 haproxy-killed trials (a real client waits ~1 s
//!    for its retransmit). With it the old holder answers (its haproxy still
//!    runs: keepalived was stopped) or refuses at once (haproxy is dead),
//!    and the next try goes to the new holder: 10 of 10 trials at 20-41 ms,
//!    twice; keepalived stopped cleanly then loses no probe at all (it lost
//!    one 200 ms probe in 2 of 5 trials before). `arp_ignore=1` keeps the
//!    node from answering ARP for an address that is not on the interface,
//!    so only the holder is ever asked for the VIP (`haseed lab` checks who
//!    answers). Only on plain load balancers: not on AWS, where the EC2 API
//!    moves the VIP, nor on a node with another role (a controller holding
//!    the database VIP), whose own connections to the VIP would stay on the
//!    node whoever holds it.

use crate::haseed::policy::plan::{
    Backend, File, Frontend, HaproxyConfig, NodePlan, VrrpScript, VrrpTrackFile,
};
use crate::haseed::policy::site::{Balance, Platform, ProxyMode, Role};
use crate::Policy;

/// Where haproxy's state lives on the node (an allowed track-file root that
/// survives reboots; the hooks create it).
pub(crate) const STATE_DIR: &str = "/var/lib/haseed";
/// 0: haproxy runs; anything else: it does not.
pub(crate) const TRACK_PATH: &str = "/var/lib/haseed/haproxy-down";
/// The `vrrp_track_file` every instance of this policy tracks.
pub(crate) const TRACK_NAME: &str = "haproxy_down";
/// 0: haproxy answers its monitor URI; 1: it does not (hung), or no backend
/// server of it is usable while a peer's are. Written by the watcher only.
pub(crate) const WATCH_TRACK_PATH: &str = "/var/lib/haseed/haproxy-unhealthy";
pub(crate) const WATCH_TRACK_NAME: &str = "haproxy_unhealthy";
/// With `haproxy_watch = false`: keepalived's HTTP check of a hung haproxy.
pub(crate) const HTTP_CHECK_NAME: &str = "chk_haproxy_http";
/// The watcher: a shell loop around curl (decision 3).
pub(crate) const WATCH_SCRIPT_PATH: &str = "/usr/local/sbin/haseed-haproxy-watch";
pub(crate) const WATCH_SCRIPT: &str = include_str!("haproxy-watch.sh");
pub(crate) const WATCH_UNIT: &str = "haseed-haproxy-watch.service";
pub(crate) const WATCH_UNIT_PATH: &str = "/etc/systemd/system/haseed-haproxy-watch.service";
/// Milliseconds between two questions, each question's timeout, and how
/// many answers in a row change the state (decision 3's measurements).
const WATCH_EVERY_MS: u32 = 100;
const WATCH_TIMEOUT_MS: u32 = 200;
const WATCH_FALL: u32 = 2;
/// haproxy's own health answer, on loopback only.
pub(crate) const MONITOR_NAME: &str = "haseed_monitor";
pub(crate) const MONITOR_URI: &str = "/haseed-alive";
/// The monitor's port: the first one from here that no service uses.
const MONITOR_PORT: u16 = 8404;
pub(crate) const HAPROXY_DROPIN: &str =
    "/etc/systemd/system/haproxy.service.d/50-haseed-failover.conf";
pub(crate) const KEEPALIVED_DROPIN: &str =
    "/etc/systemd/system/keepalived.service.d/50-haseed-failover.conf";
/// Seconds between gratuitous ARPs while MASTER.
const GARP_REFRESH_S: u32 = 1;
/// How long after keepalived ended its VIPs are removed: the peer's VRRP
/// master-down interval (three adverts; the skew is under 1 ms at priority
/// 254) plus a margin, so the peer has taken over (removing them at once
/// caused outages of seconds) but the VIP is held twice only for the margin.
/// 0.4 s with 0.1 s adverts: the lab measured 509 ms of duplicate VIP with a
/// fixed 0.5 s, over the 0.5 s objective.
fn vip_remove_delay(advert_int_ms: u32) -> String {
    let ms = advert_int_ms.saturating_mul(3).saturating_add(100);
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

impl Policy {
    /// Adds the failover decisions to a load balancer's plan, after
    /// `decide_haproxy` and `decide_keepalived`. `held` are the VIPs the node
    /// may hold (site order).
    pub(crate) fn decide_failover(&self, plan: &mut NodePlan, node: usize, held: &[u32]) {
        if !self.settings.failover {
            return;
        }
        let me = &self.site.nodes[node];
        if plan.haproxy.is_none() || plan.keepalived.is_none() {
            return;
        }
        // The watcher's client.
        crate::push_unique(&mut plan.packages, "curl");
        let Some(haproxy) = plan.haproxy.as_mut() else {
            return;
        };
        let port = self.monitor_port(held);
        let watch = self.settings.haproxy_watch;
        add_monitor(haproxy, port, watch);

        let Some(keepalived) = plan.keepalived.as_mut() else {
            return;
        };
        if !keepalived.track_files.iter().any(|t| t.name == TRACK_NAME) {
            keepalived.track_files.push(VrrpTrackFile {
                name: TRACK_NAME.into(),
                path: TRACK_PATH.into(),
                // 0: FAULT at once. A negative weight only lowers the
                // priority, and with nopreempt the VIP then never moves.
                weight: 0,
                // No init_file: see decision 1 (keepalived 2.2.8-2.3.2
                // overwrite an existing file at every start).
                init_value: None,
            });
        }
        if !watch && !keepalived.scripts.iter().any(|s| s.name == HTTP_CHECK_NAME) {
            keepalived.scripts.push(VrrpScript {
                name: HTTP_CHECK_NAME.into(),
                command: http_check_command(port),
                interval_s: 1,
                timeout_s: Some(2),
                rise: 2,
                fall: 2,
                weight: 0,
            });
        }
        if watch
            && !keepalived
                .track_files
                .iter()
                .any(|t| t.name == WATCH_TRACK_NAME)
        {
            keepalived.track_files.push(VrrpTrackFile {
                name: WATCH_TRACK_NAME.into(),
                path: WATCH_TRACK_PATH.into(),
                weight: 0,
                // No init_file (decision 1). A missing file reads as 0, so a
                // watcher that never ran takes nothing away: the node is then
                // as it was without decision 3, not down.
                init_value: None,
            });
        }
        // Our own instances only: one per held VIP, named by the index.
        let mut addresses: Vec<String> = Vec::new();
        for &v in held {
            let name = &self.index.instance_names[v as usize];
            let Some(inst) = keepalived.instances.iter_mut().find(|i| &i.name == name) else {
                continue;
            };
            if !inst.track_files.iter().any(|t| t == TRACK_NAME) {
                inst.track_files.push(TRACK_NAME.into());
            }
            if watch && !inst.track_files.iter().any(|t| t == WATCH_TRACK_NAME) {
                inst.track_files.push(WATCH_TRACK_NAME.into());
            }
            if !watch && !inst.track_scripts.iter().any(|s| s == HTTP_CHECK_NAME) {
                inst.track_scripts.push(HTTP_CHECK_NAME.into());
            }
            inst.garp_master_refresh_s.get_or_insert(GARP_REFRESH_S);
            for a in &inst.addresses {
                if !addresses.contains(a) {
                    addresses.push(a.clone());
                }
            }
        }
        // The other holders of this node's VIPs, whose monitors the watcher
        // asks before it gives a VIP up for lost backends.
        let mut peers: Vec<String> = Vec::new();
        for &v in held {
            for &h in &self.site.vips[v as usize].holders {
                let a = &self.site.nodes[h as usize].address;
                if h as usize != node && !peers.contains(a) {
                    peers.push(a.clone());
                }
            }
        }
        add_file(plan, HAPROXY_DROPIN, haproxy_dropin());
        add_file(
            plan,
            KEEPALIVED_DROPIN,
            keepalived_dropin(
                &addresses,
                &me.interface,
                self.settings.advert_int_ms,
                // In a VPC the VIP moves through the EC2 API: the network
                // stops sending it to the old holder at once. A node with
                // another role may use the VIP itself (a controller, the
                // database VIP): a local VIP would keep its own connections
                // on the node, whatever holds the VIP.
                me.platform != Platform::Aws && me.roles.iter().all(|r| *r == Role::Lb),
            ),
        );
        if !watch {
            return;
        }
        if !plan.files.iter().any(|f| f.path == WATCH_SCRIPT_PATH) {
            plan.files.push(File {
                path: WATCH_SCRIPT_PATH.into(),
                mode: 0o755,
                owner: "root:root".into(),
                content: WATCH_SCRIPT.into(),
            });
        }
        add_file(plan, WATCH_UNIT_PATH, watch_unit(port, &peers));
        crate::push_unique(&mut plan.services, WATCH_UNIT);
    }

    /// The first port from `MONITOR_PORT` no service of the node listens on.
    fn monitor_port(&self, held: &[u32]) -> u16 {
        let taken = |p: u16| {
            held.iter().any(|&v| {
                self.index.services_of[v as usize].iter().any(|&s| {
                    let s = &self.site.services[s as usize];
                    (s.port_first..=s.port_last).contains(&p)
                })
            })
        };
        (MONITOR_PORT..=u16::MAX)
            .find(|&p| !taken(p))
            .unwrap_or(MONITOR_PORT)
    }
}

/// A loopback-only HTTP frontend answered by haproxy itself (`monitor-uri`),
/// with an empty backend of its own (a frontend needs one of its mode).
fn add_monitor(haproxy: &mut HaproxyConfig, port: u16, peers_ask: bool) {
    if !haproxy.frontends.iter().any(|f| f.name == MONITOR_NAME) {
        haproxy.frontends.push(Frontend {
            name: MONITOR_NAME.into(),
            // Every address when the peers' watchers ask it too (decision 3).
            bind_address: (!peers_ask).then(|| "127.0.0.1".into()),
            port_first: port,
            port_last: port,
            mode: ProxyMode::Http,
            backend: MONITOR_NAME.into(),
            options: Vec::new(),
            monitor_uri: Some(MONITOR_URI.into()),
        });
    }
    if !haproxy.backends.iter().any(|b| b.name == MONITOR_NAME) {
        haproxy.backends.push(Backend {
            name: MONITOR_NAME.into(),
            mode: ProxyMode::Http,
            balance: Balance::Roundrobin,
            options: Vec::new(),
            http_check: None,
            servers: Vec::new(),
        });
    }
}

/// `curl` fails on a refused connection and a timeout (a hung haproxy); any
/// HTTP answer passes: a 503 for lost backends would put every load balancer
/// that lost them in FAULT, all of them when every one did (the watcher asks
/// the peers first).
fn http_check_command(port: u16) -> Vec<String> {
    [
        "/usr/bin/curl",
        "--silent",
        "--output",
        "/dev/null",
        "--max-time",
        "1",
    ]
    .iter()
    .map(|w| w.to_string())
    .chain([format!("http://127.0.0.1:{port}{MONITOR_URI}")])
    .collect()
}

/// The watcher's argv (`haproxy-watch.sh` says what each word is).
pub(crate) fn watch_command(port: u16, peers: &[String]) -> Vec<String> {
    [
        WATCH_SCRIPT_PATH.to_string(),
        port.to_string(),
        MONITOR_URI.into(),
        WATCH_TRACK_PATH.into(),
        WATCH_EVERY_MS.to_string(),
        WATCH_TIMEOUT_MS.to_string(),
        WATCH_FALL.to_string(),
    ]
    .into_iter()
    .chain(peers.iter().cloned())
    .collect()
}

/// The watcher's unit: started after haproxy, restarted whenever it ends.
fn watch_unit(port: u16, peers: &[String]) -> String {
    format!(
        "# Generated by haseed (default policy, event-driven failover).\n\
         # Writes {WATCH_TRACK_PATH} (keepalived track_file, weight 0): 1 when haproxy\n\
         # does not answer its monitor URI, or has no usable server while a peer has.\n\
         [Unit]\n\
         Description=haseed: haproxy's monitor URI watched for keepalived\n\
         After=haproxy.service\n\
         \n\
         [Service]\n\
         ExecStart={}\n\
         Restart=always\n\
         RestartSec=1\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        watch_command(port, peers).join(" ")
    )
}

/// The `haproxy.service` drop-in: marks haproxy down before it starts, up
/// once it is ready and down however it ended.
fn haproxy_dropin() -> String {
    format!(
        "# Generated by haseed (default policy, event-driven failover).\n\
         # keepalived tracks {TRACK_PATH} (track_file, weight 0): 0 = haproxy up.\n\
         # ExecStartPre makes it exist, saying down, before keepalived (After=haproxy) reads it.\n\
         # ExecStopPost runs however haproxy ended, SIGKILL included.\n\
         [Service]\n\
         ExecStartPre=/bin/sh -c 'mkdir -p {STATE_DIR} && echo 1 > {TRACK_PATH}'\n\
         ExecStartPost=/bin/sh -c 'mkdir -p {STATE_DIR} && echo 0 > {TRACK_PATH}'\n\
         ExecStopPost=/bin/sh -c 'mkdir -p {STATE_DIR} && echo 1 > {TRACK_PATH}'\n"
    )
}

/// The `keepalived.service` drop-in: start after haproxy, flush stale VIPs
/// before starting, remove this node's VIPs shortly after keepalived ended.
fn keepalived_dropin(
    addresses: &[String],
    interface: &str,
    advert_int_ms: u32,
    local_vip: bool,
) -> String {
    let delay = vip_remove_delay(advert_int_ms);
    let del: Vec<String> = addresses
        .iter()
        .map(|a| format!("ip addr del {a} dev {interface} 2>/dev/null"))
        .collect();
    let mut text = format!(
        "# Generated by haseed (default policy, event-driven failover).\n\
         [Unit]\n\
         # haproxy's start hook has written {TRACK_PATH} before keepalived reads it.\n\
         After=haproxy.service\n\
         \n\
         [Service]\n\
         # A track file whose directory is missing is dropped silently.\n\
         ExecStartPre=/bin/mkdir -p {STATE_DIR}\n"
    );
    // IPv4 only: ARP is what lets a client keep sending to the old holder.
    let local: Vec<String> = addresses
        .iter()
        .filter_map(|a| a.split('/').next())
        .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .map(|a| format!("ip addr replace {a}/32 dev lo"))
        .collect();
    if local_vip && !local.is_empty() {
        // sysctl's `/` form: an interface name may contain dots (eth0.10).
        // `-`: keepalived starts even if this fails; `&&`: no VIP on lo
        // unless ARP for it is ignored on the interface.
        text.push_str(&format!(
            "# The VIP stays local on lo, never answered in ARP on {interface}: a client\n\
             # that still sends to this node after the VIP moved gets an answer or an\n\
             # immediate refusal, not a dropped SYN it would retransmit after ~1 s.\n\
             ExecStartPre=-/bin/sh -c 'sysctl -q -w net/ipv4/conf/{interface}/arp_ignore=1 \
             net/ipv4/conf/{interface}/arp_announce=2 && {}'\n",
            local.join(" && ")
        ));
    }
    if !del.is_empty() {
        let del = del.join("; ");
        text.push_str(&format!(
            "# VIPs left by a crashed keepalived.\n\
             ExecStartPre=/bin/sh -c '{del}; true'\n\
             # A killed keepalived leaves its VIPs; remove them once the peer has them.\n\
             ExecStopPost=/bin/sh -c 'sleep {delay}; {del}; true'\n"
        ));
    }
    text
}

/// Adds a root-owned file unless the plan already writes that path.
fn add_file(plan: &mut NodePlan, path: &str, content: String) {
    if !plan.files.iter().any(|f| f.path == path) {
        plan.files.push(File {
            path: path.into(),
            mode: 0o644,
            owner: "root:root".into(),
            content,
        });
    }
}

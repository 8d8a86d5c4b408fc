//! The `db` part of a node's plan: MariaDB with Galera, every db node of the
//! site one cluster.
//!
//! - Packages `mariadb-server`, `galera-4` and what the SST method needs
//!   (`mariadb-backup`, or `rsync` with `galera_sst = "rsync"`); `curl` on
//!   the first db node, whose bootstrap script asks its peers.
//! - `/etc/mysql/mariadb.conf.d/99-haseed-galera.cnf` (read after Debian's
//!   50-server.cnf and 60-galera.cnf, so it wins): `bind-address` = the node's
//!   address (the node may also hold the database VIP, where haproxy binds
//!   the VIP on the same port), `binlog_format=ROW`,
//!   `innodb_autoinc_lock_mode=2`, the provider of Debian's galera-4
//!   (`/usr/lib/galera/libgalera_smm.so`), `wsrep_cluster_address =
//!   gcomm://` + every db node's address (inventory order), the cluster name
//!   (setting `galera_cluster_name`, default the site's name), the node's
//!   address and name, the SST method and its account. It is owned
//!   `root:mysql` (0640), so the host writes it after the packages are
//!   installed (cloud-init `defer`): the package's first start is a plain
//!   standalone server, not a Galera node looking for peers that are not
//!   there yet.
//! - The first db node (inventory order) starts MariaDB through
//!   `haseed-galera-bootstrap.service` (`/usr/local/sbin/haseed-galera-bootstrap`,
//!   its site facts in `/etc/default/haseed-galera`), which joins a running
//!   cluster and starts a new one only for a new site ("Bootstrap" below);
//!   it leaves the marker `/var/lib/haseed/galera-bootstrapped` once MariaDB
//!   was started either way (the unit is skipped once it exists). The other
//!   nodes restart `mariadb` and join; a drop-in gives `mariadb.service`
//!   `Restart=on-failure` every 15 s so a node that came up before the
//!   cluster existed joins when it can.
//! - A health endpoint for haproxy: `haseed-galera-health.socket` listens on
//!   port 9200 (`Accept=yes`) and runs `/usr/local/sbin/haseed-galera-health`
//!   per connection as user `mysql` (unix_socket authentication, no
//!   password): HTTP 200 when `wsrep_local_state_comment` is `Synced`, 503
//!   otherwise (joining, donor, desynced, server down). No xinetd. Every
//!   answer also carries `X-Haseed-Galera-State:` with the cluster state
//!   UUID of the node's `grastate.dat`, or `none` when the node never was in
//!   a cluster: what the first node's bootstrap asks its peers.
//! - Time sync like the controllers' (`controller.rs`).
//!
//! # Bootstrap: a new cluster only for a new site
//!
//! `galera_new_cluster` (MariaDB's script: `--wsrep-new-cluster`, i.e.
//! Galera's `pc.bootstrap`) makes a node a one-node Primary component with a
//! new cluster state UUID. MariaDB's manual page says to use it "to bootstrap
//! a new Galera Cluster when all nodes are down", on the first node only
//! (galera_new_cluster(1), MariaDB 10.11 and 11.8). Run anywhere else it
//! forks the cluster: haseed before issue 19 ran it whenever db1's marker
//! file was missing, so a re-flashed db1 started an empty one-node cluster
//! next to db2 and db3 (which hold the data), reported Synced on 9200 and,
//! being haproxy's only non-backup server, took every write.
//!
//! The rules the bootstrap script follows, first boot of db1 and by hand:
//!
//! 1. A node that holds cluster state (`grastate.dat` names a non-zero
//!    UUID) never starts a new cluster here: it starts MariaDB, which rejoins
//!    a running peer (IST or SST) or, after the whole cluster went down
//!    uncleanly, recovers the last Primary component by itself once every
//!    member of it is back (Galera's `pc.recovery`, a provider option that
//!    is on by default: the last Primary view is saved in `gvwstate.dat`). After a clean shutdown of every node,
//!    restarting is the operator's: MariaDB's documented recovery is to
//!    find the most advanced node (`safe_to_bootstrap: 1` in grastate.dat,
//!    else the highest `seqno` from `mariadbd --wsrep-recover`) and run
//!    `galera_new_cluster` there (MariaDB docs, Galera Cluster, "Resetting
//!    the Quorum (Cluster Bootstrap)": the "Safe-to-Bootstrap" feature; a
//!    sudden crash of every node leaves every node unsafe and needs a person;
//!    "Bootstrap a Galera Cluster" for `galera_new_cluster`). kolla-ansible
//!    does the same: a deploy refuses a cluster that exists but is stopped
//!    and asks for `kolla-ansible mariadb-recovery`, which picks the node
//!    with the highest seqno and sets `safe_to_bootstrap: 1` there
//!    (ansible/roles/mariadb/tasks/lookup_cluster.yml and
//!    recover_cluster.yml at 1a681814).
//! 2. A fresh node asks every other db node's health endpoint (port 9200,
//!    `curl --connect-timeout 2 --max-time 4` each, every 5 s for at most
//!    `HASEED_GALERA_WAIT`, 600 s): a peer answering 200 (Synced, so in a
//!    Primary component) or naming a cluster state UUID means a cluster
//!    exists: the node starts MariaDB to join it (`systemctl restart
//!    --no-block`: an SST may take longer than the unit should wait), never
//!    a new cluster. This is the re-flashed db1 whose peers run: it joins
//!    by SST. Port 4567 (Galera's group channel) is no such signal: a fresh
//!    peer listens there too while it waits for a Primary component, so
//!    "join when 4567 answers" deadlocks a new site (every node waiting to
//!    join); port 3306 answers on a node that is not Primary.
//! 3. No peer Synced and none with state: a new cluster only when the
//!    operator said so, once:
//!    - `galera_bootstrap = "manual"` (the default): the unit fails after
//!      the wait, saying so; the operator runs `haseed-galera-bootstrap
//!      --new-cluster` on db1, which refuses while a peer is Synced or
//!      holds state, warns about every peer that did not answer, and runs
//!      `galera_new_cluster`.
//!    - `galera_bootstrap = "new-site"`: db1 bootstraps by itself only when
//!      every other db node answered and none holds state: the db nodes of
//!      a new site, booting together, each with a fresh datadir. A peer that
//!      stays silent (powered off, maybe holding the data) stops it, as in
//!      "manual". It fires once: as soon as the cluster exists every node's
//!      grastate.dat names it, so the setting may stay in the site.
//!
//! kolla-ansible decides the same way on the deploy host: it bootstraps only
//! when no db host had a data volume before (`mariadb_cluster_exists`,
//! lookup_cluster.yml at 1a68181), the counterpart of rule 3's "none holds
//! state".
//!
//! # SST: mariabackup by default
//!
//! `rsync` SST makes the donor run FLUSH TABLES WITH READ LOCK for the
//! whole copy (writes on it block) and sends the datadir in the clear;
//! `mariabackup` copies while the donor keeps serving (MariaDB docs,
//! "mariadb-backup SST Method": "one of the methods that does not block the
//! donor node"). kolla-ansible defaults to it (`mariadb_wsrep_sst_method:
//! "mariabackup"`, ansible/roles/mariadb/defaults/main.yml at 1a68181).
//! mariabackup must log in on the donor; the SST script runs as the server's
//! OS user (`User=mysql` in Debian's mariadb.service) and passes
//! `wsrep_sst_auth`'s user to mariadb-backup (`--user`, no password when
//! the part after `:` is empty: wsrep_sst_mariabackup in 10.11). Debian's
//! postinst runs `mariadb-install-db --user=mysql`, which creates
//! `mysql@localhost` identified via unix_socket with every privilege, next
//! to root's (Debian 12's 10.11 postinst; MariaDB/server
//! debian/mariadb-server.postinst at 00a8c49a for the 11.x packaging Debian
//! 13's 11.8 follows). So `wsrep_sst_auth = mysql:` needs no password on
//! disk. A joiner's datadir is the donor's copy, accounts included, so the
//! account exists on every node that ever joined. The transfer itself is
//! still unencrypted unless the site adds TLS (`[sst]` `encrypt`, a site
//! plugin's own cnf). `galera_sst = "rsync"` keeps the old method; mixing
//! methods in one cluster fails (donor and joiner must agree).
//!
//! Cost: the cluster address and the peer list are built once per build
//! (`open`), O(db nodes).

use crate::haseed::policy::plan::{File, NodePlan};
use crate::haseed::policy::site::{Node, Role, Site};
use crate::master::push_file;
use crate::settings::GaleraSst;
use crate::{haproxy, push_unique, Policy};

pub(crate) const GALERA_CNF_PATH: &str = "/etc/mysql/mariadb.conf.d/99-haseed-galera.cnf";
/// Debian's galera-4 (bookworm, trixie): a link to /usr/lib/libgalera_smm.so.
pub(crate) const GALERA_PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";
pub(crate) const HEALTH_SCRIPT_PATH: &str = "/usr/local/sbin/haseed-galera-health";
pub(crate) const HEALTH_SOCKET: &str = "haseed-galera-health.socket";
const HEALTH_SOCKET_PATH: &str = "/etc/systemd/system/haseed-galera-health.socket";
const HEALTH_SERVICE_PATH: &str = "/etc/systemd/system/haseed-galera-health@.service";
pub(crate) const BOOTSTRAP_SCRIPT_PATH: &str = "/usr/local/sbin/haseed-galera-bootstrap";
pub(crate) const BOOTSTRAP_UNIT: &str = "haseed-galera-bootstrap.service";
const BOOTSTRAP_UNIT_PATH: &str = "/etc/systemd/system/haseed-galera-bootstrap.service";
const MARIADB_DROPIN_PATH: &str = "/etc/systemd/system/mariadb.service.d/haseed-galera.conf";
/// The first db node's site facts for its bootstrap script.
pub(crate) const BOOTSTRAP_CONF_PATH: &str = "/etc/default/haseed-galera";
/// How long the first boot waits for the peers to answer (s): the db nodes
/// of a new site install their packages at about the same time.
const BOOTSTRAP_WAIT_S: u32 = 600;

/// Answers one HTTP request on stdin/stdout (systemd socket, Accept=yes).
/// POSIX sh; checked by shellcheck in the tests.
pub(crate) const HEALTH_SCRIPT: &str = r#"#!/bin/sh
# Generated by haseed. Galera health for haproxy, one HTTP request per run
# (haseed-galera-health.socket, port 9200): 200 when this node's
# wsrep_local_state_comment is Synced, 503 otherwise. X-Haseed-Galera-State
# names the cluster state UUID of grastate.dat (none: never in a cluster),
# for the first db node's bootstrap (haseed-galera-bootstrap).
set -u
cr=$(printf '\r')
# Read the request up to its empty line, so closing does not reset it.
n=0
while [ "$n" -lt 100 ] && IFS= read -r line; do
    n=$((n + 1))
    case $line in
    '' | "$cr") break ;;
    esac
done
state=$(timeout 5 mariadb --connect-timeout=3 --skip-column-names --batch \
    -e "SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'" 2>/dev/null | cut -f 2)
if [ "$state" = "Synced" ]; then
    status='200 OK'
    body='Galera node is Synced.'
else
    status='503 Service Unavailable'
    body="Galera node is not synced (${state:-no answer from MariaDB})."
fi
datadir=${HASEED_GALERA_DATADIR:-/var/lib/mysql}
uuid=$(sed -n 's/^uuid:[[:space:]]*//p' "$datadir/grastate.dat" 2>/dev/null | head -n 1)
case $uuid in
'' | 00000000-0000-0000-0000-000000000000) cluster=none ;;
*[!0-9a-f-]*) cluster=unreadable ;;
*) cluster=$uuid ;;
esac
printf 'HTTP/1.1 %s\r\nContent-Type: text/plain\r\nConnection: close\r\nX-Haseed-Galera-State: %s\r\nContent-Length: %s\r\n\r\n%s\n' \
    "$status" "$cluster" "$((${#body} + 1))" "$body"
"#;

const HEALTH_SOCKET_TEXT: &str = "# Generated by haseed. Galera health for haproxy.\n\
[Unit]\n\
Description=Galera health endpoint for haproxy on port 9200 (haseed)\n\
\n\
[Socket]\n\
ListenStream=9200\n\
Accept=yes\n\
MaxConnections=64\n\
\n\
[Install]\n\
WantedBy=sockets.target\n";

const HEALTH_SERVICE_TEXT: &str =
    "# Generated by haseed. One health request (haseed-galera-health.socket).\n\
[Unit]\n\
Description=Galera health check (haseed)\n\
\n\
[Service]\n\
ExecStart=/usr/local/sbin/haseed-galera-health\n\
StandardInput=socket\n\
StandardOutput=socket\n\
StandardError=journal\n\
User=mysql\n\
RuntimeMaxSec=10\n";

/// Starts MariaDB on the first db node at its first boot: joins, or starts
/// a new cluster only for a new site (module docs, "Bootstrap"). POSIX sh;
/// checked by shellcheck and run against fake peers and a fake systemctl
/// in the tests, and for real in the two-node Galera test.
pub(crate) const BOOTSTRAP_SCRIPT: &str = r#"#!/bin/sh
# Generated by haseed. Starts MariaDB on the first db node so that it joins
# the site's Galera cluster; starts a new cluster only for a new site.
#   haseed-galera-bootstrap                at first boot (haseed-galera-bootstrap.service)
#   haseed-galera-bootstrap --new-cluster  the operator's one-shot bootstrap of a new site
# Never a new cluster while a peer is Synced or holds cluster state, nor on a
# node that holds state itself: that would fork the cluster. Site facts in
# /etc/default/haseed-galera; decisions in the default policy's db.rs.
set -eu
conf=${HASEED_GALERA_CONF:-/etc/default/haseed-galera}
# shellcheck source=/dev/null
. "$conf"
peers=${HASEED_GALERA_PEERS:-}
mode=${HASEED_GALERA_BOOTSTRAP:-manual}
wait_s=${HASEED_GALERA_WAIT:-600}
datadir=${HASEED_GALERA_DATADIR:-/var/lib/mysql}
marker=${HASEED_GALERA_MARKER:-/var/lib/haseed/galera-bootstrapped}
me=haseed-galera-bootstrap

case ${1:-} in
'') operator=no ;;
--new-cluster) operator=yes ;;
*)
    echo "usage: $me [--new-cluster]" >&2
    exit 2
    ;;
esac

say() {
    echo "$me: $*" >&2
}

mark() {
    mkdir -p "$(dirname "$marker")"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$marker"
}

# This node's cluster state UUID (grastate.dat), or none.
local_state() {
    uuid=$(sed -n 's/^uuid:[[:space:]]*//p' "$datadir/grastate.dat" 2>/dev/null | head -n 1)
    case $uuid in
    '' | 00000000-0000-0000-0000-000000000000) echo none ;;
    *) echo "$uuid" ;;
    esac
}

# One peer's health endpoint: synced, fresh, "state UUID" or silent.
probe() {
    case $1 in
    *:*) url="http://[$1]:9200/" ;;
    *) url="http://$1:9200/" ;;
    esac
    reply=$(curl -s -i --connect-timeout 2 --max-time 4 "$url" 2>/dev/null | tr -d '\r') || true
    case $reply in
    'HTTP/1.1 200 '*)
        echo synced
        return
        ;;
    'HTTP/1.1 '*) ;;
    *)
        echo silent
        return
        ;;
    esac
    state=$(printf '%s\n' "$reply" | sed -n 's/^X-Haseed-Galera-State: //p' | head -n 1)
    case $state in
    none) echo fresh ;;
    *) echo "state ${state:-unknown}" ;;
    esac
}

join() {
    say "$1: starting MariaDB to join the cluster, not a new one"
    # --no-block: a state transfer may take longer than this unit waits;
    # mariadb.service's own timeout and restarts govern it.
    systemctl restart --no-block mariadb.service
    mark
}

new_cluster() {
    say "$1: starting a new Galera cluster from this node (galera_new_cluster)"
    galera_new_cluster
    mark
}

mine=$(local_state)
if [ "$mine" != none ]; then
    if [ "$operator" = yes ]; then
        say "this node holds cluster state $mine: --new-cluster is for a new site only." \
            "To restart a cluster whose nodes are all down, run galera_new_cluster on the" \
            "most advanced node (safe_to_bootstrap: 1 in its grastate.dat)."
        exit 1
    fi
    join "this node holds cluster state $mine"
    exit 0
fi
if [ -z "$peers" ]; then
    wait_s=0
fi
deadline=$(($(date +%s) + wait_s))
while :; do
    holding=''
    silent=''
    for peer in $peers; do
        answer=$(probe "$peer")
        case $answer in
        synced)
            if [ "$operator" = yes ]; then
                say "refusing --new-cluster: $peer is Synced, a cluster runs; start MariaDB to join it"
                exit 1
            fi
            join "$peer is Synced"
            exit 0
            ;;
        state\ *) holding="$holding $peer (${answer#state })" ;;
        fresh) ;;
        *) silent="$silent $peer" ;;
        esac
    done
    if [ -n "$holding" ]; then
        if [ "$operator" = yes ]; then
            say "refusing --new-cluster: peers hold cluster state:$holding"
            exit 1
        fi
        join "peers hold cluster state:$holding"
        exit 0
    fi
    if [ "$operator" = yes ]; then
        if [ -n "$silent" ]; then
            say "warning: no answer from$silent; bootstrapping as told"
        fi
        new_cluster "--new-cluster, no peer Synced or holding cluster state"
        exit 0
    fi
    if [ "$mode" = new-site ] && [ -z "$silent" ]; then
        new_cluster "new site: every peer answered and none holds cluster state"
        exit 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        if [ "$mode" = new-site ]; then
            say "no Galera cluster found and no answer from$silent after ${wait_s} s:" \
                "not starting a new cluster while a peer may hold the data."
        else
            say "no Galera cluster found among the peers ($peers) after ${wait_s} s."
        fi
        say "If this is a new site, run '$me --new-cluster' on this node once;" \
            "if the cluster was stopped, start it from its most advanced node (galera_new_cluster)."
        exit 1
    fi
    sleep 5
done
"#;

const BOOTSTRAP_UNIT_TEXT: &str =
    "# Generated by haseed. The first db node joins the Galera cluster, or starts it for a new site.\n\
[Unit]\n\
Description=Start MariaDB in the site's Galera cluster at first boot (haseed)\n\
Wants=network-online.target\n\
After=network-online.target\n\
ConditionPathExists=!/var/lib/haseed/galera-bootstrapped\n\
\n\
[Service]\n\
# simple: it waits for its peers up to HASEED_GALERA_WAIT; cloud-init's\n\
# runcmd does not wait with it.\n\
Type=simple\n\
ExecStart=/usr/local/sbin/haseed-galera-bootstrap\n\
RemainAfterExit=yes\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n";

const MARIADB_DROPIN_TEXT: &str =
    "# Generated by haseed. A Galera node that found no cluster yet tries again.\n\
[Service]\n\
Restart=on-failure\n\
RestartSec=15s\n";

/// `0o644`: world-readable configuration.
const MODE_PUBLIC: u32 = 0o644;
/// `0o755`: a script.
const MODE_SCRIPT: u32 = 0o755;

/// The site's Galera cluster, indexed once per build.
pub(crate) struct Galera {
    /// `gcomm://` + every db node's address, inventory order.
    address: String,
    /// Every db node's address, inventory order: the first node's peers.
    addresses: Vec<String>,
    /// The node that bootstraps the cluster: the first db node.
    first: u32,
    /// How many db nodes there are.
    size: usize,
    name: String,
}

impl Galera {
    /// None when the site has no db node.
    pub(crate) fn build(site: &Site, name: String) -> Option<Galera> {
        let mut first = None;
        let mut address = String::from("gcomm://");
        let mut size = 0;
        let mut addresses = Vec::new();
        for (i, node) in site.nodes.iter().enumerate() {
            if !node.roles.contains(&Role::Db) {
                continue;
            }
            first.get_or_insert(i as u32);
            if size > 0 {
                address.push(',');
            }
            if haproxy::is_ipv6(&node.address) {
                address.push_str(&format!("[{}]", node.address));
            } else {
                address.push_str(&node.address);
            }
            addresses.push(node.address.clone());
            size += 1;
        }
        Some(Galera {
            address,
            addresses,
            first: first?,
            size,
            name,
        })
    }
}

impl Policy {
    /// MariaDB + Galera, the bootstrap on the first node, the health endpoint.
    pub(crate) fn decide_db(&self, plan: &mut NodePlan, index: usize, me: &Node) {
        let Some(galera) = &self.galera else {
            return;
        };
        let sst = self.settings.galera_sst;
        let first = index as u32 == galera.first;
        for package in ["mariadb-server", "galera-4", sst.package()] {
            push_unique(&mut plan.packages, package);
        }
        if first {
            // The bootstrap asks the peers' health endpoints over HTTP.
            push_unique(&mut plan.packages, "curl");
        }
        if galera.size < 3 {
            plan.warnings.push(format!(
                "Galera cluster {} has {} db node(s): it survives the loss of a node only with 3 or more",
                galera.name, galera.size
            ));
        }
        let cnf = format!(
            "# Generated by haseed for node {node} (site {site}). Every db node of the site is one Galera cluster.\n\
             [mysqld]\n\
             bind-address = {address}\n\
             binlog_format = ROW\n\
             default_storage_engine = InnoDB\n\
             innodb_autoinc_lock_mode = 2\n\
             \n\
             [galera]\n\
             wsrep_on = ON\n\
             wsrep_provider = {GALERA_PROVIDER}\n\
             wsrep_cluster_name = {name}\n\
             wsrep_cluster_address = {cluster}\n\
             wsrep_node_address = {address}\n\
             wsrep_node_name = {node}\n\
             wsrep_sst_method = {sst}\n{auth}",
            node = me.name,
            site = self.site.name,
            address = me.address,
            name = galera.name,
            cluster = galera.address,
            sst = sst.method(),
            // MariaDB's own account for the server's OS user, through
            // unix_socket: no password on disk (module docs, "SST").
            auth = match sst {
                GaleraSst::Mariabackup => "wsrep_sst_auth = mysql:\n",
                GaleraSst::Rsync => "",
            },
        );
        if !plan.files.iter().any(|f| f.path == GALERA_CNF_PATH) {
            plan.files.push(File {
                path: GALERA_CNF_PATH.into(),
                mode: 0o640,
                // Group mysql exists once mariadb-server is installed: the
                // host writes the file after the packages (see module docs).
                owner: "root:mysql".into(),
                content: cnf,
            });
        }
        push_file(
            plan,
            MARIADB_DROPIN_PATH,
            MODE_PUBLIC,
            MARIADB_DROPIN_TEXT.into(),
        );
        push_file(plan, HEALTH_SCRIPT_PATH, MODE_SCRIPT, HEALTH_SCRIPT.into());
        push_file(
            plan,
            HEALTH_SOCKET_PATH,
            MODE_PUBLIC,
            HEALTH_SOCKET_TEXT.into(),
        );
        push_file(
            plan,
            HEALTH_SERVICE_PATH,
            MODE_PUBLIC,
            HEALTH_SERVICE_TEXT.into(),
        );
        if first {
            let peers: Vec<&str> = galera
                .addresses
                .iter()
                .filter(|a| **a != me.address)
                .map(String::as_str)
                .collect();
            push_file(
                plan,
                BOOTSTRAP_CONF_PATH,
                MODE_PUBLIC,
                format!(
                    "# Generated by haseed for node {node} (site {site}). Read by {BOOTSTRAP_SCRIPT_PATH}.\n\
                     # The other db nodes, whose health endpoints (port 9200) it asks.\n\
                     HASEED_GALERA_PEERS=\"{peers}\"\n\
                     # manual: only the operator starts a new cluster ({BOOTSTRAP_SCRIPT_PATH} --new-cluster);\n\
                     # new-site: this node does when every peer answers and none holds cluster state.\n\
                     HASEED_GALERA_BOOTSTRAP={mode}\n\
                     # Seconds the first boot waits for the peers.\n\
                     HASEED_GALERA_WAIT={BOOTSTRAP_WAIT_S}\n",
                    node = me.name,
                    site = self.site.name,
                    peers = peers.join(" "),
                    mode = self.settings.galera_bootstrap.word(),
                ),
            );
            push_file(
                plan,
                BOOTSTRAP_SCRIPT_PATH,
                MODE_SCRIPT,
                BOOTSTRAP_SCRIPT.into(),
            );
            push_file(
                plan,
                BOOTSTRAP_UNIT_PATH,
                MODE_PUBLIC,
                BOOTSTRAP_UNIT_TEXT.into(),
            );
            // Not `mariadb` itself: the bootstrap decides between joining
            // and a new cluster, and starts it.
            push_unique(&mut plan.services, BOOTSTRAP_UNIT);
        } else {
            push_unique(&mut plan.services, "mariadb");
        }
        push_unique(&mut plan.services, HEALTH_SOCKET);
    }
}

"""The plain Jinja2 script a user could write instead of `haseed build` (issue 19 item 9).

Reads the same site.toml, renders per node what a hand-rolled generator would: keepalived.conf
and haproxy.cfg on the load balancers (every master a server), and for every node cloud-init's
user-data (hostname, user with SSH keys, packages, sysctls, the node's files inlined as
write_files), meta-data and network-config; writes one directory per node and a SITE.tar.gz of
the tree with Python's defaults (tarfile's gzip level 9). No checks, no plugins, no sandbox.

    python3 baseline.py SITE.toml OUT_DIR
"""

import os
import sys
import tarfile
import tomllib

import jinja2

ENV = jinja2.Environment(keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)

KEEPALIVED = ENV.from_string("""global_defs {
    enable_script_security
    script_user root
}

vrrp_script chk_haproxy {
    script "/usr/bin/killall -0 haproxy"
    interval 1
    fall 3
}

{% for vip in vips %}
vrrp_instance VI_{{ vip.name }} {
    state BACKUP
    nopreempt
    interface {{ iface }}
    virtual_router_id {{ loop.index }}
    priority 254
    advert_int 1
    virtual_ipaddress {
        {{ vip.address }}/{{ prefix }}
    }
    track_script {
        chk_haproxy
    }
}
{% endfor %}
""")

HAPROXY = ENV.from_string("""global
    log /dev/log local0
    chroot /var/lib/haproxy
    stats socket /run/haproxy/admin.sock mode 660 level admin
    user haproxy
    group haproxy
    daemon

defaults
    log global
    mode tcp
    option tcplog
    retries 6
    timeout connect 3000ms
    timeout client 3600000ms
    timeout server 3600000ms

{% for svc in services %}
frontend {{ svc.name }}
    bind *:{{ svc.port }}
    default_backend {{ svc.name }}

backend {{ svc.name }}
    balance roundrobin
{% for s in svc.servers %}
    server {{ s.name }} {{ s.address }}:{{ svc.backend_port }} check inter 3000ms rise 30 fall 3
{% endfor %}
{% endfor %}
""")

USER_DATA = ENV.from_string("""#cloud-config
hostname: {{ node.name }}
fqdn: {{ node.name }}
manage_etc_hosts: true
users:
  - name: {{ user }}
    groups: [adm, sudo]
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys:
{% for k in keys %}
      - {{ k }}
{% endfor %}
package_update: true
packages:
{% for p in packages %}
  - {{ p }}
{% endfor %}
write_files:
  - path: /etc/sysctl.d/90-site.conf
    permissions: "0644"
    content: |
      net.ipv4.ip_forward = 1
      net.bridge.bridge-nf-call-iptables = 1
{% for f in files %}
  - path: {{ f.path }}
    permissions: "0644"
    content: |
{% for line in f.content.splitlines() %}
      {{ line }}
{% endfor %}
{% endfor %}
runcmd:
  - [sysctl, --system]
{% for s in services %}
  - [systemctl, enable, --now, {{ s }}]
{% endfor %}
""")

NETWORK = ENV.from_string("""version: 2
ethernets:
  {{ iface }}:
    addresses: [{{ node.address }}/{{ prefix }}]
    routes:
      - to: default
        via: {{ gateway }}
    nameservers:
      addresses: [{{ dns | join(", ") }}]
""")

META = ENV.from_string("instance-id: {{ site }}-{{ node.name }}\nlocal-hostname: {{ node.name }}\n")


def main():
    site_path, out = sys.argv[1], sys.argv[2]
    with open(site_path, "rb") as f:
        site = tomllib.load(f)
    d = site.get("defaults", {})
    net = site["network"][0]
    prefix = net["cidr"].split("/")[1]
    nodes = site["node"]
    by_name = {n["name"]: n for n in nodes}
    masters = [n for n in nodes if "master" in n["roles"]]
    services = []
    for s in site.get("service", []):
        if "port" not in s:
            continue
        role = s["backend_role"]
        servers = [n for n in nodes if role in n["roles"]]
        services.append(dict(name=s["name"], port=s["port"],
                             backend_port=s.get("backend_port", s["port"]), servers=servers))
    name = site["site"]["name"]
    os.makedirs(out, exist_ok=True)
    for n in nodes:
        files, packages, units = [], ["curl"], []
        if "lb" in n["roles"]:
            files.append(dict(path="/etc/keepalived/keepalived.conf", content=KEEPALIVED.render(
                vips=site.get("vip", []), iface=d.get("interface", "eth0"), prefix=prefix)))
            files.append(dict(path="/etc/haproxy/haproxy.cfg", content=HAPROXY.render(services=services)))
            packages += ["haproxy", "keepalived"]
            units += ["haproxy", "keepalived"]
        else:
            packages += ["kubelet", "kubeadm", "kubectl", "containerd"]
            units += ["containerd", "kubelet"]
        node_dir = os.path.join(out, n["name"])
        os.makedirs(os.path.join(node_dir, "files"), exist_ok=True)
        for f in files:
            p = os.path.join(node_dir, "files", f["path"].lstrip("/"))
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as fh:
                fh.write(f["content"])
        rendered = {
            "user-data": USER_DATA.render(node=n, user=d.get("user", "pi"), keys=d.get("ssh_authorized_keys", []),
                                          packages=packages, files=files, services=units),
            "meta-data": META.render(site=name, node=n),
            "network-config": NETWORK.render(node=n, iface=d.get("interface", "eth0"), prefix=prefix,
                                             gateway=net.get("gateway"), dns=net.get("dns", [])),
        }
        for fname, text in rendered.items():
            with open(os.path.join(node_dir, fname), "w") as fh:
                fh.write(text)
    with tarfile.open(os.path.join(out, name + ".tar.gz"), "w:gz") as tar:
        for n in nodes:
            tar.add(os.path.join(out, n["name"]), arcname=os.path.join(name, n["name"]))
    _ = by_name, masters


if __name__ == "__main__":
    main()

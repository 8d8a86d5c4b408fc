#!/usr/bin/env python3
"""Helpers for tests/firstboot/pair.sh (standard library only).

  pair.py backend ADDR PORT             tiny TCP server: answers every request "ok"
  pair.py probe VIP PORT SECONDS OUT    every 20 ms: connect, send a request, read
                                        the answer (200 ms timeout); writes
                                        "t_ms ok|fail" lines to OUT
  pair.py qga SOCKET PROGRAM ARGS...    run a program in the VM through the qemu
                                        guest agent, print its output
  pair.py outage FILE                   longest run of failed probes (ms), and
                                        the count of failed probes
"""
import base64
import json
import socket
import sys
import time


def backend(addr, port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, int(port)))
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(1)
            try:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            except OSError:
                pass


def probe(vip, port, seconds, out):
    start = time.monotonic()
    end = start + float(seconds)
    lines = []
    n = 0
    while time.monotonic() < end and n < 100000:
        n += 1
        t = time.monotonic()
        ok = False
        try:
            with socket.create_connection((vip, int(port)), timeout=0.2) as s:
                s.settimeout(0.2)
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                ok = s.recv(16).startswith(b"HTTP/")
        except OSError:
            ok = False
        lines.append("%d %s" % ((t - start) * 1000, "ok" if ok else "fail"))
        rest = 0.02 - (time.monotonic() - t)
        if rest > 0:
            time.sleep(rest)
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def qga(sock_path, program, args):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(sock_path)
    f = s.makefile("rwb")

    def call(cmd, arguments=None):
        msg = {"execute": cmd}
        if arguments is not None:
            msg["arguments"] = arguments
        f.write(json.dumps(msg).encode() + b"\n")
        f.flush()
        while True:
            reply = json.loads(f.readline())
            if "return" in reply or "error" in reply:
                return reply

    # Resynchronise: the agent may hold a half-read command from an earlier client.
    call("guest-sync", {"id": 4242})
    r = call("guest-exec", {"path": program, "arg": args, "capture-output": True})
    if "error" in r:
        sys.exit("guest-exec %s: %s" % (program, r["error"]))
    pid = r["return"]["pid"]
    for _ in range(600):
        st = call("guest-exec-status", {"pid": pid})["return"]
        if st.get("exited"):
            sys.stdout.write(base64.b64decode(st.get("out-data", "")).decode())
            sys.stderr.write(base64.b64decode(st.get("err-data", "")).decode())
            sys.exit(st.get("exitcode", 0))
        time.sleep(0.1)
    sys.exit("guest-exec %s did not finish in 60 s" % program)


def outage(path):
    probes = []
    with open(path) as f:
        for line in f:
            t, r = line.split()
            probes.append((int(t), r == "ok"))
    longest = 0
    first_fail = None
    for t, ok in probes:
        if not ok and first_fail is None:
            first_fail = t
        elif ok and first_fail is not None:
            longest = max(longest, t - first_fail)
            first_fail = None
    if first_fail is not None:
        longest = max(longest, probes[-1][0] - first_fail)
    print(longest, sum(1 for _, ok in probes if not ok), len(probes))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "backend":
        backend(*args)
    elif cmd == "probe":
        probe(*args)
    elif cmd == "qga":
        qga(args[0], args[1], args[2:])
    elif cmd == "outage":
        outage(*args)
    else:
        sys.exit(__doc__)

"""A fake EC2 query API + IMDSv2 on 127.0.0.1 for haseed's notify-script test.

Prints the port, then serves until killed (or 120 s pass). Every request is
appended to the log file (argv[1]) as one JSON line."""
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = open(sys.argv[1], "a", buffering=1)
TOKEN = "fake-imds-token-7f3a"
ENI = "eni-0a1b2c3d4e5f60718"
OTHER = "eni-0ffff00000000ffff"
MAC = "0a:1b:2c:3d:4e:5f"
META = {
    "placement/region": "eu-west-1",
    "instance-id": "i-0123456789abcdef0",
    "mac": MAC,
    "network/interfaces/macs/%s/interface-id" % MAC: ENI,
    "iam/security-credentials/": "haseed-lb",
    "iam/security-credentials/haseed-lb": json.dumps({
        "Code": "Success", "Type": "AWS-HMAC",
        "AccessKeyId": "ASIAFAKEINSTANCEPROFILE",
        "SecretAccessKey": "fake-secret", "Token": "fake-session-token",
        "Expiration": "2099-01-01T00:00:00Z", "LastUpdated": "2026-01-01T00:00:00Z",
    }),
}
NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
STATE = {"secondary": set(), "eip": {}, "route": {}}
LOCK = threading.Lock()


def xml(action, body):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<%sResponse xmlns="%s">'
            "<requestId>req-1</requestId>%s</%sResponse>" % (action, NS, body, action))


def ec2(p):
    a = p.get("Action", "")
    with LOCK:
        if a == "AssignPrivateIpAddresses":
            STATE["secondary"].add(p["PrivateIpAddress.1"])
            return xml(a, "<networkInterfaceId>%s</networkInterfaceId>" % p["NetworkInterfaceId"])
        if a == "AssociateAddress":
            STATE["eip"][p["AllocationId"]] = p["NetworkInterfaceId"]
            return xml(a, "<return>true</return><associationId>eipassoc-1</associationId>")
        if a == "ReplaceRoute":
            STATE["route"][(p["RouteTableId"], p["DestinationCidrBlock"])] = p["NetworkInterfaceId"]
            return xml(a, "<return>true</return>")
        if a == "DescribeNetworkInterfaces":
            ips = "<item><privateIpAddress>10.0.1.11</privateIpAddress><primary>true</primary></item>"
            for ip in sorted(STATE["secondary"]):
                ips += "<item><privateIpAddress>%s</privateIpAddress><primary>false</primary></item>" % ip
            return xml(a, "<networkInterfaceSet><item><networkInterfaceId>%s</networkInterfaceId>"
                          "<privateIpAddressesSet>%s</privateIpAddressesSet></item></networkInterfaceSet>"
                       % (p["NetworkInterfaceId.1"], ips))
        if a == "DescribeAddresses":
            alloc = p["AllocationId.1"]
            return xml(a, "<addressesSet><item><allocationId>%s</allocationId><publicIp>203.0.113.10</publicIp>"
                          "<networkInterfaceId>%s</networkInterfaceId></item></addressesSet>"
                       % (alloc, STATE["eip"].get(alloc, OTHER)))
        if a == "DescribeRouteTables":
            rtb = p["RouteTableId.1"]
            routes = "".join(
                "<item><destinationCidrBlock>%s</destinationCidrBlock><networkInterfaceId>%s</networkInterfaceId></item>"
                % (cidr, eni) for (t, cidr), eni in sorted(STATE["route"].items()) if t == rtb)
            if not routes:
                routes = ("<item><destinationCidrBlock>0.0.0.0/0</destinationCidrBlock>"
                          "<gatewayId>igw-0a1b2c3d</gatewayId></item>")
            return xml(a, "<routeTableSet><item><routeTableId>%s</routeTableId><routeSet>%s</routeSet></item>"
                          "</routeTableSet>" % (rtb, routes))
    return None


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self, params=None):
        LOG.write(json.dumps({
            "method": self.command, "path": self.path,
            "token": self.headers.get("X-aws-ec2-metadata-token"),
            "ttl": self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"),
            "authorization": self.headers.get("Authorization"),
            "params": params,
        }) + "\n")

    def do_PUT(self):
        self.record()
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self.reply(200, TOKEN)
        else:
            self.reply(400, "bad token request")

    def do_GET(self):
        # Test control, not EC2: another holder takes a secondary IP (split brain).
        if self.path.startswith("/test/steal/"):
            with LOCK:
                STATE["secondary"].discard(self.path[len("/test/steal/"):])
            return self.reply(200, "stolen")
        self.record()
        prefix = "/latest/meta-data/"
        if not self.path.startswith(prefix):
            return self.reply(404, "not found")
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            return self.reply(401, "IMDSv2 token required")
        value = META.get(self.path[len(prefix):])
        if value is None:
            return self.reply(404, "not found")
        self.reply(200, value)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        params = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
        self.record(params)
        body = ec2(params)
        if body is None:
            return self.reply(400, xml("Error", "<Code>InvalidAction</Code>"), "text/xml")
        self.reply(200, body, "text/xml")


server = ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Timer(120, server.shutdown).start()
print(server.server_address[1], flush=True)
server.serve_forever()

"""A fake EC2 query API + IMDSv2 on 127.0.0.1 for haseed's notify-script tests.

    fake_ec2.py LOG [ENI SUBNET INSTANCE_ID]

Prints the port, then serves until killed (or 300 s pass). Every request is
appended to LOG as one JSON line. IMDS answers as instance INSTANCE_ID whose
primary interface is ENI in SUBNET (defaults below), so one fake per node can
serve IMDS while moto's server is the EC2 endpoint.

Where moto's EC2 showed the old fake was looser than EC2, it follows EC2
(tests/aws.rs checks each against moto): every ENI has its own address set
and AssignPrivateIpAddresses with AllowReassignment moves an address from the
ENI that had it (EC2 API reference, AssignPrivateIpAddresses: "AllowReassignment:
Indicates whether to allow an IP address that is already assigned to another
network interface or instance to be reassigned to the specified network
interface"; moto 5.2.1 leaves it on both, a moto gap); ReplaceRoute fails on
a route that does not exist; errors come in EC2's shape
(<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>).
"""
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = open(sys.argv[1], "a", buffering=1)
TOKEN = "fake-imds-token-7f3a"
ENI = sys.argv[2] if len(sys.argv) > 2 else "eni-0a1b2c3d4e5f60718"
SUBNET = sys.argv[3] if len(sys.argv) > 3 else "subnet-0a1b2c3d4e5f60718"
INSTANCE = sys.argv[4] if len(sys.argv) > 4 else "i-0123456789abcdef0"
OTHER = "eni-0ffff00000000ffff"
MAC = "0a:1b:2c:3d:4e:5f"
META = {
    "placement/region": "eu-west-1",
    "instance-id": INSTANCE,
    "mac": MAC,
    "network/interfaces/macs/%s/interface-id" % MAC: ENI,
    "network/interfaces/macs/%s/subnet-id" % MAC: SUBNET,
    "iam/security-credentials/": "haseed-lb",
    "iam/security-credentials/haseed-lb": json.dumps({
        "Code": "Success", "Type": "AWS-HMAC",
        "AccessKeyId": "ASIAFAKEINSTANCEPROFILE",
        "SecretAccessKey": "fake-secret", "Token": "fake-session-token",
        "Expiration": "2099-01-01T00:00:00Z", "LastUpdated": "2026-01-01T00:00:00Z",
    }),
}
NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
# Per ENI: primary address, then secondary addresses.
STATE = {
    "eni": {ENI: ["10.0.1.11"], OTHER: ["10.0.1.12"]},
    "eip": {},  # allocation id -> (eni, private ip, association id)
    "route": {},  # (rtb, cidr) -> eni
    "assoc": 0,
}
LOCK = threading.Lock()


class Ec2Error(Exception):
    def __init__(self, code, message):
        self.code, self.message = code, message


def xml(action, body):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<%sResponse xmlns="%s">'
            "<requestId>req-1</requestId>%s</%sResponse>" % (action, NS, body, action))


def error_xml(code, message):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>%s</Code>'
            "<Message>%s</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
            % (code, message))


def listed(p, prefix):
    return [v for k, v in sorted(p.items()) if k.startswith(prefix + ".")]


def eni_of(eni_id):
    if eni_id not in STATE["eni"]:
        raise Ec2Error("InvalidNetworkInterfaceID.NotFound",
                       "The networkInterface ID '%s' does not exist" % eni_id)
    return STATE["eni"][eni_id]


def eni_xml(eni_id):
    ips = ""
    for i, ip in enumerate(STATE["eni"][eni_id]):
        ips += ("<item><privateIpAddress>%s</privateIpAddress><primary>%s</primary></item>"
                % (ip, "true" if i == 0 else "false"))
    return ("<item><networkInterfaceId>%s</networkInterfaceId><subnetId>%s</subnetId>"
            "<status>in-use</status><privateIpAddressesSet>%s</privateIpAddressesSet></item>"
            % (eni_id, SUBNET, ips))


def ec2(p):
    a = p.get("Action", "")
    if a == "AssignPrivateIpAddresses":
        ips = eni_of(p["NetworkInterfaceId"])
        for ip in listed(p, "PrivateIpAddress"):
            for other, theirs in STATE["eni"].items():
                if other != p["NetworkInterfaceId"] and ip in theirs:
                    if p.get("AllowReassignment") != "true":
                        raise Ec2Error("PrivateIpAddressInUse",
                                       "Address %s is in use." % ip)
                    theirs.remove(ip)
                    # An Elastic IP associated with the address follows it.
                    for alloc, (e, pip, assoc) in list(STATE["eip"].items()):
                        if e == other and pip == ip:
                            STATE["eip"][alloc] = (p["NetworkInterfaceId"], ip, assoc)
            if ip not in ips:
                ips.append(ip)
        return xml(a, "<networkInterfaceId>%s</networkInterfaceId>" % p["NetworkInterfaceId"])
    if a == "UnassignPrivateIpAddresses":
        ips = eni_of(p["NetworkInterfaceId"])
        for ip in listed(p, "PrivateIpAddress"):
            if ip not in ips[1:]:
                raise Ec2Error("InvalidParameterValue",
                               "Some of the specified addresses are not assigned to interface %s"
                               % p["NetworkInterfaceId"])
            ips.remove(ip)
        return xml(a, "<return>true</return>")
    if a == "AssociateAddress":
        eni = p["NetworkInterfaceId"]
        ip = p.get("PrivateIpAddress") or eni_of(eni)[0]
        if ip not in eni_of(eni):
            raise Ec2Error("InvalidParameterValue",
                           "The specified private IP address %s is not assigned to %s" % (ip, eni))
        alloc = p["AllocationId"]
        if alloc in STATE["eip"] and p.get("AllowReassociation") != "true":
            raise Ec2Error("Resource.AlreadyAssociated",
                           "resource %s is already associated" % alloc)
        STATE["assoc"] += 1
        assoc = "eipassoc-%08x" % STATE["assoc"]
        STATE["eip"][alloc] = (eni, ip, assoc)
        return xml(a, "<return>true</return><associationId>%s</associationId>" % assoc)
    if a == "DisassociateAddress":
        for alloc, (_, _, assoc) in list(STATE["eip"].items()):
            if assoc == p["AssociationId"]:
                del STATE["eip"][alloc]
                return xml(a, "<return>true</return>")
        raise Ec2Error("InvalidAssociationID.NotFound",
                       "The association ID '%s' does not exist" % p["AssociationId"])
    if a == "ReplaceRoute":
        key = (p["RouteTableId"], p["DestinationCidrBlock"])
        if key not in STATE["route"]:
            raise Ec2Error("InvalidParameterValue",
                           "There is no route defined for '%s' in the route table. "
                           "Use CreateRoute instead." % key[1])
        eni_of(p["NetworkInterfaceId"])
        STATE["route"][key] = p["NetworkInterfaceId"]
        return xml(a, "<return>true</return>")
    if a == "DescribeNetworkInterfaces":
        ids = listed(p, "NetworkInterfaceId") or sorted(STATE["eni"])
        return xml(a, "<networkInterfaceSet>%s</networkInterfaceSet>"
                   % "".join(eni_xml(e) for e in ids if eni_of(e) is not None))
    if a == "DescribeAddresses":
        body = ""
        for alloc in listed(p, "AllocationId"):
            item = "<allocationId>%s</allocationId><publicIp>203.0.113.10</publicIp><domain>vpc</domain>" % alloc
            if alloc in STATE["eip"]:
                eni, ip, assoc = STATE["eip"][alloc]
                item += ("<networkInterfaceId>%s</networkInterfaceId><privateIpAddress>%s</privateIpAddress>"
                         "<associationId>%s</associationId>" % (eni, ip, assoc))
            body += "<item>%s</item>" % item
        return xml(a, "<addressesSet>%s</addressesSet>" % body)
    if a == "DescribeRouteTables":
        rtb = p["RouteTableId.1"]
        routes = ("<item><destinationCidrBlock>10.0.0.0/16</destinationCidrBlock>"
                  "<gatewayId>local</gatewayId><state>active</state></item>")
        routes += "".join(
            "<item><destinationCidrBlock>%s</destinationCidrBlock><networkInterfaceId>%s</networkInterfaceId>"
            "<state>active</state></item>" % (cidr, eni)
            for (t, cidr), eni in sorted(STATE["route"].items()) if t == rtb)
        return xml(a, "<routeTableSet><item><routeTableId>%s</routeTableId><routeSet>%s</routeSet></item>"
                      "</routeTableSet>" % (rtb, routes))
    raise Ec2Error("InvalidAction", "The action %s is not valid for this web service." % a)


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
        # Test control, not EC2: another holder takes a secondary IP (split brain) ...
        if self.path.startswith("/test/steal/"):
            ip = self.path[len("/test/steal/"):]
            with LOCK:
                try:
                    ec2({"Action": "AssignPrivateIpAddresses", "NetworkInterfaceId": OTHER,
                         "PrivateIpAddress.1": ip, "AllowReassignment": "true"})
                except Ec2Error as e:
                    return self.reply(400, e.message)
            return self.reply(200, "stolen")
        # ... or the user creates a route once (ReplaceRoute needs one).
        if self.path.startswith("/test/route/"):
            rtb, cidr = self.path[len("/test/route/"):].split("/", 1)
            with LOCK:
                STATE["route"][(rtb, urllib.parse.unquote(cidr))] = OTHER
            return self.reply(200, "created")
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
        with LOCK:
            try:
                body = ec2(params)
            except (Ec2Error, KeyError) as e:
                if isinstance(e, KeyError):
                    e = Ec2Error("MissingParameter", "The request must contain the parameter %s" % e)
                return self.reply(400, error_xml(e.code, e.message), "text/xml")
        self.reply(200, body, "text/xml")


server = ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Timer(300, server.shutdown).start()
print(server.server_address[1], flush=True)
server.serve_forever()

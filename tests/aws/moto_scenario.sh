#!/bin/sh
# Two load balancers' notify script (elastic-ip mode) against moto's EC2 server, on loopback only.
# Env: SCRIPT (the generated haseed-aws-vip), FAKE (fake_ec2.py, IMDS of each node), MOTO
# (moto_server), WORK (an empty directory). Prints `figure NAME VALUE` lines; fails with a message.
set -eu
cd "$WORK"
fail() {
  echo "FAIL: $*" >&2
  for f in n1/vip.log n2/vip.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }
  done
  exit 1
}
pids=
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for n in n1 n2 n3; do
    [ -f "$n/run/VI_api.pid" ] || continue
    read -r p _ <"$n/run/VI_api.pid" || continue
    # Only a group this scenario's worker leads.
    [ "$(sed -n 's/.*) //p' "/proc/$p/stat" 2>/dev/null | cut -d ' ' -f 3)" = "$p" ] || continue
    kill -s TERM -- "-$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
  i=0
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || fail "nothing listens on 127.0.0.1:$1"
    sleep 0.1
  done
}

port=$(free_port)
"$MOTO" -H 127.0.0.1 -p "$port" >moto.log 2>&1 &
pids="$pids $!"
wait_port "$port"
MOTO_URL="http://127.0.0.1:$port"

# The account as a user would have set it up: a subnet, one ENI per LB, an Elastic IP.
admin() {
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_CONFIG_FILE=/dev/null \
    AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    aws --region eu-west-1 --endpoint-url "$EC2_URL" --output text ec2 "$@"
}
EC2_URL=$MOTO_URL
vpc=$(admin create-vpc --cidr-block 10.20.0.0/16 --query Vpc.VpcId)
subnet=$(admin create-subnet --vpc-id "$vpc" --cidr-block 10.20.1.0/24 --query Subnet.SubnetId)
meni1=$(admin create-network-interface --subnet-id "$subnet" --private-ip-address 10.20.1.11 \
  --query NetworkInterface.NetworkInterfaceId)
meni2=$(admin create-network-interface --subnet-id "$subnet" --private-ip-address 10.20.1.12 \
  --query NetworkInterface.NetworkInterfaceId)
malloc=$(admin allocate-address --domain vpc --query AllocationId)

# IMDS of each node (the fake): m1, m2 on moto's ENIs; n1, n2 on the EC2 fake's two ENIs.
fake() {
  mkdir -p "$1/run"
  python3 "$FAKE" "$1/imds.log" "$2" "$3" "$4" >"$1/port" &
  pids="$pids $!"
}
fake m1 "$meni1" "$subnet" i-00000000000000m1
fake m2 "$meni2" "$subnet" i-00000000000000m2
fake n1 eni-0a1b2c3d4e5f60718 subnet-0a1b2c3d4e5f60718 i-0000000000000001
fake n2 eni-0ffff00000000ffff subnet-0a1b2c3d4e5f60718 i-0000000000000002
for n in m1 m2 n1 n2; do
  i=0
  while [ ! -s "$n/port" ]; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || fail "IMDS fake of node $n did not start"
    sleep 0.1
  done
done

node() {
  n=$1
  shift
  HASEED_IMDS_URL="http://127.0.0.1:$(cat "$WORK/$n/port")" \
    AWS_ENDPOINT_URL_EC2="${ENDPOINT:-$EC2_URL}" \
    HASEED_AWS_VIP_CONF="$WORK/no-such.conf" \
    HASEED_AWS_VIP_RUN_DIR="$WORK/$n/run" \
    HASEED_AWS_VIP_LOG="$WORK/$n/vip.log" \
    HASEED_AWS_VIP_INTERVAL=1 HASEED_AWS_VIP_MAX_BACKOFF=8 \
    HASEED_AWS_CLI_CONNECT_TIMEOUT=1 HASEED_AWS_CLI_READ_TIMEOUT="${READ_T:-2}" \
    HASEED_AWS_CALL_TIMEOUT="${CALL_T:-4}" \
    sh -c '[ -z "${PIDF:-}" ] || echo "$$ 0" >"$PIDF"; exec sh "$0" "$@"' "$SCRIPT" "$@"
}
now_ms() { date +%s%3N; }
eip_at() { admin describe-addresses --allocation-ids "$alloc" --query 'Addresses[0].[NetworkInterfaceId,PrivateIpAddress]'; }
wait_eip() {
  i=0
  until [ "$(eip_at)" = "$(printf '%s\t%s' "$1" "$VIP")" ]; do
    i=$((i + 1))
    [ "$i" -lt 60 ] || fail "the EIP never pointed at $1/$VIP (it points at: $(eip_at))"
    sleep 0.5
  done
}
wait_gone() {
  i=0
  while [ -e "$1" ]; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || fail "$1 still exists"
    sleep 0.2
  done
}
vip_on() { admin describe-network-interfaces --network-interface-ids "$1" --query "NetworkInterfaces[0].PrivateIpAddresses[?PrivateIpAddress=='$VIP'].PrivateIpAddress"; }
moves() { cat n1/vip.log n2/vip.log 2>/dev/null | grep -c 'now points at' || true; }

# 0. moto's EC2: each move puts the VIP on the mover's ENI and the EIP on that ENI. (moto 5.2.1
#    keeps a reassigned address on the old ENI too and reports the ENI's primary address for an
#    association made with --private-ip-address: both checked against the fake below, where the
#    fake follows EC2.)
# moto answers slowly on a loaded machine: wider bounds here (the hung endpoint below keeps 4 s).
READ_T=20
CALL_T=45
node m1 move elastic-ip 10.20.1.100 "$malloc" 2>m1.err || fail "move on moto failed: $(cat m1.err)"
[ "$(admin describe-addresses --allocation-ids "$malloc" --query 'Addresses[0].NetworkInterfaceId')" = "$meni1" ] ||
  fail "moto: the EIP does not point at lb1's ENI"
[ "$(admin describe-network-interfaces --network-interface-ids "$meni1" --query "NetworkInterfaces[0].PrivateIpAddresses[?PrivateIpAddress=='10.20.1.100'].PrivateIpAddress")" = 10.20.1.100 ] ||
  fail "moto: the VIP is not an address of lb1's ENI"
node m2 move elastic-ip 10.20.1.100 "$malloc" 2>m2.err || fail "move on moto failed: $(cat m2.err)"
READ_T=
CALL_T=
[ "$(admin describe-addresses --allocation-ids "$malloc" --query 'Addresses[0].NetworkInterfaceId')" = "$meni2" ] ||
  fail "moto: the EIP does not point at lb2's ENI"
grep -q '"Action": "AssociateAddress"' m2/imds.log && fail "EC2 calls went to the IMDS fake"
# moto's error shape, for the fake's to match (asserted by the Rust test).
admin replace-route --route-table-id "$(admin create-route-table --vpc-id "$vpc" --query RouteTable.RouteTableId)" \
  --destination-cidr-block 172.31.255.10/32 --network-interface-id "$meni1" 2>moto-replace-route.err &&
  fail "moto: replace-route on a missing route succeeded"
admin assign-private-ip-addresses --network-interface-id "$meni1" --private-ip-addresses 10.20.1.101 >/dev/null
admin assign-private-ip-addresses --network-interface-id "$meni2" --private-ip-addresses 10.20.1.101 \
  --allow-reassignment >/dev/null
admin describe-network-interfaces --network-interface-ids "$meni1" \
  --query "NetworkInterfaces[0].PrivateIpAddresses[?PrivateIpAddress=='10.20.1.101'].PrivateIpAddress" >moto-reassign.out

# The two-node scenario runs against the fake's EC2 (shared by both nodes: n1's fake), which
# keeps one holder per address and the association's private address as EC2 does.
EC2_URL="http://127.0.0.1:$(cat n1/port)"
eni1=eni-0a1b2c3d4e5f60718
eni2=eni-0ffff00000000ffff
alloc=eipalloc-0a1b2c3d4e5f60718
VIP=10.0.1.100
admin replace-route --route-table-id rtb-0a1b2c3d4e5f60718 --destination-cidr-block 172.31.255.10/32 \
  --network-interface-id "$eni1" 2>fake-replace-route.err &&
  fail "fake: replace-route on a missing route succeeded"
admin assign-private-ip-addresses --network-interface-id "$eni1" --private-ip-addresses 10.0.1.101 >/dev/null
admin assign-private-ip-addresses --network-interface-id "$eni2" --private-ip-addresses 10.0.1.101 \
  --allow-reassignment >/dev/null
admin describe-network-interfaces --network-interface-ids "$eni1" \
  --query "NetworkInterfaces[0].PrivateIpAddresses[?PrivateIpAddress=='10.0.1.101'].PrivateIpAddress" >fake-reassign.out

# 1. lb1 MASTER, lb2 BACKUP: the VIP a secondary address of lb1's ENI, the EIP on it.
t0=$(now_ms)
node n1 master VI_api elastic-ip "$VIP" "$alloc"
t1=$(now_ms)
echo "figure notify_master_ms $((t1 - t0))"
[ -f n1/run/VI_api.pid ] || fail "no pid file when notify_master returned"
node n2 backup VI_api elastic-ip "$VIP" "$alloc"
wait_eip "$eni1"
[ "$(vip_on "$eni1")" = "$VIP" ] || fail "$VIP is not an address of lb1's ENI"

# 2. lb1 FAULT, lb2 MASTER: both move to lb2; lb1's loop ends with its pid file.
node n1 fault VI_api elastic-ip "$VIP" "$alloc"
node n2 master VI_api elastic-ip "$VIP" "$alloc"
wait_eip "$eni2"
[ "$(vip_on "$eni2")" = "$VIP" ] || fail "$VIP is not an address of lb2's ENI"
wait_gone n1/run/VI_api.pid
[ "$(cat n1/run/VI_api.state)" = FAULT ] || fail "lb1's state file does not say FAULT"
sleep 3
wait_eip "$eni2"

# 3. Split brain: lb1 MASTER again while lb2 stays MASTER. Both loops run; the backoff bounds
#    the reassignments over the window (one per second per node without it).
before=$(moves)
node n1 master VI_api elastic-ip "$VIP" "$alloc"
sleep 20
split=$(($(moves) - before))
echo "figure split_brain_moves_in_20s $split"
[ "$split" -le 8 ] || fail "$split moves in 20 s of split brain"
# Still live: a node takes the VIP back once its wait is over (slow on a loaded machine).
i=0
until grep -q 'taking it back' n1/vip.log n2/vip.log; do
  i=$((i + 1))
  [ "$i" -lt 120 ] || fail "nobody took the VIP back within 80 s of split brain"
  sleep 0.5
done
grep -q 'another MASTER took it' n1/vip.log n2/vip.log || fail "no node saw the other MASTER"

# 4. Healed: lb2 goes BACKUP and releases; lb1 (MASTER) takes the VIP within a few intervals.
t0=$(now_ms)
node n2 backup VI_api elastic-ip "$VIP" "$alloc"
wait_eip "$eni1"
echo "figure healed_takeover_ms $(($(now_ms) - t0))"
wait_gone n2/run/VI_api.pid
node n1 backup VI_api elastic-ip "$VIP" "$alloc"
wait_gone n1/run/VI_api.pid

# 5. A hung EC2 endpoint (accepts, never answers): notify returns at once, the call ends within
#    its bound, BACKUP stops the worker and leaves no pid file.
hport=$(free_port)
python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $hport)); s.listen(64); held = []
while True:
    c, _ = s.accept(); held.append(c)
" &
pids="$pids $!"
wait_port "$hport"
: >n1/vip.log
t0=$(now_ms)
ENDPOINT="http://127.0.0.1:$hport" node n1 master VI_api elastic-ip "$VIP" "$alloc"
echo "figure hung_notify_master_ms $(($(now_ms) - t0))"
read -r wpid _ <n1/run/VI_api.pid
i=0
until grep -q 'failed' n1/vip.log; do
  i=$((i + 1))
  [ "$i" -lt 100 ] || fail "the hung call did not end within 10 s"
  sleep 0.1
done
echo "figure hung_call_ended_ms $(($(now_ms) - t0))"
grep -q 'gave no answer within 4s\|timeout' n1/vip.log || fail "the hung call did not end by a timeout"
t0=$(now_ms)
ENDPOINT="http://127.0.0.1:$hport" node n1 backup VI_api
echo "figure hung_notify_backup_ms $(($(now_ms) - t0))"
[ ! -e n1/run/VI_api.pid ] || fail "BACKUP left the pid file"
# Dead, or a zombie waiting for whoever adopted it to reap it.
case $(sed -n 's/.*) //p' "/proc/$wpid/stat" 2>/dev/null | cut -c1) in
  '' | Z) ;;
  *) fail "BACKUP left the worker $wpid running" ;;
esac

# 6. Stale pid files never kill an unrelated process: a pid that is alive but was not started as
#    that loop (other start time, or not leading its own process group).
sleep 300 &
victim=$!
pids="$pids $victim"
echo "$victim 1" >n1/run/VI_api.pid
node n1 backup VI_api
kill -0 "$victim" 2>/dev/null || fail "a stale pid file (wrong start time) killed an unrelated process"
[ ! -e n1/run/VI_api.pid ] || fail "the stale pid file was kept"
start=$(sed -n 's/.*) //p' "/proc/$victim/stat" | cut -d ' ' -f 20)
echo "$victim $start" >n1/run/VI_api.pid
node n1 fault VI_api
kill -0 "$victim" 2>/dev/null || fail "a pid file naming a process outside its own group killed it"
grep -q 'stale pid file' n1/vip.log || fail "no log line about the stale pid file"

# 7. A BACKUP whose notify ran while the loop was being started (keepalived does not wait for one
#    notify before the next): the state file says BACKUP, so the loop moves nothing.
echo BACKUP >n1/run/VI_api.state
calls=$(grep -c '"Action"' n1/imds.log)
PIDF=$WORK/n1/run/VI_api.pid
export PIDF
node n1 _work VI_api loop elastic-ip "$VIP" "$alloc"
unset PIDF
[ "$(grep -c '"Action"' n1/imds.log)" = "$calls" ] || fail "a loop started after BACKUP called EC2"
[ ! -e n1/run/VI_api.pid ] || fail "the loop left its pid file"
echo ok

//! Who answers ARP for an address: one request sent on an interface, every
//! reply collected for a bounded time. The lab asks from the client's
//! namespace, so it sees what a client on the segment sees. Only the VIP's
//! holder may answer: a load balancer that keeps the VIP on `lo` (the default
//! policy's failover, decision 7) must ignore ARP for it, or clients would
//! send to whichever node answered last.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const ETH_P_ARP: u16 = 0x0806;
const FRAME_LEN: usize = 42;

/// A MAC address.
pub type Mac = [u8; 6];

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Sends one ARP request for `target` from `sender` on `interface` (in the
/// calling thread's network namespace) and returns the hardware address of
/// every node that answered within `wait`, in order of arrival, each once.
/// Needs CAP_NET_RAW.
pub fn who_has(
    interface: &str,
    sender: Ipv4Addr,
    target: Ipv4Addr,
    wait: Duration,
) -> io::Result<Vec<Mac>> {
    let name = CString::new(interface).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ARP.to_be();
    addr.sll_ifindex = index as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: addr is a sockaddr_ll of the given length.
    if unsafe { libc::bind(sock.as_raw_fd(), std::ptr::from_ref(&addr).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The interface's own address, as the packet socket reports it.
    // SAFETY: as above, plain data.
    let mut own: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut own_len = len;
    // SAFETY: own is a sockaddr_ll buffer of own_len bytes.
    if unsafe {
        libc::getsockname(
            sock.as_raw_fd(),
            std::ptr::from_mut(&mut own).cast(),
            &mut own_len,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let mut mac: Mac = [0; 6];
    mac.copy_from_slice(&own.sll_addr[..6]);

    let frame = request(mac, sender, target);
    let mut to = addr;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: frame is FRAME_LEN bytes; `to` is a sockaddr_ll.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            std::ptr::from_ref(&to).cast(),
            len,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut answers: Vec<Mac> = Vec::new();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 128];
    // Bounded by the deadline: every wait below is at most what is left.
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, 1000) as i32;
        // SAFETY: one pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if ready == 0 {
            continue;
        }
        // SAFETY: buf is writable for its length.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            continue;
        }
        if let Some(who) = reply_from(&buf[..n as usize], target) {
            if !answers.contains(&who) {
                answers.push(who);
            }
        }
    }
    Ok(answers)
}

/// A broadcast Ethernet frame asking who has `target`.
fn request(mac: Mac, sender: Ipv4Addr, target: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, 6-byte and 4-byte addresses, a request.
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&sender.octets());
    // Target hardware address: unknown (zero).
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// The sender's hardware address when `frame` is an ARP reply for `target`.
fn reply_from(frame: &[u8], target: Ipv4Addr) -> Option<Mac> {
    if frame.len() < FRAME_LEN
        || frame[12..14] != ETH_P_ARP.to_be_bytes()
        || frame[14..22] != [0, 1, 0x08, 0x00, 6, 4, 0, 2]
        || frame[28..32] != target.octets()
    {
        return None;
    }
    let mut mac: Mac = [0; 6];
    mac.copy_from_slice(&frame[22..28]);
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Mac = [2, 0, 0, 0, 0, 1];
    const HOLDER: Mac = [2, 0, 0, 0, 0, 2];

    fn reply(from: Mac, spa: Ipv4Addr, oper: u8) -> Vec<u8> {
        let mut f = request(from, spa, Ipv4Addr::new(10, 0, 0, 9)).to_vec();
        f[0..6].copy_from_slice(&CLIENT);
        f[21] = oper;
        f
    }

    #[test]
    fn builds_a_broadcast_request() {
        let f = request(
            CLIENT,
            Ipv4Addr::new(10, 0, 0, 9),
            Ipv4Addr::new(10, 0, 0, 100),
        );
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &CLIENT);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[10, 0, 0, 9]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[10, 0, 0, 100]);
    }

    #[test]
    fn reads_only_replies_for_the_target() {
        let vip = Ipv4Addr::new(10, 0, 0, 100);
        assert_eq!(reply_from(&reply(HOLDER, vip, 2), vip), Some(HOLDER));
        // A request, another address, a short frame: not an answer.
        assert_eq!(reply_from(&reply(HOLDER, vip, 1), vip), None);
        let other = Ipv4Addr::new(10, 0, 0, 101);
        assert_eq!(reply_from(&reply(HOLDER, other, 2), vip), None);
        assert_eq!(reply_from(&reply(HOLDER, vip, 2)[..41], vip), None);
        assert_eq!(mac_string(&HOLDER), "02:00:00:00:00:02");
    }
}

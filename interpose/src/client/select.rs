//! Which transport to try, in which order: `REMORA_SERVER` lists URLs (comma-separated), tried
//! in order until one connects. An `auto://host:port` entry expands to the best transports for
//! that server: `shm://remora` first when `host` is this machine (same-host shared memory, the
//! fastest), then `rdma://host:port` when this machine has a usable RDMA device, then
//! `tcp://host:port`. One port serves both of the last two: a server listening on
//! `rdma://host:port` offers RDMA to clients that ask and plain TCP to the others, and a client
//! whose RDMA setup fails (no route from its device, a server that offers none) moves on to the
//! next entry.

use std::net::{IpAddr, ToSocketAddrs};

/// The shm name `auto://` tries for a server on this machine (`remora serve`'s default).
pub const AUTO_SHM_NAME: &str = "remora";

/// The URLs to try for `spec` (one URL, a comma-separated list, `auto://host:port` entries).
pub fn candidates(spec: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match entry.strip_prefix("auto://") {
            Some(addr) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                if is_this_machine(host) {
                    out.push(format!("shm://{AUTO_SHM_NAME}"));
                }
                match remora_transport::verbs::available() {
                    Ok(_) => out.push(format!("rdma://{addr}")),
                    Err(why) => tracing::debug!("auto://{addr}: not trying rdma: {why}"),
                }
                out.push(format!("tcp://{addr}"));
            }
            None => out.push(entry.to_string()),
        }
    }
    out.dedup();
    out
}

/// Connect to the first of [`candidates`]`(spec)` that accepts; the error lists every attempt.
pub fn connect_first(spec: &str, token: Option<&str>) -> Result<super::Client, String> {
    let mut reasons = Vec::new();
    for url in candidates(spec) {
        match super::Client::connect(&url, token) {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::debug!("{url}: {e}");
                reasons.push(format!("{url}: {e}"));
            }
        }
    }
    if reasons.is_empty() {
        return Err(format!("no server URL in {spec:?}"));
    }
    Err(reasons.join("; "))
}

/// Whether `host` names this machine: a loopback name or address, or an address of one of its
/// interfaces.
fn is_this_machine(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" {
        return true;
    }
    let Ok(addrs) = (host, 0u16).to_socket_addrs() else { return false };
    let mine = local_addresses();
    addrs.map(|a| a.ip()).any(|ip| ip.is_loopback() || mine.contains(&ip))
}

fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifa` with a list freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut ifa) } != 0 {
        return out;
    }
    let mut p = ifa;
    while !p.is_null() {
        // SAFETY: `p` is an entry of the list got above; its address, when present, is a
        // sockaddr of the family it says.
        unsafe {
            let a = (*p).ifa_addr;
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let sin = &*a.cast::<libc::sockaddr_in>();
                        out.push(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*a.cast::<libc::sockaddr_in6>();
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(ifa) };
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_auto_entries_expand_in_preference_order() {
        assert_eq!(candidates("tcp://a:1"), ["tcp://a:1"]);
        assert_eq!(candidates(" shm://x , tcp://a:1,"), ["shm://x", "tcp://a:1"]);
        let local = candidates("auto://127.0.0.1:7070");
        assert_eq!(local.first().unwrap(), "shm://remora");
        assert_eq!(local.last().unwrap(), "tcp://127.0.0.1:7070");
        let rdma = remora_transport::verbs::available().is_ok();
        assert_eq!(local.contains(&"rdma://127.0.0.1:7070".to_string()), rdma);
        // A host that is not this machine gets no shm:// entry.
        let remote = candidates("auto://192.0.2.1:7070");
        assert!(!remote.iter().any(|u| u.starts_with("shm://")), "{remote:?}");
        assert_eq!(remote.last().unwrap(), "tcp://192.0.2.1:7070");
        assert!(is_this_machine("localhost"));
        assert!(is_this_machine("[::1]"));
    }
}

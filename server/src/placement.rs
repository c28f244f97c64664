//! Choosing a CPU core for a session's polling thread: one on the NUMA node of its GPU (from
//! sysfs), the least used so far.

use std::collections::HashMap;
use std::path::Path;

/// Parse a Linux cpulist (`0-3,8,10-11`).
pub fn parse_cpulist(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    if b >= a && b - a < 65536 {
                        out.extend(a..=b);
                    }
                }
            }
            None => {
                if let Ok(v) = part.trim().parse() {
                    out.push(v);
                }
            }
        }
    }
    out
}

/// The NUMA node of a PCI device (`0000:3b:00.0`), if the kernel reports one.
pub fn numa_node_of(sysfs: &Path, pci_bus_id: &str) -> Option<u32> {
    let p = sysfs.join("bus/pci/devices").join(pci_bus_id.to_ascii_lowercase()).join("numa_node");
    let v: i64 = std::fs::read_to_string(p).ok()?.trim().parse().ok()?;
    u32::try_from(v).ok()
}

/// The cores of a NUMA node.
pub fn cores_of_node(sysfs: &Path, node: u32) -> Vec<usize> {
    std::fs::read_to_string(sysfs.join(format!("devices/system/node/node{node}/cpulist")))
        .map(|s| parse_cpulist(&s))
        .unwrap_or_default()
}

/// Cores this process may run on.
pub fn allowed_cores() -> Vec<usize> {
    core_affinity::get_core_ids().map(|v| v.into_iter().map(|c| c.id).collect()).unwrap_or_default()
}

/// Tracks how many sessions poll on each core.
#[derive(Debug, Default)]
pub struct Placement {
    load: HashMap<usize, usize>,
}

impl Placement {
    /// Pick a core near the GPU with PCI id `pci` (any allowed core when unknown).
    pub fn pick(&mut self, pci: Option<&str>) -> Option<usize> {
        let allowed = allowed_cores();
        let sysfs = Path::new("/sys");
        let near: Vec<usize> = pci
            .and_then(|p| numa_node_of(sysfs, p))
            .map(|n| cores_of_node(sysfs, n))
            .unwrap_or_default()
            .into_iter()
            .filter(|c| allowed.contains(c))
            .collect();
        let candidates = if near.is_empty() { allowed } else { near };
        // Least loaded; among equals the highest id (core 0 takes most interrupts).
        let core =
            candidates.iter().copied().min_by_key(|c| (self.load.get(c).copied().unwrap_or(0), usize::MAX - c))?;
        *self.load.entry(core).or_default() += 1;
        Some(core)
    }

    /// A session on `core` ended.
    pub fn release(&mut self, core: usize) {
        if let Some(n) = self.load.get_mut(&core) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Pin the calling thread to `core`. Returns whether it worked.
pub fn pin_current_thread(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpulists() {
        assert_eq!(parse_cpulist("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpulist(""), Vec::<usize>::new());
        assert_eq!(parse_cpulist("5-2,x,7"), vec![7]);
    }

    #[test]
    fn spreads_sessions() {
        let mut p = Placement::default();
        let n = allowed_cores().len();
        if n == 0 {
            eprintln!("skipped: no core list available");
            return;
        }
        let a = p.pick(None).unwrap();
        let b = p.pick(None).unwrap();
        if n > 1 {
            assert_ne!(a, b);
        }
        p.release(a);
        assert_eq!(p.pick(None), Some(a));
    }
}

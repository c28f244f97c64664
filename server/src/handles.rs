//! Per-session handle tables: slabs behind generation-checked handles, and the allocation table
//! every copy range is checked against.

use std::collections::BTreeMap;

use remora_wire::Status;

/// A slab of `T` addressed by `u64` handles: `generation << 32 | (index + 1)`. Handle 0 is never
/// issued (it means "the default stream" on the wire). A freed slot's generation is bumped, so a
/// stale handle is refused instead of naming a newer object.
#[derive(Debug)]
pub struct Slab<T> {
    slots: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
    live: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { slots: Vec::new(), free: Vec::new(), live: 0 }
    }
}

impl<T> Slab<T> {
    /// Store `value`, returning its handle.
    pub fn insert(&mut self, value: T) -> u64 {
        self.live += 1;
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize].1 = Some(value);
                i
            }
            None => {
                self.slots.push((1, Some(value)));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let generation = self.slots[index as usize].0;
        (u64::from(generation) << 32) | (u64::from(index) + 1)
    }

    fn slot(&self, handle: u64) -> Option<usize> {
        let index = usize::try_from((handle & 0xffff_ffff).checked_sub(1)?).ok()?;
        let generation = u32::try_from(handle >> 32).ok()?;
        let (g, v) = self.slots.get(index)?;
        (*g == generation && v.is_some()).then_some(index)
    }

    /// The value behind `handle`, or `INVALID_HANDLE`.
    pub fn get(&self, handle: u64) -> Result<&T, Status> {
        self.slot(handle).and_then(|i| self.slots[i].1.as_ref()).ok_or(Status::INVALID_HANDLE)
    }

    /// Remove and return the value behind `handle`, or `INVALID_HANDLE`.
    pub fn remove(&mut self, handle: u64) -> Result<T, Status> {
        let i = self.slot(handle).ok_or(Status::INVALID_HANDLE)?;
        let (g, v) = &mut self.slots[i];
        *g = g.wrapping_add(1).max(1);
        self.live -= 1;
        self.free.push(u32::try_from(i).unwrap_or(u32::MAX));
        v.take().ok_or(Status::INVALID_HANDLE)
    }

    /// Remove every value (for cleanup), returning them.
    pub fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.live);
        for (i, (g, v)) in self.slots.iter_mut().enumerate() {
            if let Some(v) = v.take() {
                *g = g.wrapping_add(1).max(1);
                self.free.push(u32::try_from(i).unwrap_or(u32::MAX));
                out.push(v);
            }
        }
        self.live = 0;
        out
    }

    /// Remove (and return) the values `remove` selects; the others keep their handles.
    pub fn extract_if(&mut self, mut remove: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        for (i, (g, v)) in self.slots.iter_mut().enumerate() {
            if v.as_ref().is_some_and(&mut remove) {
                if let Some(v) = v.take() {
                    *g = g.wrapping_add(1).max(1);
                    self.free.push(u32::try_from(i).unwrap_or(u32::MAX));
                    self.live -= 1;
                    out.push(v);
                }
            }
        }
        out
    }

    /// Number of live values.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Handles and values, for inspection.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|(_, v)| v.as_ref())
    }
}

/// What a device address range is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeKind {
    /// A `MemAlloc` of this session: freeable.
    Allocation,
    /// A module global: copyable, not freeable; dropped with its module.
    Global {
        /// The owning module's handle.
        module: u64,
    },
}

/// One owned device range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Device ordinal.
    pub dev: u32,
    /// Bytes.
    pub size: u64,
    /// Kind.
    pub kind: RangeKind,
}

/// The device memory a session may touch, keyed by base address.
#[derive(Debug, Default)]
pub struct Ranges {
    map: BTreeMap<u64, Range>,
    alloc_bytes: u64,
    allocs: usize,
}

impl Ranges {
    /// Record a range.
    pub fn insert(&mut self, base: u64, range: Range) {
        if range.kind == RangeKind::Allocation {
            self.alloc_bytes += range.size;
            self.allocs += 1;
        }
        if let Some(old) = self.map.insert(base, range) {
            if old.kind == RangeKind::Allocation {
                self.alloc_bytes -= old.size;
                self.allocs -= 1;
            }
        }
    }

    /// Remove the allocation starting exactly at `base`.
    pub fn remove_allocation(&mut self, base: u64) -> Result<Range, Status> {
        match self.map.get(&base) {
            Some(r) if r.kind == RangeKind::Allocation => {
                let r = *r;
                self.map.remove(&base);
                self.alloc_bytes -= r.size;
                self.allocs -= 1;
                Ok(r)
            }
            _ => Err(Status::INVALID_VALUE),
        }
    }

    /// Remove every global of `module`.
    pub fn remove_globals_of(&mut self, module: u64) {
        self.map.retain(|_, r| r.kind != RangeKind::Global { module });
    }

    /// The device and base of the owned range containing `[ptr, ptr + len)`, or `OUT_OF_RANGE`.
    /// A zero-length range must still start inside (or at the end of) an owned range.
    pub fn check(&self, ptr: u64, len: u64) -> Result<(u32, u64), Status> {
        let end = ptr.checked_add(len).ok_or(Status::OUT_OF_RANGE)?;
        let (&base, r) = self.map.range(..=ptr).next_back().ok_or(Status::OUT_OF_RANGE)?;
        if end <= base + r.size && ptr <= base + r.size {
            Ok((r.dev, base))
        } else {
            Err(Status::OUT_OF_RANGE)
        }
    }

    /// Whether any owned range intersects `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        if let Some((&b, r)) = self.map.range(..end).next_back() {
            return b + r.size.max(1) > start;
        }
        false
    }

    /// The range containing `ptr`.
    pub fn containing(&self, ptr: u64) -> Option<(u64, Range)> {
        let (&base, r) = self.map.range(..=ptr).next_back()?;
        (ptr < base + r.size.max(1)).then_some((base, *r))
    }

    /// Live allocations (globals not counted) and their bytes.
    pub fn allocation_totals(&self) -> (usize, u64) {
        (self.allocs, self.alloc_bytes)
    }

    /// Remove what lives on `dev`; return its allocations (its globals are dropped too).
    pub fn remove_device(&mut self, dev: u32) -> Vec<(u64, Range)> {
        let mut out = Vec::new();
        self.map.retain(|&base, r| {
            if r.dev != dev {
                return true;
            }
            if r.kind == RangeKind::Allocation {
                out.push((base, *r));
            }
            false
        });
        for (_, r) in &out {
            self.alloc_bytes -= r.size;
            self.allocs -= 1;
        }
        out
    }

    /// Remove and return every allocation (globals are dropped too).
    pub fn drain_allocations(&mut self) -> Vec<(u64, Range)> {
        let all = std::mem::take(&mut self.map);
        self.alloc_bytes = 0;
        self.allocs = 0;
        all.into_iter().filter(|(_, r)| r.kind == RangeKind::Allocation).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_generations_refuse_stale_handles() {
        let mut s = Slab::default();
        let a = s.insert("a");
        assert_ne!(a, 0);
        assert_eq!(s.get(a), Ok(&"a"));
        assert_eq!(s.remove(a), Ok("a"));
        assert_eq!(s.get(a), Err(Status::INVALID_HANDLE));
        let b = s.insert("b");
        assert_eq!(b & 0xffff_ffff, a & 0xffff_ffff, "slot reused");
        assert_ne!(a, b, "generation bumped");
        assert_eq!(s.get(a), Err(Status::INVALID_HANDLE));
        assert_eq!(s.get(0), Err(Status::INVALID_HANDLE));
        assert_eq!(s.get(u64::MAX), Err(Status::INVALID_HANDLE));
        assert_eq!(s.len(), 1);
        let c = s.insert("c");
        assert_eq!(s.extract_if(|v| *v == "b"), vec!["b"]);
        assert_eq!(s.get(c), Ok(&"c"), "survivors keep their handles");
        assert_eq!(s.get(b), Err(Status::INVALID_HANDLE));
        assert_eq!(s.len(), 1);
        assert_eq!(s.drain(), vec!["c"]);
        assert!(s.is_empty());
    }

    #[test]
    fn ranges_check_containment() {
        let mut r = Ranges::default();
        r.insert(0x1000, Range { dev: 0, size: 0x100, kind: RangeKind::Allocation });
        r.insert(0x2000, Range { dev: 1, size: 0x10, kind: RangeKind::Global { module: 7 } });
        assert_eq!(r.check(0x1000, 0x100), Ok((0, 0x1000)));
        assert_eq!(r.check(0x10ff, 1), Ok((0, 0x1000)));
        assert_eq!(r.check(0x10ff, 2), Err(Status::OUT_OF_RANGE));
        assert_eq!(r.check(0xfff, 1), Err(Status::OUT_OF_RANGE));
        assert_eq!(r.check(0x2004, 4), Ok((1, 0x2000)));
        assert_eq!(r.check(u64::MAX, 2), Err(Status::OUT_OF_RANGE));
        assert_eq!(r.allocation_totals(), (1, 0x100));
        assert_eq!(r.remove_allocation(0x2000), Err(Status::INVALID_VALUE));
        assert_eq!(r.remove_allocation(0x1001), Err(Status::INVALID_VALUE));
        r.remove_globals_of(7);
        assert_eq!(r.check(0x2004, 4), Err(Status::OUT_OF_RANGE));
        assert!(r.remove_allocation(0x1000).is_ok());
        assert_eq!(r.allocation_totals(), (0, 0));
        r.insert(0x3000, Range { dev: 0, size: 0x10, kind: RangeKind::Allocation });
        r.insert(0x4000, Range { dev: 1, size: 0x20, kind: RangeKind::Allocation });
        r.insert(0x5000, Range { dev: 0, size: 0x8, kind: RangeKind::Global { module: 9 } });
        assert_eq!(r.remove_device(0), vec![(0x3000, Range { dev: 0, size: 0x10, kind: RangeKind::Allocation })]);
        assert_eq!(r.check(0x5000, 1), Err(Status::OUT_OF_RANGE), "device 0's globals went too");
        assert_eq!(r.check(0x4000, 0x20), Ok((1, 0x4000)), "device 1 untouched");
        assert_eq!(r.allocation_totals(), (1, 0x20));
    }
}

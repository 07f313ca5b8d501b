//! Speculative batched reads: the ranges a tick read are read again, all at once, at the
//! start of the next tick (one `process_vm_readv` with many iovecs), and the walk of that
//! tick reads from the copies. A read the copies do not cover goes to the target as
//! before and is remembered for the next tick.
//!
//! Nothing is trusted from an earlier tick: only *which addresses* to read is learned;
//! every byte is read again each tick. So a walk over a snapshot sees exactly what a walk
//! of the live process would have seen at the moment the snapshot was taken, and in
//! blocking mode (the target paused around `take` and the walk) exactly the same.

use super::memory::{Memory, MemoryError};
use std::cell::{Cell, RefCell};

/// Two wanted ranges closer than this are read as one (the gap is on a page one of them
/// is on, so it is mapped).
const MERGE_GAP: u64 = 64;
/// Ranges at least this long (thread data stacks, bytecode) are read a little further
/// (`GROWTH` bytes, never past the end of their last page, which is mapped), so that a
/// stack that grew a little is still covered next tick.
const ROUND_UP_FROM: u64 = 512;
const GROWTH: u64 = 512;
const PAGE: u64 = 4096;
/// Most bytes one snapshot copies, and most ranges it remembers.
const MAX_BYTES: u64 = 64 << 20;
const MAX_RANGES: usize = 16_384;

#[derive(Default)]
pub struct Snapshot {
    /// Copies of this tick: (start, offset in `data`, length), sorted by start, not
    /// overlapping; `data` holds them one after the other (kept between ticks).
    regions: Vec<(u64, usize, usize)>,
    data: Vec<u8>,
    /// What to read at the next `take`: what was read since the last one.
    used: RefCell<Vec<(u64, u64)>>,
    want: Vec<(u64, u64)>,
    /// Reads served from the copies, and reads that went to the target.
    pub hits: Cell<u64>,
    pub misses: Cell<u64>,
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    /// Start a tick: learn what the last tick read, and read all of it now in one batch.
    pub fn take(&mut self, mem: &dyn Memory) {
        self.learn();
        self.regions.clear();
        if self.want.is_empty() {
            return;
        }
        let reqs: Vec<(u64, usize)> = self.want.iter().map(|&(a, n)| (a, n as usize)).collect();
        let total: usize = reqs.iter().map(|r| r.1).sum();
        // Same size as last tick, most of the time: no allocation, no clearing.
        self.data.resize(total, 0);
        let ok = mem.read_scatter(&reqs, &mut self.data);
        let mut pos = 0;
        for (i, &(addr, len)) in reqs.iter().enumerate() {
            if ok[i] {
                self.regions.push((addr, pos, len));
            }
            pos += len;
        }
    }

    /// Forget everything (the next `take` reads nothing).
    pub fn clear(&mut self) {
        self.regions.clear();
        self.want.clear();
        self.used.borrow_mut().clear();
    }

    /// Turn the ranges used since the last `take` into the next `want`.
    fn learn(&mut self) {
        let mut used = std::mem::take(&mut *self.used.borrow_mut());
        if used.is_empty() {
            return; // nothing read since: keep wanting the same
        }
        for r in used.iter_mut() {
            if r.1 >= ROUND_UP_FROM {
                let end = r.0 + r.1;
                let grown = (end + GROWTH).min(end.next_multiple_of(PAGE));
                r.1 = grown - r.0;
            }
        }
        used.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(used.len());
        for (a, n) in used {
            match merged.last_mut() {
                Some(last) if a <= last.0 + last.1 + MERGE_GAP => {
                    let end = (a + n).max(last.0 + last.1);
                    last.1 = end - last.0;
                }
                _ => merged.push((a, n)),
            }
        }
        let mut total = 0;
        merged.retain(|r| {
            total += r.1;
            total <= MAX_BYTES
        });
        merged.truncate(MAX_RANGES);
        self.want = merged;
    }

    /// The copy of `[addr, addr + len)`, if this tick's snapshot holds it whole.
    fn get(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let i = self.regions.partition_point(|r| r.0 <= addr);
        let &(start, at, n) = self.regions.get(i.checked_sub(1)?)?;
        let off = (addr - start) as usize;
        if off.checked_add(len)? > n {
            return None;
        }
        self.data.get(at + off..at + off + len)
    }

    fn note(&self, addr: u64, len: usize) {
        let mut used = self.used.borrow_mut();
        if used.len() < MAX_RANGES * 4 {
            used.push((addr, len as u64));
        }
    }

    /// The target's memory as seen through this snapshot.
    pub fn view<'a>(&'a self, live: &'a dyn Memory) -> SnapshotMemory<'a> {
        SnapshotMemory { snap: self, live }
    }

    /// Bytes held this tick.
    pub fn bytes(&self) -> usize {
        self.regions.iter().map(|r| r.2).sum()
    }
}

/// A `Memory` that reads from a snapshot where it can and from the target otherwise.
pub struct SnapshotMemory<'a> {
    snap: &'a Snapshot,
    live: &'a dyn Memory,
}

impl Memory for SnapshotMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(b) = self.snap.get(addr, buf.len()) {
            buf.copy_from_slice(b);
            self.snap.hits.set(self.snap.hits.get() + 1);
            self.snap.note(addr, buf.len());
            return Ok(());
        }
        self.snap.misses.set(self.snap.misses.get() + 1);
        self.live.read(addr, buf)?;
        self.snap.note(addr, buf.len());
        Ok(())
    }

    fn read_scatter(&self, reqs: &[(u64, usize)], out: &mut [u8]) -> Vec<bool> {
        let mut ok = vec![false; reqs.len()];
        let mut missing: Vec<(usize, usize)> = Vec::new(); // (request, offset in out)
        let mut pos = 0;
        for (i, &(addr, len)) in reqs.iter().enumerate() {
            match (self.snap.get(addr, len), out.get_mut(pos..pos + len)) {
                (Some(b), Some(dst)) => {
                    dst.copy_from_slice(b);
                    ok[i] = true;
                    self.snap.hits.set(self.snap.hits.get() + 1);
                    self.snap.note(addr, len);
                }
                (None, Some(_)) => missing.push((i, pos)),
                _ => {}
            }
            pos += len;
        }
        if missing.is_empty() {
            return ok;
        }
        self.snap
            .misses
            .set(self.snap.misses.get() + missing.len() as u64);
        let sub: Vec<(u64, usize)> = missing.iter().map(|&(i, _)| reqs[i]).collect();
        let total: usize = sub.iter().map(|r| r.1).sum();
        let mut buf = vec![0u8; total];
        let got = self.live.read_scatter(&sub, &mut buf);
        let mut at = 0;
        for (k, &(i, p)) in missing.iter().enumerate() {
            let len = reqs[i].1;
            if got[k] {
                out[p..p + len].copy_from_slice(&buf[at..at + len]);
                ok[i] = true;
                self.snap.note(reqs[i].0, len);
            }
            at += len;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::FakeMemory;

    /// Counts the reads that reach the "target".
    struct Counting<'a>(&'a FakeMemory, Cell<u64>);
    impl Memory for Counting<'_> {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.1.set(self.1.get() + 1);
            self.0.read(addr, buf)
        }
        fn read_scatter(&self, reqs: &[(u64, usize)], out: &mut [u8]) -> Vec<bool> {
            self.1.set(self.1.get() + 1);
            let mut pos = 0;
            reqs.iter()
                .map(|&(a, n)| {
                    let r = self.0.read(a, &mut out[pos..pos + n]).is_ok();
                    pos += n;
                    r
                })
                .collect()
        }
    }

    #[test]
    fn second_tick_reads_once_and_sees_new_bytes() {
        let mut fake = FakeMemory::new();
        fake.map(0x1000, vec![1; 64]);
        fake.map(0x9000, vec![2; 4096]);
        let mut snap = Snapshot::new();
        let live = Counting(&fake, Cell::new(0));
        snap.take(&live);
        {
            let m = snap.view(&live);
            assert_eq!(m.read_u64(0x1000).unwrap(), 0x0101010101010101);
            let mut b = [0u8; 600];
            m.read(0x9000, &mut b).unwrap();
        }
        assert_eq!(live.1.get(), 2, "first tick: every read is live");
        // The target changes; the next tick reads both ranges in one call and sees it.
        fake.patch(0x1000, &[9; 8]);
        let live = Counting(&fake, Cell::new(0));
        snap.take(&live);
        {
            let m = snap.view(&live);
            assert_eq!(m.read_u64(0x1000).unwrap(), 0x0909090909090909);
            let mut b = [0u8; 700]; // grew a little: still inside what was read
            m.read(0x9000, &mut b).unwrap();
            assert_eq!(b[699], 2);
        }
        assert_eq!(live.1.get(), 1, "second tick: one batched read");
        assert_eq!(snap.misses.get(), 2);
    }

    #[test]
    fn unreadable_ranges_fall_back_to_a_failing_live_read() {
        let mut fake = FakeMemory::new();
        fake.map(0x1000, vec![1; 64]);
        let mut snap = Snapshot::new();
        snap.take(&fake);
        assert!(snap.view(&fake).read_u64(0x1000).is_ok());
        let mut gone = FakeMemory::new();
        gone.map(0x5000, vec![0; 8]);
        snap.take(&gone); // the range is unmapped now
        assert!(snap.view(&gone).read_u64(0x1000).is_err());
        assert_eq!(snap.bytes(), 0);
    }
}
#[cfg(test)]
mod list_tests {
    use super::*;
    use crate::process::FakeMemory;

    #[test]
    fn a_thousand_small_ranges_are_one_batch_the_next_time() {
        let mut fake = FakeMemory::new();
        for i in 0..1000u64 {
            fake.map(0x10_0000 + i * 0x1000, vec![i as u8; 256]);
        }
        let mut snap = Snapshot::new();
        for round in 0..3 {
            snap.take(&fake);
            let m = snap.view(&fake);
            for i in 0..1000u64 {
                let a = 0x10_0000 + i * 0x1000;
                let _ = m.read_u64(a + 8);
                let mut b = [0u8; 100];
                let _ = m.read(a + 16, &mut b);
            }
            eprintln!(
                "round {round}: hits {} misses {}",
                snap.hits.get(),
                snap.misses.get()
            );
        }
        assert_eq!(snap.misses.get(), 2000, "only the first round misses");
    }
}

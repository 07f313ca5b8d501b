//! Speculative batched reads: the ranges a tick read are read again, all at once, at the
//! start of the next tick (one `process_vm_readv` with many iovecs), and the walk of that
//! tick reads from the copies. A read the copies do not cover goes to the target as
//! before and is remembered for the next tick.
//!
//! Late reads (`Memory::read_late`: a thread's top-frame pointer, read again once its
//! frames are read) are read at the end of the same batch, after every other range, so
//! that a pointer that moved while the batch was read is seen. A walk that needed bytes
//! the batch did not cover mixes two instants, the batch's and the later live reads':
//! its late reads are read live then, or, `strict`, fail at once, so that the walk is
//! retried from one batch (`retake` reads again everything the tick has read so far).
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

/// (start, length) pairs.
type Ranges = Vec<(u64, u64)>;

#[derive(Default)]
pub struct Snapshot {
    /// Copies of this tick: (start, offset in `data`, length), sorted by start, not
    /// overlapping; `data` holds them one after the other (kept between ticks).
    regions: Vec<(u64, usize, usize)>,
    data: Vec<u8>,
    /// What to read at the next `take`: what was read since the last one.
    used: RefCell<Vec<(u64, u64)>>,
    want: Vec<(u64, u64)>,
    /// `misses` when the current thread's walk began (`Memory::read_thread_begins`), or
    /// when the batch was read: a miss since means a read went to the target after it.
    thread_mark: Cell<u64>,
    /// Late reads: their copies (read after all the others, in the same batch; start,
    /// offset in `data`, length, sorted by start), those made since the last `take`, and
    /// those to read at the next.
    late_regions: Vec<(u64, usize, usize)>,
    late_used: RefCell<Vec<(u64, u64)>>,
    late_want: Vec<(u64, u64)>,
    /// A late read after a miss fails instead of reading live: the walk that mixed the
    /// batch with live reads is to be retried from one batch (`retake`).
    pub strict: Cell<bool>,
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
        self.read_batch(mem, None);
    }

    /// Within a tick: read again, in one batch, what the last `take` read and everything
    /// read since (the ranges a walk missed included), still learning all of it for the
    /// next `take`.
    pub fn retake(&mut self, mem: &dyn Memory) {
        let mut extra: Vec<(u64, u64)> = self.used.borrow().clone();
        extra.extend_from_slice(&self.want);
        let merged = merge(extra);
        let mut late: Vec<(u64, u64)> = self.late_used.borrow().clone();
        late.extend_from_slice(&self.late_want);
        late.sort_unstable();
        late.dedup();
        self.read_batch(mem, Some((merged, late)));
    }

    /// Read `ranges` (default: `want`, then `late_want`) in one batch: this tick's copies.
    fn read_batch(&mut self, mem: &dyn Memory, ranges: Option<(Ranges, Ranges)>) {
        self.regions.clear();
        self.late_regions.clear();
        self.thread_mark.set(self.misses.get());
        let (early, late) = match &ranges {
            Some((e, l)) => (e, l),
            None => (&self.want, &self.late_want),
        };
        if early.is_empty() && late.is_empty() {
            return;
        }
        let n_early = early.len();
        let reqs: Vec<(u64, usize)> = early
            .iter()
            .chain(late.iter())
            .map(|&(a, n)| (a, n as usize))
            .collect();
        let total: usize = reqs.iter().map(|r| r.1).sum();
        // Same size as last tick, most of the time: no allocation, no clearing.
        self.data.resize(total, 0);
        let ok = mem.read_scatter(&reqs, &mut self.data);
        let mut pos = 0;
        for (i, &(addr, len)) in reqs.iter().enumerate() {
            if ok[i] {
                if i < n_early {
                    self.regions.push((addr, pos, len));
                } else {
                    self.late_regions.push((addr, pos, len));
                }
            }
            pos += len;
        }
    }

    /// Forget everything (the next `take` reads nothing).
    pub fn clear(&mut self) {
        self.regions.clear();
        self.want.clear();
        self.used.borrow_mut().clear();
        self.late_regions.clear();
        self.late_want.clear();
        self.late_used.borrow_mut().clear();
    }

    /// Turn the ranges used since the last `take` into the next `want`.
    fn learn(&mut self) {
        let mut late = std::mem::take(&mut *self.late_used.borrow_mut());
        if !late.is_empty() {
            late.sort_unstable();
            late.dedup();
            late.truncate(MAX_RANGES);
            self.late_want = late;
        }
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
        self.want = merge(used);
    }

    /// The copy of `[addr, addr + len)`, if this tick's snapshot holds it whole.
    fn get(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.get_in(&self.regions, addr, len)
    }

    fn get_in(&self, regions: &[(u64, usize, usize)], addr: u64, len: usize) -> Option<&[u8]> {
        let i = regions.partition_point(|r| r.0 <= addr);
        let &(start, at, n) = regions.get(i.checked_sub(1)?)?;
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

/// Ranges sorted and merged (those closer than `MERGE_GAP` become one), within
/// `MAX_BYTES` and `MAX_RANGES`.
fn merge(mut used: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
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
    merged
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

    fn read_late(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let snap = self.snap;
        {
            let mut late = snap.late_used.borrow_mut();
            if late.len() < MAX_RANGES {
                late.push((addr, buf.len() as u64));
            }
        }
        // Only this thread's own reads matter: another thread's miss does not mix this
        // one's stack.
        let missed = snap.misses.get() != snap.thread_mark.get();
        if !missed {
            // Its late copy; or, a range not read late last tick, the batch's copy (no
            // check this once: every byte of this walk is of the batch's instant).
            if let Some(b) = snap
                .get_in(&snap.late_regions, addr, buf.len())
                .or_else(|| snap.get(addr, buf.len()))
            {
                buf.copy_from_slice(b);
                snap.hits.set(snap.hits.get() + 1);
                return Ok(());
            }
        }
        if missed && snap.strict.get() {
            return Err(MemoryError {
                addr,
                len: buf.len(),
            });
        }
        self.live.read(addr, buf)
    }

    fn read_thread_begins(&self) {
        self.snap.thread_mark.set(self.snap.misses.get());
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

    /// The target of `late_reads_...`: the byte at 0x1000 becomes 7 during a batch, once
    /// its first copy is made (a thread that moves while it is read).
    struct Changing<'a>(&'a FakeMemory, Cell<u64>);
    impl Memory for Changing<'_> {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.1.set(self.1.get() + 1);
            self.0.read(addr, buf)
        }
        fn read_scatter(&self, reqs: &[(u64, usize)], out: &mut [u8]) -> Vec<bool> {
            self.1.set(self.1.get() + 1);
            let mut pos = 0;
            let mut seen = 0;
            reqs.iter()
                .map(|&(a, n)| {
                    let r = self.0.read(a, &mut out[pos..pos + n]).is_ok();
                    if a == 0x1000 {
                        seen += 1;
                        if seen == 2 {
                            out[pos] = 7;
                        }
                    }
                    pos += n;
                    r
                })
                .collect()
        }
    }

    /// A late read is read at the end of the next tick's batch (no call of its own) and
    /// served from that copy, later than the copy of the same bytes read with the others.
    /// After a miss (a read that went to the target: two instants mixed) it is read live,
    /// or fails when `strict`; `retake` then reads in one batch what the tick missed too.
    #[test]
    fn late_reads_come_last_in_the_batch_or_fail_after_a_miss() {
        let mut fake = FakeMemory::new();
        fake.map(0x1000, vec![1; 64]);
        fake.map(0x9000, vec![2; 64]);
        let mut snap = Snapshot::new();
        let live = Counting(&fake, Cell::new(0));
        snap.take(&live);
        {
            let m = snap.view(&live);
            m.read_u64(0x1000).unwrap();
            let mut b = [0u8; 8];
            m.read_late(0x1000, &mut b).unwrap();
        }
        assert_eq!(live.1.get(), 2, "first tick: live");
        let changing = Changing(&fake, Cell::new(0));
        snap.take(&changing);
        {
            let m = snap.view(&changing);
            assert_eq!(m.read_u64(0x1000).unwrap() & 0xff, 1, "early copy");
            let mut b = [0u8; 8];
            m.read_late(0x1000, &mut b).unwrap();
            assert_eq!(b[0], 7, "the late copy is read after the others");
        }
        assert_eq!(changing.1.get(), 1, "one batch, late read included");
        // A tick that misses: its late read goes live, or fails when strict.
        let live = Counting(&fake, Cell::new(0));
        snap.take(&live);
        snap.strict.set(true);
        {
            let m = snap.view(&live);
            m.read_u64(0x1000).unwrap();
            m.read_u64(0x9000).unwrap(); // not in the batch: a live read
            let mut b = [0u8; 8];
            assert!(m.read_late(0x1000, &mut b).is_err(), "strict, after a miss");
        }
        // retake: the miss is in the batch now, no read goes live, the late copy serves.
        snap.retake(&live);
        {
            let m = snap.view(&live);
            m.read_u64(0x1000).unwrap();
            m.read_u64(0x9000).unwrap();
            let mut b = [0u8; 8];
            m.read_late(0x1000, &mut b).unwrap();
        }
        assert_eq!(live.1.get(), 3, "batch, the miss, the retaken batch");
        snap.strict.set(false);
        snap.take(&live);
        {
            let m = snap.view(&live);
            m.read_u64(0x9000).unwrap();
            m.read_u64(0x5000).ok(); // unmapped: a miss
            let mut b = [0u8; 8];
            m.read_late(0x1000, &mut b).unwrap();
            assert_eq!(b[0], 1, "not strict: read live");
        }
        assert_eq!(live.1.get(), 6, "the batch, the miss, the late read live");
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

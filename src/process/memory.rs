//! The `Memory` trait: the only way anything above `process` reads the target.
//!
//! Read-only by construction: there is no write method anywhere. Two implementations:
//! the live process (`process_vm_readv`) and `FakeMemory`, an in-memory image used by unit
//! tests, fuzzing and fault injection (torn reads, cycles, garbage pointers).

use std::collections::BTreeMap;
use std::fmt;

/// A failed read of the target's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryError {
    pub addr: u64,
    pub len: usize,
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {} bytes at {:#x}", self.len, self.addr)
    }
}

impl std::error::Error for MemoryError {}

pub trait Memory {
    /// Fill `buf` with the target's bytes at `addr`, wholly or not at all.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn read_u32(&self, addr: u64) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn read_i32(&self, addr: u64) -> Result<i32, MemoryError> {
        Ok(self.read_u32(addr)? as i32)
    }

    fn read_u8(&self, addr: u64) -> Result<u8, MemoryError> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }

    /// Read `buf` after every other read of this tick: a memory that batches the tick's
    /// reads (`process::snapshot`) reads these last in the batch, so that a value equal to
    /// the one read first proves it did not change while the batch was read. Elsewhere,
    /// a read now (after the reads already made).
    fn read_late(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read(addr, buf)
    }

    /// A thread's walk begins: `read_late` asks whether *its* reads all came from one
    /// batch (a snapshot). Nothing to do elsewhere.
    fn read_thread_begins(&self) {}

    /// Read several ranges at once: `reqs` are (address, length) pairs whose bytes go one
    /// after the other into `out`. Returns, per request, whether it was read. The live
    /// process does this in one system call.
    fn read_scatter(&self, reqs: &[(u64, usize)], out: &mut [u8]) -> Vec<bool> {
        let mut pos = 0;
        reqs.iter()
            .map(|&(addr, len)| {
                let ok = match out.get_mut(pos..pos + len) {
                    Some(buf) => self.read(addr, buf).is_ok(),
                    None => false,
                };
                pos += len;
                ok
            })
            .collect()
    }

    fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        let mut v = vec![0u8; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }
}

impl<M: Memory + ?Sized> Memory for &M {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read(addr, buf)
    }

    fn read_scatter(&self, reqs: &[(u64, usize)], out: &mut [u8]) -> Vec<bool> {
        (**self).read_scatter(reqs, out)
    }

    fn read_late(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read_late(addr, buf)
    }

    fn read_thread_begins(&self) {
        (**self).read_thread_begins()
    }
}

/// An in-memory image of a process: a set of non-overlapping regions.
#[derive(Default, Clone, Debug)]
pub struct FakeMemory {
    regions: BTreeMap<u64, Vec<u8>>,
}

impl FakeMemory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `data` at `addr` (replacing any region that starts there).
    pub fn map(&mut self, addr: u64, data: Vec<u8>) {
        self.regions.insert(addr, data);
    }

    /// Change bytes of the in-memory image (to build or corrupt it in tests); false if they
    /// are not mapped. This is the fake, not the target: `Memory` has no way to write.
    pub fn patch(&mut self, addr: u64, bytes: &[u8]) -> bool {
        if let Some((start, region)) = self.regions.range_mut(..=addr).next_back() {
            let off = (addr - start) as usize;
            if off + bytes.len() <= region.len() {
                region[off..off + bytes.len()].copy_from_slice(bytes);
                return true;
            }
        }
        false
    }
}

impl Memory for FakeMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let err = MemoryError {
            addr,
            len: buf.len(),
        };
        let (start, region) = self.regions.range(..=addr).next_back().ok_or(err)?;
        let off = (addr - start) as usize;
        let end = off.checked_add(buf.len()).ok_or(err)?;
        if end > region.len() {
            return Err(err);
        }
        buf.copy_from_slice(&region[off..end]);
        Ok(())
    }
}

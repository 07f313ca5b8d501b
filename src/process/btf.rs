//! The running kernel's BTF (`/sys/kernel/btf/vmlinux`): where a member sits in a kernel
//! struct, for the bpf sampler (it reads the interrupted task's `thread.fsbase`, which is
//! `pthread_self()` on x86-64, to find the thread's PyThreadState in the kernel).
//!
//! Only what that needs is parsed: the type section's structs and unions, their members
//! and names. Anything malformed is an error, never a panic.

use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

/// A struct or union: its name and members (name, type id, offset in bits).
#[derive(Clone, Debug, Default)]
struct Composite {
    name: String,
    members: Vec<(String, u32, u32)>,
}

/// The structs and unions of a BTF blob, by type id.
pub struct Btf {
    composites: HashMap<u32, Composite>,
    by_name: HashMap<String, u32>,
    /// Type id → the type it refers to, for typedefs and qualifiers (to see through them).
    refs: HashMap<u32, u32>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn kernel() -> Result<Btf, String> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux")
            .map_err(|e| format!("reading /sys/kernel/btf/vmlinux: {e}"))?;
        Btf::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Btf, String> {
        let bad = |what: &str| format!("malformed BTF ({what})");
        if u16_at(data, 0) != Some(MAGIC) {
            return Err(bad("magic"));
        }
        let hdr_len = u32_at(data, 4).ok_or_else(|| bad("header"))? as usize;
        let type_off = u32_at(data, 8).ok_or_else(|| bad("header"))? as usize;
        let type_len = u32_at(data, 12).ok_or_else(|| bad("header"))? as usize;
        let str_off = u32_at(data, 16).ok_or_else(|| bad("header"))? as usize;
        let str_len = u32_at(data, 20).ok_or_else(|| bad("header"))? as usize;
        let types = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or_else(|| bad("type section"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or_else(|| bad("string section"))?;
        let name = |off: u32| -> String {
            let s = strings.get(off as usize..).unwrap_or(&[]);
            let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        };
        let mut btf = Btf {
            composites: HashMap::new(),
            by_name: HashMap::new(),
            refs: HashMap::new(),
        };
        let mut pos = 0usize;
        let mut id = 1u32;
        while pos + 12 <= types.len() {
            let name_off = u32_at(types, pos).ok_or_else(|| bad("type"))?;
            let info = u32_at(types, pos + 4).ok_or_else(|| bad("type"))?;
            let size_or_type = u32_at(types, pos + 8).ok_or_else(|| bad("type"))?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            pos += 12;
            let extra = match kind {
                1 => 4,                    // INT
                3 => 12,                   // ARRAY
                4 | 5 => 12 * vlen,        // STRUCT, UNION
                6 => 8 * vlen,             // ENUM
                13 => 8 * vlen,            // FUNC_PROTO
                14 => 4,                   // VAR
                15 => 12 * vlen,           // DATASEC
                17 => 4,                   // DECL_TAG
                19 => 12 * vlen,           // ENUM64
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
                _ => return Err(bad("unknown kind")),
            };
            if pos + extra > types.len() {
                return Err(bad("truncated type"));
            }
            match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut c = Composite {
                        name: name(name_off),
                        members: Vec::with_capacity(vlen),
                    };
                    for m in 0..vlen {
                        let at = pos + 12 * m;
                        let mname = u32_at(types, at).unwrap_or(0);
                        let mtype = u32_at(types, at + 4).unwrap_or(0);
                        let moff = u32_at(types, at + 8).unwrap_or(0);
                        let bits = if kind_flag { moff & 0x00ff_ffff } else { moff };
                        c.members.push((name(mname), mtype, bits));
                    }
                    if !c.name.is_empty() {
                        btf.by_name.entry(c.name.clone()).or_insert(id);
                    }
                    btf.composites.insert(id, c);
                }
                8..=11 | 18 => {
                    btf.refs.insert(id, size_or_type);
                }
                _ => {}
            }
            pos += extra;
            id += 1;
        }
        Ok(btf)
    }

    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.refs.get(&id) {
                Some(&next) => id = next,
                None => break,
            }
        }
        id
    }

    /// Byte offset of `path` (member names, e.g. `["thread", "fsbase"]`) inside struct
    /// `name`, looking into anonymous structs and unions on the way.
    pub fn member_offset(&self, name: &str, path: &[&str]) -> Option<u64> {
        let mut id = *self.by_name.get(name)?;
        let mut bits = 0u64;
        for want in path {
            let (off, ty) = self.find_member(id, want, 0)?;
            bits += off;
            id = self.resolve(ty);
        }
        bits.is_multiple_of(8).then_some(bits / 8)
    }

    /// (bit offset, type) of member `want` of composite `id`, through anonymous members.
    fn find_member(&self, id: u32, want: &str, depth: usize) -> Option<(u64, u32)> {
        if depth > 8 {
            return None;
        }
        let c = self.composites.get(&self.resolve(id))?;
        for (mname, mtype, off) in &c.members {
            if mname == want {
                return Some((*off as u64, *mtype));
            }
        }
        for (mname, mtype, off) in &c.members {
            if mname.is_empty() {
                if let Some((inner, ty)) = self.find_member(*mtype, want, depth + 1) {
                    return Some((*off as u64 + inner, ty));
                }
            }
        }
        None
    }
}

/// Offsets in the kernel's `task_struct` the bpf sampler reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    /// Where a task's `pthread_self()` is: `thread.fsbase` on x86-64 (None elsewhere).
    pub pthread: Option<u64>,
    /// `mm` (null once an exiting task has let go of its memory).
    pub mm: Option<u64>,
    /// `flags` (`PF_EXITING` once the task is on its way out).
    pub flags: Option<u64>,
    /// `struct pt_regs`'s `ip` (x86-64): where a task's user registers keep its
    /// instruction pointer.
    pub regs_ip: Option<u64>,
    /// `struct pt_regs`'s `sp` and `bp` (x86-64), for `--native`.
    pub regs_sp: Option<u64>,
    pub regs_bp: Option<u64>,
}

/// The running kernel's task offsets (all None without kernel BTF).
pub fn task_offsets() -> TaskOffsets {
    let Ok(btf) = Btf::kernel() else {
        return TaskOffsets::default();
    };
    TaskOffsets {
        pthread: if cfg!(target_arch = "x86_64") {
            btf.member_offset("task_struct", &["thread", "fsbase"])
        } else {
            None
        },
        mm: btf.member_offset("task_struct", &["mm"]),
        flags: btf.member_offset("task_struct", &["flags"]),
        regs_ip: if cfg!(target_arch = "x86_64") {
            btf.member_offset("pt_regs", &["ip"])
        } else {
            None
        },
        regs_sp: if cfg!(target_arch = "x86_64") {
            btf.member_offset("pt_regs", &["sp"])
        } else {
            None
        },
        regs_bp: if cfg!(target_arch = "x86_64") {
            btf.member_offset("pt_regs", &["bp"])
        } else {
            None
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_fsbase_of_the_running_kernel_or_says_none() {
        match Btf::kernel() {
            Ok(btf) => {
                let off = btf.member_offset("task_struct", &["thread", "fsbase"]);
                assert!(off.is_some_and(|o| o > 0 && o < 65536), "{off:?}");
                assert!(btf
                    .member_offset("task_struct", &["no_such_member"])
                    .is_none());
            }
            Err(e) => eprintln!("no kernel BTF here: {e}"),
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Btf::parse(&[]).is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]).is_err());
    }
}

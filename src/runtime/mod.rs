//! Runtime discovery: find the interpreter in a process (`_PyRuntime` or, before 3.7,
//! `interp_head`), detect its exact version, and choose the `Layout` the walker reads with.
//!
//! Order of evidence: the `_PyRuntime` dynamic symbol of libpython or of the executable,
//! then the `.PyRuntime` section, then a validated scan of the binary's writable data.
//! The version comes from the `Py_Version` symbol (3.11+), the `_Py_DebugOffsets` header
//! (3.13+), or the `PY_VERSION` string in `.rodata`. For 3.13+ the target's own debug
//! offsets drive the layout and our table is a cross-check.

pub mod asyncio;
pub mod debug_offsets;
pub mod debug_schemas;
pub mod layout;
pub mod layouts;
pub mod objects;
pub mod version;

use crate::process::elf::ElfInfo;
use crate::process::maps::{self, MapRange};
use crate::process::Memory;
use debug_offsets::DebugOffsets;
pub use layout::Layout;
use std::fmt;
pub use version::Version;

/// A Python interpreter found in a process.
#[derive(Clone, Debug)]
pub struct PythonRuntime {
    pub version: Version,
    pub layout: Layout,
    /// Address of `_PyRuntime` (3.7+).
    pub runtime_addr: Option<u64>,
    /// Address of the `PyInterpreterState *` that heads the interpreter list.
    pub interp_head_addr: u64,
    /// The file (libpython or executable) that holds the runtime.
    pub binary: String,
    /// Where the layout came from ("built-in table" or "target's _Py_DebugOffsets").
    pub layout_source: &'static str,
    /// Differences between the target's debug offsets and our table (3.13+).
    pub layout_mismatches: Vec<String>,
    /// Address of `_PyThreadState_Current` (2.7, 3.6: the thread state holding the GIL).
    pub thread_state_current: Option<u64>,
}

/// Why a process could not be profiled: each says what the user can do.
#[derive(Debug)]
pub enum DiscoverError {
    NoSuchProcess(i32),
    PermissionDenied(i32, String),
    NotPython {
        pid: i32,
        exe: String,
    },
    Unsupported {
        pid: i32,
        version: String,
    },
    /// Python is loaded but its runtime is not initialised yet (a process just launched).
    NotReady(String),
}

impl fmt::Display for DiscoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoverError::NoSuchProcess(pid) => write!(f, "no process with pid {pid}"),
            DiscoverError::PermissionDenied(pid, what) => write!(
                f,
                "permission denied reading process {pid} ({what}): {}",
                permission_advice(*pid)
            ),
            DiscoverError::NotPython { pid, exe } => write!(
                f,
                "process {pid} ({exe}) is not a Python process: no libpython, _PyRuntime or \
                 Python version found in its memory maps"
            ),
            DiscoverError::Unsupported { pid, version } => write!(
                f,
                "process {pid} runs Python {version}, which pyprof does not support \
                 (supported: {})",
                supported_versions()
            ),
            DiscoverError::NotReady(why) => write!(f, "Python is not initialised yet: {why}"),
        }
    }
}

impl std::error::Error for DiscoverError {}

/// What grants access to `pid`: another user's process only root or CAP_SYS_PTRACE can
/// read (Yama's ptrace_scope does not help there); one's own, also ptrace_scope 0.
fn permission_advice(pid: i32) -> String {
    let owner = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
        });
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let cap =
        "run as root, or grant CAP_SYS_PTRACE (sudo setcap cap_sys_ptrace+ep $(which pyprof))";
    match owner {
        Some(uid) if uid != me => {
            format!("it belongs to another user (uid {uid}, you are uid {me}): {cap}")
        }
        _ => {
            let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            match scope {
                Some(n) if n > 0 => {
                    format!("{cap}, or lower /proc/sys/kernel/yama/ptrace_scope (now {n}) to 0")
                }
                _ => cap.to_string(),
            }
        }
    }
}

fn io_error(pid: i32, e: std::io::Error, what: &str) -> DiscoverError {
    match e.kind() {
        std::io::ErrorKind::NotFound => DiscoverError::NoSuchProcess(pid),
        std::io::ErrorKind::PermissionDenied => {
            DiscoverError::PermissionDenied(pid, format!("{what}: {e}"))
        }
        _ => DiscoverError::NotReady(format!("{what}: {e}")),
    }
}

/// One ELF file mapped by the target that might hold the interpreter.
struct Candidate {
    path: String,
    elf: ElfInfo,
    bias: u64,
    name_version: Option<(u8, u8)>,
}

fn candidates(pid: i32, maps: &[MapRange]) -> Vec<Candidate> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        })
        .unwrap_or_default();
    let mut paths: Vec<&str> = Vec::new();
    // libpython first: with a shared library, the executable holds nothing of interest.
    for m in maps {
        if m.file_name().starts_with("libpython") && !paths.contains(&m.path.as_str()) {
            paths.push(&m.path);
        }
    }
    for m in maps {
        let is_exe = !exe.is_empty() && (m.path == exe || exe.ends_with(&m.path));
        if (is_exe || m.file_name().starts_with("python")) && !paths.contains(&m.path.as_str()) {
            paths.push(&m.path);
        }
    }
    let mut out = Vec::new();
    for path in paths {
        let file_maps: Vec<&MapRange> = maps.iter().filter(|m| m.path == path).collect();
        let Some(elf) = maps::target_file_paths(pid, file_maps[0])
            .iter()
            .find_map(|p| ElfInfo::open(p).ok())
        else {
            continue;
        };
        let Some(bias) = elf.load_bias(&file_maps) else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or("");
        out.push(Candidate {
            path: path.to_string(),
            name_version: version::version_from_file_name(name),
            elf,
            bias,
        });
    }
    out
}

/// Find the interpreter of process `pid`. `mem` reads that process.
pub fn discover(pid: i32, mem: &dyn Memory) -> Result<PythonRuntime, DiscoverError> {
    discover_with(pid, mem, None)
}

/// `discover`, with `table` in place of the built-in layout table (tests use a wrong
/// table to show that 3.13+ targets are walked with their own debug offsets).
pub fn discover_with(
    pid: i32,
    mem: &dyn Memory,
    table: Option<&Layout>,
) -> Result<PythonRuntime, DiscoverError> {
    let maps = maps::read_maps(pid).map_err(|e| io_error(pid, e, "reading memory maps"))?;
    if maps.is_empty() {
        return Err(DiscoverError::NoSuchProcess(pid));
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "unknown executable".into());
    let cands = candidates(pid, &maps);
    check_readable(pid, mem, &maps)?;

    for c in &cands {
        let runtime = c
            .elf
            .symbol("_PyRuntime")
            .or_else(|| c.elf.section(".PyRuntime").map(|s| s.0))
            .map(|a| a.wrapping_add(c.bias));
        let interp_head_sym = c.elf.symbol("interp_head").map(|a| a.wrapping_add(c.bias));
        if runtime.is_none() && interp_head_sym.is_none() && c.name_version.is_none() {
            continue;
        }
        let version = detect_version(mem, c, runtime).ok_or_else(|| DiscoverError::NotPython {
            pid,
            exe: exe.clone(),
        })?;
        return build(pid, mem, c, version, runtime, interp_head_sym, table);
    }
    // Last resort: a static Python without symbols or section; scan its data.
    for c in &cands {
        if let Some(v) = version::find_version_string(c.elf.rodata(), c.name_version) {
            if let Some(layout) = layouts::builtin(v.major, v.minor, false) {
                if let Some(rt) = scan_for_runtime(mem, layout, &maps, &c.path) {
                    return build(pid, mem, c, v, Some(rt), None, table);
                }
            }
        }
    }
    Err(DiscoverError::NotPython { pid, exe })
}

/// A first read tells a permission problem from the rest (process_vm_readv needs ptrace rights).
fn check_readable(pid: i32, mem: &dyn Memory, maps: &[MapRange]) -> Result<(), DiscoverError> {
    let Some(m) = maps.iter().find(|m| m.readable) else {
        return Ok(());
    };
    let mut b = [0u8; 1];
    if mem.read(m.start, &mut b).is_ok() {
        return Ok(());
    }
    let live = crate::process::LiveMemory::new(pid);
    match live.read_errno(m.start, &mut b) {
        Err(libc::EPERM) | Err(libc::EACCES) => Err(DiscoverError::PermissionDenied(
            pid,
            "process_vm_readv: operation not permitted".into(),
        )),
        Err(libc::ESRCH) => Err(DiscoverError::NoSuchProcess(pid)),
        _ => Ok(()),
    }
}

fn detect_version(mem: &dyn Memory, c: &Candidate, runtime: Option<u64>) -> Option<Version> {
    let mut v = None;
    if let Some(addr) = c.elf.symbol("Py_Version") {
        if let Ok(hex) = mem.read_u32(addr.wrapping_add(c.bias)) {
            let cand = Version::from_hex(hex);
            if cand.major == 3 && cand.minor >= 11 {
                v = Some(cand);
            }
        }
    }
    if v.is_none() {
        if let Some(rt) = runtime {
            if let Some(dbg) = DebugOffsets::read(mem, rt) {
                v = Some(Version::from_hex(dbg.version_hex()));
            }
        }
    }
    let mut v = v.or_else(|| version::find_version_string(c.elf.rodata(), c.name_version))?;
    if let Some(rt) = runtime {
        if let Some(dbg) = DebugOffsets::read(mem, rt) {
            v.free_threaded = dbg.free_threaded();
        }
    }
    Some(v)
}

fn build(
    pid: i32,
    mem: &dyn Memory,
    c: &Candidate,
    version: Version,
    runtime: Option<u64>,
    interp_head_sym: Option<u64>,
    table: Option<&Layout>,
) -> Result<PythonRuntime, DiscoverError> {
    let unsupported = || DiscoverError::Unsupported {
        pid,
        version: version.to_string(),
    };
    let builtin =
        table.or_else(|| layouts::builtin(version.major, version.minor, version.free_threaded));
    let dbg = runtime.and_then(|rt| DebugOffsets::read(mem, rt));
    let mut notes = Vec::new();
    let (layout, source) = match (&dbg, builtin) {
        (Some(d), base) if (version.major, version.minor) >= (3, 13) => {
            // The target's own table drives the walk; ours fills what it lacks.
            let base = match base {
                Some(b) => b,
                None => {
                    let newest = layouts::newest(version.free_threaded).ok_or_else(unsupported)?;
                    notes.push(format!(
                        "no built-in layout for Python {}.{}: walking with the target's \
                         _Py_DebugOffsets, other fields from {}.{}",
                        version.major, version.minor, newest.major, newest.minor
                    ));
                    newest
                }
            };
            let (mut l, diffs) = d.to_layout(base);
            l.major = version.major;
            l.minor = version.minor;
            notes.extend(
                diffs
                    .into_iter()
                    .map(|m| format!("debug offsets differ from the built-in table: {m}")),
            );
            (l, "target's _Py_DebugOffsets")
        }
        (_, Some(base)) => (base.clone(), "built-in table"),
        (_, None) => return Err(unsupported()),
    };
    let interp_head_addr = match (runtime, layout.runtime_interp_head) {
        (Some(rt), Some(off)) => rt + off as u64,
        _ => interp_head_sym.ok_or_else(unsupported)?,
    };
    Ok(PythonRuntime {
        version,
        layout,
        runtime_addr: runtime,
        interp_head_addr,
        binary: c.path.clone(),
        layout_source: source,
        layout_mismatches: notes,
        thread_state_current: c
            .elf
            .symbol("_PyThreadState_Current")
            .map(|a| a.wrapping_add(c.bias)),
    })
}

/// Scan the writable mappings of `path` for a `_PyRuntime` whose interpreter list leads
/// to a thread state that points back at its interpreter.
fn scan_for_runtime(
    mem: &dyn Memory,
    layout: &Layout,
    maps: &[MapRange],
    path: &str,
) -> Option<u64> {
    let off = layout.runtime_interp_head? as u64;
    for m in maps.iter().filter(|m| m.path == path && m.writable) {
        let len = (m.end - m.start).min(64 << 20) as usize;
        let data = mem.read_vec(m.start, len).ok()?;
        for i in (0..len.saturating_sub(off as usize + 8)).step_by(8) {
            let p = i + off as usize;
            let interp = u64::from_le_bytes(data[p..p + 8].try_into().ok()?);
            if interp < 0x1000 || interp % 8 != 0 {
                continue;
            }
            let Ok(tstate) = mem.read_u64(interp + layout.interp_tstate_head as u64) else {
                continue;
            };
            if tstate < 0x1000 || tstate % 8 != 0 {
                continue;
            }
            if mem.read_u64(tstate + layout.tstate_interp as u64).ok() == Some(interp) {
                return Some(m.start + i as u64);
            }
        }
    }
    None
}

/// The versions with a built-in layout, e.g. "2.7, 3.6, 3.7, ... 3.13".
pub fn supported_versions() -> String {
    let mut v: Vec<String> = Vec::new();
    for (major, minor) in std::iter::once((2u8, 7u8)).chain((0..=30).map(|m| (3u8, m))) {
        if layouts::builtin(major, minor, false).is_some() {
            v.push(format!("{major}.{minor}"));
        }
    }
    v.join(", ")
}

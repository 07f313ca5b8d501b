//! Where a thread was executing: the interpreter, or native code outside it (a C
//! extension, a library it calls, the kernel's vDSO). From the target's executable
//! mappings, read once and again when an instruction pointer falls outside all of them
//! (a library loaded since: `dlopen`), at most every [`REREAD_EVERY`].

use super::maps::{self, MapRange};
use std::time::{Duration, Instant};

/// The soonest the maps are read again for an address no mapping holds.
pub const REREAD_EVERY: Duration = Duration::from_millis(10);

/// Where an instruction pointer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place<'a> {
    /// In the interpreter's own file (libpython, or the executable holding it): the
    /// instruction's own time, C functions built into the interpreter included. The
    /// dynamic loader counts as the interpreter's: code runs there only to bind a symbol
    /// or to find a thread-local variable (libpython's own, at every instruction that
    /// reads the thread state), never work a program asked for.
    Interpreter,
    /// Outside it, in this file (its name: `libopenblas.so.0`, `[vdso]`, `[anonymous]`
    /// for code in no file, `[unknown]` for an address in no executable mapping).
    Native(&'a str),
}

/// The target's executable mappings, by address.
#[derive(Debug, Default)]
pub struct Places {
    pid: i32,
    /// Paths (as the target's maps show them) of the interpreter's files.
    interpreter: Vec<String>,
    /// (start, end, index into `names`; `usize::MAX`: the interpreter), by start.
    exec: Vec<(u64, u64, usize)>,
    names: Vec<String>,
    read_at: Option<Instant>,
}

impl Places {
    /// The places of process `pid`, whose interpreter is in file `binary` (a path as its
    /// maps show it); the process's executable counts as the interpreter too.
    pub fn new(pid: i32, binary: &str) -> Places {
        let mut interpreter = vec![binary.to_string()];
        if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
            let exe = exe.to_string_lossy();
            interpreter.push(exe.trim_end_matches(" (deleted)").to_string());
        }
        Places {
            pid,
            interpreter,
            ..Default::default()
        }
    }

    /// Set the mappings from `maps` (tests; `place` reads the target's own).
    pub fn set_maps(&mut self, maps: &[MapRange]) {
        self.exec.clear();
        self.names.clear();
        for m in maps.iter().filter(|m| m.executable) {
            let path = m.path.trim_end_matches(" (deleted)");
            let name = if path.is_empty() {
                "[anonymous]"
            } else if path.starts_with('[') {
                path
            } else {
                m.file_name().trim_end_matches(" (deleted)")
            };
            let loader = ["ld-linux", "ld-musl", "ld.so"]
                .iter()
                .any(|p| name.starts_with(p));
            let idx = if loader || (!path.is_empty() && self.interpreter.iter().any(|p| p == path))
            {
                usize::MAX
            } else {
                match self.names.iter().position(|n| n == name) {
                    Some(i) => i,
                    None => {
                        self.names.push(name.to_string());
                        self.names.len() - 1
                    }
                }
            };
            self.exec.push((m.start, m.end, idx));
        }
        self.exec.sort_unstable();
    }

    fn find(&self, ip: u64) -> Option<usize> {
        let i = self.exec.partition_point(|e| e.0 <= ip);
        let e = self.exec.get(i.checked_sub(1)?)?;
        (ip < e.1).then_some(e.2)
    }

    /// Where `ip` is (reading the target's maps first if none is known, or if no
    /// mapping holds `ip` and the last read is older than [`REREAD_EVERY`]).
    pub fn place(&mut self, ip: u64) -> Place<'_> {
        let mut found = self.find(ip);
        let stale = self.read_at.is_none_or(|t| t.elapsed() >= REREAD_EVERY);
        if found.is_none() && stale && self.pid > 0 {
            if let Ok(m) = maps::read_maps(self.pid) {
                self.set_maps(&m);
            }
            self.read_at = Some(Instant::now());
            found = self.find(ip);
        }
        match found {
            Some(usize::MAX) => Place::Interpreter,
            Some(i) => Place::Native(&self.names[i]),
            None => Place::Native("[unknown]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_placed_in_their_file() {
        let text = "1000-2000 r-xp 00000000 08:01 1 /usr/lib/libpython3.12.so.1.0\n\
                    2000-3000 rw-p 00001000 08:01 1 /usr/lib/libpython3.12.so.1.0\n\
                    5000-6000 r-xp 00000000 08:01 2 /venv/numpy/_core/_multiarray_umath.so (deleted)\n\
                    7000-8000 r-xp 00000000 00:00 0 \n\
                    9000-a000 r-xp 00000000 00:00 0 [vdso]\n\
                    b000-c000 r-xp 00000000 08:01 3 /usr/bin/python3.12\n\
                    d000-e000 r-xp 00000000 08:01 4 /lib64/ld-linux-x86-64.so.2\n\
                    e000-f000 r-xp 00000000 08:01 5 /lib/x86_64-linux-gnu/libc.so.6\n";
        let mut p = Places::new(0, "/usr/lib/libpython3.12.so.1.0");
        p.interpreter.push("/usr/bin/python3.12".into());
        p.set_maps(&maps::parse_maps(text));
        assert_eq!(p.place(0x1000), Place::Interpreter);
        assert_eq!(p.place(0x1fff), Place::Interpreter);
        assert_eq!(p.place(0xb800), Place::Interpreter);
        assert_eq!(
            p.place(0xd800),
            Place::Interpreter,
            "the loader: TLS, binding"
        );
        assert_eq!(p.place(0xe800), Place::Native("libc.so.6"));
        assert_eq!(
            p.place(0x2800),
            Place::Native("[unknown]"),
            "not executable"
        );
        assert_eq!(p.place(0x5010), Place::Native("_multiarray_umath.so"));
        assert_eq!(p.place(0x7000), Place::Native("[anonymous]"));
        assert_eq!(p.place(0x9abc), Place::Native("[vdso]"));
        assert_eq!(p.place(0xffff_ffff_8100_0000), Place::Native("[unknown]"));
        assert_eq!(p.place(0x10), Place::Native("[unknown]"));
    }
}

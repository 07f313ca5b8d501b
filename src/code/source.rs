//! Source files as the target sees them: read through the target's own root directory
//! (`/proc/PID/root`), so a target in a chroot or a container gets its own files, not
//! files of the same name on the host.
//!
//! The root is opened once, at attach: the descriptor stays valid after the target has
//! exited, so a launched program's sources can still be read when recording ends. Paths
//! are resolved with `openat2(RESOLVE_IN_ROOT)`, so absolute symlinks inside the
//! target's tree stay inside it.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};

/// Largest source file read.
const MAX_SOURCE: u64 = 4 << 20;

/// The target's root directory, held open.
#[derive(Debug)]
pub struct SourceRoot {
    dir: File,
    pid: i32,
}

impl SourceRoot {
    /// Open `/proc/PID/root` (None when that is not allowed or the process is gone).
    pub fn open(pid: i32) -> Option<SourceRoot> {
        let dir = File::open(format!("/proc/{pid}/root")).ok()?;
        Some(SourceRoot { dir, pid })
    }

    /// The text of `path` (absolute, as the target names it), or why it cannot be read.
    pub fn read(&self, path: &str) -> Result<String, String> {
        if path.starts_with('<') {
            return Err(format!(
                "{path} has no source file (frozen or generated code)"
            ));
        }
        if !path.starts_with('/') {
            return Err(format!(
                "{path} is a relative path; the target's directory at its start is not known"
            ));
        }
        let file = self.open_in_root(path).map_err(|e| {
            format!(
                "cannot read {path} in the target's root (pid {}): {e}",
                self.pid
            )
        })?;
        let mut text = String::new();
        let mut bytes = Vec::new();
        file.take(MAX_SOURCE)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        text.push_str(&String::from_utf8_lossy(&bytes));
        Ok(text)
    }

    fn open_in_root(&self, path: &str) -> std::io::Result<File> {
        let c = std::ffi::CString::new(path.trim_start_matches('/'))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT;
        // SAFETY: `c` is a NUL-terminated path and `how` a valid open_how for this call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor to us.
            return Ok(unsafe { File::from_raw_fd(fd as i32) });
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOSYS) {
            return Err(err);
        }
        // Kernels before 5.6: a plain openat below the root (absolute symlinks would
        // then resolve against our root, not the target's).
        // SAFETY: as above.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        Ok(unsafe { File::from_raw_fd(fd) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_files_through_own_root() {
        let root = SourceRoot::open(std::process::id() as i32).expect("own root");
        let me = concat!(env!("CARGO_MANIFEST_DIR"), "/src/code/source.rs");
        let text = root.read(me).expect("read own source");
        assert!(text.contains("RESOLVE_IN_ROOT"));
        assert!(root.read("<frozen importlib._bootstrap>").is_err());
        let err = root.read("/no/such/file.py").unwrap_err();
        assert!(err.contains("/no/such/file.py"), "{err}");
    }
}

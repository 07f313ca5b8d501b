//! The live target: memory reads with `process_vm_readv`, pausing with ptrace (remoteprocess).

use super::memory::{Memory, MemoryError};
use std::sync::atomic::{AtomicU64, Ordering};

/// Read-only view of a running process's memory. There is no write method.
pub struct LiveMemory {
    pid: i32,
    reads: AtomicU64,
}

impl LiveMemory {
    pub fn new(pid: i32) -> Self {
        LiveMemory {
            pid,
            reads: AtomicU64::new(0),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Number of `process_vm_readv` calls made so far (the cost of sampling).
    pub fn read_calls(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Read with the raw errno on failure (used at attach time to tell EPERM from ESRCH).
    pub fn read_errno(&self, addr: u64, buf: &mut [u8]) -> Result<(), i32> {
        if buf.is_empty() {
            return Ok(());
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` describes `buf`, which we own mutably for the call; the remote
        // iovec is only read by the kernel on the target's side.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        if n as usize != buf.len() {
            return Err(libc::EFAULT);
        }
        Ok(())
    }
}

/// Most iovecs one `process_vm_readv` takes (IOV_MAX).
const MAX_IOV: usize = 1024;

impl Memory for LiveMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.read_errno(addr, buf).map_err(|_| MemoryError {
            addr,
            len: buf.len(),
        })
    }

    fn read_scatter(&self, reqs: &[(u64, usize)], out: &mut [u8]) -> Vec<bool> {
        let total: usize = reqs.iter().map(|r| r.1).sum();
        if total > out.len() {
            return vec![false; reqs.len()];
        }
        let mut ok = vec![false; reqs.len()];
        let mut start = 0; // first request of this batch
        let mut pos = 0; // its offset in `out`
        while start < reqs.len() {
            let batch = &reqs[start..(start + MAX_IOV).min(reqs.len())];
            let len: usize = batch.iter().map(|r| r.1).sum();
            let local = libc::iovec {
                iov_base: out[pos..].as_mut_ptr() as *mut libc::c_void,
                iov_len: len,
            };
            let remote: Vec<libc::iovec> = batch
                .iter()
                .map(|&(addr, n)| libc::iovec {
                    iov_base: addr as usize as *mut libc::c_void,
                    iov_len: n,
                })
                .collect();
            self.reads.fetch_add(1, Ordering::Relaxed);
            // SAFETY: `local` covers `len` bytes of `out`, which we own mutably; the remote
            // iovecs are only read by the kernel on the target's side.
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid,
                    &local,
                    1,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            // The kernel stops at the first range it cannot read: those before it are good.
            let mut done = n.max(0) as usize;
            for (i, &(_, n)) in batch.iter().enumerate() {
                if done >= n {
                    ok[start + i] = true;
                    done -= n;
                } else {
                    break;
                }
            }
            let good = ok[start..start + batch.len()]
                .iter()
                .take_while(|&&b| b)
                .count();
            if good < batch.len() {
                // Skip the failed range and go on with the rest.
                let skip_pos: usize = batch[..=good].iter().map(|r| r.1).sum();
                pos += skip_pos;
                start += good + 1;
            } else {
                pos += len;
                start += batch.len();
            }
        }
        ok
    }
}

/// Whether a process still lives, asked cheaply enough to ask often: a pidfd polled
/// without waiting (the kernel marks it readable once every thread of the process has
/// exited, reaped or not), else a descriptor kept open on `/proc/PID/task/PID/stat`
/// (one `pread`, no path lookup, but the kernel formats the whole line at each read).
pub struct Liveness {
    pidfd: Option<std::os::fd::OwnedFd>,
    file: Option<std::fs::File>,
    pid: i32,
}

impl Liveness {
    pub fn new(pid: i32) -> Liveness {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags; a descriptor it returns is ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) });
        Liveness {
            file: if pidfd.is_some() {
                None
            } else {
                // The main thread's own stat, not the process's: the state letter is
                // the same, but /proc/PID/stat sums the CPU time of every thread.
                std::fs::File::open(format!("/proc/{pid}/task/{pid}/stat")).ok()
            },
            pidfd,
            pid,
        }
    }

    pub fn alive(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileExt;
        if let Some(fd) = &self.pidfd {
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd, no wait.
            let n = unsafe { libc::poll(&mut p, 1, 0) };
            if n >= 0 {
                return n == 0 || p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0;
            }
        }
        let Some(f) = &self.file else {
            return is_alive(self.pid);
        };
        let mut buf = [0u8; 256];
        match f.read_at(&mut buf, 0) {
            // The state is the field after the parenthesised command name.
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                let state = text
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next());
                !matches!(state, Some('Z') | Some('X') | None)
            }
            Err(_) => false, // the process is gone: its /proc entry reads as ESRCH
        }
    }
}

/// Is a process with this pid alive (and not a zombie)?
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the field after the parenthesised command name
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// A process's command line, arguments joined by spaces (empty if unreadable).
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod liveness_tests {
    use super::Liveness;
    use std::time::{Duration, Instant};

    /// A child that exits is seen gone while still a zombie (not reaped), and after.
    #[test]
    fn a_process_that_exits_is_seen_gone_before_and_after_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id() as i32;
        let mut l = Liveness::new(pid);
        assert!(l.alive(), "a sleeping child reads as gone");
        child.kill().unwrap();
        // Not reaped yet: a zombie.
        let t = Instant::now();
        while l.alive() {
            assert!(t.elapsed() < Duration::from_secs(5), "a killed child still reads alive");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(!l.alive());
        assert!(!Liveness::new(pid).alive() || std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}

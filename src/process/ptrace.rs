//! Pausing threads of the target with ptrace, for as short a time as possible.
//!
//! A thread is paused with `PTRACE_SEIZE` + `PTRACE_INTERRUPT` (no SIGSTOP, so the target
//! sees no signal and a dying pyprof leaves it running: the kernel detaches a tracer that
//! exits) and resumed with `PTRACE_DETACH`. A signal that arrives while it is paused is
//! handed back on detach. Threads are not kept seized between ticks: that would save
//! one system call per pause, but a seized thread waits for its tracer on every signal
//! and at its exit, so the target's signals would be delayed until the next tick.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Threads paused until this is dropped.
#[derive(Debug, Default)]
pub struct Paused {
    /// Paused threads, with the signal to hand back on resume.
    threads: Vec<(Pid, Option<Signal>)>,
    /// System calls made (pausing and, on drop, resuming).
    pub syscalls: u64,
    /// When the first thread was paused.
    pub since: Option<std::time::Instant>,
}

impl Paused {
    pub fn tids(&self) -> impl Iterator<Item = u64> + '_ {
        self.threads.iter().map(|(p, _)| p.as_raw() as u64)
    }

    pub fn contains(&self, tid: u64) -> bool {
        self.threads.iter().any(|(p, _)| p.as_raw() as u64 == tid)
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Pause one more thread. Ok(false) if it no longer exists.
    pub fn add(&mut self, tid: u64) -> Result<bool, Errno> {
        if self.contains(tid) {
            return Ok(true);
        }
        let pid = Pid::from_raw(tid as i32);
        self.since.get_or_insert_with(std::time::Instant::now);
        self.syscalls += 1;
        match ptrace::seize(pid, ptrace::Options::PTRACE_O_TRACEEXIT) {
            Ok(()) => {}
            Err(Errno::ESRCH) => return Ok(false),
            Err(Errno::EPERM) if !std::path::Path::new(&format!("/proc/{tid}")).exists() => {
                // Exiting threads refuse to be traced.
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        self.syscalls += 1;
        if let Err(e) = ptrace::interrupt(pid) {
            self.syscalls += 1;
            let _ = ptrace::detach(pid, None);
            return if e == Errno::ESRCH { Ok(false) } else { Err(e) };
        }
        let mut signal = None;
        for _ in 0..64 {
            self.syscalls += 1;
            match waitpid(pid, Some(WaitPidFlag::__WALL)) {
                // Our interrupt, a group stop (the target was SIGSTOPped), or its exit.
                Ok(WaitStatus::PtraceEvent(..)) => {
                    self.threads.push((pid, signal));
                    return Ok(true);
                }
                // A signal was on its way: the thread is stopped at its delivery. Keep it
                // to hand back on resume.
                Ok(WaitStatus::Stopped(_, sig)) => {
                    signal = Some(sig);
                    self.threads.push((pid, signal));
                    return Ok(true);
                }
                Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => return Ok(false),
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => return Ok(false),
                Err(e) => {
                    self.syscalls += 1;
                    let _ = ptrace::detach(pid, None);
                    return Err(e);
                }
            }
        }
        self.syscalls += 1;
        let _ = ptrace::detach(pid, None);
        Err(Errno::EAGAIN)
    }

    /// The instruction pointer of paused thread `tid` (one `PTRACE_GETREGS`): where it
    /// was executing when it was paused. None if it is not paused here, or elsewhere
    /// than on x86-64.
    pub fn ip(&mut self, tid: u64) -> Option<u64> {
        self.regs(tid).map(|r| r.ip)
    }

    /// The instruction, stack and frame pointers of paused thread `tid` (one
    /// `PTRACE_GETREGS`). None if it is not paused here, or elsewhere than on x86-64.
    pub fn regs(&mut self, tid: u64) -> Option<super::native::Regs> {
        let pid = self
            .threads
            .iter()
            .find(|(p, _)| p.as_raw() as u64 == tid)?
            .0;
        self.syscalls += 1;
        #[cfg(target_arch = "x86_64")]
        {
            ptrace::getregs(pid).ok().map(|r| super::native::Regs {
                ip: r.rip,
                sp: r.rsp,
                bp: r.rbp,
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = pid;
            None
        }
    }

    /// Resume every paused thread now.
    pub fn resume(&mut self) {
        for (pid, sig) in self.threads.drain(..) {
            self.syscalls += 1;
            let _ = ptrace::detach(pid, sig);
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        self.resume();
    }
}

/// Pause the threads `tids`; threads that are gone are skipped.
pub fn pause(tids: &[u64]) -> Result<Paused, Errno> {
    let mut p = Paused::default();
    for &t in tids {
        p.add(t)?;
    }
    Ok(p)
}

/// Pause every thread of process `pid`, including threads started while pausing.
pub fn pause_all(pid: i32) -> Result<Paused, Errno> {
    let mut p = Paused::default();
    for _ in 0..16 {
        let tids = super::threads::task_ids(pid);
        p.syscalls += 4;
        let new: Vec<u64> = tids.into_iter().filter(|&t| !p.contains(t)).collect();
        if new.is_empty() {
            break;
        }
        for t in new {
            p.add(t)?;
        }
    }
    if p.is_empty() {
        return Err(Errno::ESRCH);
    }
    Ok(p)
}

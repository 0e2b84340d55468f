//! Descriptors the caller left open beyond stdio.
//!
//! A container gets none of them (as with Docker and podman), and the processes that outlive
//! the command that started them (a mount's daemon, a container's monitor) close them: a daemon
//! that kept its caller's pipe or lock file open would hold that caller's reader or lock for as
//! long as the mount lives (`flock LOCK strata mount ...` would never release LOCK).

use std::os::fd::RawFd;
use std::sync::Mutex;

static INHERITED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// At start-up, before anything is opened: note the inherited descriptors and mark them
/// close-on-exec, so no program strata runs receives them.
pub fn note_inherited() {
    let listed: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // The listing's own descriptor is closed by now: fcntl tells it from the real ones.
    let fds: Vec<RawFd> = listed
        .into_iter()
        .filter(|&fd| fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect();
    for &fd in &fds {
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    *INHERITED.lock().unwrap_or_else(|e| e.into_inner()) = fds;
}

/// In a process that outlives its caller, right after the fork: close what was inherited.
/// Once only: the numbers may name descriptors of this process's own afterwards, and a later
/// fork (the monitor's daemon) must not close those.
pub fn close_inherited() {
    let fds = std::mem::take(&mut *INHERITED.lock().unwrap_or_else(|e| e.into_inner()));
    for fd in fds {
        unsafe { libc::close(fd) };
    }
}

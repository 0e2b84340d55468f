//! What the container verbs do differently for a rootless container (one made by an
//! unprivileged user, in a user namespace: see [`crate::launcher::userns`]): no cgroups, and
//! its files (owned by its subordinate ids) are removed from inside such a namespace.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};

use crate::launcher::cgroups::Limits;
use crate::launcher::userns::{self, UserNs};

/// Limits need a cgroup, which an unprivileged user cannot make on this host's cgroup v1
/// hierarchies (nor on a v2 one without systemd's delegation): refused before anything is
/// made, never accepted and ignored.
pub fn refuse_limits(l: &Limits) -> Result<()> {
    let asked: Vec<&str> = [
        ("--memory", l.memory.is_some()),
        ("--cpus", l.cpus.is_some()),
        ("--pids-limit", l.pids.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(f, _)| *f)
    .collect();
    if let Some(first) = asked.first() {
        bail!(
            "{first}: resource limits are not supported for rootless containers \
             (they need a cgroup, which an unprivileged user cannot make here)"
        );
    }
    Ok(())
}

/// The newest child of this process: the root's daemon, just forked by the mount (the
/// helper that wrote the maps has been waited for).
pub fn newest_child() -> Option<u32> {
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/children")).ok()?;
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .next_back()
}

/// A daemon its killed monitor left: asked to unmount and exit (SIGTERM, which it handles
/// by unmounting in its namespace), killed if it has not after 10 s.
pub fn stop_daemon(pid: u32, start: u64) {
    use crate::state::alive;
    use std::time::{Duration, Instant};
    if pid == 0 || !alive(pid, start) {
        return;
    }
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let t = Instant::now();
    while alive(pid, start) {
        if t.elapsed() > Duration::from_secs(10) {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        if t.elapsed() > Duration::from_secs(20) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Run `f` in a child process that is in a new user namespace with `ns`'s maps, where the
/// container's files have owners the caller can act for; its result, an error as one line.
/// The calling process must have one thread (it forks).
pub fn in_userns(ns: &UserNs, f: &dyn Fn() -> Result<()>) -> Result<()> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    match unsafe { libc::fork() } {
        -1 => bail!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            drop(rd);
            let r = userns::enter(ns).and_then(|()| f());
            let code = match r {
                Ok(()) => 0,
                Err(e) => {
                    let _ = std::fs::File::from(wr).write_all(format!("{e:#}").as_bytes());
                    1
                }
            };
            unsafe { libc::_exit(code) }
        }
        child => {
            drop(wr);
            let mut msg = String::new();
            let _ = std::fs::File::from(rd).read_to_string(&mut msg);
            let mut status = 0;
            unsafe { libc::waitpid(child, &mut status, 0) };
            if !msg.is_empty() {
                bail!("{}", msg.trim());
            }
            if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                bail!("the process working in the container's user namespace failed");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_is_refused_by_its_flag() {
        assert!(refuse_limits(&Limits::default()).is_ok());
        let e = refuse_limits(&Limits {
            memory: Some(1 << 20),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("--memory: resource limits are not supported"),
            "{e}"
        );
        let e = refuse_limits(&Limits {
            pids: Some(5),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--pids-limit:"), "{e}");
    }
}

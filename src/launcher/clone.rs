//! Starting the container's first process: clone(2) with a new PID namespace, held at a pipe
//! until the caller has put it in its cgroups, then set up and exec'd by [`super::start`].
//! A second pipe (close-on-exec) carries back why it did not start; its closing without a
//! word means the exec happened.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use super::tty::{self, Io};
use super::{namespaces, process, Failure, Spec};

/// A cloned process waiting for [`Started::release`].
pub struct Started {
    pub pid: Pid,
    go: Option<OwnedFd>,
    report: OwnedFd,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn child(
    body: &dyn Fn(RawFd) -> isize,
    io: &Io,
    go: RawFd,
    go_w: RawFd,
    report_r: RawFd,
    report: RawFd,
) -> isize {
    unsafe {
        libc::close(go_w);
        libc::close(report_r);
        // The monitor is the container's only parent: if it dies, so does the container.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    let mut b = [0u8; 1];
    if unsafe { libc::read(go, b.as_mut_ptr() as *mut libc::c_void, 1) } != 1 {
        // The caller gave up before the start.
        unsafe { libc::_exit(super::EXIT_FAILED) }
    }
    unsafe { libc::close(go) };
    tty::stdin(io);
    body(report)
}

/// Clone the container's first process (PID 1 of a new PID namespace), which runs
/// [`super::start`] once released.
pub fn spawn(spec: &Spec, io: Io) -> Result<Started> {
    spawn_with(namespaces::clone_flags(), io, &|report| {
        super::start(spec, &io, report)
    })
}

/// Clone a process with `flags` that takes its stdin from `io` and runs `body` (given the
/// report fd) once released.
pub fn spawn_with(flags: CloneFlags, io: Io, body: &dyn Fn(RawFd) -> isize) -> Result<Started> {
    let (go_r, go_w) = pipe()?;
    let (rep_r, rep_w) = pipe()?;
    let (g, gw, rr, rw) = (
        go_r.as_raw_fd(),
        go_w.as_raw_fd(),
        rep_r.as_raw_fd(),
        rep_w.as_raw_fd(),
    );
    let mut stack = vec![0u8; 1 << 20];
    let cb = Box::new(|| child(body, &io, g, gw, rr, rw));
    let pid = unsafe { nix::sched::clone(cb, &mut stack, flags, Some(libc::SIGCHLD)) }
        .context("cannot create the container's process (clone)")?;
    drop(go_r);
    drop(rep_w);
    Ok(Started {
        pid,
        go: Some(go_w),
        report: rep_r,
    })
}

impl Started {
    /// Let the process go on, and wait until it has exec'd the command (Ok) or failed.
    pub fn release(mut self) -> Result<(), Failure> {
        let go = self.go.take().expect("released once");
        let n = unsafe { libc::write(go.as_raw_fd(), b"g".as_ptr() as *const libc::c_void, 1) };
        drop(go);
        if n != 1 {
            return Err(Failure::setup(
                "the container's process ended before it started",
            ));
        }
        let mut text = String::new();
        let mut f = std::fs::File::from(self.report);
        let _ = f.read_to_string(&mut text);
        match process::parse_report(&text) {
            None => Ok(()),
            Some(f) => Err(f),
        }
    }
}

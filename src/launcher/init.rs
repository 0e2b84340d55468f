//! `--init`: a tiny init as PID 1 (what tini is to `docker run --init`). The command runs as
//! its child; every signal the init gets is passed on to it, every orphan that ends up under it
//! is reaped, and the init exits with the command's status (128+N when signal N killed it).
//!
//! Without it the command is PID 1 itself and, as in Docker, the kernel drops signals it has
//! no handler for (so `kill -9 $$` from inside does nothing) and nothing reaps orphans.

use std::os::fd::RawFd;

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::process::{self, Command};
use super::syscall::Syscall;

/// The status a shell reports for a wait status: the exit code, or 128+N for signal N.
pub fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

pub fn run(sys: &dyn Syscall, cmd: &Command, report: RawFd) -> ! {
    let all = SigSet::all();
    let _ = all.thread_block();
    match unsafe { fork() } {
        Err(e) => {
            process::report(
                report,
                &super::Failure::setup(format!("init: fork: {}", e.desc())),
            );
            unsafe { libc::_exit(super::EXIT_FAILED) }
        }
        Ok(ForkResult::Child) => {
            let _ = SigSet::empty().thread_set_mask();
            let f = process::exec(sys, cmd);
            process::report(report, &f);
            unsafe { libc::_exit(f.code) }
        }
        Ok(ForkResult::Parent { child }) => {
            // The child's copy closes at its exec, and the parent reads until then.
            unsafe { libc::close(report) };
            supervise(child, &all)
        }
    }
}

fn supervise(child: Pid, set: &SigSet) -> ! {
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        // Reap everything that has ended; the command's own end ends the init.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) => {
                    if ws.pid() == Some(child) {
                        if let Some(code) = exit_code(ws) {
                            unsafe { libc::_exit(code) }
                        }
                    }
                }
            }
        }
    }
}

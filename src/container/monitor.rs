//! Waiting for the container's PID 1 as its parent: signals sent to `strata run` are passed on
//! to it (Docker's sig-proxy), and its end is turned into Docker's exit code.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::launcher::init::exit_code;

static CHILD: AtomicI32 = AtomicI32::new(0);
/// With a terminal the window size goes to the pty (whose kernel tells the foreground job),
/// not to PID 1 as a signal.
static TTY: AtomicBool = AtomicBool::new(false);
static WINCH: AtomicBool = AtomicBool::new(false);

/// The signals a foreground `docker run` passes on.
const PROXIED: &[libc::c_int] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

extern "C" fn forward(sig: libc::c_int) {
    if sig == libc::SIGWINCH && TTY.load(Ordering::SeqCst) {
        WINCH.store(true, Ordering::SeqCst);
        return;
    }
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        unsafe { libc::kill(pid, sig) };
    }
}

/// Pass the proxied signals on to `pid` from now on.
pub fn proxy_signals(pid: Pid) {
    CHILD.store(pid.as_raw(), Ordering::SeqCst);
    for s in PROXIED {
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(*s, &sa, std::ptr::null_mut());
        }
    }
}

/// Window size changes go to the pty's relay from now on (`on`), or to PID 1 again.
pub fn tty_mode(on: bool) {
    TTY.store(on, Ordering::SeqCst);
    WINCH.store(on, Ordering::SeqCst);
}

/// Has the caller's window changed since the last look?
pub fn take_winch() -> bool {
    WINCH.swap(false, Ordering::SeqCst)
}

/// Stop passing signals on (the process is gone; its pid may be reused).
pub fn stop_proxy() {
    CHILD.store(0, Ordering::SeqCst);
}

/// Wait for `pid` to end: its exit code, or 128+N for signal N.
pub fn wait(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(ws) => {
                if let Some(code) = exit_code(ws) {
                    return code;
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return crate::launcher::EXIT_FAILED,
        }
    }
}

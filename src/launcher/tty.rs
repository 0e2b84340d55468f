//! The container's standard input and its terminal (`-i`, `-t`).
//!
//! Without `-t` the process keeps the monitor's stdout and stderr (a detached one gets pipes
//! its monitor reads instead), and its stdin is what the caller chose: the caller's own (`-i`), a pipe the monitor holds open and never writes
//! (`-d -i`: Docker keeps stdin open for a later attach), or /dev/null.
//!
//! With `-t`, as runc does with its console socket, the pty is made inside the container (from
//! its own devpts instance, once the process is in its root and is its user, so `tty` names
//! /dev/pts/0 and the slave belongs to the user): the process becomes a session leader with the
//! slave as its controlling terminal and as its stdin, stdout and stderr, and the master is sent
//! to the monitor over a unix socket, which relays it (src/container/attach.rs).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

use super::Failure;

/// What the cloned process does with its stdio before it runs the command.
#[derive(Debug, Default, Clone, Copy)]
pub struct Io {
    /// Put this fd at 0 (None: keep the monitor's stdin).
    pub stdin: Option<RawFd>,
    /// Put these at 1 and 2 (None: keep the monitor's): a detached container's output goes
    /// through pipes its monitor reads, to keep the two streams apart in the log.
    pub stdout: Option<RawFd>,
    pub stderr: Option<RawFd>,
    /// Make a pty inside the container and send its master over this socket.
    pub console: Option<RawFd>,
    /// The window size to give the pty at once (the caller's terminal's).
    pub size: Option<libc::winsize>,
}

/// In the clone, before anything else: the stdin (and stdout, stderr) chosen for it.
pub fn stdin(io: &Io) {
    for (fd, to) in [(io.stdin, 0), (io.stdout, 1), (io.stderr, 2)] {
        if let Some(fd) = fd {
            unsafe { libc::dup2(fd, to) };
        }
    }
}

fn errno(what: &str) -> Failure {
    Failure::setup(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// The pty made for the container's first process while its /dev was set up (its slave is
/// /dev/console): (master, slave).
static MADE: std::sync::Mutex<Option<(OwnedFd, OwnedFd)>> = std::sync::Mutex::new(None);

/// Keep the pty made with /dev (see [`super::syscall::Syscall::open_console`]) for
/// [`console`].
pub fn keep_console(master: OwnedFd, slave: OwnedFd) {
    *MADE.lock().unwrap_or_else(|p| p.into_inner()) = Some((master, slave));
}

/// The pty made with /dev becomes the user's (as runc gives the container's stdio to its
/// user), while the process may still change owners.
pub fn give_console(uid: u32) {
    if let Some((_, slave)) = MADE.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        unsafe { libc::fchown(slave.as_raw_fd(), uid, u32::MAX) };
    }
}

/// A new pty from /dev/ptmx (an `exec -t`, in the container's root as its user).
fn open_pty() -> Result<(OwnedFd, OwnedFd), Failure> {
    let e = |what: &str, err: nix::errno::Errno| Failure::setup(format!("{what}: {}", err.desc()));
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|err| e("open /dev/ptmx", err))?;
    nix::pty::grantpt(&master).map_err(|err| e("grantpt", err))?;
    nix::pty::unlockpt(&master).map_err(|err| e("unlockpt", err))?;
    let name = nix::pty::ptsname_r(&master).map_err(|err| e("ptsname", err))?;
    let c = std::ffi::CString::new(name.clone()).map_err(|_| Failure::setup("pty name"))?;
    let slave = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if slave < 0 {
        return Err(errno(&format!("open {name}")));
    }
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// In the container, just before the exec: its pty (the one /dev/console is, for `run -t`;
/// a new one for `exec -t`) as the controlling terminal and stdio, its master sent to the
/// monitor.
pub fn console(io: &Io) -> Result<(), Failure> {
    let Some(sock) = io.console else {
        return Ok(());
    };
    let e = |what: &str, err: nix::errno::Errno| Failure::setup(format!("{what}: {}", err.desc()));
    let made = MADE.lock().unwrap_or_else(|p| p.into_inner()).take();
    let (master, slave) = match made {
        Some(p) => p,
        None => open_pty()?,
    };
    let slave = slave.into_raw_fd();
    if unsafe { libc::setsid() } < 0 {
        return Err(errno("setsid"));
    }
    if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
        return Err(errno("set the controlling terminal"));
    }
    if let Some(ws) = io.size {
        unsafe { libc::ioctl(slave, libc::TIOCSWINSZ, &ws) };
    }
    for fd in 0..3 {
        if unsafe { libc::dup2(slave, fd) } < 0 {
            return Err(errno("dup2 the pty"));
        }
    }
    if slave > 2 {
        unsafe { libc::close(slave) };
    }
    send_fd(sock, master.as_raw_fd()).map_err(|err| e("send the pty to the monitor", err))?;
    unsafe { libc::close(sock) };
    Ok(())
}

fn send_fd(sock: RawFd, fd: RawFd) -> nix::Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"t")];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None).map(|_| ())
}

/// The monitor's end of the console socket, and the end the clone gets (closed here once the
/// clone is made).
pub struct ConsoleSocket {
    pub ours: OwnedFd,
    pub theirs: OwnedFd,
}

impl ConsoleSocket {
    pub fn new() -> Result<ConsoleSocket> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .context("socketpair for the container's terminal")?;
        Ok(ConsoleSocket { ours, theirs })
    }

    /// The pty master the container sent (after it started: None if it sent none).
    pub fn receive(ours: &OwnedFd) -> Option<OwnedFd> {
        let mut buf = [0u8; 1];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            ours.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ok()?;
        for c in msg.cmsgs().ok()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(fd) = fds.first() {
                    return Some(unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
        }
        None
    }
}

//! A detached container's stdio, served by its monitor (what conmon does for podman): its
//! stdout and stderr (two pipes, or its pty) go to the log as framed records (src/container/
//! log.rs) and to every attached client, and the attach socket (`attach` in the container's
//! directory) takes clients, whose input goes to the container's stdin (the pipe held open
//! for `-d -i`, or the pty), whose window size goes to the pty, and whose proxied signals go
//! to PID 1. When PID 1 has ended and its output has come, each client is told the exit code.
//!
//! One thread, one poll loop: the monitor forked the mount's daemon and is PID 1's parent.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::log;
use crate::launcher::init::exit_code;

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach";

/// A path to `name` in `dir` short enough for a unix socket's address whatever the state
/// root's length (as conmon does): through /proc/self/fd and an fd `dir` opened, held as long
/// as the path is used.
pub fn socket_path(dir: &Path, name: &str) -> Result<(File, PathBuf)> {
    let d = File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    let p = PathBuf::from(format!("/proc/self/fd/{}/{name}", d.as_raw_fd()));
    Ok((d, p))
}

/// What the container writes on.
pub enum Output {
    /// Its stdout and stderr pipes' read ends.
    Pipes(OwnedFd, OwnedFd),
    /// Its pty's master (its output, and its input with `-i`).
    Pty(OwnedFd),
}

struct Client {
    sock: UnixStream,
    buf: Vec<u8>,
}

pub struct Service {
    dir: PathBuf,
    log: File,
    listener: UnixListener,
    output: Output,
    /// The held pipe of `-d -i` without a terminal (with one, the master takes the input).
    stdin: Option<OwnedFd>,
    interactive: bool,
}

fn nonblocking(fd: RawFd) {
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

impl Service {
    /// Open the log for appending and listen on the attach socket.
    pub fn new(
        dir: &Path,
        output: Output,
        stdin: Option<OwnedFd>,
        interactive: bool,
    ) -> Result<Service> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("log"))
            .context("open the container's log")?;
        let _ = std::fs::remove_file(dir.join(SOCKET));
        let (_d, p) = socket_path(dir, SOCKET)?;
        let listener = UnixListener::bind(&p).context("listen on the container's attach socket")?;
        listener.set_nonblocking(true)?;
        if let Some(s) = &stdin {
            nonblocking(s.as_raw_fd());
        }
        if let Output::Pty(m) = &output {
            nonblocking(m.as_raw_fd());
        }
        Ok(Service {
            dir: dir.to_path_buf(),
            log,
            listener,
            output,
            stdin,
            interactive,
        })
    }

    /// Where client input goes.
    fn input(&self) -> Option<RawFd> {
        match &self.output {
            Output::Pty(m) if self.interactive => Some(m.as_raw_fd()),
            Output::Pty(_) => None,
            Output::Pipes(..) => self.stdin.as_ref().map(|s| s.as_raw_fd()),
        }
    }

    /// Serve until `pid` has ended and its output has come: its exit code.
    pub fn run(mut self, pid: Pid) -> i32 {
        let mut clients: Vec<Client> = Vec::new();
        let mut open: Vec<(RawFd, u8)> = match &self.output {
            Output::Pipes(o, e) => vec![(o.as_raw_fd(), log::STDOUT), (e.as_raw_fd(), log::STDERR)],
            Output::Pty(m) => vec![(m.as_raw_fd(), log::STDOUT)],
        };
        let input = self.input();
        // Input not yet taken by the container (its pipe or pty full).
        let mut pending: Vec<u8> = Vec::new();
        let mut code = None;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if code.is_none() {
                code = exited(pid);
            }
            if open.is_empty() {
                if let Some(c) = code {
                    return self.finish(clients, c);
                }
            }
            let mut fds = vec![libc::pollfd {
                fd: self.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            for (fd, _) in &open {
                fds.push(pollin(*fd));
            }
            let first_client = fds.len();
            for c in &clients {
                // Input waits while the container has not taken what came before.
                fds.push(libc::pollfd {
                    fd: c.sock.as_raw_fd(),
                    events: if pending.is_empty() { libc::POLLIN } else { 0 },
                    revents: 0,
                });
            }
            let input_at = fds.len();
            if let (Some(fd), false) = (input, pending.is_empty()) {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                });
            }
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
            if n < 0 {
                continue; // EINTR: SIGCHLD, looked at above.
            }
            if n == 0 {
                // Ended, and nothing more within a moment (a process left behind by PID 1
                // may hold its output open).
                if let Some(c) = code {
                    return self.finish(clients, c);
                }
                continue;
            }
            // Output first, in the order it is found; a stream at its end is closed.
            let mut closed = Vec::new();
            for (i, (fd, stream)) in open.iter().enumerate() {
                if fds[1 + i].revents == 0 {
                    continue;
                }
                let r =
                    unsafe { libc::read(*fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
                if r > 0 {
                    let data = &buf[..r as usize];
                    let _ = log::append(&mut self.log, *stream, data);
                    let f = log::frame(*stream, data);
                    clients.retain_mut(|c| c.sock.write_all(&f).is_ok());
                } else if r == 0 || !would_block() {
                    // EOF, or EIO: no pty slave is open any more.
                    closed.push(i);
                }
            }
            for i in closed.into_iter().rev() {
                open.remove(i);
            }
            let mut gone = Vec::new();
            for (i, c) in clients.iter_mut().enumerate() {
                let Some(p) = fds.get(first_client + i) else {
                    continue;
                };
                if p.revents == 0 {
                    continue;
                }
                match c.sock.read(&mut buf) {
                    Ok(0) | Err(_) => gone.push(i),
                    Ok(r) => {
                        c.buf.extend_from_slice(&buf[..r]);
                        let (frames, used) = log::parse(&c.buf);
                        c.buf.drain(..used);
                        for f in frames {
                            self.take_frame(&f, input, pid, code.is_none(), &mut pending);
                        }
                    }
                }
            }
            for i in gone.into_iter().rev() {
                clients.remove(i);
            }
            if fds.get(input_at).is_some_and(|p| p.revents != 0) {
                if let Some(fd) = input {
                    let w = unsafe {
                        libc::write(fd, pending.as_ptr() as *const libc::c_void, pending.len())
                    };
                    if w > 0 {
                        pending.drain(..w as usize);
                    } else if !would_block() {
                        pending.clear();
                    }
                }
            }
            if fds[0].revents != 0 {
                while let Ok((sock, _)) = self.listener.accept() {
                    let _ = sock.set_nonblocking(false);
                    // A client that stops reading is dropped rather than stalling the others.
                    let _ = sock.set_write_timeout(Some(Duration::from_secs(2)));
                    clients.push(Client {
                        sock,
                        buf: Vec::new(),
                    });
                }
            }
        }
    }

    /// A client's frame: input, a window size, a signal.
    fn take_frame(
        &self,
        f: &log::Record,
        input: Option<RawFd>,
        pid: Pid,
        alive: bool,
        pending: &mut Vec<u8>,
    ) {
        match f.stream {
            log::STDIN if input.is_some() => pending.extend_from_slice(&f.data),
            log::RESIZE if f.data.len() == 4 => {
                if let Output::Pty(m) = &self.output {
                    let ws = libc::winsize {
                        ws_row: u16::from_be_bytes([f.data[0], f.data[1]]),
                        ws_col: u16::from_be_bytes([f.data[2], f.data[3]]),
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            }
            log::SIGNAL if f.data.len() == 4 && alive => {
                let sig = i32::from_be_bytes([f.data[0], f.data[1], f.data[2], f.data[3]]);
                unsafe { libc::kill(pid.as_raw(), sig) };
            }
            _ => {}
        }
    }

    /// Tell each client the exit code; no more clients.
    fn finish(self, clients: Vec<Client>, code: i32) -> i32 {
        let _ = std::fs::remove_file(self.dir.join(SOCKET));
        let f = log::frame(log::EXIT, &code.to_be_bytes());
        for mut c in clients {
            let _ = c.sock.write_all(&f);
        }
        code
    }
}

fn pollin(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

fn would_block() -> bool {
    matches!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::EINTR)
    )
}

fn exited(pid: Pid) -> Option<i32> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => None,
        Ok(ws) => exit_code(ws),
        Err(nix::errno::Errno::EINTR) => None,
        Err(_) => Some(crate::launcher::EXIT_FAILED),
    }
}

//! The monitor's side of a container's stdio (`-i`, `-t`, `start -a -i`): what its stdin is,
//! and with a terminal, the relay between the pty the container made and the caller's terminal
//! (or the log, detached), the caller's terminal in raw mode while attached and restored after,
//! and the window size passed on at start and on each SIGWINCH. A detached container's
//! stdio is served instead (src/container/streams.rs): its log and its attach socket.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::sys::termios::{self, SetArg, Termios};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::monitor;
use super::streams::{Output, Service};
use crate::launcher::init::exit_code;
use crate::launcher::tty::{ConsoleSocket, Io};

/// Where the container's stdin comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdin {
    /// Nothing: /dev/null (Docker without -i).
    Null,
    /// The caller's stdin (`run -i` in the foreground, `start -a -i`).
    Caller,
    /// A pipe the monitor holds open and never writes (`-d -i`: open for a later attach).
    Held,
}

/// The terminal error Docker gives for `-i -t` without a terminal on stdin.
pub const NOT_A_TTY: &str = "the input device is not a TTY";

pub fn is_terminal(fd: RawFd) -> bool {
    unsafe { libc::isatty(fd) == 1 }
}

fn window(fd: RawFd) -> Option<libc::winsize> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

/// The caller's terminal (stdin, else stdout), for the window size.
fn caller_terminal() -> Option<RawFd> {
    [0, 1].into_iter().find(|fd| is_terminal(*fd))
}

/// What the monitor makes before the clone and holds while the process lives.
pub struct Prepared {
    stdin: Stdin,
    tty: bool,
    null: Option<File>,
    held: Option<(OwnedFd, OwnedFd)>,
    console: Option<ConsoleSocket>,
    /// Detached: the container's directory (its log and attach socket), and without a
    /// terminal the stdout and stderr pipes (read end, write end).
    serve: Option<PathBuf>,
    pipes: Option<[(OwnedFd, OwnedFd); 2]>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe for the container's stdio")
}

impl Prepared {
    /// `serve`: the directory of a detached container, whose stdio its monitor serves.
    pub fn new(stdin: Stdin, tty: bool, serve: Option<PathBuf>) -> Result<Prepared> {
        let mut p = Prepared {
            stdin,
            tty,
            null: None,
            held: None,
            console: None,
            pipes: None,
            serve,
        };
        if p.serve.is_some() && !tty {
            p.pipes = Some([pipe()?, pipe()?]);
        }
        if tty {
            p.console = Some(ConsoleSocket::new()?);
        } else {
            match stdin {
                Stdin::Caller => {}
                Stdin::Null => p.null = Some(File::open("/dev/null").context("open /dev/null")?),
                Stdin::Held => {
                    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                        .context("pipe for the container's stdin")?;
                    p.held = Some((r, w));
                }
            }
        }
        Ok(p)
    }

    /// What the clone is given.
    pub fn io(&self) -> Io {
        Io {
            stdin: self
                .null
                .as_ref()
                .map(|f| f.as_raw_fd())
                .or(self.held.as_ref().map(|(r, _)| r.as_raw_fd())),
            stdout: self.pipes.as_ref().map(|p| p[0].1.as_raw_fd()),
            stderr: self.pipes.as_ref().map(|p| p[1].1.as_raw_fd()),
            console: self.console.as_ref().map(|c| c.theirs.as_raw_fd()),
            size: if self.tty {
                caller_terminal().and_then(window)
            } else {
                None
            },
        }
    }

    /// Once the process has started (exec'd): the clone's ends go, and with a terminal the
    /// pty's master is taken (the caller's terminal raw if it is attached). What is returned
    /// holds everything until [`Attached::wait`].
    pub fn attach(mut self) -> Attached {
        let held = self.held.take().map(|(_, w)| w);
        if let Some(dir) = self.serve.take() {
            return self.serve(dir, held);
        }
        let mut a = Attached {
            relay: None,
            _held: held,
            service: None,
        };
        let Some(console) = self.console else {
            return a;
        };
        drop(console.theirs);
        // None when the process failed before it made its terminal.
        if let Some(master) = ConsoleSocket::receive(&console.ours) {
            let input = self.stdin == Stdin::Caller;
            let raw = if input && is_terminal(0) {
                RawMode::enter(0)
            } else {
                None
            };
            monitor::tty_mode(true);
            a.relay = Some(Relay {
                master,
                input,
                _raw: raw,
            });
        }
        a
    }

    /// Before the process started: the clone's ends go.
    pub fn abandon(self) {}

    /// Detached: the log and the attach socket take the container's output and input.
    fn serve(self, dir: PathBuf, held: Option<OwnedFd>) -> Attached {
        let interactive = self.stdin != Stdin::Null;
        let output = match (self.pipes, self.console) {
            (Some([(out, _), (err, _)]), _) => Some(Output::Pipes(out, err)),
            (None, Some(console)) => {
                drop(console.theirs);
                ConsoleSocket::receive(&console.ours).map(Output::Pty)
            }
            (None, None) => None,
        };
        let service = output.and_then(|o| match Service::new(&dir, o, held, interactive) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("strata: {e:#}");
                None
            }
        });
        Attached {
            relay: None,
            _held: None,
            service,
        }
    }
}

struct Relay {
    master: OwnedFd,
    input: bool,
    /// Restores the caller's terminal when dropped (after the relay's last output).
    _raw: Option<RawMode>,
}

/// A started process's stdio, held by the monitor until it has ended.
pub struct Attached {
    relay: Option<Relay>,
    _held: Option<OwnedFd>,
    service: Option<Service>,
}

impl Attached {
    /// Wait for `pid` to end (its exit code, as [`monitor::wait`]), relaying its terminal
    /// meanwhile; then the rest of its output, then the caller's terminal restored.
    pub fn wait(self, pid: Pid) -> i32 {
        if let Some(s) = self.service {
            return s.run(pid);
        }
        let Some(r) = self.relay else {
            return monitor::wait(pid);
        };
        let code = relay(&r.master, r.input, pid);
        monitor::tty_mode(false);
        code
    }
}

/// The caller's terminal in raw mode (keys go to the container's pty as they are: Ctrl-C is
/// a byte its line discipline turns into SIGINT for its foreground job); restored on drop.
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    pub fn enter(fd: RawFd) -> Option<RawMode> {
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let saved = termios::tcgetattr(b).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(b, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let b = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(b, SetArg::TCSADRAIN, &self.saved);
    }
}

pub fn write_all(fd: RawFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let n = unsafe { libc::write(fd, data.as_ptr() as *const libc::c_void, data.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        data = &data[n as usize..];
    }
    true
}

fn exited(pid: Pid) -> Option<i32> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => None,
        Ok(ws) => exit_code(ws),
        Err(nix::errno::Errno::EINTR) => None,
        Err(_) => Some(crate::launcher::EXIT_FAILED),
    }
}

/// Master to stdout, stdin to master (with `input`), the window size on each SIGWINCH, in
/// this thread (an `exec` is in the container's PID namespace and can make no thread), until
/// `pid` has ended and its output has come: its exit code.
fn relay(master: &OwnedFd, input: bool, pid: Pid) -> i32 {
    let m = master.as_raw_fd();
    let mut stdin_open = input;
    let mut pty_open = true;
    let mut code = None;
    let mut buf = [0u8; 8192];
    loop {
        if code.is_none() {
            code = exited(pid);
        }
        if !pty_open {
            if let Some(c) = code {
                return c;
            }
        }
        if monitor::take_winch() {
            if let Some(ws) = caller_terminal().and_then(window) {
                unsafe { libc::ioctl(m, libc::TIOCSWINSZ, &ws) };
            }
        }
        let mut fds = vec![libc::pollfd {
            fd: if pty_open { m } else { -1 },
            events: libc::POLLIN,
            revents: 0,
        }];
        if stdin_open && code.is_none() {
            fds.push(libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if n < 0 {
            continue; // EINTR: SIGCHLD or SIGWINCH, looked at above.
        }
        if n == 0 {
            // Ended, and nothing more within a moment (a process of the container's that
            // outlives an exec'd command may hold the pty).
            if let Some(c) = code {
                return c;
            }
            continue;
        }
        if fds[0].revents != 0 {
            let r = unsafe { libc::read(m, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            // EIO: no slave is open any more.
            if r <= 0 || !write_all(1, &buf[..r as usize]) {
                pty_open = false;
            }
        }
        if fds.len() > 1 && fds[1].revents != 0 {
            let r = unsafe { libc::read(0, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if r <= 0 || !write_all(m, &buf[..r as usize]) {
                stdin_open = false;
            }
        }
    }
}

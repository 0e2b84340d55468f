//! `strata attach`: the caller's stdin, stdout and stderr joined to a running detached
//! container through its monitor's attach socket (src/container/streams.rs), as `docker
//! attach` does: its output from now on, each stream to the caller's same stream; with a
//! terminal, the caller's in raw mode, its window size passed on, and the detach keys
//! (ctrl-p ctrl-q unless given) leaving the container running; without one, the caller's
//! signals passed on to PID 1 unless `--sig-proxy=false`. When the container ends, its exit
//! code is the result.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::attach::{is_terminal, write_all, RawMode, NOT_A_TTY};
use super::log;
use super::records::Store;
use super::streams::{socket_path, SOCKET};
use crate::state::{alive, Root};

pub struct AttachRequest {
    pub container: String,
    /// Not `--no-stdin`: the caller's stdin goes to the container's (if made with -i).
    pub stdin: bool,
    /// `--sig-proxy`: pass signals on (only without a terminal, as Docker).
    pub sig_proxy: bool,
    /// `--detach-keys`, as given.
    pub detach_keys: Option<String>,
}

/// How an attach ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The container exited with this code.
    Exited(i32),
    /// The detach keys were read: the container goes on.
    Detached,
}

/// Docker's default detach keys.
pub const DEFAULT_KEYS: &str = "ctrl-p,ctrl-q";

/// Docker's --detach-keys: a comma-separated sequence of single characters and `ctrl-X`
/// (X one of a-z @ [ \ ] ^ _).
pub fn parse_keys(s: &str) -> Result<Vec<u8>> {
    let bad = || anyhow::anyhow!("Invalid detach keys ({s}) provided");
    let mut out = Vec::new();
    for k in s.split(',') {
        if k.len() == 1 {
            out.push(k.as_bytes()[0]);
            continue;
        }
        let Some(c) = k.strip_prefix("ctrl-") else {
            return Err(bad());
        };
        let c = c.to_ascii_lowercase();
        let b = match c.as_bytes() {
            [b @ b'a'..=b'z'] => b - b'a' + 1,
            [b'@'] => 0,
            [b @ (b'[' | b'\\' | b']' | b'^' | b'_')] => b - b'[' + 27,
            _ => return Err(bad()),
        };
        out.push(b);
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Finds the detach keys in what the caller types, holding back a part of them until it is
/// clear whether the rest follows (then it goes on to the container after all).
struct Escape {
    keys: Vec<u8>,
    matched: usize,
}

impl Escape {
    /// What of `input` goes to the container, and whether the keys were completed.
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

/// Signals seen since the last look (bit N for signal N).
static SEEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn note(sig: libc::c_int) {
    SEEN.fetch_or(1 << sig, Ordering::SeqCst);
}

fn catch(sigs: &[libc::c_int]) {
    for s in sigs {
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = note as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(*s, &sa, std::ptr::null_mut());
        }
    }
}

/// The signals `docker attach` passes on without a terminal (those `run` passes on).
const PROXIED: &[libc::c_int] = &[
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn resize_frame() -> Option<Vec<u8>> {
    let fd = [0, 1].into_iter().find(|fd| is_terminal(*fd))?;
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } != 0 {
        return None;
    }
    // A terminal that has no size yet (0x0) leaves the container's as it is, as Docker.
    if ws.ws_row == 0 && ws.ws_col == 0 {
        return None;
    }
    let mut d = ws.ws_row.to_be_bytes().to_vec();
    d.extend_from_slice(&ws.ws_col.to_be_bytes());
    Some(log::frame(log::RESIZE, &d))
}

/// Attach to the running container `req.container` until it ends or the caller detaches.
pub fn attach(root: &Root, req: AttachRequest) -> Result<Ended> {
    let keys = parse_keys(req.detach_keys.as_deref().unwrap_or(DEFAULT_KEYS))?;
    let store = Store::new(root);
    let (c, s) = {
        let lock = store.lock()?;
        let c = store.find(&lock, &req.container)?;
        let s = store.live_state(&lock, &c.id)?;
        (c, s)
    };
    if s.status != "running" {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let use_stdin = req.stdin && c.interactive;
    if c.tty && use_stdin && !is_terminal(0) {
        bail!("{NOT_A_TTY}");
    }
    let dir = store.container_dir(&c.id);
    let (_dirfd, path) = socket_path(&dir, SOCKET)?;
    let mut sock = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(_) if !dir.join(SOCKET).exists() => bail!(
            "container {} runs in the foreground of the strata run that started it: its \
             stdio is that caller's, there is nothing to attach to",
            c.id
        ),
        Err(e) => return Err(e).context("connect to the container's attach socket"),
    };
    let raw = if c.tty && use_stdin {
        RawMode::enter(0)
    } else {
        None
    };
    if c.tty {
        catch(&[libc::SIGWINCH]);
        if let Some(f) = resize_frame() {
            sock.write_all(&f)?;
        }
    } else if req.sig_proxy {
        catch(PROXIED);
    }
    let ended = relay(&mut sock, use_stdin, c.tty.then_some(keys));
    drop(raw);
    if ended == Some(Ended::Detached) {
        return Ok(Ended::Detached);
    }
    // The monitor records the end and takes the mount down a moment after telling the
    // code: once attach returns, ps shows the container exited.
    let t = Instant::now();
    let mut last = None;
    while t.elapsed() < Duration::from_secs(30) {
        match store.state(&c.id) {
            Ok(s) if alive(s.monitor_pid, s.monitor_start) => {}
            Ok(s) => {
                last = Some(s.exit_code);
                break;
            }
            Err(_) => break, // removed by its monitor (--rm)
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // A monitor gone without telling (killed): what its record says.
    Ok(ended.unwrap_or(Ended::Exited(last.unwrap_or(crate::launcher::EXIT_FAILED))))
}

/// The socket's output to the caller's stdout and stderr, the caller's stdin (with
/// `use_stdin`) to the socket, watching for `keys`, until the exit code comes or the keys
/// (None: the monitor went without telling).
fn relay(sock: &mut UnixStream, use_stdin: bool, keys: Option<Vec<u8>>) -> Option<Ended> {
    let mut escape = keys.map(|keys| Escape { keys, matched: 0 });
    let mut stdin_open = use_stdin;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let seen = SEEN.swap(0, Ordering::SeqCst);
        for sig in 1..64 {
            if seen & (1 << sig) == 0 {
                continue;
            }
            let f = if sig == libc::SIGWINCH {
                resize_frame()
            } else {
                Some(log::frame(log::SIGNAL, &sig.to_be_bytes()))
            };
            if let Some(f) = f {
                let _ = sock.write_all(&f);
            }
        }
        let mut fds = vec![libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if stdin_open {
            fds.push(libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        if n <= 0 {
            continue; // EINTR: a signal, passed on above; or a moment without news.
        }
        if fds[0].revents != 0 {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(r) => {
                    got.extend_from_slice(&buf[..r]);
                    let (frames, used) = log::parse(&got);
                    got.drain(..used);
                    for f in frames {
                        match f.stream {
                            log::STDOUT => {
                                write_all(1, &f.data);
                            }
                            log::STDERR => {
                                write_all(2, &f.data);
                            }
                            log::EXIT if f.data.len() == 4 => {
                                let d = &f.data;
                                let code = i32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                                return Some(Ended::Exited(code));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        if fds.len() > 1 && fds[1].revents != 0 {
            let r = unsafe { libc::read(0, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if r <= 0 {
                // Docker keeps the container's stdin open after an attach's ends.
                stdin_open = false;
                continue;
            }
            let input = &buf[..r as usize];
            let (pass, detach) = match &mut escape {
                Some(e) => e.feed(input),
                None => (input.to_vec(), false),
            };
            if !pass.is_empty() && sock.write_all(&log::frame(log::STDIN, &pass)).is_err() {
                stdin_open = false;
            }
            if detach {
                return Some(Ended::Detached);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_keys, Escape};

    #[test]
    fn detach_keys_read_as_dockers() {
        assert_eq!(parse_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert_eq!(parse_keys("ctrl-@,ctrl-_").unwrap(), vec![0, 31]);
        assert_eq!(
            parse_keys("bogus-x").unwrap_err().to_string(),
            "Invalid detach keys (bogus-x) provided"
        );
        assert!(parse_keys("ctrl-1").is_err());
        assert!(parse_keys("").is_err());
    }

    #[test]
    fn a_started_sequence_that_breaks_off_goes_on_to_the_container() {
        let mut e = Escape {
            keys: vec![16, 17],
            matched: 0,
        };
        assert_eq!(e.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(e.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(e.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(e.feed(b"\x11rest"), (Vec::new(), true));
    }
}

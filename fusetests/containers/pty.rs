//! A terminal the test holds: `strata` runs with a pty slave as its stdin, stdout, stderr and
//! controlling terminal (as a terminal emulator starts a shell), and the test types on the
//! master and reads what comes back. The child is killed when the [`Term`] is dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Term {
    master: std::fs::File,
    slave: OwnedFd,
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    /// How much of `out` the last expect consumed.
    seen: usize,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Term {
    /// Start `cmd` on a new terminal of `rows` x `cols`.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Term {
        let ws = winsize(rows, cols);
        let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
        let stdio = || Stdio::from(pty.slave.try_clone().unwrap());
        cmd.stdin(stdio()).stdout(stdio()).stderr(stdio());
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the pty");
        let master = std::fs::File::from(pty.master);
        let out = Arc::new(Mutex::new(Vec::new()));
        let (mut r, o) = (master.try_clone().unwrap(), out.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once no slave is open: the reader ends.
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Term {
            master,
            slave: pty.slave,
            child,
            out,
            seen: 0,
        }
    }

    pub fn send(&mut self, s: &str) {
        self.master
            .write_all(s.as_bytes())
            .expect("write to the pty");
    }

    /// Everything read so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Wait for `needle` in what came after the last match; fail with the whole output if it
    /// does not come within `timeout`.
    pub fn expect(&mut self, needle: &str, timeout: Duration) {
        let t = Instant::now();
        loop {
            let text = self.output();
            if let Some(i) = text[self.seen.min(text.len())..].find(needle) {
                self.seen += i + needle.len();
                return;
            }
            if t.elapsed() > timeout {
                panic!("{needle:?} did not come within {timeout:?}; the terminal showed:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resize the terminal (the kernel sends SIGWINCH to its foreground job, strata).
    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        assert_eq!(
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
            0
        );
    }

    /// The terminal's local modes as strata left them.
    pub fn lflags(&self) -> libc::tcflag_t {
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) },
            0
        );
        t.c_lflag
    }

    /// The exit code of the command, within `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st
                    .code()
                    .unwrap_or_else(|| panic!("killed: {st}; output:\n{}", self.output()));
            }
            if t.elapsed() > timeout {
                panic!("did not end within {timeout:?}; output:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

//! `run -d`: the monitor becomes a process of its own (a new session, its own messages in
//! the container's monitor.log; the container's output it serves to its log), and `strata run` returns, printing the id, once the container's
//! command runs, or with Docker's exit code and the reason when it could not start.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::attach::Stdin;
use super::records::{Config, Store};
use super::run::{launch, Notify, Outcome};
use crate::launcher::{process, Failure, EXIT_FAILED};
use crate::state::Root;

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The background process's stdio: nothing in, `out` (or nothing) out; the command started
/// inherits both.
fn redirect(out: Option<&Path>) -> Result<()> {
    let log = match out {
        Some(p) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .context("open the container's log")?,
        None => std::fs::OpenOptions::new().write(true).open("/dev/null")?,
    };
    let null = std::fs::File::open("/dev/null")?;
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(log.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    Ok(())
}

pub fn start(root: &Root, store: &Store, config: &Config, fresh: bool) -> Result<Outcome> {
    let stdin = if config.interactive {
        Stdin::Held
    } else {
        Stdin::Null
    };
    let log = store.container_dir(&config.id).join("monitor.log");
    let mut o = background(Some(&log), &|notify| {
        launch(root, store, config, fresh, stdin, Some(notify))
    })?;
    if o.error.is_none() {
        o.detached = Some(config.id.clone());
    }
    Ok(o)
}

/// Run `body` in a process of its own (a new session, its output `out`), and return once
/// `body` tells that the command runs (Ok, code 0), or why it could not.
pub fn background(out: Option<&Path>, body: &dyn Fn(Notify) -> Result<Outcome>) -> Result<Outcome> {
    let (rd, wr) = pipe()?;
    // Forked while this process has no threads (the mount's daemon is forked from the child).
    match unsafe { libc::fork() } {
        -1 => bail!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            drop(rd);
            crate::fds::close_inherited();
            unsafe { libc::setsid() };
            let tell = |f: Option<&Failure>| {
                let line = match f {
                    None => "ok\n".to_string(),
                    Some(f) => format!("{} {}\n", f.code, f.msg.replace('\n', " ")),
                };
                let _ =
                    (&std::fs::File::from(wr.try_clone().expect("dup"))).write_all(line.as_bytes());
            };
            let r = redirect(out)
                .and_then(|()| body(&|r: &Result<(), Failure>| tell(r.as_ref().err())));
            if let Err(e) = r {
                // Before the start (the mount, the cgroup): the caller is still waiting.
                tell(Some(&Failure::setup(format!("{e:#}"))));
                unsafe { libc::_exit(EXIT_FAILED) }
            }
            unsafe { libc::_exit(0) }
        }
        _ => {
            drop(wr);
            // One line: the monitor (and the mount daemon it forks) keeps the pipe open.
            let mut line = Vec::new();
            let mut f = std::fs::File::from(rd);
            let mut b = [0u8; 1];
            while let Ok(1) = f.read(&mut b) {
                if b[0] == b'\n' {
                    break;
                }
                line.push(b[0]);
            }
            let text = String::from_utf8_lossy(&line);
            let first = text.trim();
            if first == "ok" {
                return Ok(Outcome {
                    detached: None,
                    code: 0,
                    error: None,
                });
            }
            match process::parse_report(first) {
                Some(f) if f.code == EXIT_FAILED => bail!("{}", f.msg),
                Some(f) => Ok(Outcome {
                    detached: None,
                    code: f.code,
                    error: Some(f.msg),
                }),
                None => bail!("the container's monitor exited before the container started"),
            }
        }
    }
}

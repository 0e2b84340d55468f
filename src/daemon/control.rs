//! The control socket, `WORKDIR/strata/control.sock`: `strata trace` subscribes there to the
//! union's events, and a remount tells the daemon there whether it may write (`remount ro`,
//! `remount rw`, answered `ok`).
//!
//! The socket is 0600 and belongs to whoever runs the daemon (the mount's owner). A client sends
//! one request line, `trace`; the daemon answers `ok` and then writes one JSON event per line
//! until either side goes. Every subscriber has a bounded queue of its own: the filesystem only
//! ever tries to put an event in it, and when it is full the event is counted, not waited for;
//! the count reaches the subscriber as a `dropped` event once its queue has room again. A thread
//! per subscriber does the writing, so a reader that never reads holds up nobody but itself.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::union::atime::Atime;
use crate::union::events::{Event, Sink};
use crate::union::graft::Tree;

/// Events a subscriber may have waiting before new ones are dropped.
const QUEUE: usize = 4096;

pub const SOCKET: &str = "control.sock";

struct Sub {
    id: u64,
    tx: SyncSender<Event>,
    dropped: Arc<AtomicU64>,
}

/// The subscribers of one mount, and what a remount request changes.
pub struct Hub {
    /// `remount ro` / `remount rw` (from `strata ... -o remount`, once the kernel's mount is
    /// read-only, or before it becomes writable): the daemon refuses writes, or takes them;
    /// `noatime`, `nodiratime` after it are the mount's atime options from then on.
    remount: Box<dyn Fn(bool, Atime) + Send + Sync>,
    listening: Arc<AtomicBool>,
    subs: Mutex<Vec<Sub>>,
    next: AtomicU64,
}

impl Sink for Hub {
    fn send(&self, e: Event) {
        let mut subs = self.subs.lock().unwrap();
        subs.retain(|s| match s.tx.try_send(e.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        self.listening.store(!subs.is_empty(), Ordering::Relaxed);
    }
}

impl Hub {
    fn add(&self) -> (u64, Receiver<Event>, Arc<AtomicU64>) {
        let (tx, rx) = sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut subs = self.subs.lock().unwrap();
        subs.push(Sub {
            id,
            tx,
            dropped: dropped.clone(),
        });
        self.listening.store(true, Ordering::Relaxed);
        (id, rx, dropped)
    }

    fn remove(&self, id: u64) {
        let mut subs = self.subs.lock().unwrap();
        subs.retain(|s| s.id != id);
        self.listening.store(!subs.is_empty(), Ordering::Relaxed);
    }
}

/// The control socket of a running mount; the socket file goes with it.
pub struct Control {
    path: PathBuf,
    /// Listening, with nobody accepting yet (see `serve`).
    pending: Option<(UnixListener, Arc<Hub>)>,
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Control {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Start accepting. Until then a client's connection waits in the socket's backlog, so the
    /// thread can start once the mount is reported live, outside the time its caller waits.
    pub fn serve(&mut self) -> Result<()> {
        let Some((listener, hub)) = self.pending.take() else {
            return Ok(());
        };
        std::thread::Builder::new()
            .name("strata-control".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(s) => {
                            let hub = hub.clone();
                            let _ = std::thread::Builder::new()
                                .name("strata-trace".into())
                                .spawn(move || client(&hub, s));
                        }
                        Err(e) => log::warn!("control socket: {e}"),
                    }
                }
            })?;
        Ok(())
    }
}

/// Listen on the control socket in `own` (`WORKDIR/strata`, which this mount holds locked) and
/// connect every union of `tree` to it; `Control::serve` starts answering. A remount request
/// calls `remount` with read-only or not.
pub fn start(
    own: &Path,
    tree: &Tree,
    remount: Box<dyn Fn(bool, Atime) + Send + Sync>,
) -> Result<Control> {
    let path = own.join(SOCKET);
    // Made under another name and renamed in once it is 0600: nobody can connect before.
    let tmp = own.join(format!("{SOCKET}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let (_dir, short) = short_path(own, &tmp)?;
    let listener =
        UnixListener::bind(short).with_context(|| format!("control socket {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("control socket {}", path.display()))?;
    let hub = Arc::new(Hub {
        remount,
        listening: Arc::new(AtomicBool::new(false)),
        subs: Mutex::new(Vec::new()),
        next: AtomicU64::new(0),
    });
    for u in tree.unions() {
        u.events.connect(hub.listening.clone(), hub.clone());
    }
    Ok(Control {
        path,
        pending: Some((listener, hub)),
    })
}

fn client(hub: &Hub, s: UnixStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    if BufReader::new(&s).read_line(&mut line).is_err() {
        return;
    }
    let mut out = &s;
    if let Some(how) = line.trim().strip_prefix("remount ") {
        let mut words = how.split_whitespace();
        let mode = words.next().unwrap_or("");
        let atime: Vec<&str> = words.collect();
        let known = atime
            .iter()
            .all(|w| ["noatime", "relatime", "strictatime", "nodiratime"].contains(w));
        let _ = match mode {
            "ro" | "rw" if known => {
                (hub.remount)(mode == "ro", Atime::from_options(&atime));
                writeln!(out, "ok")
            }
            _ => writeln!(
                out,
                "error: remount {how:?}: expected ro or rw, then noatime, relatime or strictatime, and nodiratime"
            ),
        };
        return;
    }
    if line.trim() != "trace" {
        let _ = writeln!(out, "error: unknown request {:?}", line.trim());
        return;
    }
    let (id, rx, dropped) = hub.add();
    if writeln!(out, "ok").is_ok() {
        stream(&s, &rx, &dropped);
    }
    hub.remove(id);
    log::debug!("control socket: trace subscriber {id} left");
}

/// Write events to `s` until the reader goes.
fn stream(s: &UnixStream, rx: &Receiver<Event>, dropped: &AtomicU64) {
    let mut out = s;
    let mut put = |e: &Event| {
        let mut l = serde_json::to_vec(e).unwrap_or_default();
        l.push(b'\n');
        out.write_all(&l).is_ok()
    };
    loop {
        let next = rx.recv_timeout(Duration::from_millis(250));
        let missed = dropped.swap(0, Ordering::Relaxed);
        if missed > 0 && !put(&Event::Dropped { count: missed }) {
            return;
        }
        match next {
            Ok(e) => {
                if !put(&e) {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if gone(s) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Has the reader closed its end? (It sends nothing after its request.)
fn gone(s: &UnixStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    matches!(
        recv(
            s.as_raw_fd(),
            &mut b,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        ),
        Ok(0) | Err(nix::errno::Errno::ECONNRESET)
    )
}

/// Where a mount's control socket is recorded for `strata trace` besides utab (which only root
/// writes): a symlink beside the daemon's pid file.
pub fn record_path(mountpoint: &Path) -> Option<PathBuf> {
    Some(super::unmount::pid_file(mountpoint)?.with_extension("control"))
}

/// Record `socket` as the control socket of the mount at `mountpoint`; the record's path.
pub fn record(mountpoint: &Path, socket: &Path) -> Option<PathBuf> {
    let r = record_path(mountpoint)?;
    let _ = std::fs::remove_file(&r);
    match std::os::unix::fs::symlink(socket, &r) {
        Ok(()) => Some(r),
        Err(e) => {
            log::warn!("cannot record the control socket at {}: {e}", r.display());
            None
        }
    }
}

/// A socket's path is limited to 107 bytes, which a container's workdir under the state root
/// passes: `path` reached through an open fd of its directory, `dir`, instead. The name works
/// while the returned fd is open (for bind or connect).
pub fn short_path(dir: &Path, path: &Path) -> Result<(std::fs::File, PathBuf)> {
    let d = std::fs::File::open(dir).with_context(|| format!("{}", dir.display()))?;
    let p = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&d)
    ))
    .join(path.file_name().unwrap_or_default());
    Ok((d, p))
}

//! The client side of `strata trace`: find the strata mount a path is in (as df does: the
//! longest mountpoint above it in mountinfo), its control socket (utab, or the record beside
//! the daemon's pid file), and read the events the daemon streams.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::{control, io_msg, utab};
use crate::union::events::Event;

/// The strata mount that `path` is in: its mountpoint.
pub fn mount_of(path: &Path) -> Result<PathBuf> {
    let p = path.canonicalize().map_err(|e| {
        anyhow!(
            "{}: {}",
            path.display(),
            match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".into(),
                _ => io_msg(&e),
            }
        )
    })?;
    match super::mount_containing(&p) {
        Some((mp, kind)) if kind == "fuse.strata" => Ok(mp),
        Some((mp, kind)) => bail!(
            "{} is not in a strata mount (it is on the {kind} mount at {})",
            p.display(),
            mp.display()
        ),
        None => bail!("{} is not in a strata mount", p.display()),
    }
}

/// The events of one mount, as they happen.
pub struct Subscription {
    pub mountpoint: PathBuf,
    reader: BufReader<UnixStream>,
}

/// Subscribe to the events of the strata mount `path` is in.
pub fn subscribe(path: &Path) -> Result<Subscription> {
    let mp = mount_of(path)?;
    let socket = utab::control_of(&mp)
        .or_else(|| control::record_path(&mp).and_then(|r| std::fs::read_link(r).ok()))
        .ok_or_else(|| {
            anyhow!(
                "the strata mount at {} has no control socket (a mount without upperdir and \
                 workdir has none)",
                mp.display()
            )
        })?;
    let dir = socket.parent().unwrap_or(Path::new("/"));
    let s = control::short_path(dir, &socket)
        .and_then(|(_dir, p)| Ok(UnixStream::connect(p)?))
        .map_err(|e| {
            anyhow!(
                "the strata mount at {}: cannot connect to its control socket {}: {}",
                mp.display(),
                socket.display(),
                match e.downcast_ref::<std::io::Error>() {
                    Some(e) => io_msg(e),
                    None => format!("{e:#}"),
                }
            )
        })?;
    (&s).write_all(b"trace\n")
        .with_context(|| format!("control socket {}", socket.display()))?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .with_context(|| format!("control socket {}", socket.display()))?;
    if line.trim() != "ok" {
        bail!(
            "control socket {}: the daemon answered {:?}",
            socket.display(),
            line.trim()
        );
    }
    Ok(Subscription {
        mountpoint: mp,
        reader,
    })
}

impl Iterator for Subscription {
    type Item = Result<Event>;

    /// The next event; None once the mount is gone.
    fn next(&mut self) -> Option<Result<Event>> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(
                serde_json::from_str(&line)
                    .map_err(|e| anyhow!("control socket: bad event {:?}: {e}", line.trim())),
            ),
            // The daemon's exit may reset the connection rather than close it.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => Some(Err(anyhow!("control socket: {e}"))),
        }
    }
}

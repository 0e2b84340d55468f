//! What one layer holds at one path, and in which on-disk format: read with union::layer's and
//! union::lowerindex's readers (the upper as the daemon reads it, the lowers through their
//! directory index), only adding which format a marker is in.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::sys::{self, Res};
use crate::union::layer::{self, is_opaque, redirect_of, Probe, Redirect, WH_OPAQUE};
use crate::union::lowerindex::{mode_of, Lower};
use crate::union::Union;

pub enum Raw {
    Absent,
    /// A whiteout, in the format named.
    Whiteout(&'static str),
    Entry {
        /// S_IFMT bits.
        kind: u32,
        /// Opaque, and by which marker.
        opaque: Option<String>,
        /// The redirect it carries.
        redirect: Option<String>,
    },
}

pub const KERNEL_WHITEOUT: &str = "character device 0:0 (kernel overlayfs format)";
pub const OCI_WHITEOUT: &str = ".wh.NAME file (OCI/AUFS format)";

fn split(p: &Path) -> (&Path, &OsStr) {
    (
        p.parent().unwrap_or(Path::new("")),
        p.file_name().unwrap_or(OsStr::new("")),
    )
}

/// Directory `p` of layer `i`, or None where the layer has none.
pub fn dir_fd(u: &Union, i: usize, p: &Path) -> Res<Option<OwnedFd>> {
    match u.layer(i).dir(p) {
        Ok(fd) => Ok(Some(fd)),
        Err(libc::ENOENT) | Err(libc::ENOTDIR) | Err(libc::ELOOP) => Ok(None),
        Err(e) => Err(e),
    }
}

fn whiteout_format(fd: i32, name: &OsStr) -> &'static str {
    match sys::stat_opt(fd, name) {
        Ok(Some(st)) if sys::is_whiteout_dev(&st) => KERNEL_WHITEOUT,
        _ => OCI_WHITEOUT,
    }
}

/// Which marker makes directory `name` in `fd` opaque.
fn opaque_format(fd: i32, name: &OsStr) -> String {
    if let Ok(p) = sys::xattr_path(fd, name) {
        for key in ["trusted.overlay.opaque", "user.overlay.opaque"] {
            if sys::lgetxattr(&p, OsStr::new(key)).is_ok_and(|v| v == b"y") {
                return format!("xattr {key}=y (kernel overlayfs format)");
            }
        }
    }
    format!("{WH_OPAQUE} file inside it (OCI/AUFS format)")
}

fn redirect_text(r: &Redirect) -> String {
    match r {
        Redirect::Name(n) => n.to_string_lossy().into_owned(),
        Redirect::Abs(p) => format!("/{}", p.display()),
    }
}

/// What layer `i` (0 = upper) holds at `p` (relative to the layer's root).
pub fn raw(u: &Union, i: usize, p: &Path) -> Res<Raw> {
    let (parent, name) = split(p);
    if name.is_empty() {
        return Ok(Raw::Entry {
            kind: libc::S_IFDIR,
            opaque: None,
            redirect: None,
        });
    }
    let Some(fd) = dir_fd(u, i, parent)? else {
        return Ok(Raw::Absent);
    };
    let fd = fd.as_raw_fd();
    let oci = !u.opts.kernel_whiteouts;
    if i == 0 {
        return Ok(match u.probe(fd, name)? {
            Probe::Absent => Raw::Absent,
            Probe::Whiteout => Raw::Whiteout(whiteout_format(fd, name)),
            Probe::Entry(st) => {
                let kind = st.st_mode & libc::S_IFMT;
                let dir = kind == libc::S_IFDIR && !u.opts.plain;
                Raw::Entry {
                    kind,
                    opaque: (dir && is_opaque(fd, name, oci)?).then(|| opaque_format(fd, name)),
                    redirect: if dir {
                        redirect_of(fd, name)?.as_ref().map(redirect_text)
                    } else {
                        None
                    },
                }
            }
        });
    }
    let Some(idx) = u.lower_dir(i, parent)? else {
        return Ok(Raw::Absent);
    };
    Ok(match idx.get(name) {
        Lower::Absent => Raw::Absent,
        Lower::Whiteout => Raw::Whiteout(whiteout_format(fd, name)),
        Lower::Entry(dtype, _) => {
            let kind = mode_of(dtype);
            let (mut opaque, mut redirect) = (None, None);
            if kind == libc::S_IFDIR {
                if let Some(c) = u.lower_dir(i, p)? {
                    if c.opaque {
                        opaque = Some(opaque_format(fd, name));
                    }
                    redirect = c.redirect.as_ref().map(redirect_text);
                }
            }
            Raw::Entry {
                kind,
                opaque,
                redirect,
            }
        }
    })
}

/// The entries directory `p` of layer `i` holds itself (markers left out).
pub fn own_entries(u: &Union, i: usize, p: &Path) -> Res<usize> {
    if i > 0 {
        return Ok(u.lower_dir(i, p)?.map_or(0, |d| d.entries.len()));
    }
    let Some(fd) = dir_fd(u, 0, p)? else {
        return Ok(0);
    };
    let mut n = 0;
    for (name, _, _) in sys::read_dir(fd.as_raw_fd())? {
        if u.opts.plain {
            n += 1;
            continue;
        }
        if name.as_encoded_bytes() == WH_OPAQUE.as_bytes()
            || (!u.opts.kernel_whiteouts && layer::is_whiteout_name(&name))
        {
            continue;
        }
        if let Probe::Entry(_) = u.probe(fd.as_raw_fd(), &name)? {
            n += 1;
        }
    }
    Ok(n)
}

/// The number a copy carries in its own xattr (union::recover), if any.
pub fn copy_number(u: &Union, p: &Path) -> Option<u64> {
    let (parent, name) = split(p);
    let fd = dir_fd(u, 0, parent).ok()??;
    let xp = sys::xattr_path(fd.as_raw_fd(), name).ok()?;
    let v = sys::lgetxattr(&xp, OsStr::new(u.opts.xattr_ns.ino())).ok()?;
    std::str::from_utf8(&v).ok()?.trim().parse().ok()
}

/// The kind of a file as `ls -l` names it.
pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "fifo",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        libc::S_IFSOCK => "socket",
        _ => "file",
    }
}

//! Unpacking one layer tar into a directory of the store: owners, modes, times, PAX
//! `SCHILY.xattr.*`, hard links within the layer, symlinks, device nodes and fifos are kept,
//! and OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) stay the plain files they are (the union
//! reads them). Every call goes through the layer's root fd and never follows a symlink that
//! lives in the layer, so an entry that would escape it (an absolute path, `..`, a hard link to
//! outside, a write through a symlink) is refused with one line naming it.
//!
//! Unprivileged, what the filesystem refuses (another owner, a device node) is recorded in the
//! union's override xattr (`user.strata.override_stat`), so a mount shows the image's owners.
//!
//! Here the driver: each entry read (`header`), routed by its type, and written (`write`) into
//! the tree that `dirs` opens and finishes.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tar::EntryType;

use super::at::open_dir_path;
use crate::sys;

#[path = "tar_dirs.rs"]
mod dirs;
#[path = "tar_header.rs"]
mod header;
#[path = "tar_write.rs"]
mod write;

pub use header::clean;
use header::{read_meta, Meta};

/// What an unpacked layer holds.
#[derive(Debug, Default)]
pub struct Unpacked {
    /// Bytes of file data (what Docker counts as a layer's size).
    pub size: u64,
    pub entries: u64,
    /// Xattrs the filesystem would not take (trusted.* and security.* unprivileged).
    pub refused_xattrs: u64,
}

struct Unpacker {
    root: OwnedFd,
    euid: u32,
    egid: u32,
    /// Directories get their mode and times last, deepest first: entries created inside them
    /// would change their mtime, and a read-only mode would stop them being filled.
    dirs: BTreeMap<PathBuf, Meta>,
    /// The last parent directory opened, the common case for consecutive entries.
    cache: Option<(PathBuf, OwnedFd)>,
    out: Unpacked,
    /// Told where each file's data is, to keep the rest of the tar (`split`).
    split: Option<super::split::Split>,
}

/// Unpack the (uncompressed) layer tar `r` into the existing, empty directory `dir`.
#[cfg(test)]
pub fn unpack(r: impl Read, dir: &Path) -> Result<Unpacked> {
    unpack_split(r, dir, None)
}

/// The same, telling `split` where each regular file's data is in the stream.
pub fn unpack_split(
    r: impl Read,
    dir: &Path,
    split: Option<super::split::Split>,
) -> Result<Unpacked> {
    let root = open_dir_path(dir)?;
    let mut u = Unpacker {
        root,
        euid: sys::geteuid(),
        egid: unsafe { libc::getegid() },
        dirs: BTreeMap::new(),
        cache: None,
        out: Unpacked::default(),
        split,
    };
    let mut ar = tar::Archive::new(r);
    for e in ar.entries().context("reading the layer tar")? {
        let mut e = e.context("reading the layer tar")?;
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        u.entry(&mut e)
            .with_context(|| format!("layer entry {shown:?}"))?;
        u.out.entries += 1;
    }
    u.finish_dirs()?;
    Ok(u.out)
}

fn errno(e: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

impl Unpacker {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<()> {
        let kind = e.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let rel = clean(&e.path()?)?;
        let (meta, xattrs) = read_meta(e)?;
        if rel.as_os_str().is_empty() {
            // The layer root itself ("./"): only its metadata.
            if kind != EntryType::Directory {
                bail!("the layer root can only be a directory");
            }
            self.owner_xattrs(
                self.root.as_raw_fd(),
                OsStr::new(""),
                libc::S_IFDIR,
                &meta,
                &xattrs,
            )?;
            self.dirs.insert(rel, meta);
            return Ok(());
        }
        let name = rel.file_name().unwrap().to_os_string();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let pfd = self.parent(&parent_rel)?;
        let ifmt = match kind {
            EntryType::Directory => libc::S_IFDIR,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => libc::S_IFREG,
            EntryType::Symlink => libc::S_IFLNK,
            EntryType::Link => 0,
            EntryType::Char => libc::S_IFCHR,
            EntryType::Block => libc::S_IFBLK,
            EntryType::Fifo => libc::S_IFIFO,
            other => bail!("unsupported tar entry type {other:?}"),
        };
        if ifmt == libc::S_IFREG {
            return self.regular(e, pfd, &name, &rel, &meta, &xattrs);
        }
        self.clear(pfd, &name, &rel, ifmt == libc::S_IFDIR)?;
        match kind {
            EntryType::Directory => {
                match sys::mkdirat(pfd, &name, 0o700) {
                    Ok(()) | Err(libc::EEXIST) => {}
                    Err(e) => return Err(errno(e)).context("mkdir"),
                }
                self.owner_xattrs(pfd, &name, ifmt, &meta, &xattrs)?;
                self.dirs.insert(rel, meta);
                return Ok(());
            }
            EntryType::Link => return self.hard_link(e, pfd, &name),
            EntryType::Symlink => self.symlink(e, pfd, &name)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.node(e, pfd, &name, ifmt)?
            }
            _ => unreachable!("regular files are written by regular()"),
        }
        self.owner_xattrs(pfd, &name, ifmt, &meta, &xattrs)?;
        if ifmt != libc::S_IFLNK {
            sys::chmodat(pfd, &name, meta.mode)
                .map_err(errno)
                .context("chmod")?;
        }
        sys::utimensat(pfd, &name, &meta.times)
            .map_err(errno)
            .context("set times")?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "tar_tests.rs"]
mod tests;

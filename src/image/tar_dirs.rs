//! The directory tree of a layer being unpacked: each entry's parent opened (or made) one
//! component at a time from the layer's root fd without following a symlink, and the
//! directories' modes and times set last, deepest first.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::super::at::dup;
use super::{errno, Unpacker};
use crate::sys;

impl Unpacker {
    /// The directory an entry goes in, made (0755) where the tar has no entry for it.
    pub(super) fn parent(&mut self, rel: &Path) -> Result<RawFd> {
        if rel.as_os_str().is_empty() {
            return Ok(self.root.as_raw_fd());
        }
        if !matches!(&self.cache, Some((p, _)) if p == rel) {
            let fd = self.walk(rel, true)?;
            self.cache = Some((rel.to_path_buf(), fd));
        }
        Ok(self.cache.as_ref().unwrap().1.as_raw_fd())
    }

    pub(super) fn open_existing_dir(&mut self, rel: &Path) -> Result<OwnedFd> {
        self.walk(rel, false)
    }

    /// Open `rel` below the root one component at a time, never following a symlink.
    fn walk(&self, rel: &Path, create: bool) -> Result<OwnedFd> {
        let mut fd = dup(self.root.as_raw_fd())?;
        let mut sofar = PathBuf::new();
        for c in rel.components() {
            let n = c.as_os_str();
            sofar.push(n);
            let flags = libc::O_RDONLY | libc::O_DIRECTORY;
            let next = match sys::openat(fd.as_raw_fd(), n, flags, 0) {
                Err(libc::ENOENT) if create => {
                    sys::mkdirat(fd.as_raw_fd(), n, 0o755)
                        .map_err(errno)
                        .with_context(|| format!("mkdir {}", sofar.display()))?;
                    sys::openat(fd.as_raw_fd(), n, flags, 0)
                }
                r => r,
            };
            fd = match next {
                Ok(f) => f,
                Err(libc::ELOOP) => bail!(
                    "{} is a symlink: nothing is written through one",
                    sofar.display()
                ),
                Err(libc::ENOTDIR) => {
                    let st = sys::fstatat(fd.as_raw_fd(), n).map_err(errno)?;
                    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                        bail!(
                            "{} is a symlink: nothing is written through one",
                            sofar.display()
                        );
                    }
                    bail!("{} is not a directory", sofar.display())
                }
                Err(e) => {
                    return Err(errno(e)).with_context(|| format!("open {}", sofar.display()))
                }
            };
        }
        Ok(fd)
    }

    /// Directory modes and times, deepest first.
    pub(super) fn finish_dirs(&mut self) -> Result<()> {
        self.cache = None;
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, m) in dirs.iter().rev() {
            let (pfd, name) = if rel.as_os_str().is_empty() {
                (dup(self.root.as_raw_fd())?, OsString::new())
            } else {
                let parent = rel.parent().unwrap_or(Path::new(""));
                (
                    self.walk(parent, false)?,
                    rel.file_name().unwrap().to_os_string(),
                )
            };
            let what = || format!("layer entry {:?}", rel.display().to_string());
            sys::chmodat(pfd.as_raw_fd(), &name, m.mode)
                .map_err(errno)
                .with_context(what)?;
            sys::utimensat(pfd.as_raw_fd(), &name, &m.times)
                .map_err(errno)
                .with_context(what)?;
        }
        Ok(())
    }
}

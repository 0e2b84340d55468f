//! Writing a layer tar's entries into the layer directory: regular files through their own
//! fd, hard links within the layer, symlinks, device nodes and fifos, each entry's owner (or,
//! refused unprivileged, the union's override xattr) and xattrs, and the replacement of an
//! earlier entry of the same name.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tar::EntryType;

use super::super::at::{fset, remove_all};
use super::header::{clean, Meta, Xattrs};
use super::{errno, Unpacker};
use crate::sys;
use crate::union::xattr::{set_override, OVERRIDE_XATTR};

impl Unpacker {
    /// A regular file: created, written and given its owner, xattrs, mode and times through
    /// its own fd, which spares the path lookups of the other kinds (most entries are files).
    pub(super) fn regular<R: Read>(
        &mut self,
        e: &mut tar::Entry<R>,
        pfd: RawFd,
        name: &OsStr,
        rel: &Path,
        m: &Meta,
        xattrs: &Xattrs,
    ) -> Result<()> {
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
        let fd = match sys::openat(pfd, name, flags, 0o600) {
            Err(libc::EEXIST) => {
                self.clear(pfd, name, rel, false)?;
                sys::openat(pfd, name, flags, 0o600)
            }
            r => r,
        }
        .map_err(errno)
        .context("create")?;
        let mut f = File::from(fd);
        // A sparse file's data is not laid out as the file is: its bytes are kept as they are.
        if let Some(s) = &self.split {
            if e.header().entry_type() != EntryType::GNUSparse {
                s.file(rel, e.size()).context("layer record")?;
            }
        }
        self.out.size += std::io::copy(e, &mut f).context("writing its data")?;
        let fd = f.as_raw_fd();
        let check = |r: i32, what: &'static str| {
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error()).context(what)
            }
        };
        // chown first: it clears set-id bits and security.capability, which come after it.
        let chown = self.euid == 0 || m.uid != self.euid || m.gid != self.egid;
        if chown && unsafe { libc::fchown(fd, m.uid, m.gid) } != 0 {
            let err = std::io::Error::last_os_error();
            let refused = matches!(err.raw_os_error(), Some(libc::EPERM | libc::EINVAL));
            if self.euid == 0 || !refused {
                return Err(err).context("chown");
            }
            let v = format!("{}:{}:0{:o}", m.uid, m.gid, libc::S_IFREG | m.mode);
            fset(fd, OsStr::new(OVERRIDE_XATTR), v.as_bytes())
                .map_err(errno)
                .context("record the owner in user.strata.override_stat")?;
        }
        for (k, v) in xattrs {
            match fset(fd, k, v) {
                Ok(()) => {}
                Err(libc::EPERM | libc::EOPNOTSUPP) => self.out.refused_xattrs += 1,
                Err(e) => {
                    return Err(errno(e)).with_context(|| format!("xattr {}", k.to_string_lossy()))
                }
            }
        }
        check(unsafe { libc::fchmod(fd, m.mode) }, "chmod")?;
        check(unsafe { libc::futimens(fd, m.times.as_ptr()) }, "set times")
    }

    /// A hard link to an entry the layer holds before it, never to outside the layer.
    pub(super) fn hard_link<R: Read>(
        &mut self,
        e: &tar::Entry<R>,
        pfd: RawFd,
        name: &OsStr,
    ) -> Result<()> {
        let target = e
            .link_name()?
            .ok_or_else(|| anyhow!("a hard link without a target"))?;
        let t = clean(&target).with_context(|| format!("hard link to {:?}", target))?;
        if t.as_os_str().is_empty() {
            bail!("a hard link to the layer root");
        }
        let tparent = t.parent().unwrap_or(Path::new(""));
        let tfd = self
            .open_existing_dir(tparent)
            .with_context(|| format!("hard link to {:?}", target))?;
        let tname = t.file_name().unwrap();
        match sys::linkat(tfd.as_raw_fd(), tname, pfd, name) {
            Ok(()) => Ok(()),
            Err(libc::ENOENT) => {
                bail!("hard link to {target:?}, which the layer does not hold before it")
            }
            Err(libc::EPERM) => {
                bail!("hard link to {target:?}: a directory cannot be linked")
            }
            Err(e) => Err(errno(e)).with_context(|| format!("hard link to {target:?}")),
        }
    }

    /// A symlink, its target kept as the tar has it (it is never followed here).
    pub(super) fn symlink<R: Read>(
        &mut self,
        e: &tar::Entry<R>,
        pfd: RawFd,
        name: &OsStr,
    ) -> Result<()> {
        let target = e
            .link_name_bytes()
            .ok_or_else(|| anyhow!("a symlink without a target"))?;
        sys::symlinkat(OsStr::from_bytes(&target), pfd, name)
            .map_err(errno)
            .context("symlink")
    }

    /// A device node or a fifo; unprivileged, an empty file stands in for a device node.
    pub(super) fn node<R: Read>(
        &mut self,
        e: &tar::Entry<R>,
        pfd: RawFd,
        name: &OsStr,
        ifmt: u32,
    ) -> Result<()> {
        // GNU tar leaves a fifo's device fields blank.
        let dev = |v: std::io::Result<Option<u32>>| match v {
            Ok(n) => Ok(n.unwrap_or(0)),
            Err(_) if ifmt == libc::S_IFIFO => Ok(0),
            Err(e) => Err(e),
        };
        let major = dev(e.header().device_major())?;
        let minor = dev(e.header().device_minor())?;
        let rdev = libc::makedev(major, minor);
        match sys::mknodat(pfd, name, ifmt | 0o600, rdev) {
            Ok(()) => {}
            // Unprivileged: an empty file stands in, its type in the override xattr.
            Err(libc::EPERM) if self.euid != 0 && ifmt != libc::S_IFIFO => {
                sys::openat(
                    pfd,
                    name,
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                    0o600,
                )
                .map_err(errno)
                .context("create")?;
            }
            Err(e) => return Err(errno(e)).context("mknod"),
        }
        Ok(())
    }

    /// chown (or, refused unprivileged, the override xattr) and the entry's xattrs. chown
    /// comes first: it clears set-id bits and security.capability, which come after it.
    pub(super) fn owner_xattrs(
        &mut self,
        pfd: RawFd,
        name: &OsStr,
        ifmt: u32,
        m: &Meta,
        xattrs: &Xattrs,
    ) -> Result<()> {
        let st = sys::fstatat(pfd, name).map_err(errno).context("stat")?;
        let mut record = self.euid != 0 && st.st_mode & libc::S_IFMT != ifmt;
        if st.st_uid != m.uid || st.st_gid != m.gid {
            match sys::lchownat(pfd, name, m.uid, m.gid) {
                Ok(()) => {}
                Err(libc::EPERM | libc::EINVAL) if self.euid != 0 => record = true,
                Err(e) => return Err(errno(e)).context("chown"),
            }
        }
        // user.* xattrs are allowed on files and directories only: a symlink's or a fifo's
        // owner is not kept unprivileged (device nodes are files standing in here).
        if record && ifmt != libc::S_IFLNK && ifmt != libc::S_IFIFO {
            set_override(pfd, name, m.uid, m.gid, ifmt | m.mode)
                .map_err(errno)
                .context("record the owner in user.strata.override_stat")?;
        }
        if !xattrs.is_empty() {
            let p = sys::xattr_path(pfd, name).map_err(errno)?;
            for (k, v) in xattrs {
                match sys::lsetxattr(&p, k, v, 0) {
                    Ok(()) => {}
                    Err(libc::EPERM | libc::EOPNOTSUPP) => self.out.refused_xattrs += 1,
                    Err(e) => {
                        return Err(errno(e))
                            .with_context(|| format!("xattr {}", k.to_string_lossy()))
                    }
                }
            }
        }
        Ok(())
    }

    /// Make room for a new entry: a later entry replaces an earlier one of the same name, except
    /// that a directory stays a directory (its new metadata is applied).
    pub(super) fn clear(
        &mut self,
        pfd: RawFd,
        name: &OsStr,
        rel: &Path,
        new_is_dir: bool,
    ) -> Result<()> {
        let Some(st) = sys::stat_opt(pfd, name).map_err(errno)? else {
            return Ok(());
        };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir && new_is_dir {
            return Ok(());
        }
        if is_dir {
            // The cache holds `rel`'s parent, never below `rel`; forget it if it were.
            if matches!(&self.cache, Some((p, _)) if p.starts_with(rel)) {
                self.cache = None;
            }
            remove_all(pfd, name).context("replace a directory")?;
        } else {
            sys::unlinkat(pfd, name, false)
                .map_err(errno)
                .context("replace")?;
        }
        Ok(())
    }
}

//! Copy-up: bring a lower entry into the upper layer before its first change.
//!
//! The copy is built in `workdir/work` under a temporary name, with data (holes kept), owner,
//! mode, xattrs and timestamps, flushed to disk, and only then renamed into place: a crash
//! leaves either no copy or a whole one, never a partial file in the upper.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::{xattr, Union};
use crate::sys::{self, Res};

/// What a copy carries besides its data: set on an entry of `dirfd` in this order, because
/// chown clears set-id bits and file capabilities.
pub(crate) struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub times: Option<[libc::timespec; 2]>,
}

impl Union {
    /// Copy node `id` (and its parents, first) up. The caller holds the namespace lock.
    pub fn copy_up(&self, id: u64) -> Res<()> {
        let (st, path) = self.resolve(id)?;
        if st.upper {
            return Ok(());
        }
        self.writable()?;
        let (parent, name) = st.names.first().cloned().ok_or(libc::ENOENT)?;
        self.copy_up(parent)?;
        let src = st.lowers.first().ok_or(libc::ENOENT)?.clone();
        let (sparent, sname) = src.parent_and_name();
        let sfd = self.layer(src.layer).dir(sparent)?;
        let sst = sys::fstatat(sfd.as_raw_fd(), sname)?;
        let work = self.work_fd()?;
        let tmp = self.tmp_name();
        let kind = sst.st_mode & libc::S_IFMT;
        let ppath = path.parent().unwrap_or(Path::new(""));
        let ufd = self.layer(0).dir(ppath)?;
        let pst = sys::fstatat(ufd.as_raw_fd(), OsStr::new(""))?;

        let made = (|| -> Res<()> {
            match kind {
                libc::S_IFREG => {
                    let s = sys::openat(sfd.as_raw_fd(), sname, libc::O_RDONLY, 0)?;
                    let d = sys::openat(
                        work,
                        &tmp,
                        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                        0o600,
                    )?;
                    sys::copy_data(s.as_raw_fd(), d.as_raw_fd(), sst.st_size as u64)?;
                    self.finish_copy(work, &tmp, &sst, Some((sfd.as_raw_fd(), sname)))?;
                    // On disk before it becomes visible, as kernel overlayfs does.
                    sys::fsync(d.as_raw_fd(), false)?;
                }
                libc::S_IFDIR => {
                    sys::mkdirat(work, &tmp, 0o700)?;
                    self.finish_copy(work, &tmp, &sst, Some((sfd.as_raw_fd(), sname)))?;
                }
                libc::S_IFLNK => {
                    let target = sys::readlinkat(sfd.as_raw_fd(), sname)?;
                    sys::symlinkat(&target, work, &tmp)?;
                    self.finish_copy(work, &tmp, &sst, Some((sfd.as_raw_fd(), sname)))?;
                }
                _ => {
                    self.make_special(work, &tmp, sst.st_mode, sst.st_rdev)?;
                    self.finish_copy(work, &tmp, &sst, Some((sfd.as_raw_fd(), sname)))?;
                }
            }
            let ust = sys::fstatat(work, &tmp)?;
            // The identity goes into the table before the copy can be seen.
            self.inodes.insert(ust.st_ino, id).map_err(|_| libc::EIO)?;
            sys::renameat2(work, &tmp, ufd.as_raw_fd(), &name, libc::RENAME_NOREPLACE)
        })();
        if let Err(e) = made {
            let _ = sys::unlinkat(work, &tmp, kind == libc::S_IFDIR);
            log::warn!("copy-up of /{} failed: {}", path.display(), errstr(e));
            return Err(e);
        }
        // Copy-up is invisible to users: the parent keeps its timestamps.
        let _ = sys::utimensat(ufd.as_raw_fd(), OsStr::new(""), &sys::times_of(&pst));
        if let Ok(n) = self.node(id) {
            n.st.write().unwrap().upper = true;
        }
        log::info!(
            "copy-up /{}: {} from lower layer {} ({})",
            path.display(),
            kind_name(kind),
            src.layer,
            self.layer(src.layer).path.join(&src.path).display()
        );
        Ok(())
    }

    /// Copy xattrs (from `src` if given), then owner, mode and times of `sst` onto
    /// `name` in `dirfd`.
    pub(crate) fn finish_copy(
        &self,
        dirfd: i32,
        name: &OsStr,
        sst: &libc::stat,
        src: Option<(i32, &OsStr)>,
    ) -> Res<()> {
        let attrs = Attrs {
            uid: sst.st_uid,
            gid: sst.st_gid,
            mode: sst.st_mode,
            times: Some(sys::times_of(sst)),
        };
        // Owner first: chown drops set-id bits and security.capability, which come after it.
        self.set_owner_mode(dirfd, name, &attrs)?;
        if let Some((sfd, sname)) = src {
            xattr::copy_all(sfd, sname, dirfd, name)?;
        }
        if let Some(t) = attrs.times {
            sys::utimensat(dirfd, name, &t)?;
        }
        Ok(())
    }

    /// chown + chmod, keeping what the filesystem refuses (rootless) in the override xattr.
    pub(crate) fn set_owner_mode(&self, dirfd: i32, name: &OsStr, a: &Attrs) -> Res<()> {
        let kind = a.mode & libc::S_IFMT;
        let mut refused = false;
        let mut on_disk = sys::fstatat(dirfd, name)?;
        if on_disk.st_uid != a.uid || on_disk.st_gid != a.gid {
            match sys::lchownat(dirfd, name, a.uid, a.gid) {
                // chown may have cleared set-id bits: look again before chmod.
                Ok(()) => on_disk = sys::fstatat(dirfd, name)?,
                Err(libc::EPERM) | Err(libc::EINVAL) if self.opts.xattr_permissions => {
                    refused = true
                }
                // An unprivileged graft: what the host lets its owner do is what it gets.
                Err(libc::EPERM) if self.opts.plain && sys::geteuid() != 0 => {}
                Err(e) => return Err(e),
            }
        }
        if kind != libc::S_IFLNK {
            let want = a.mode & 0o7777;
            if on_disk.st_mode & 0o7777 != want {
                sys::chmodat(dirfd, name, want)?;
            }
            if on_disk.st_mode & libc::S_IFMT != kind {
                refused = true; // a special file stood in by a regular one
            }
        }
        if refused {
            xattr::set_override(dirfd, name, a.uid, a.gid, a.mode)?;
        }
        Ok(())
    }

    /// mknod, or, where the filesystem refuses device nodes (rootless), an empty regular file
    /// whose real type is kept in the override xattr by `set_owner_mode`.
    pub(crate) fn make_special(&self, dirfd: i32, name: &OsStr, mode: u32, rdev: u64) -> Res<()> {
        match sys::mknodat(dirfd, name, mode, rdev) {
            Err(libc::EPERM) if self.opts.xattr_permissions => {
                let fd = sys::openat(
                    dirfd,
                    name,
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                    0o600,
                )?;
                drop(fd);
                Ok(())
            }
            r => r,
        }
    }
}

pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symlink",
        libc::S_IFIFO => "fifo",
        libc::S_IFCHR => "char device",
        libc::S_IFBLK => "block device",
        libc::S_IFSOCK => "socket",
        _ => "entry",
    }
}

/// The message of errno `e`, without Rust's " (os error N)" suffix.
pub fn errstr(e: i32) -> String {
    let s = std::io::Error::from_raw_os_error(e).to_string();
    match s.rfind(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

//! The st_ino a copied-up file keeps, carried by the copy itself, and read back after an
//! unclean shutdown.
//!
//! A copy-up writes the number it keeps into an xattr of the copy (`trusted.overlay.strata.ino`,
//! or `user.overlay.strata.ino` unprivileged) before the fsync that makes its data durable and
//! before the rename that makes it visible. Its record in the inode table is then written
//! without waiting for the disk: one synced write of RocksDB's log per copy-up would cost more
//! than the copy of a small file. When the table was not shut down cleanly (see crate::inode),
//! the mount walks the upper layer once before it serves and puts back every number a copy
//! carries that its record lost, as fsck replays a journal.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;

use super::Union;
use crate::sys::{self, Res};

impl Union {
    /// Write the number node `id` keeps into its copy `name` in `dirfd`. False when the upper
    /// filesystem refuses (user.* xattrs on symlinks and special files): its record must then
    /// be durable instead.
    pub(crate) fn number_copy(&self, dirfd: i32, name: &OsStr, id: u64) -> Res<bool> {
        let p = sys::xattr_path(dirfd, name)?;
        let ns = self.opts.xattr_ns.ino();
        match sys::lsetxattr(&p, OsStr::new(ns), id.to_string().as_bytes(), 0) {
            Ok(()) => Ok(true),
            Err(libc::EPERM | libc::EOPNOTSUPP) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// After an unclean shutdown: put every number the upper's copies carry back into the
    /// inode table. Returns how many records were missing or wrong.
    pub fn recover_inodes(&self) -> Res<usize> {
        let Some(upper) = &self.upper else {
            return Ok(0);
        };
        let root = sys::openat(
            upper.root.as_raw_fd(),
            OsStr::new("."),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
        let dev = sys::fstat(root.as_raw_fd())?.st_dev;
        let name = OsStr::new(self.opts.xattr_ns.ino());
        let mut fixed = 0;
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let dfd = dir.as_raw_fd();
            for (n, _, _) in sys::read_dir(dfd)? {
                let Ok(st) = sys::fstatat(dfd, &n) else {
                    continue;
                };
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    // The upper is one filesystem: a mount inside it is not part of it.
                    if st.st_dev == dev {
                        stack.push(sys::openat(
                            dfd,
                            &n,
                            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                            0,
                        )?);
                    }
                    continue;
                }
                let Ok(v) = sys::lgetxattr(&sys::xattr_path(dfd, &n)?, name) else {
                    continue;
                };
                let Some(ino) = std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()) else {
                    log::warn!("inode recovery: {:?} has a malformed number", n);
                    continue;
                };
                let rec = self.inodes.record(st.st_ino);
                if rec.map(|r| r.ino) != Some(ino) {
                    let links = rec.and_then(|r| r.links);
                    self.inodes
                        .put(st.st_ino, crate::inode::Record { ino, links }, false)
                        .map_err(|e| crate::inode::errno(&e))?;
                    fixed += 1;
                }
            }
        }
        self.inodes.recovered();
        Ok(fixed)
    }
}

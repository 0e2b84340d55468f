//! Inode flags (`chattr`/`lsattr`: FS_IOC_GETFLAGS/SETFLAGS, and xfs_io's FS_IOC_FSGETXATTR/
//! FSSETXATTR), as overlayfs serves them: read from the topmost layer holding the file, set on
//! the upper one after a copy-up. The kernel has already checked the caller (the file's owner,
//! and CAP_LINUX_IMMUTABLE to change the append-only or immutable flag) before it asks; the
//! upper filesystem enforces what the flags mean (an immutable file refuses writes, renames and
//! unlinks through strata as it would without it).

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, OwnedFd};

use super::Union;
use crate::sys::{self, Res};

/// `_IOR('f', 1, long)`, `_IOW('f', 2, long)`: the kernel passes an int either way.
pub const GETFLAGS: u32 = 0x8008_6601;
pub const SETFLAGS: u32 = 0x4008_6602;
/// `_IOR('X', 31, struct fsxattr)`, `_IOW('X', 32, struct fsxattr)`.
pub const FSGETXATTR: u32 = 0x801c_581f;
pub const FSSETXATTR: u32 = 0x401c_5820;
/// The size of `struct fsxattr`.
const FSXATTR_SIZE: usize = 28;

/// The size of what `cmd` reads or writes, or None for an ioctl strata does not serve.
pub fn arg_size(cmd: u32) -> Option<usize> {
    match cmd {
        GETFLAGS | SETFLAGS => Some(std::mem::size_of::<libc::c_int>()),
        FSGETXATTR | FSSETXATTR => Some(FSXATTR_SIZE),
        _ => None,
    }
}

/// Whether `cmd` changes the file (and so copies it up).
pub fn sets(cmd: u32) -> bool {
    matches!(cmd, SETFLAGS | FSSETXATTR)
}

/// EPERM when upper directory `dirfd` is append-only or immutable, where the VFS refuses a
/// removal before it looks any further (overlayfs copies the flags into its own inode; a FUSE
/// inode has none, so strata checks).
pub fn check_removal(dirfd: i32) -> Res<()> {
    let guard = (libc::STATX_ATTR_APPEND | libc::STATX_ATTR_IMMUTABLE) as u64;
    if sys::attributes(dirfd)? & guard != 0 {
        return Err(libc::EPERM);
    }
    Ok(())
}

impl Union {
    /// Serves inode-flag ioctl `cmd` on node `id` with argument `arg` (what the caller passed for
    /// a set, zeroes for a get); returns what the caller reads back. Anything else: ENOTTY.
    pub fn fileattr(&self, id: u64, cmd: u32, arg: &[u8]) -> Res<Vec<u8>> {
        let size = arg_size(cmd).ok_or(libc::ENOTTY)?;
        let mut buf = vec![0u8; size];
        let n = arg.len().min(size);
        buf[..n].copy_from_slice(&arg[..n]);
        if sets(cmd) {
            self.writable()?;
            self.copy_up_for_write(id, false)?;
            let _g = self.write_ns();
            self.copy_up(id)?;
            let (fd, _) = self.open_for_flags(id)?;
            sys::ioctl_buf(fd.as_raw_fd(), cmd, &mut buf)?;
            return Ok(Vec::new());
        }
        let _g = self.read_ns();
        let (fd, _) = self.open_for_flags(id)?;
        sys::ioctl_buf(fd.as_raw_fd(), cmd, &mut buf)?;
        Ok(buf)
    }

    /// The topmost file of node `id`, opened for nothing but ioctls: read-only, without
    /// blocking (a fifo) and without becoming anyone's terminal.
    fn open_for_flags(&self, id: u64) -> Res<(OwnedFd, usize)> {
        let (st, path) = self.resolve(id)?;
        let (layer, parent, name) = self.top_of(&st, &path);
        let dfd = self.layer(layer).dir(&parent)?;
        let name = if name.is_empty() {
            OsStr::new(".")
        } else {
            &name
        };
        // Only files and directories carry flags; never open a device node for them.
        let kind = sys::fstatat(dfd.as_raw_fd(), name)?.st_mode & libc::S_IFMT;
        if kind != libc::S_IFREG && kind != libc::S_IFDIR {
            return Err(libc::ENOTTY);
        }
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
        Ok((sys::openat(dfd.as_raw_fd(), name, flags, 0)?, layer))
    }
}

//! Thin, safe wrappers over the `*at()` system calls the union layer needs.
//!
//! Every call takes a directory fd and a single path component (or a path that is resolved with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`), so that nothing a layer contains can make a
//! call escape the layer: a symlink inside a layer is data, never a path to follow.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// An errno value. The union layer speaks errno because that is what FUSE returns.
pub type Errno = i32;
pub type Res<T> = Result<T, Errno>;

mod xattr;
pub use xattr::*;

fn last() -> Errno {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(r: libc::c_int) -> Res<libc::c_int> {
    if r < 0 {
        Err(last())
    } else {
        Ok(r)
    }
}

fn check_ssize(r: libc::ssize_t) -> Res<usize> {
    if r < 0 {
        Err(last())
    } else {
        Ok(r as usize)
    }
}

pub fn cstr(p: &OsStr) -> Res<CString> {
    CString::new(p.as_bytes()).map_err(|_| libc::EINVAL)
}

/// A path that names `name` inside the directory `dirfd` without following `name` itself when
/// used with the `l*` calls: `/proc/self/fd/N/name`. The magic link resolves to the directory
/// we opened safely; the last component is looked up in it.
pub fn fd_path(dirfd: RawFd, name: &OsStr) -> Res<CString> {
    let mut v = format!("/proc/self/fd/{dirfd}").into_bytes();
    if !name.is_empty() {
        v.push(b'/');
        v.extend_from_slice(name.as_bytes());
    }
    CString::new(v).map_err(|_| libc::EINVAL)
}

pub const RESOLVE_SAFE: u64 =
    libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;

/// openat2 with the given resolve flags. An empty path opens `dirfd` itself (as ".").
pub fn openat2(dirfd: RawFd, path: &Path, flags: i32, mode: u32, resolve: u64) -> Res<OwnedFd> {
    let p = if path.as_os_str().is_empty() {
        CString::new(".").unwrap()
    } else {
        cstr(path.as_os_str())?
    };
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
        mode as u64
    } else {
        0
    };
    how.resolve = resolve;
    loop {
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                p.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
        }
        let e = last();
        if e != libc::EAGAIN && e != libc::EINTR {
            return Err(e);
        }
    }
}

/// Open a single entry of a directory, never following a symlink at the last component.
/// O_NOATIME is dropped where the kernel refuses it (a file neither owned by the caller nor
/// open to its CAP_FOWNER), as overlayfs drops it.
pub fn openat(dirfd: RawFd, name: &OsStr, flags: i32, mode: u32) -> Res<OwnedFd> {
    let c = cstr(name)?;
    let open = |flags: i32| unsafe {
        libc::openat(
            dirfd,
            c.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::c_uint,
        )
    };
    let mut r = open(flags);
    if r < 0 && flags & libc::O_NOATIME != 0 && last() == libc::EPERM {
        r = open(flags & !libc::O_NOATIME);
    }
    check(r).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn fstatat(dirfd: RawFd, name: &OsStr) -> Res<libc::stat> {
    let c = if name.is_empty() {
        CString::new("").unwrap()
    } else {
        cstr(name)?
    };
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    check(unsafe { libc::fstatat(dirfd, c.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

pub fn fstat(fd: RawFd) -> Res<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// stat that tells "does not exist" apart from errors.
pub fn stat_opt(dirfd: RawFd, name: &OsStr) -> Res<Option<libc::stat>> {
    match fstatat(dirfd, name) {
        Ok(st) => Ok(Some(st)),
        Err(libc::ENOENT) | Err(libc::ENOTDIR) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn mkdirat(dirfd: RawFd, name: &OsStr, mode: u32) -> Res<()> {
    let c = cstr(name)?;
    check(unsafe { libc::mkdirat(dirfd, c.as_ptr(), mode as libc::mode_t) }).map(drop)
}

pub fn mknodat(dirfd: RawFd, name: &OsStr, mode: u32, rdev: u64) -> Res<()> {
    let c = cstr(name)?;
    check(unsafe { libc::mknodat(dirfd, c.as_ptr(), mode as libc::mode_t, rdev) }).map(drop)
}

pub fn symlinkat(target: &OsStr, dirfd: RawFd, name: &OsStr) -> Res<()> {
    let t = cstr(target)?;
    let c = cstr(name)?;
    check(unsafe { libc::symlinkat(t.as_ptr(), dirfd, c.as_ptr()) }).map(drop)
}

pub fn readlinkat(dirfd: RawFd, name: &OsStr) -> Res<OsString> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    let n = check_ssize(unsafe {
        libc::readlinkat(
            dirfd,
            c.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    })?;
    buf.truncate(n);
    Ok(OsString::from_vec(buf))
}

pub fn unlinkat(dirfd: RawFd, name: &OsStr, dir: bool) -> Res<()> {
    let c = cstr(name)?;
    let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
    check(unsafe { libc::unlinkat(dirfd, c.as_ptr(), flags) }).map(drop)
}

pub fn renameat2(olddir: RawFd, old: &OsStr, newdir: RawFd, new: &OsStr, flags: u32) -> Res<()> {
    let o = cstr(old)?;
    let n = cstr(new)?;
    check(unsafe { libc::renameat2(olddir, o.as_ptr(), newdir, n.as_ptr(), flags) }).map(drop)
}

pub fn linkat(olddir: RawFd, old: &OsStr, newdir: RawFd, new: &OsStr) -> Res<()> {
    let o = cstr(old)?;
    let n = cstr(new)?;
    check(unsafe { libc::linkat(olddir, o.as_ptr(), newdir, n.as_ptr(), 0) }).map(drop)
}

pub fn lchownat(dirfd: RawFd, name: &OsStr, uid: u32, gid: u32) -> Res<()> {
    let c = if name.is_empty() {
        CString::new("").unwrap()
    } else {
        cstr(name)?
    };
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    check(unsafe { libc::fchownat(dirfd, c.as_ptr(), uid, gid, flags) }).map(drop)
}

/// chmod of an entry that is not a symlink (symlink modes are not settable on Linux). An empty
/// name means `dirfd` itself.
pub fn chmodat(dirfd: RawFd, name: &OsStr, mode: u32) -> Res<()> {
    if name.is_empty() {
        let p = fd_path(dirfd, name)?;
        return check(unsafe { libc::chmod(p.as_ptr(), mode as libc::mode_t) }).map(drop);
    }
    let fd = openat(dirfd, name, libc::O_PATH, 0)?;
    let st = fstat(fd.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(libc::EOPNOTSUPP);
    }
    let p = fd_path(fd.as_raw_fd(), OsStr::new(""))?;
    check(unsafe { libc::chmod(p.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// Set atime/mtime of `name` in `dirfd` without following it; an empty name means `dirfd`.
pub fn utimensat(dirfd: RawFd, name: &OsStr, times: &[libc::timespec; 2]) -> Res<()> {
    if name.is_empty() {
        // utimensat has no AT_EMPTY_PATH; name the fd itself through /proc.
        let p = fd_path(dirfd, name)?;
        return check(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0) })
            .map(drop);
    }
    let c = cstr(name)?;
    check(unsafe { libc::utimensat(dirfd, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
        .map(drop)
}

pub fn times_of(st: &libc::stat) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ]
}

/// Names of a directory's entries (without "." and ".."), with d_type and d_ino.
pub fn read_dir(dirfd: RawFd) -> Res<Vec<(OsString, u8, u64)>> {
    read_dir_flags(dirfd, 0)
}

/// read_dir, opening the directory with `extra` flags too (O_NOATIME).
pub fn read_dir_flags(dirfd: RawFd, extra: i32) -> Res<Vec<(OsString, u8, u64)>> {
    // Open a fresh fd for reading: the caller's fd may be O_PATH.
    let fd = openat(
        dirfd,
        OsStr::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY | extra,
        0,
    )?;
    let dir = unsafe { libc::fdopendir(fd.as_raw_fd()) };
    if dir.is_null() {
        return Err(last());
    }
    std::mem::forget(fd); // owned by DIR now
    let mut out = Vec::new();
    loop {
        unsafe { *libc::__errno_location() = 0 };
        let ent = unsafe { libc::readdir64(dir) };
        if ent.is_null() {
            let e = unsafe { *libc::__errno_location() };
            unsafe { libc::closedir(dir) };
            if e != 0 {
                return Err(e);
            }
            return Ok(out);
        }
        let ent = unsafe { &*ent };
        let name = unsafe { CStr::from_ptr(ent.d_name.as_ptr()) };
        let b = name.to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        out.push((OsStr::from_bytes(b).to_os_string(), ent.d_type, ent.d_ino));
    }
}

pub fn pread(fd: RawFd, buf: &mut [u8], off: u64) -> Res<usize> {
    check_ssize(unsafe { libc::pread(fd, buf.as_mut_ptr() as *mut _, buf.len(), off as i64) })
}

pub fn pwrite(fd: RawFd, buf: &[u8], off: u64) -> Res<usize> {
    check_ssize(unsafe { libc::pwrite(fd, buf.as_ptr() as *const _, buf.len(), off as i64) })
}

pub fn fchown(fd: RawFd, uid: u32, gid: u32) -> Res<()> {
    check(unsafe { libc::fchown(fd, uid, gid) }).map(|_| ())
}

pub fn fchmod(fd: RawFd, mode: u32) -> Res<()> {
    check(unsafe { libc::fchmod(fd, mode) }).map(|_| ())
}

pub fn futimens(fd: RawFd, times: &[libc::timespec; 2]) -> Res<()> {
    check(unsafe { libc::futimens(fd, times.as_ptr()) }).map(|_| ())
}

pub fn ftruncate(fd: RawFd, size: u64) -> Res<()> {
    check(unsafe { libc::ftruncate(fd, size as i64) }).map(drop)
}

pub fn fsync(fd: RawFd, datasync: bool) -> Res<()> {
    check(unsafe {
        if datasync {
            libc::fdatasync(fd)
        } else {
            libc::fsync(fd)
        }
    })
    .map(drop)
}

/// A /proc file (mountinfo, uid_map) read whole into a buffer that holds it in one read or a
/// few: std's read_to_string starts such a file, whose size is given as 0, with 32-byte reads
/// and doubles them, and for mountinfo eight reads cost two and a half times one.
pub fn read_proc(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = String::with_capacity(16 << 10);
    std::fs::File::open(path)?.read_to_string(&mut s)?;
    Ok(s)
}

/// Is `path` the root of a mount (statx STATX_ATTR_MOUNT_ROOT, Linux 5.8)? None where the
/// kernel does not say.
pub fn is_mount_root(path: &Path) -> Option<bool> {
    let c = cstr(path.as_os_str()).ok()?;
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, 0, &mut stx) };
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    (r == 0 && stx.stx_attributes_mask & bit != 0).then_some(stx.stx_attributes & bit != 0)
}

/// The id of the mount `fd` is on (statx STATX_MNT_ID), as /proc/self/mountinfo numbers them.
pub fn mount_id(fd: RawFd) -> Option<u64> {
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let empty = c"";
    let r = unsafe {
        libc::statx(
            fd,
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    (r == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
}

/// fsync a directory given by any fd (O_PATH too) of it.
pub fn fsync_dir(dirfd: RawFd) -> Res<()> {
    let f = openat(
        dirfd,
        OsStr::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )?;
    fsync(f.as_raw_fd(), false)
}

pub fn fallocate(fd: RawFd, mode: i32, off: u64, len: u64) -> Res<()> {
    check(unsafe { libc::fallocate(fd, mode, off as i64, len as i64) }).map(drop)
}

pub fn fstatvfs(fd: RawFd) -> Res<libc::statvfs> {
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstatvfs(fd, &mut s) })?;
    Ok(s)
}

/// The statx attributes of `fd` (which may be O_PATH) that its filesystem knows of.
pub fn attributes(fd: RawFd) -> Res<u64> {
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    check(unsafe { libc::statx(fd, c"".as_ptr(), libc::AT_EMPTY_PATH, 0, &mut stx) })?;
    Ok(stx.stx_attributes & stx.stx_attributes_mask)
}

/// A detached copy of the mount tree at `dirfd` (open_tree(2) OPEN_TREE_CLONE, with what is
/// mounted below it) whose reads stamp access times as `atime` says (one of the
/// MOUNT_ATTR_*ATIME values, with MOUNT_ATTR_NODIRATIME or not). Needs CAP_SYS_ADMIN over the
/// mount namespace.
pub fn clone_mount(dirfd: RawFd, atime: u64) -> Res<OwnedFd> {
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32;
    let flags = flags | libc::AT_RECURSIVE as u32;
    let r = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, c"".as_ptr(), flags) };
    if r < 0 {
        return Err(last());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
    set_mount_atime(fd.as_raw_fd(), atime)?;
    Ok(fd)
}

/// Change how the mounts at and below `fd` (a detached copy from clone_mount) stamp access
/// times: open files there follow the new rule too, as after a remount.
pub fn set_mount_atime(fd: RawFd, atime: u64) -> Res<()> {
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = atime;
    attr.attr_clr = libc::MOUNT_ATTR__ATIME | libc::MOUNT_ATTR_NODIRATIME & !atime;
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    check(r as i32).map(drop)
}

/// An ioctl whose argument is a buffer: `buf` must be as long as `cmd` reads or writes.
pub fn ioctl_buf(fd: RawFd, cmd: u32, buf: &mut [u8]) -> Res<()> {
    check(unsafe { libc::ioctl(fd, cmd as libc::Ioctl, buf.as_mut_ptr()) }).map(drop)
}

/// Copy `len` bytes of `src` to `dst`, keeping holes: only the data extents are copied
/// (SEEK_DATA/SEEK_HOLE), each through copy_file_range so the kernel can clone or reflink.
pub fn copy_data(src: RawFd, dst: RawFd, len: u64) -> Res<()> {
    // A whole-file clone is the cheapest copy when the filesystem can share extents.
    if unsafe { libc::ioctl(dst, libc::FICLONE, src) } == 0 {
        return Ok(());
    }
    let mut pos: i64 = 0;
    let end = len as i64;
    while pos < end {
        let data = unsafe { libc::lseek(src, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = last();
            if e == libc::ENXIO {
                break; // only a hole remains
            }
            if e == libc::EINVAL {
                // No SEEK_DATA support: copy everything.
                return copy_range(src, dst, 0, end);
            }
            return Err(e);
        }
        let hole = unsafe { libc::lseek(src, data, libc::SEEK_HOLE) };
        let hole = if hole < 0 { end } else { hole.min(end) };
        copy_range(src, dst, data, hole)?;
        pos = hole;
    }
    // Holes at the end still count towards the size.
    ftruncate(dst, len)
}

fn copy_range(src: RawFd, dst: RawFd, from: i64, to: i64) -> Res<()> {
    let mut off_in = from;
    let mut off_out = from;
    while off_in < to {
        let want = (to - off_in) as usize;
        let n = unsafe {
            libc::copy_file_range(src, &mut off_in, dst, &mut off_out, want.min(1 << 30), 0)
        };
        if n < 0 {
            let e = last();
            if e == libc::EXDEV || e == libc::ENOSYS || e == libc::EOPNOTSUPP || e == libc::EINVAL {
                return copy_by_rw(src, dst, off_in, to);
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
    }
    Ok(())
}

fn copy_by_rw(src: RawFd, dst: RawFd, mut off: i64, to: i64) -> Res<()> {
    let mut buf = vec![0u8; 1 << 20];
    while off < to {
        let want = ((to - off) as usize).min(buf.len());
        let n = pread(src, &mut buf[..want], off as u64)?;
        if n == 0 {
            break;
        }
        let mut w = 0;
        while w < n {
            w += pwrite(dst, &buf[w..n], (off as u64) + w as u64)?;
        }
        off += n as i64;
    }
    Ok(())
}

pub fn is_whiteout_dev(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// May this process write into `p` (access(2) with the effective ids)?
pub fn access_writable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) == 0 }
}

pub fn geteuid() -> u32 {
    unsafe { libc::geteuid() }
}

/// Wait until process `pid` has exited, or `timeout` has passed, through a pidfd. False when
/// the kernel gives no pidfd for it (then the caller must poll); true once it is gone or the
/// time is up.
pub fn wait_exit(pid: i32, timeout: std::time::Duration) -> bool {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        // ESRCH: already gone.
        return last() == libc::ESRCH;
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let r = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r > 0 || (r == 0 && left.is_zero()) {
            return true;
        }
        if r == 0 {
            continue;
        }
        if last() != libc::EINTR {
            return false;
        }
    }
}

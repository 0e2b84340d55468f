//! Extended attributes of an entry named by a directory fd and a name, never following the entry
//! when it is a symlink.
//!
//! Kernels from 6.13 have calls that take the pair itself (getxattrat(2) and its siblings, with
//! AT_SYMLINK_NOFOLLOW). Older ones get the `l*` calls on `/proc/self/fd/N/name`: the magic link
//! resolves to the directory that was opened safely and the last component is looked up in it,
//! at the price of a walk through /proc on every call. The first ENOSYS switches to that for good.

use std::borrow::Cow;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{check, check_ssize, cstr, fd_path, Res};

// The same numbers on every architecture (they came after the tables were unified).
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;
const SYS_REMOVEXATTRAT: libc::c_long = 466;

/// struct xattr_args of the *xattrat calls.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

static NO_AT_CALLS: AtomicBool = AtomicBool::new(false);

/// An entry of a directory, as the xattr calls take it.
pub struct XattrPath {
    dirfd: RawFd,
    /// The entry's name; `.` for the directory itself.
    name: CString,
}

/// `name` in directory `dirfd`; an empty name means the directory itself (a layer's or
/// graft's root).
pub fn xattr_path(dirfd: RawFd, name: &OsStr) -> Res<XattrPath> {
    let name = if name.is_empty() {
        OsStr::new(".")
    } else {
        name
    };
    Ok(XattrPath {
        dirfd,
        name: cstr(name)?,
    })
}

/// What the xattr calls can be given: an entry of a directory fd, or a plain path (whose last
/// component is not followed either).
pub trait XattrTarget {
    /// The (dirfd, name) pair, when the *xattrat calls may be used.
    fn at(&self) -> Option<(RawFd, &CStr)>;
    /// The path the `l*` calls take.
    fn path(&self) -> Res<Cow<'_, CStr>>;
}

impl XattrTarget for XattrPath {
    fn at(&self) -> Option<(RawFd, &CStr)> {
        (!NO_AT_CALLS.load(Ordering::Relaxed)).then_some((self.dirfd, self.name.as_c_str()))
    }
    fn path(&self) -> Res<Cow<'_, CStr>> {
        fd_path(self.dirfd, OsStr::from_bytes(self.name.as_bytes())).map(Cow::Owned)
    }
}

impl XattrTarget for CStr {
    fn at(&self) -> Option<(RawFd, &CStr)> {
        None
    }
    fn path(&self) -> Res<Cow<'_, CStr>> {
        Ok(Cow::Borrowed(self))
    }
}

impl XattrTarget for CString {
    fn at(&self) -> Option<(RawFd, &CStr)> {
        None
    }
    fn path(&self) -> Res<Cow<'_, CStr>> {
        Ok(Cow::Borrowed(self.as_c_str()))
    }
}

/// Run the *xattrat form of a call when the target has one and the kernel knows it, else the
/// `l*` form on its path.
fn either<T: XattrTarget + ?Sized>(
    t: &T,
    at: impl Fn(RawFd, &CStr) -> isize,
    by_path: impl Fn(&CStr) -> isize,
) -> isize {
    if let Some((dirfd, name)) = t.at() {
        let r = at(dirfd, name);
        if r >= 0 || super::last() != libc::ENOSYS {
            return r;
        }
        NO_AT_CALLS.store(true, Ordering::Relaxed);
    }
    match t.path() {
        Ok(p) => by_path(&p),
        Err(e) => {
            unsafe { *libc::__errno_location() = e };
            -1
        }
    }
}

/// The bytes an xattr call of the size-then-fill kind returns: tried with a small buffer first
/// (most values fit), then asked for the size and read, again if the value grew meanwhile.
fn sized(call: impl Fn(*mut libc::c_void, usize) -> isize) -> Res<Vec<u8>> {
    let mut small = [0u8; 256];
    match check_ssize(call(small.as_mut_ptr() as *mut _, small.len())) {
        Ok(got) => return Ok(small[..got].to_vec()),
        Err(libc::ERANGE) => {}
        Err(e) => return Err(e),
    }
    loop {
        let size = check_ssize(call(std::ptr::null_mut(), 0))?;
        let mut buf = vec![0u8; size.max(1)];
        match check_ssize(call(buf.as_mut_ptr() as *mut _, buf.len())) {
            Ok(got) => {
                buf.truncate(got);
                return Ok(buf);
            }
            Err(libc::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

pub fn lgetxattr<T: XattrTarget + ?Sized>(t: &T, name: &OsStr) -> Res<Vec<u8>> {
    let n = cstr(name)?;
    sized(|buf, len| {
        either(
            t,
            |dirfd, entry| unsafe {
                let mut args = XattrArgs {
                    value: buf as u64,
                    size: len as u32,
                    flags: 0,
                };
                libc::syscall(
                    SYS_GETXATTRAT,
                    dirfd,
                    entry.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    n.as_ptr(),
                    &mut args as *mut XattrArgs,
                    std::mem::size_of::<XattrArgs>(),
                ) as isize
            },
            |p| unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf, len) },
        )
    })
}

/// An xattr of an open (not O_PATH) fd, or None when it is absent or unreadable.
pub fn fgetxattr(fd: RawFd, name: &OsStr) -> Option<Vec<u8>> {
    let n = cstr(name).ok()?;
    let mut buf = vec![0u8; 4096];
    let r = unsafe { libc::fgetxattr(fd, n.as_ptr(), buf.as_mut_ptr() as *mut _, buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

pub fn lsetxattr<T: XattrTarget + ?Sized>(
    t: &T,
    name: &OsStr,
    value: &[u8],
    flags: i32,
) -> Res<()> {
    let n = cstr(name)?;
    let r = either(
        t,
        |dirfd, entry| unsafe {
            let args = XattrArgs {
                value: value.as_ptr() as u64,
                size: value.len() as u32,
                flags: flags as u32,
            };
            libc::syscall(
                SYS_SETXATTRAT,
                dirfd,
                entry.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
                n.as_ptr(),
                &args as *const XattrArgs,
                std::mem::size_of::<XattrArgs>(),
            ) as isize
        },
        |p| unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr() as *const _,
                value.len(),
                flags,
            ) as isize
        },
    );
    check(r as libc::c_int).map(drop)
}

pub fn lremovexattr<T: XattrTarget + ?Sized>(t: &T, name: &OsStr) -> Res<()> {
    let n = cstr(name)?;
    let r = either(
        t,
        |dirfd, entry| unsafe {
            libc::syscall(
                SYS_REMOVEXATTRAT,
                dirfd,
                entry.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
                n.as_ptr(),
            ) as isize
        },
        |p| unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) as isize },
    );
    check(r as libc::c_int).map(drop)
}

pub fn llistxattr<T: XattrTarget + ?Sized>(t: &T) -> Res<Vec<OsString>> {
    let buf = sized(|buf, len| {
        either(
            t,
            |dirfd, entry| unsafe {
                libc::syscall(
                    SYS_LISTXATTRAT,
                    dirfd,
                    entry.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    buf,
                    len,
                ) as isize
            },
            |p| unsafe { libc::llistxattr(p.as_ptr(), buf as *mut _, len) },
        )
    })?;
    Ok(buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// The same answers from the *xattrat calls and from the /proc path, for an entry, a
    /// symlink (never followed) and the directory itself.
    #[test]
    fn at_calls_and_proc_paths_agree() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"").unwrap();
        std::os::unix::fs::symlink("f", d.path().join("l")).unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        let fd = dir.as_raw_fd();
        let key = OsStr::new("user.strata.test");
        let f = xattr_path(fd, OsStr::new("f")).unwrap();
        let top = xattr_path(fd, OsStr::new("")).unwrap();
        if lsetxattr(&f, key, b"v", 0) == Err(libc::EOPNOTSUPP) {
            panic!("the test directory's filesystem has no user xattrs");
        }
        lsetxattr(&top, key, &[7u8; 300], 0).unwrap();
        let by_proc = |x: &XattrPath, k| lgetxattr(x.path().unwrap().as_ref(), k);
        for (x, want) in [(&f, b"v".to_vec()), (&top, vec![7u8; 300])] {
            assert_eq!(lgetxattr(x, key).unwrap(), want);
            assert_eq!(by_proc(x, key).unwrap(), want);
            assert!(llistxattr(x).unwrap().iter().any(|n| n == key));
        }
        let l = xattr_path(fd, OsStr::new("l")).unwrap();
        assert_eq!(
            lgetxattr(&l, key),
            Err(libc::ENODATA),
            "the symlink was followed"
        );
        assert_eq!(
            lsetxattr(&f, key, b"w", libc::XATTR_CREATE),
            Err(libc::EEXIST)
        );
        lremovexattr(&f, key).unwrap();
        assert_eq!(lgetxattr(&f, key), Err(libc::ENODATA));
        assert_eq!(by_proc(&f, key), Err(libc::ENODATA));
        // Kernels from 6.13 have the *xattrat calls: there the /proc walk must not be taken.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut v = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>());
        if let (Some(Ok(major)), Some(Ok(minor))) = (v.next(), v.next()) {
            if (major, minor) >= (6, 13) {
                assert!(
                    !NO_AT_CALLS.load(Ordering::Relaxed),
                    "kernel {release} refused the *xattrat calls"
                );
            }
        }
    }
}

//! The kernel side of a mount: mount(2) for root, fusermount3 for everyone else, and unmount.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::options::MountOptions;

/// mount(2) of type fuse.strata, as libfuse does for root: the kernel flags are the caller's
/// (dev and suid unless nodev/nosuid are given, as for kernel overlayfs).
pub(super) fn mount_direct(
    mp: &Path,
    source: &str,
    o: &MountOptions,
    read_only: bool,
    allow_other: bool,
) -> Result<OwnedFd> {
    let dev = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .context("/dev/fuse (is the fuse module loaded?)")?;
    let fd: OwnedFd = dev.into();
    let rootmode = fs::metadata(mp)?.mode() & libc::S_IFMT;
    let mut data = format!(
        "fd={},rootmode={rootmode:o},user_id=0,group_id=0",
        fd.as_raw_fd()
    );
    // Root mounts serve many users, so the kernel checks permissions. (Unprivileged mounts serve
    // their owner only and, unless asked, let a refused chown reach the daemon, which keeps it
    // in an xattr.)
    data.push_str(",default_permissions");
    if allow_other {
        data.push_str(",allow_other");
    }
    let mut flags: libc::c_ulong = 0;
    if read_only {
        flags |= libc::MS_RDONLY;
    }
    for f in &o.kernel_flags {
        flags |= match f.as_str() {
            "nodev" => libc::MS_NODEV,
            "nosuid" => libc::MS_NOSUID,
            "noexec" => libc::MS_NOEXEC,
            "noatime" => libc::MS_NOATIME,
            "nodiratime" => libc::MS_NODIRATIME,
            "strictatime" => libc::MS_STRICTATIME,
            "sync" => libc::MS_SYNCHRONOUS,
            "dirsync" => libc::MS_DIRSYNC,
            _ => 0,
        };
    }
    let c = |s: &[u8]| CString::new(s).map_err(|_| anyhow!("NUL in mount argument"));
    let (src, target, kind, data) = (
        c(source.as_bytes())?,
        c(mp.as_os_str().as_bytes())?,
        c(b"fuse.strata")?,
        c(data.as_bytes())?,
    );
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            kind.as_ptr(),
            flags,
            data.as_ptr() as *const _,
        )
    };
    if r != 0 {
        bail!(
            "mount {}: {}",
            mp.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(fd)
}

/// Mount through the setuid fusermount3, as libfuse does for unprivileged users: it opens
/// /dev/fuse, mounts, and passes the fd back over a socket named by _FUSE_COMMFD.
pub(super) fn mount_fusermount(
    mp: &Path,
    fsname: &str,
    o: &MountOptions,
    read_only: bool,
) -> Result<OwnedFd> {
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;
    let mut opts = vec![
        format!("fsname={}", fsname.replace(',', "\\,")),
        "subtype=strata".into(),
    ];
    if o.default_permissions {
        opts.push("default_permissions".into());
    }
    if o.allow_other == Some(true) {
        opts.push("allow_other".into());
    } else if o.allow_root {
        opts.push("allow_root".into());
    }
    if read_only {
        opts.push("ro".into());
    }
    opts.extend(o.kernel_flags.iter().cloned());
    let (ours, theirs) = UnixStream::pair()?;
    let theirs_fd = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-o")
        .arg(opts.join(","))
        .arg("--")
        .arg(mp)
        .env("_FUSE_COMMFD", theirs_fd.to_string())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    unsafe {
        cmd.pre_exec(move || {
            // The socket must survive exec.
            if libc::fcntl(theirs_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .context("cannot run fusermount3 (install the fuse3 package)")?;
    drop(theirs);
    let fd = recv_fd(&ours);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        bail!(
            "fusermount3: {}",
            msg.trim().lines().last().unwrap_or("mount failed")
        );
    }
    fd.context("fusermount3 did not pass the /dev/fuse descriptor back")
}

fn recv_fd(sock: &std::os::unix::net::UnixStream) -> Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr() as *mut _,
        iov_len: 1,
    };
    let mut cbuf = [0u8; 64];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut _;
    msg.msg_controllen = cbuf.len();
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n <= 0 {
        bail!("no reply from fusermount3");
    }
    let c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if c.is_null() || unsafe { (*c).cmsg_type } != libc::SCM_RIGHTS {
        bail!("unexpected reply from fusermount3");
    }
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32) };
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn unmount_path(mp: &Path) -> Result<()> {
    unmount_flags(mp, 0)
}

pub(super) fn unmount_flags(mp: &Path, flags: i32) -> Result<()> {
    let c = CString::new(mp.as_os_str().as_bytes())?;
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EPERM) {
        let st = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(mp)
            .status()?;
        if st.success() {
            return Ok(());
        }
        bail!("fusermount3 -u {} failed", mp.display());
    }
    Err(anyhow!("cannot unmount {}: {err}", mp.display()))
}

//! The seam between the launcher's sequencing and the kernel, as youki's `Syscall` trait is:
//! every call the container setup makes goes through [`Syscall`], so the order of the steps is
//! unit-tested with a recording fake ([`super::fake`]) and needs no root.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};

pub type SysResult<T> = Result<T, Errno>;

/// The kernel calls the launcher makes, one method per call (a few are small compounds whose
/// parts only make sense together, such as bringing `lo` up).
pub trait Syscall {
    fn unshare(&self, flags: CloneFlags) -> SysResult<()>;
    /// Join a namespace (`exec`).
    fn setns(&self, fd: RawFd, nstype: CloneFlags) -> SysResult<()>;
    fn sethostname(&self, name: &str) -> SysResult<()>;
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult<()>;
    /// The per-mount flags (nosuid, nodev, noexec, ...) of the mount holding `path`, which a
    /// remount must keep.
    fn mount_flags(&self, path: &Path) -> SysResult<MsFlags>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()>;
    fn chroot(&self, path: &Path) -> SysResult<()>;
    fn chdir(&self, path: &Path) -> SysResult<()>;
    fn fchdir(&self, fd: RawFd) -> SysResult<()>;
    /// mkdir -p; an existing directory is not an error.
    fn mkdir_all(&self, path: &Path, mode: u32) -> SysResult<()>;
    /// An empty regular file to bind a device node or a file over (an existing one is kept).
    fn touch(&self, path: &Path) -> SysResult<()>;
    fn symlink(&self, target: &Path, link: &Path) -> SysResult<()>;
    /// A new pty from the devpts instance mounted at `pts`, both ends kept for the
    /// container's terminal ([`super::tty::console`]); the slave's path.
    fn open_console(&self, pts: &Path) -> SysResult<PathBuf>;
    /// Bring the loopback interface of the current network namespace up (SIOCSIFFLAGS).
    fn loopback_up(&self) -> SysResult<()>;
    /// Drop every capability not in `keep` (a bit mask) from the bounding set.
    fn drop_bounding(&self, keep: u64) -> SysResult<()>;
    /// PR_SET_KEEPCAPS: keep the permitted set across the switch to a non-root uid.
    fn keep_caps(&self, on: bool) -> SysResult<()>;
    /// capset(2) for this thread: effective, permitted, inheritable (bit masks).
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult<()>;
    fn clear_ambient(&self) -> SysResult<()>;
    fn no_new_privs(&self) -> SysResult<()>;
    /// PR_SET_PDEATHSIG: the signal this process gets when its parent dies.
    fn parent_death_signal(&self, sig: i32) -> SysResult<()>;
    fn setgroups(&self, groups: &[u32]) -> SysResult<()>;
    fn setgid(&self, gid: u32) -> SysResult<()>;
    fn setuid(&self, uid: u32) -> SysResult<()>;
    /// The contents of a file (the container's /etc/passwd and /etc/group).
    fn read(&self, path: &Path) -> SysResult<Vec<u8>>;
    /// Is there an executable regular file at `path` (resolved in the current root)?
    /// Err(ENOENT) when nothing is there, Err(EACCES) when it is not executable.
    fn executable(&self, path: &Path) -> SysResult<()>;
    /// execve(2): returns only on failure.
    fn execve(&self, path: &Path, argv: &[CString], env: &[CString]) -> Errno;
}

fn c(p: &Path) -> SysResult<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// The real kernel, through `nix`.
pub struct Linux;

impl Syscall for Linux {
    fn unshare(&self, flags: CloneFlags) -> SysResult<()> {
        nix::sched::unshare(flags)
    }

    fn setns(&self, fd: RawFd, nstype: CloneFlags) -> SysResult<()> {
        nix::sched::setns(unsafe { BorrowedFd::borrow_raw(fd) }, nstype)
    }

    fn sethostname(&self, name: &str) -> SysResult<()> {
        nix::unistd::sethostname(name)
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult<()> {
        nix::mount::umount2(target, flags)
    }

    fn mount_flags(&self, path: &Path) -> SysResult<MsFlags> {
        use nix::sys::statvfs::FsFlags;
        let f = nix::sys::statvfs::statvfs(path)?.flags();
        let mut m = MsFlags::empty();
        for (s, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(s) {
                m |= ms;
            }
        }
        Ok(m)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chroot(&self, path: &Path) -> SysResult<()> {
        nix::unistd::chroot(path)
    }

    fn chdir(&self, path: &Path) -> SysResult<()> {
        nix::unistd::chdir(path)
    }

    fn fchdir(&self, fd: RawFd) -> SysResult<()> {
        Errno::result(unsafe { libc::fchdir(fd) }).map(drop)
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> SysResult<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
            .map_err(io_errno)
    }

    fn touch(&self, path: &Path) -> SysResult<()> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok(()),
            Err(_) => std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map(drop)
                .map_err(io_errno),
        }
    }

    fn symlink(&self, target: &Path, link: &Path) -> SysResult<()> {
        nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link)
    }

    fn open_console(&self, pts: &Path) -> SysResult<PathBuf> {
        use nix::fcntl::{open, OFlag};
        use nix::sys::stat::Mode;
        let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let master = open(&pts.join("ptmx"), flags, Mode::empty())?;
        let mut n: libc::c_uint = 0;
        let m = master.as_raw_fd();
        let unlock: libc::c_int = 0;
        if unsafe { libc::ioctl(m, libc::TIOCSPTLCK, &unlock) } < 0
            || unsafe { libc::ioctl(m, libc::TIOCGPTN, &mut n) } < 0
        {
            return Err(Errno::last());
        }
        let slave_path = pts.join(n.to_string());
        let slave = open(&slave_path, flags, Mode::empty())?;
        super::tty::keep_console(master, slave);
        Ok(slave_path)
    }

    fn loopback_up(&self) -> SysResult<()> {
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(Errno::last());
        }
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let r = (|| {
            if unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) } < 0 {
                return Err(Errno::last());
            }
            unsafe {
                req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            }
            if unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) } < 0 {
                return Err(Errno::last());
            }
            Ok(())
        })();
        unsafe { libc::close(sock) };
        r
    }

    fn drop_bounding(&self, keep: u64) -> SysResult<()> {
        for cap in 0..64u64 {
            if keep & (1 << cap) != 0 {
                continue;
            }
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
            if r < 0 {
                match Errno::last() {
                    // Past the last capability this kernel knows.
                    Errno::EINVAL => break,
                    e => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn keep_caps(&self, on: bool) -> SysResult<()> {
        Errno::result(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, on as libc::c_ulong, 0, 0, 0) })
            .map(drop)
    }

    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult<()> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let mut h = Header {
            version: VERSION_3,
            pid: 0,
        };
        let d = [
            Data {
                effective: effective as u32,
                permitted: permitted as u32,
                inheritable: inheritable as u32,
            },
            Data {
                effective: (effective >> 32) as u32,
                permitted: (permitted >> 32) as u32,
                inheritable: (inheritable >> 32) as u32,
            },
        ];
        Errno::result(unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) }).map(drop)
    }

    fn clear_ambient(&self) -> SysResult<()> {
        let r = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        };
        // Kernels before 4.3 have no ambient set: nothing to clear.
        match Errno::result(r) {
            Err(Errno::EINVAL) => Ok(()),
            r => r.map(drop),
        }
    }

    fn no_new_privs(&self) -> SysResult<()> {
        Errno::result(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
    }

    fn parent_death_signal(&self, sig: i32) -> SysResult<()> {
        Errno::result(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) })
            .map(drop)
    }

    fn setgroups(&self, groups: &[u32]) -> SysResult<()> {
        let g: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&g)
    }

    fn setgid(&self, gid: u32) -> SysResult<()> {
        // setresgid: real, effective and saved, as runc sets them.
        let g = Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g)
    }

    fn setuid(&self, uid: u32) -> SysResult<()> {
        let u = Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u)
    }

    fn read(&self, path: &Path) -> SysResult<Vec<u8>> {
        std::fs::read(path).map_err(io_errno)
    }

    fn executable(&self, path: &Path) -> SysResult<()> {
        use std::os::unix::fs::PermissionsExt;
        let md = std::fs::metadata(path).map_err(io_errno)?;
        if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        Ok(())
    }

    fn execve(&self, path: &Path, argv: &[CString], env: &[CString]) -> Errno {
        let p = match c(path) {
            Ok(p) => p,
            Err(e) => return e,
        };
        match nix::unistd::execve(&p, argv, env) {
            Err(e) => e,
            Ok(never) => match never {},
        }
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// `path` inside `root` (`root` joined with `path` taken as relative).
pub fn under(root: &Path, path: impl AsRef<Path>) -> PathBuf {
    let p = path.as_ref();
    root.join(p.strip_prefix("/").unwrap_or(p))
}

/// Make `fd` close on exec (used for the fds a container must not inherit).
pub fn cloexec(fd: RawFd) {
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Mark every fd from 3 up close-on-exec, so the container inherits only stdio.
pub fn cloexec_from_3() {
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32) };
    if r < 0 {
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<RawFd> = dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            for fd in fds.into_iter().filter(|fd| *fd > 2) {
                cloexec(fd);
            }
        }
    }
}

//! `strata mount` and `strata umount`: check everything first, then mount and serve.
//!
//! Nothing is created or mounted until every check has passed. In the background form the
//! process forks before any thread exists; the parent returns only when the child reports the
//! mount live (or prints the child's error), so scripts can use the mount right after.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::options::{self, MountOptions};
use crate::fuse::StrataFs;
use crate::inode::InodeTable;
use crate::state::Root;
use crate::union::graft::Tree;
use crate::union::layer::{Layer, XattrNs};
use crate::union::{self, Union};
use crate::volume::spec::Graft;

/// libmount's record of userspace mount options (/run/mount/utab). strata adds `helper=strata`
/// to its mounts there, so that util-linux's umount runs /sbin/umount.strata, which waits for
/// the daemon to exit: a FUSE unmount by itself returns while the daemon is still running.
mod utab {
    use std::fs;
    use std::os::fd::AsRawFd;
    use std::path::Path;

    const DIR: &str = "/run/mount";
    const FILE: &str = "/run/mount/utab";

    fn mangle(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                ' ' => "\\040".to_string(),
                '\t' => "\\011".to_string(),
                '\n' => "\\012".to_string(),
                '\\' => "\\134".to_string(),
                c => c.to_string(),
            })
            .collect()
    }

    fn locked<T>(f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
        fs::create_dir_all(DIR)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(format!("{FILE}.lock"))?;
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        f()
    }

    pub fn register(mountpoint: &Path, source: &str) -> Option<String> {
        let line = format!(
            "SRC={} TARGET={} ROOT=/ OPTS=helper=strata",
            mangle(source),
            mangle(&mountpoint.to_string_lossy())
        );
        let r = locked(|| {
            // Drop lines left by daemons that were killed: a later mount of another kind at
            // the same path must not be handed to umount.strata.
            let live: Vec<String> = super::mount_points()
                .into_iter()
                .filter(|(_, kind)| kind == "fuse.strata")
                .map(|(p, _)| format!("TARGET={}", mangle(&p.to_string_lossy())))
                .collect();
            let text = fs::read_to_string(FILE).unwrap_or_default();
            let mut kept: String = text
                .lines()
                .filter(|l| {
                    !l.contains("helper=strata")
                        || l.split(' ').any(|f| live.iter().any(|t| t == f))
                })
                .map(|l| format!("{l}\n"))
                .collect();
            kept.push_str(&line);
            kept.push('\n');
            let tmp = format!("{FILE}.strata.{}", std::process::id());
            fs::write(&tmp, kept)?;
            fs::rename(&tmp, FILE)
        });
        match r {
            Ok(()) => Some(line),
            Err(e) => {
                log::warn!("cannot record the mount in {FILE}: {e}");
                None
            }
        }
    }

    pub fn unregister(line: &str) {
        let _ = locked(|| {
            let text = fs::read_to_string(FILE).unwrap_or_default();
            let kept: String = text
                .lines()
                .filter(|l| *l != line)
                .map(|l| format!("{l}\n"))
                .collect();
            let tmp = format!("{FILE}.strata.{}", std::process::id());
            fs::write(&tmp, kept)?;
            fs::rename(&tmp, FILE)
        });
    }
}

pub struct MountRequest {
    pub options: Vec<String>,
    pub source: Option<String>,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub log: Option<PathBuf>,
    /// Binds, volumes and tmpfs to join into the tree, outer ones first.
    pub grafts: Vec<Graft>,
    /// The state root given on the command line (volumes live there).
    pub root: Option<PathBuf>,
}

/// Canonical, checked paths of a mount.
struct Layout {
    opts: MountOptions,
    lowers: Vec<PathBuf>,
    upper: Option<PathBuf>,
    work: Option<PathBuf>,
    mountpoint: PathBuf,
    grafts: Vec<Graft>,
    root: Root,
}

fn canonical_dir(what: &str, p: &Path) -> Result<PathBuf> {
    let md = fs::metadata(p).map_err(|e| anyhow!("{what} {}: {}", p.display(), io_msg(&e)))?;
    if !md.is_dir() {
        bail!("{what} {}: not a directory", p.display());
    }
    p.canonicalize()
        .map_err(|e| anyhow!("{what} {}: {}", p.display(), io_msg(&e)))
}

fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such directory".into(),
        _ => e.to_string(),
    }
}

fn inside(a: &Path, b: &Path) -> bool {
    a.starts_with(b)
}

/// Mount points, from /proc/self/mountinfo (field 5, octal escapes undone).
pub fn mount_points() -> Vec<(PathBuf, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            Some((
                PathBuf::from(unescape_mount(f.get(4)?)),
                f.get(dash + 1)?.to_string(),
            ))
        })
        .collect()
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() + 1 && b[i + 1..].len() >= 3 {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check(req: &MountRequest) -> Result<Layout> {
    let opts = options::parse(&req.options)?;
    let mut lowers = Vec::new();
    for l in &opts.lowerdir {
        lowers.push(canonical_dir("lowerdir", l)?);
    }
    let upper = opts
        .upperdir
        .as_deref()
        .map(|p| canonical_dir("upperdir", p))
        .transpose()?;
    let work = opts
        .workdir
        .as_deref()
        .map(|p| canonical_dir("workdir", p))
        .transpose()?;
    if let (Some(u), Some(w)) = (&upper, &work) {
        for l in &lowers {
            if inside(u, l) {
                bail!(
                    "upperdir {} is inside lowerdir {}",
                    u.display(),
                    l.display()
                );
            }
            if inside(l, u) {
                bail!(
                    "lowerdir {} is inside upperdir {}",
                    l.display(),
                    u.display()
                );
            }
        }
        if inside(w, u) || inside(u, w) {
            bail!(
                "workdir {} and upperdir {} must not contain each other",
                w.display(),
                u.display()
            );
        }
        let (ud, wd) = (fs::metadata(u)?.dev(), fs::metadata(w)?.dev());
        if ud != wd {
            bail!(
                "workdir {} is on another filesystem than upperdir {}: they must share one",
                w.display(),
                u.display()
            );
        }
    }
    let mp = req.mountpoint.as_path();
    let mountpoint = canonical_dir("mountpoint", mp)?;
    if mount_points().iter().any(|(p, _)| *p == mountpoint) {
        bail!(
            "mountpoint {} is already a mount point",
            mountpoint.display()
        );
    }
    crate::volume::check(&req.grafts, &mountpoint)?;
    Ok(Layout {
        opts,
        lowers,
        upper,
        work,
        mountpoint,
        grafts: req.grafts.clone(),
        root: Root::locate(req.root.clone()),
    })
}

pub fn mount(req: MountRequest) -> Result<()> {
    let layout = check(&req)?;
    if req.foreground {
        init_log(req.log.as_deref(), true)?;
        return serve(&layout, req.source.as_deref(), None);
    }
    // Background: fork now, while this process has no threads.
    let mut fds = [0i32; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    match unsafe { libc::fork() } {
        -1 => bail!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            drop(rd);
            unsafe { libc::setsid() };
            let code = match daemon_child(&layout, &req, &wr) {
                Ok(()) => 0,
                Err(e) => {
                    let mut f = fs::File::from(wr);
                    let _ = writeln!(f, "{e:#}");
                    1
                }
            };
            std::process::exit(code);
        }
        _ => {
            drop(wr);
            // One line: "ok", or the error. The daemon keeps its end open while it serves.
            let mut msg = Vec::new();
            let mut f = fs::File::from(rd);
            let mut b = [0u8; 1];
            while let Ok(1) = f.read(&mut b) {
                if b[0] == b'\n' {
                    break;
                }
                msg.push(b[0]);
            }
            let msg = String::from_utf8_lossy(&msg);
            let msg = msg.trim();
            if msg == "ok" {
                Ok(())
            } else if msg.is_empty() {
                bail!("the daemon exited before the mount was live")
            } else {
                bail!("{msg}")
            }
        }
    }
}

fn daemon_child(layout: &Layout, req: &MountRequest, notify: &OwnedFd) -> Result<()> {
    // stdio leaves the terminal (or the caller's pipes) so the caller is not held open.
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(null.as_raw_fd(), 1);
    }
    match &req.log {
        Some(p) => {
            let f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("log file {}", p.display()))?;
            unsafe { libc::dup2(f.as_raw_fd(), 2) };
        }
        None => unsafe {
            libc::dup2(null.as_raw_fd(), 2);
        },
    }
    init_log(None, req.log.is_some())?;
    serve(layout, req.source.as_deref(), Some(notify))
}

fn init_log(file: Option<&Path>, enabled: bool) -> Result<()> {
    let mut b =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("strata=warn"));
    if let Some(p) = file {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("log file {}", p.display()))?;
        b.target(env_logger::Target::Pipe(Box::new(f)));
    }
    if !enabled {
        b.filter_level(log::LevelFilter::Off);
    }
    let _ = b.try_init();
    Ok(())
}

/// Clear what an earlier run left in `workdir/work` (a copy that never got renamed in, a
/// discarded directory) and make the directories strata keeps there.
fn prepare_workdir(work: &Path) -> Result<(OwnedFd, fs::File)> {
    let w = work.join("work");
    match fs::create_dir(&w) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("workdir {}", w.display())),
    }
    let own = work.join("strata");
    fs::create_dir_all(&own).with_context(|| format!("workdir {}", own.display()))?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(own.join("lock"))?;
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "workdir {} is in use by another strata mount",
            work.display()
        );
    }
    let fd = crate::sys::openat2(libc::AT_FDCWD, &w, libc::O_PATH | libc::O_DIRECTORY, 0, 0)
        .map_err(std::io::Error::from_raw_os_error)?;
    for (name, dtype, _) in crate::sys::read_dir(fd.as_raw_fd()).unwrap_or_default() {
        let r = if dtype == libc::DT_DIR {
            union::dir::remove_tree(fd.as_raw_fd(), &name)
        } else {
            crate::sys::unlinkat(fd.as_raw_fd(), &name, false)
        };
        if let Err(e) = r {
            log::warn!("workdir: cannot remove leftover {:?}: errno {e}", name);
        }
    }
    Ok((fd, lock))
}

/// Can this process make kernel-format whiteouts and trusted.* xattrs in `work`?
fn probe_privileges(work: i32) -> (bool, bool) {
    let name = OsStr::new("#strata-probe");
    let dev = crate::sys::mknodat(work, name, libc::S_IFCHR, 0).is_ok();
    if dev {
        let _ = crate::sys::unlinkat(work, name, false);
    }
    let dir = crate::sys::mkdirat(work, name, 0o700).is_ok();
    let mut trusted = false;
    if dir {
        if let Ok(p) = crate::sys::xattr_path(work, name) {
            trusted =
                crate::sys::lsetxattr(&p, OsStr::new("trusted.overlay.probe"), b"y", 0).is_ok();
        }
        let _ = crate::sys::unlinkat(work, name, true);
    }
    (dev, trusted)
}

fn serve(layout: &Layout, source: Option<&str>, notify: Option<&OwnedFd>) -> Result<()> {
    // Every thread started from here on (RocksDB's, the FUSE workers) inherits this mask, so
    // SIGINT/SIGTERM reach only the thread that unmounts cleanly.
    block_stop_signals();
    let o = &layout.opts;
    let root = crate::sys::geteuid() == 0;
    let mut lowers = Vec::new();
    for l in &layout.lowers {
        lowers.push(Layer::open(l).with_context(|| format!("lowerdir {}", l.display()))?);
    }
    let (upper, work, inodes, _lock, kernel_wh, trusted) = match (&layout.upper, &layout.work) {
        (Some(u), Some(w)) => {
            let (wfd, lock) = prepare_workdir(w)?;
            let (dev, trusted) = probe_privileges(wfd.as_raw_fd());
            let table = InodeTable::open(&w.join("strata").join("inodes"))?;
            let upper = Layer::open(u).with_context(|| format!("upperdir {}", u.display()))?;
            (Some(upper), Some(wfd), table, Some(lock), dev, trusted)
        }
        _ => (None, None, InodeTable::in_memory(), None, false, false),
    };
    let xattr_ns = if trusted && !o.userxattr {
        XattrNs::Trusted
    } else {
        XattrNs::User
    };
    let opts = union::Options {
        redirect_follow: o.redirect_follow,
        redirect_create: o.redirect_create,
        read_only: o.read_only || upper.is_none(),
        xattr_ns,
        // Unprivileged mounts write OCI-style `.wh.` whiteouts even where the kernel would let
        // them make 0:0 devices, so the upper reads the same on any filesystem they land on.
        kernel_whiteouts: kernel_wh && root,
        xattr_permissions: !root,
        plain: false,
        id_base: 0,
        check_permissions: !root && !o.default_permissions,
        show: shown(o),
    };
    let read_only = opts.read_only;
    let fs =
        Arc::new(Union::new(upper, lowers, work, inodes, opts).map_err(|e| anyhow!("errno {e}"))?);

    let fsname = o
        .fsname
        .clone()
        .or(source.map(String::from))
        .unwrap_or_else(|| "strata".into());
    let allow_other = o.allow_other.unwrap_or(root);
    let mut config = fuser::Config::default();
    config.acl = if allow_other {
        fuser::SessionACL::All
    } else if o.allow_root {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    };
    let auto = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    config.n_threads = Some(match (o.threaded, o.max_threads) {
        (Some(false), _) => 1,
        (_, Some(n)) => n,
        _ => auto,
    });
    config.clone_fd = true;
    // The kernel's mount comes before anything is made for the grafts: what it refuses (a
    // mountpoint fusermount3 will not mount on, say) leaves nothing behind. No request is
    // answered until the session runs, so nobody sees the tree before its grafts are in.
    let dev = if root {
        mount_direct(&layout.mountpoint, &fsname, o, read_only, allow_other)?
    } else {
        mount_fusermount(&layout.mountpoint, &fsname, o, read_only)?
    };
    // A failed mount is taken down with its connection closed, so nothing waits on it.
    let take_down = || {
        if let Err(e) = unmount_flags(&layout.mountpoint, libc::MNT_DETACH) {
            log::warn!("{e:#}");
        }
    };
    let mut tree = Tree::new(fs.clone());
    // Grafts are joined in before the mount is served; from here on, what they hold (volumes
    // in use, tmpfs) is released on every way out, and what was made for them goes if the
    // mount fails.
    let mut attached =
        match crate::volume::attach(&mut tree, &layout.grafts, &layout.root, &layout.mountpoint) {
            Ok(a) => a,
            Err(e) => {
                drop(dev);
                take_down();
                return Err(e);
            }
        };
    let tree = Arc::new(tree);
    let fsys = StrataFs::new(tree.clone());
    let session = match fuser::Session::from_fd(fsys, dev, config.acl, config) {
        Ok(s) => s,
        Err(e) => {
            attached.undo(&tree);
            take_down();
            return Err(anyhow!(
                "cannot mount on {}: {e}",
                layout.mountpoint.display()
            ));
        }
    };
    let pidfile = pid_file(&layout.mountpoint);
    if let Some(p) = &pidfile {
        let _ = fs::write(p, std::process::id().to_string());
    }
    log::info!(
        "mounted {} (lower: {}; upper: {}; whiteouts: {}; xattrs: {:?})",
        layout.mountpoint.display(),
        layout
            .lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
        layout
            .upper
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none, read-only".into()),
        if kernel_wh {
            "char device 0:0"
        } else {
            ".wh. files"
        },
        xattr_ns
    );
    let utab = root.then(|| utab::register(&layout.mountpoint, &fsname));
    if let Some(n) = notify {
        let mut f = fs::File::from(n.try_clone()?);
        f.write_all(b"ok\n")?;
    }
    spawn_signal_unmounter(layout.mountpoint.clone());
    let r = session.run();
    // Let go of the layers and the workdir at once: whoever unmounted us may be about to
    // unmount the filesystem they live on. The inode table's log is synced, and RocksDB
    // recovers from its log, so the process ends here without an orderly teardown.
    fs.flush_table();
    attached.release();
    if let Some(p) = &pidfile {
        let _ = fs::remove_file(p);
    }
    if let Some(Some(line)) = &utab {
        utab::unregister(line);
    }
    match r {
        Ok(()) => unsafe { libc::_exit(0) },
        Err(e) => Err(anyhow!("serving {}: {e}", layout.mountpoint.display())),
    }
}

fn stop_signals() -> libc::sigset_t {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

fn block_stop_signals() {
    let set = stop_signals();
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// mount(2) of type fuse.strata, as libfuse does for root: the kernel flags are the caller's
/// (dev and suid unless nodev/nosuid are given, as for kernel overlayfs).
fn mount_direct(
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
fn mount_fusermount(mp: &Path, fsname: &str, o: &MountOptions, read_only: bool) -> Result<OwnedFd> {
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

/// SIGINT/SIGTERM unmount, so the session ends and the inode table is flushed.
fn spawn_signal_unmounter(mountpoint: PathBuf) {
    std::thread::spawn(move || unsafe {
        let set = stop_signals();
        let mut sig = 0;
        if libc::sigwait(&set, &mut sig) == 0 {
            log::info!("signal {sig}: unmounting {}", mountpoint.display());
            let _ = unmount_path(&mountpoint);
        }
    });
}

/// Is `pid` a live process? A zombie (exited, not yet reaped by init) is not.
fn running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn runtime_dir() -> PathBuf {
    if crate::sys::geteuid() == 0 {
        PathBuf::from("/run/strata")
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        PathBuf::from(d).join("strata")
    } else {
        PathBuf::from(format!("/tmp/strata-{}", crate::sys::geteuid()))
    }
}

fn pid_file(mountpoint: &Path) -> Option<PathBuf> {
    let dir = runtime_dir();
    fs::create_dir_all(&dir).ok()?;
    let name: String = mountpoint
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(dir.join(format!("{name}.pid")))
}

fn unmount_path(mp: &Path) -> Result<()> {
    unmount_flags(mp, 0)
}

fn unmount_flags(mp: &Path, flags: i32) -> Result<()> {
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

pub fn umount(mountpoint: &Path) -> Result<()> {
    umount_with(mountpoint, false)
}

/// As /sbin/umount.strata: a strata mount is unmounted and waited for; anything else at that
/// path (behind a stale utab line) is simply unmounted, as umount would have done.
pub fn umount_helper(mountpoint: &Path, lazy: bool) -> Result<()> {
    let kind = mount_points()
        .into_iter()
        .rev()
        .find(|(p, _)| p == mountpoint)
        .map(|(_, k)| k);
    if kind.as_deref() == Some("fuse.strata") {
        umount_with(mountpoint, lazy)
    } else {
        unmount_flags(mountpoint, if lazy { libc::MNT_DETACH } else { 0 })
    }
}

/// Unmount (lazily with `lazy`) and wait until the daemon has exited.
pub fn umount_with(mountpoint: &Path, lazy: bool) -> Result<()> {
    let mp = mountpoint
        .canonicalize()
        .map_err(|e| anyhow!("{}: {}", mountpoint.display(), io_msg(&e)))?;
    let kind = mount_points()
        .into_iter()
        .rev()
        .find(|(p, _)| *p == mp)
        .map(|(_, k)| k);
    match kind.as_deref() {
        Some("fuse.strata") => {}
        Some(other) => bail!("{} is a {other} mount, not a strata mount", mp.display()),
        None => bail!("{} is not mounted", mp.display()),
    }
    let pid = pid_file(&mp)
        .and_then(|p| fs::read_to_string(p).ok())
        .and_then(|s| s.trim().parse::<i32>().ok());
    unmount_flags(&mp, if lazy { libc::MNT_DETACH } else { 0 })?;
    // Wait for the daemon to finish flushing its inode table.
    if let Some(pid) = pid {
        // Woken by the exit itself where the kernel has pidfds; a short poll otherwise.
        if !crate::sys::wait_exit(pid, Duration::from_secs(30)) {
            let t = Instant::now();
            while running(pid) && t.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    Ok(())
}

/// What fuse-overlayfs's owner and presentation options ask the union to show.
fn shown(o: &MountOptions) -> union::Shown {
    use union::idmap::{IdMap, Owners};
    let squash_root = o.squash_to_root.then_some(0);
    union::Shown {
        owners: Owners {
            uid: IdMap {
                ranges: o.uidmapping.clone(),
                squash: o.squash_to_uid.or(squash_root),
            },
            gid: IdMap {
                ranges: o.gidmapping.clone(),
                squash: o.squash_to_gid.or(squash_root),
            },
        },
        static_nlink: o.static_nlink,
        noacl: o.noacl,
        no_fsync: o.no_fsync,
    }
}

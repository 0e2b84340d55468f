//! Harness for strata's integration tests (the ones that mount the real filesystem).
//!
//! - [`Builder`] makes a temporary directory with `lower0..N`, `upper`, `work` and `mnt`, lets a
//!   test populate each layer through [`Layer`] (files, dirs, symlinks, fifos, devices, whiteouts
//!   and opaque dirs in both formats, xattrs, owners, times, sparse files, hard links) and mounts
//!   strata with `strata mount`.
//! - [`Mount`] unmounts in `Drop`, also when the test panics: `strata umount`, then aborting the
//!   FUSE connection, `fusermount3 -uz` and `umount -l`. If nothing works the temporary directory
//!   is leaked rather than removed through a live mount.
//! - [`Mount::run`] runs a closure that touches the mount in a child thread with a timeout, so a
//!   hung daemon fails the test instead of hanging it (`.config/nextest.toml` is the second net).
//! - A mount that fails panics with strata's stderr: tests never skip.
//!
//! Set `STRATA_FT_LOG=1` to have every mount write a debug log (`--log`), printed on failure.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one block of filesystem operations on a mount may take before the test fails.
pub const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a command (strata mount, umount, mount -t overlay, ...) may take.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;

pub fn strata_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strata"))
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Name of a private overlay xattr as strata writes it: `trusted.overlay.NAME` as root,
/// `user.overlay.NAME` otherwise.
pub fn ovl_xattr(name: &str) -> String {
    if is_root() {
        format!("trusted.overlay.{name}")
    } else {
        format!("user.overlay.{name}")
    }
}

/// A token unique to this process and moment, for canary names.
pub fn unique_token() -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{}", std::process::id(), n % 1_000_000_000)
}

// ---------------------------------------------------------------------------------------------
// Thin syscall wrappers (io::Result, never follow the last symlink unless named so)
// ---------------------------------------------------------------------------------------------

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path contains NUL")
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The bytes of a size-then-fill xattr call: the size first, then the value, again on ERANGE.
fn sized(call: impl Fn(*mut libc::c_void, usize) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let n = call(std::ptr::null_mut(), 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; n as usize + 1];
        let m = call(buf.as_mut_ptr() as *mut libc::c_void, buf.len());
        if m < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue;
            }
            return Err(e);
        }
        buf.truncate(m as usize);
        return Ok(buf);
    }
}

pub fn lgetxattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let cp = cpath(p);
    let cn = CString::new(name).unwrap();
    sized(|buf, len| unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf, len) })
}

pub fn llistxattr(p: &Path) -> io::Result<Vec<String>> {
    let cp = cpath(p);
    let buf =
        sized(|buf, len| unsafe { libc::llistxattr(cp.as_ptr(), buf as *mut libc::c_char, len) })?;
    let mut names: Vec<String> = buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    names.sort();
    Ok(names)
}

pub fn lsetxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> io::Result<()> {
    let cp = cpath(p);
    let cn = CString::new(name).unwrap();
    cvt(unsafe {
        libc::lsetxattr(
            cp.as_ptr(),
            cn.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            flags,
        )
    })
}

pub fn lremovexattr(p: &Path, name: &str) -> io::Result<()> {
    let cp = cpath(p);
    let cn = CString::new(name).unwrap();
    cvt(unsafe { libc::lremovexattr(cp.as_ptr(), cn.as_ptr()) })
}

/// mknod(2); `mode` includes the file type bits (S_IFCHR, S_IFBLK, S_IFIFO, S_IFREG).
pub fn mknod(p: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let cp = cpath(p);
    cvt(unsafe {
        libc::mknod(
            cp.as_ptr(),
            mode as libc::mode_t,
            libc::makedev(major, minor),
        )
    })
}

pub fn mkfifo(p: &Path, mode: u32) -> io::Result<()> {
    let cp = cpath(p);
    cvt(unsafe { libc::mkfifo(cp.as_ptr(), mode as libc::mode_t) })
}

pub fn renameat2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let a = cpath(from);
    let b = cpath(to);
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn lchown(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
}

pub fn chmod(p: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
}

/// utimensat(2) with AT_SYMLINK_NOFOLLOW. Times are (seconds, nanoseconds); nanoseconds may be
/// `libc::UTIME_NOW` / `libc::UTIME_OMIT`.
pub fn lutimens(p: &Path, atime: (i64, i64), mtime: (i64, i64)) -> io::Result<()> {
    let cp = cpath(p);
    let ts = [
        libc::timespec {
            tv_sec: atime.0 as libc::time_t,
            tv_nsec: atime.1 as _,
        },
        libc::timespec {
            tv_sec: mtime.0 as libc::time_t,
            tv_nsec: mtime.1 as _,
        },
    ];
    cvt(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cp.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

pub fn statvfs(p: &Path) -> io::Result<libc::statvfs> {
    let cp = cpath(p);
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    cvt(unsafe { libc::statvfs(cp.as_ptr(), &mut s) })?;
    Ok(s)
}

pub fn fallocate(f: &File, mode: i32, offset: i64, len: i64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    cvt(unsafe { libc::fallocate(f.as_raw_fd(), mode, offset, len) })
}

pub fn errno_name(e: i32) -> String {
    let s = unsafe { std::ffi::CStr::from_ptr(libc::strerror(e)) };
    format!("errno {e} ({})", s.to_string_lossy())
}

// ---------------------------------------------------------------------------------------------
// Assertion helpers (panic with the path and the errno)
// ---------------------------------------------------------------------------------------------

pub fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

pub fn read_bytes(p: impl AsRef<Path>) -> Vec<u8> {
    let p = p.as_ref();
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

pub fn write(p: impl AsRef<Path>, data: impl AsRef<[u8]>) {
    let p = p.as_ref();
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()))
}

pub fn append(p: impl AsRef<Path>, data: impl AsRef<[u8]>) {
    let p = p.as_ref();
    let mut f = OpenOptions::new()
        .append(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {} for append: {e}", p.display()));
    f.write_all(data.as_ref())
        .unwrap_or_else(|e| panic!("append to {}: {e}", p.display()));
}

pub fn lstat(p: impl AsRef<Path>) -> fs::Metadata {
    let p = p.as_ref();
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
}

pub fn exists(p: impl AsRef<Path>) -> bool {
    fs::symlink_metadata(p.as_ref()).is_ok()
}

pub fn readlink(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    fs::read_link(p)
        .unwrap_or_else(|e| panic!("readlink {}: {e}", p.display()))
        .to_string_lossy()
        .into_owned()
}

pub fn mkdir(p: impl AsRef<Path>) {
    let p = p.as_ref();
    fs::create_dir(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()))
}

pub fn rm(p: impl AsRef<Path>) {
    let p = p.as_ref();
    fs::remove_file(p).unwrap_or_else(|e| panic!("unlink {}: {e}", p.display()))
}

pub fn rmdir(p: impl AsRef<Path>) {
    let p = p.as_ref();
    fs::remove_dir(p).unwrap_or_else(|e| panic!("rmdir {}: {e}", p.display()))
}

pub fn rename(a: impl AsRef<Path>, b: impl AsRef<Path>) {
    let (a, b) = (a.as_ref(), b.as_ref());
    fs::rename(a, b).unwrap_or_else(|e| panic!("rename {} -> {}: {e}", a.display(), b.display()))
}

pub fn ino(p: impl AsRef<Path>) -> u64 {
    lstat(p).ino()
}

/// Names in a directory (no `.`/`..`).
pub fn names(dir: impl AsRef<Path>) -> BTreeSet<String> {
    let dir = dir.as_ref();
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The errno of a call that must fail.
pub fn errno_of<T: Debug>(r: io::Result<T>, what: &str) -> i32 {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("{what}: non-OS error {e}")),
    }
}

pub fn assert_errno<T: Debug>(r: io::Result<T>, want: i32, what: &str) {
    let got = errno_of(r, what);
    assert_eq!(
        got,
        want,
        "{what}: expected {}, got {}",
        errno_name(want),
        errno_name(got)
    );
}

pub fn assert_errno_in<T: Debug>(r: io::Result<T>, want: &[i32], what: &str) {
    let got = errno_of(r, what);
    assert!(
        want.contains(&got),
        "{what}: expected one of {:?}, got {}",
        want.iter().map(|e| errno_name(*e)).collect::<Vec<_>>(),
        errno_name(got)
    );
}

pub fn assert_enoent(p: impl AsRef<Path>) {
    let p = p.as_ref();
    match fs::symlink_metadata(p) {
        Ok(m) => panic!(
            "{} exists (type '{}', size {}), expected ENOENT",
            p.display(),
            kind(&m),
            m.len()
        ),
        Err(e) => {
            let got = e.raw_os_error().unwrap_or(0);
            assert_eq!(
                got,
                libc::ENOENT,
                "lstat {}: expected ENOENT, got {}",
                p.display(),
                errno_name(got)
            );
        }
    }
}

/// One letter per file type: f d l p c b s.
pub fn kind(m: &fs::Metadata) -> char {
    let t = m.file_type();
    if t.is_file() {
        'f'
    } else if t.is_dir() {
        'd'
    } else if t.is_symlink() {
        'l'
    } else if t.is_fifo() {
        'p'
    } else if t.is_char_device() {
        'c'
    } else if t.is_block_device() {
        'b'
    } else if t.is_socket() {
        's'
    } else {
        '?'
    }
}

pub fn rdev_of(m: &fs::Metadata) -> (u32, u32) {
    let d = m.rdev();
    (libc::major(d), libc::minor(d))
}

pub fn is_kernel_whiteout(p: &Path) -> bool {
    match fs::symlink_metadata(p) {
        Ok(m) => m.file_type().is_char_device() && m.rdev() == 0,
        Err(_) => false,
    }
}

/// Path of the OCI whiteout for `rel` (`dir/.wh.name`).
pub fn oci_whiteout_path(root: &Path, rel: &str) -> PathBuf {
    let p = root.join(rel);
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    p.with_file_name(format!(".wh.{name}"))
}

/// A whiteout for `rel` is present in the upper dir, in the format strata must write:
/// char device 0:0 as root, `.wh.NAME` otherwise.
pub fn assert_upper_whiteout(upper: &Path, rel: &str) {
    let p = upper.join(rel);
    if is_root() {
        let m = fs::symlink_metadata(&p).unwrap_or_else(|e| {
            panic!(
                "expected a whiteout (char device 0:0) at {} in the upper: {e}",
                p.display()
            )
        });
        assert!(
            m.file_type().is_char_device() && m.rdev() == 0,
            "expected a whiteout (char device 0:0) at {}, found type '{}' rdev {:?}",
            p.display(),
            kind(&m),
            rdev_of(&m)
        );
    } else {
        let w = oci_whiteout_path(upper, rel);
        let m = fs::symlink_metadata(&w).unwrap_or_else(|e| {
            panic!("expected a whiteout file {} in the upper: {e}", w.display())
        });
        assert!(
            m.is_file() && m.len() == 0,
            "{} is not an empty regular file",
            w.display()
        );
    }
}

/// `dir` (a directory in the upper) is marked opaque in the format strata must write.
pub fn assert_opaque(dir: &Path) {
    let x = lgetxattr(dir, &ovl_xattr("opaque"));
    if is_root() {
        match x {
            Ok(v) => assert_eq!(
                v,
                b"y",
                "{}: {} is {:?}",
                dir.display(),
                ovl_xattr("opaque"),
                v
            ),
            Err(e) => panic!(
                "{} has no {} xattr ({e}): not opaque",
                dir.display(),
                ovl_xattr("opaque")
            ),
        }
    } else {
        let ok = matches!(&x, Ok(v) if v == b"y") || dir.join(".wh..wh..opq").exists();
        assert!(
            ok,
            "{} is neither marked by user.overlay.opaque=y nor .wh..wh..opq",
            dir.display()
        );
    }
}

/// The redirect xattr of an upper dir, if any.
pub fn redirect_of(dir: &Path) -> Option<String> {
    lgetxattr(dir, &ovl_xattr("redirect"))
        .ok()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// No private overlay xattr (trusted.overlay.* / user.overlay.*) is listed or readable.
pub fn assert_no_private_xattrs(p: &Path) {
    let list = llistxattr(p).unwrap_or_else(|e| panic!("listxattr {}: {e}", p.display()));
    for n in &list {
        assert!(
            !n.starts_with("trusted.overlay.") && !n.starts_with("user.overlay."),
            "listxattr {} shows the private overlay xattr {n} (all: {list:?})",
            p.display()
        );
    }
    for n in ["opaque", "redirect", "origin", "impure"] {
        let name = ovl_xattr(n);
        let r = lgetxattr(p, &name);
        assert!(
            r.is_err(),
            "getxattr {} {name} returned {:?} through the mount",
            p.display(),
            r
        );
    }
}

/// Poll `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Run `f` in a child thread; fail the test if it takes longer than `timeout` (a hung mount).
/// Panics inside `f` are re-raised here with their original message.
pub fn with_timeout<T: Send + 'static>(
    timeout: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("fsops: {what}"))
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        })
        .expect("spawn thread");
    match rx.recv_timeout(timeout) {
        Ok(Ok(v)) => {
            let _ = handle.join();
            v
        }
        Ok(Err(panic)) => {
            let _ = handle.join();
            std::panic::resume_unwind(panic)
        }
        Err(_) => panic!(
            "{what}: did not finish within {timeout:?}; the mount looks hung (the FUSE connection \
             will be aborted and the mount lazily unmounted)"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Commands with timeouts (output through files: a daemon that keeps our stderr can't block us)
// ---------------------------------------------------------------------------------------------

pub struct CmdOut {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOut {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
    pub fn describe(&self) -> String {
        format!(
            "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn read_back(mut f: File) -> String {
    let mut s = String::new();
    let _ = f.seek(SeekFrom::Start(0));
    let mut b = Vec::new();
    let _ = f.read_to_end(&mut b);
    s.push_str(&String::from_utf8_lossy(&b));
    s
}

/// Run a command with a timeout; Err if it could not be started or timed out (it is killed).
pub fn try_run_cmd(cmd: &mut Command, timeout: Duration) -> Result<CmdOut, String> {
    let out = tempfile::tempfile().map_err(|e| e.to_string())?;
    let err = tempfile::tempfile().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(err.try_clone().map_err(|e| e.to_string())?);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Ok(CmdOut {
                    status,
                    stdout: read_back(out),
                    stderr: read_back(err),
                });
            }
            Ok(None) => {
                if start.elapsed() > timeout {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{cmd:?} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                        read_back(out),
                        read_back(err)
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("waiting for {cmd:?}: {e}")),
        }
    }
}

/// Run a command with a timeout; panics if it can't start or times out (not on failure).
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> CmdOut {
    try_run_cmd(cmd, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// Run a command that must succeed.
pub fn run_ok(cmd: &mut Command) -> CmdOut {
    let desc = format!("{cmd:?}");
    let o = run_cmd(cmd, CMD_TIMEOUT);
    assert!(o.ok(), "{desc} failed: {}", o.describe());
    o
}

// ---------------------------------------------------------------------------------------------
// Mount table and processes
// ---------------------------------------------------------------------------------------------

fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() + 1 && b.len() - i >= 4 {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// util-linux's mount(8) run as a user runs it, `mount ARGS...`, for what it hands to
/// mount.fuse3 (a remount of a strata mount): with the strata under test as the `strata` that
/// mount.fuse3 runs. mount(8) gives its helpers no PATH, so mount.fuse3's `sh -c 'strata' ...`
/// searches sh's default path, /usr/local/bin first: the command runs in a mount namespace of
/// its own in which a tmpfs on /usr/local/bin holds only `strata`, the binary under test. The
/// host's /usr/local/bin is untouched. A remount's read-only flag is the superblock's, seen in
/// every namespace; per-mount flags (nosuid, ...) change the namespace's copy of the mount, so
/// `then` (a shell command line, run in that namespace after mount) can look at them.
/// `mount -o OPTS MNT` (a remount, through strata's mount helper), then the shell command
/// `then` in the same mount namespace; its stdout. Fails the test when it fails.
pub fn remount_o(mnt: &Path, opts: &str, then: &str) -> String {
    let mut cmd = mount_helper_cmd(
        &[os("-o").as_os_str(), os(opts).as_os_str(), mnt.as_os_str()],
        then,
    );
    let desc = format!("mount -o {opts} {}", mnt.display());
    let out = run_cmd(&mut cmd, CMD_TIMEOUT);
    assert!(out.ok(), "{desc} failed:\n{}", out.describe());
    out.stdout
}

pub fn mount_helper_cmd(args: &[&OsStr], then: &str) -> Command {
    let script = format!(
        "mount -t tmpfs -o mode=0755 strata-under-test /usr/local/bin && \
         ln -s \"$0\" /usr/local/bin/strata && mount \"$@\" && {{ {} ; }}",
        if then.is_empty() { "true" } else { then }
    );
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(script)
        .arg(strata_bin())
        .args(args);
    c.env_remove("RUST_LOG");
    c
}

/// (mount point, fstype) of every mount in this mount namespace.
pub fn mount_table() -> Vec<(PathBuf, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            let mp = PathBuf::from(OsStr::from_bytes(&unescape_mountinfo(f.get(4)?)));
            Some((mp, f.get(dash + 1)?.to_string()))
        })
        .collect()
}

/// Filesystem types mounted exactly at `p` (bottom first).
pub fn mounts_at(p: &Path) -> Vec<String> {
    mount_table()
        .into_iter()
        .filter(|(mp, _)| mp == p)
        .map(|(_, t)| t)
        .collect()
}

/// Mounts at or below `p`.
pub fn mounts_under(p: &Path) -> Vec<(PathBuf, String)> {
    mount_table()
        .into_iter()
        .filter(|(mp, _)| mp.starts_with(p))
        .collect()
}

pub fn fuse_mounted(p: &Path) -> bool {
    mounts_at(p)
        .iter()
        .any(|t| t == "fuse" || t.starts_with("fuse."))
}

/// Pids of strata processes serving `mnt` (by command line), other than us.
pub fn strata_pids(mnt: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let want = mnt.as_os_str().as_bytes();
    let mut pids = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_strata = args.first().is_some_and(|a0| a0.ends_with(b"strata"));
        // Match the mount point as a whole argument (with or without a trailing slash).
        let has_mnt = args
            .iter()
            .any(|a| *a == want || a.strip_suffix(b"/") == Some(want));
        if is_strata && has_mnt {
            pids.push(pid);
        }
    }
    pids
}

fn abort_fuse_connection(conn: u32) {
    let dir = Path::new("/sys/fs/fuse/connections");
    let c = dir.join(conn.to_string());
    if !c.exists() && is_root() {
        let _ = try_run_cmd(
            Command::new("mount").args(["-t", "fusectl", "fusectl", "/sys/fs/fuse/connections"]),
            Duration::from_secs(10),
        );
    }
    let _ = fs::write(c.join("abort"), "1");
}

/// Unmount whatever FUSE mount is at `mnt`, by every means; true when nothing FUSE is left.
pub fn force_unmount(mnt: &Path, conn: Option<u32>) -> bool {
    if !fuse_mounted(mnt) {
        return true;
    }
    let _ = try_run_cmd(
        Command::new(strata_bin()).arg("umount").arg(mnt),
        Duration::from_secs(20),
    );
    for _ in 0..4 {
        if !fuse_mounted(mnt) {
            return true;
        }
        if let Some(c) = conn {
            abort_fuse_connection(c);
        }
        let _ = try_run_cmd(
            Command::new("fusermount3").arg("-uz").arg(mnt),
            Duration::from_secs(10),
        );
        if fuse_mounted(mnt) {
            let _ = try_run_cmd(
                Command::new("umount").arg("-l").arg(mnt),
                Duration::from_secs(10),
            );
        }
    }
    !fuse_mounted(mnt)
}

/// Lazily unmounts every mount at or below a path when dropped (for tmpfs, kernel overlayfs,
/// and strata mounts a test made by hand).
pub struct UnmountGuard(pub PathBuf);

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        for _ in 0..8 {
            let mut ms = mounts_under(&self.0);
            if ms.is_empty() {
                return;
            }
            // Deepest first.
            ms.sort_by_key(|(p, _)| std::cmp::Reverse(p.as_os_str().len()));
            let (p, t) = &ms[0];
            if t == "fuse" || t.starts_with("fuse.") {
                force_unmount(p, None);
            } else {
                let _ = try_run_cmd(
                    Command::new("umount").arg("-l").arg(p),
                    Duration::from_secs(10),
                );
            }
        }
    }
}

/// Bind `src` at `dst` (an empty directory) through an idmapped mount whose user namespace maps
/// `map` ("0 100000 65536": owner k on disk is seen as 100000+k), as containers/storage makes
/// its `mapped/` layer mounts for a container with its own mapping. Unmounted on drop.
pub fn idmapped_bind(src: &Path, dst: &Path, map: &str) -> UnmountGuard {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    // A user namespace with the mapping, held by a sleeping process only while it is opened.
    let mut holder = Command::new("unshare")
        .args(["--user", "sleep", "60"])
        .spawn()
        .expect("unshare (util-linux)");
    let pid = holder.id();
    let ours = fs::read_link("/proc/self/ns/user").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || fs::read_link(format!(
            "/proc/{pid}/ns/user"
        ))
        .is_ok_and(|l| l != ours)),
        "unshare --user did not make a user namespace"
    );
    for f in ["uid_map", "gid_map"] {
        fs::write(format!("/proc/{pid}/{f}"), map)
            .unwrap_or_else(|e| panic!("writing {f} of {pid}: {e}"));
    }
    let ns = File::open(format!("/proc/{pid}/ns/user")).unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    let guard = UnmountGuard(dst.to_path_buf());
    let csrc = cpath(src);
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            csrc.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    assert!(
        tree >= 0,
        "open_tree {}: {}",
        src.display(),
        io::Error::last_os_error()
    );
    let tree = unsafe { std::os::fd::OwnedFd::from_raw_fd(tree as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns.as_raw_fd() as u64,
    };
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    assert_eq!(
        r,
        0,
        "mount_setattr MOUNT_ATTR_IDMAP: {}",
        io::Error::last_os_error()
    );
    let cdst = cpath(dst);
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            cdst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    assert_eq!(
        r,
        0,
        "move_mount to {}: {}",
        dst.display(),
        io::Error::last_os_error()
    );
    guard
}

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/// A directory being populated as a layer. Every method panics on failure and chains.
pub struct Layer {
    pub root: PathBuf,
}

impl Layer {
    pub fn new(root: impl Into<PathBuf>) -> Layer {
        Layer { root: root.into() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        join(&self.root, rel)
    }

    fn parent(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", d.display()));
        }
        p
    }

    pub fn file(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        let p = self.parent(rel);
        fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        self
    }

    pub fn file_mode(&self, rel: &str, content: impl AsRef<[u8]>, mode: u32) -> &Self {
        self.file(rel, content).mode(rel, mode)
    }

    pub fn dir(&self, rel: &str) -> &Self {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", p.display()));
        self
    }

    pub fn mode(&self, rel: &str, mode: u32) -> &Self {
        let p = self.path(rel);
        chmod(&p, mode).unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
        self
    }

    pub fn owner(&self, rel: &str, uid: u32, gid: u32) -> &Self {
        let p = self.path(rel);
        lchown(&p, uid, gid).unwrap_or_else(|e| panic!("lchown {}: {e}", p.display()));
        self
    }

    /// Set atime and mtime (not following symlinks). Call after populating a directory.
    pub fn times(&self, rel: &str, secs: i64, nsec: i64) -> &Self {
        let p = self.path(rel);
        lutimens(&p, (secs, nsec), (secs, nsec))
            .unwrap_or_else(|e| panic!("utimens {}: {e}", p.display()));
        self
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        let p = self.parent(rel);
        std::os::unix::fs::symlink(target, &p)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", p.display()));
        self
    }

    pub fn hardlink(&self, existing: &str, rel: &str) -> &Self {
        let p = self.parent(rel);
        fs::hard_link(self.path(existing), &p)
            .unwrap_or_else(|e| panic!("link {}: {e}", p.display()));
        self
    }

    pub fn fifo(&self, rel: &str) -> &Self {
        let p = self.parent(rel);
        mkfifo(&p, 0o644).unwrap_or_else(|e| panic!("mkfifo {}: {e}", p.display()));
        self
    }

    pub fn chardev(&self, rel: &str, major: u32, minor: u32) -> &Self {
        let p = self.parent(rel);
        mknod(&p, libc::S_IFCHR | 0o644, major, minor)
            .unwrap_or_else(|e| panic!("mknod {}: {e}", p.display()));
        self
    }

    pub fn blockdev(&self, rel: &str, major: u32, minor: u32) -> &Self {
        let p = self.parent(rel);
        mknod(&p, libc::S_IFBLK | 0o644, major, minor)
            .unwrap_or_else(|e| panic!("mknod {}: {e}", p.display()));
        self
    }

    /// Kernel-format whiteout: a character device 0:0 named `rel` (needs root).
    pub fn whiteout(&self, rel: &str) -> &Self {
        let p = self.parent(rel);
        mknod(&p, libc::S_IFCHR, 0, 0).unwrap_or_else(|e| {
            panic!(
                "mknod whiteout {} (kernel format needs root): {e}",
                p.display()
            )
        });
        self
    }

    /// OCI/AUFS-format whiteout: an empty file `.wh.NAME` beside where `rel` would be.
    pub fn whiteout_oci(&self, rel: &str) -> &Self {
        self.parent(rel);
        let p = oci_whiteout_path(&self.root, rel);
        fs::write(&p, b"").unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        self
    }

    /// Opaque directory, xattr format (trusted.overlay.opaque=y as root, user.* otherwise).
    pub fn opaque(&self, rel: &str) -> &Self {
        self.dir(rel);
        self.xattr(rel, &ovl_xattr("opaque"), b"y")
    }

    /// Opaque directory, OCI format (`.wh..wh..opq` inside it).
    pub fn opaque_oci(&self, rel: &str) -> &Self {
        self.dir(rel);
        let p = self.path(rel).join(".wh..wh..opq");
        fs::write(&p, b"").unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        self
    }

    pub fn redirect(&self, rel: &str, value: &str) -> &Self {
        self.xattr(rel, &ovl_xattr("redirect"), value.as_bytes())
    }

    pub fn xattr(&self, rel: &str, name: &str, value: &[u8]) -> &Self {
        let p = self.path(rel);
        lsetxattr(&p, name, value, 0)
            .unwrap_or_else(|e| panic!("setxattr {} {name}: {e}", p.display()));
        self
    }

    /// A sparse file of `size` bytes with data only at the given offsets.
    pub fn sparse(&self, rel: &str, size: u64, chunks: &[(u64, &[u8])]) -> &Self {
        let p = self.parent(rel);
        let f = File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        f.set_len(size).unwrap();
        for (off, data) in chunks {
            f.write_all_at(data, *off).unwrap();
        }
        f.sync_all().unwrap();
        self
    }
}

pub fn join(base: &Path, rel: &str) -> PathBuf {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() || rel == "." {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots of trees
// ---------------------------------------------------------------------------------------------

/// What a user sees of one entry: compared between strata and kernel overlayfs.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Not for directories (their size is filesystem-specific).
    pub size: Option<u64>,
    pub data: Option<Vec<u8>>,
    pub target: Option<String>,
    pub rdev: Option<(u32, u32)>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:o} {}:{}", self.kind, self.mode, self.uid, self.gid)?;
        if let Some(s) = self.size {
            write!(f, " size={s}")?;
        }
        if let Some(d) = &self.data {
            if d.len() <= 48 {
                write!(f, " data={:?}", String::from_utf8_lossy(d))?;
            } else {
                let sum: u64 = d
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (i as u64 + 1) * *b as u64)
                    .sum();
                write!(f, " data=<{} bytes, sum {sum}>", d.len())?;
            }
        }
        if let Some(t) = &self.target {
            write!(f, " -> {t:?}")?;
        }
        if let Some(r) = self.rdev {
            write!(f, " rdev={}:{}", r.0, r.1)?;
        }
        if !self.xattrs.is_empty() {
            let x: Vec<String> = self
                .xattrs
                .iter()
                .map(|(k, v)| format!("{k}={:?}", String::from_utf8_lossy(v)))
                .collect();
            write!(f, " xattrs[{}]", x.join(","))?;
        }
        Ok(())
    }
}

pub fn entry_of(p: &Path) -> Entry {
    let m = lstat(p);
    let k = kind(&m);
    let xattrs = llistxattr(p)
        .unwrap_or_else(|e| panic!("listxattr {}: {e}", p.display()))
        .into_iter()
        .map(|n| {
            let v =
                lgetxattr(p, &n).unwrap_or_else(|e| panic!("getxattr {} {n}: {e}", p.display()));
            (n, v)
        })
        .collect();
    Entry {
        kind: k,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: if k == 'd' { None } else { Some(m.len()) },
        data: if k == 'f' { Some(read_bytes(p)) } else { None },
        target: if k == 'l' { Some(readlink(p)) } else { None },
        rdev: if k == 'c' || k == 'b' {
            Some(rdev_of(&m))
        } else {
            None
        },
        xattrs,
    }
}

/// Every entry below `root` (root itself as "."), without following symlinks.
pub fn tree(root: &Path) -> BTreeMap<String, Entry> {
    fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, Entry>) {
        let p = join(root, rel);
        let e = entry_of(&p);
        let is_dir = e.kind == 'd';
        out.insert(
            if rel.is_empty() {
                ".".into()
            } else {
                rel.to_string()
            },
            e,
        );
        if is_dir {
            for n in names(&p) {
                let child = if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                };
                walk(root, &child, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

/// Compare two trees entry by entry; panic listing every difference.
pub fn assert_same_tree(
    a: &BTreeMap<String, Entry>,
    b: &BTreeMap<String, Entry>,
    name_a: &str,
    name_b: &str,
) {
    let mut diffs = Vec::new();
    for (k, ea) in a {
        match b.get(k) {
            None => diffs.push(format!("  {k}: only in {name_a}: {ea:?}")),
            Some(eb) if ea != eb => diffs.push(format!(
                "  {k}:\n    {name_a}: {ea:?}\n    {name_b}: {eb:?}"
            )),
            _ => {}
        }
    }
    for (k, eb) in b {
        if !a.contains_key(k) {
            diffs.push(format!("  {k}: only in {name_b}: {eb:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{name_a} and {name_b} differ in {} entries:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// A host-side snapshot including mtime and ctime, to prove nothing was written below `root`.
pub fn host_snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
        let p = join(root, rel);
        let Ok(m) = fs::symlink_metadata(&p) else {
            return;
        };
        let xattrs = llistxattr(&p).unwrap_or_default().join(",");
        out.insert(
            if rel.is_empty() {
                ".".into()
            } else {
                rel.to_string()
            },
            format!(
                "{} {:o} {}:{} size={} mtime={}.{} ctime={}.{} xattrs=[{xattrs}]",
                kind(&m),
                m.mode(),
                m.uid(),
                m.gid(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            ),
        );
        if m.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                let mut ns: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                ns.sort();
                for n in ns {
                    let child = if rel.is_empty() {
                        n
                    } else {
                        format!("{rel}/{n}")
                    };
                    walk(root, &child, out);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

pub fn assert_snapshot_unchanged(before: &BTreeMap<String, String>, root: &Path, what: &str) {
    let after = host_snapshot(root);
    let mut diffs = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diffs.push(format!("  removed {k}")),
            Some(w) if w != v => {
                diffs.push(format!("  changed {k}:\n    before {v}\n    after  {w}"))
            }
            _ => {}
        }
    }
    for k in after.keys() {
        if !before.contains_key(k) {
            diffs.push(format!("  created {k}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{what} ({}) was modified:\n{}",
        root.display(),
        diffs.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Mounts
// ---------------------------------------------------------------------------------------------

/// Paths of a mount, cheap to clone into the thread that runs filesystem operations.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub base: PathBuf,
    pub mnt: PathBuf,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub lowers: Vec<PathBuf>,
}

impl Ctx {
    /// A path in the merged view.
    pub fn p(&self, rel: &str) -> PathBuf {
        join(&self.mnt, rel)
    }
    /// A path in the upper dir (host side).
    pub fn u(&self, rel: &str) -> PathBuf {
        join(
            self.upper.as_ref().expect("this mount has no upper dir"),
            rel,
        )
    }
    /// A path in lower layer `i` (0 = top-most).
    pub fn l(&self, i: usize, rel: &str) -> PathBuf {
        join(&self.lowers[i], rel)
    }
}

pub struct Builder {
    tmp: tempfile::TempDir,
    base: PathBuf,
    lowers: Vec<PathBuf>,
    upper: Option<PathBuf>,
    work: Option<PathBuf>,
    mnt: PathBuf,
    opts: Vec<String>,
    log: Option<PathBuf>,
    env: Vec<(String, String)>,
    args: Vec<OsString>,
    root: PathBuf,
}

impl Builder {
    /// A fixture with `n_lowers` lower layers (lower0 is top-most), an upper and a workdir.
    pub fn new(n_lowers: usize) -> Builder {
        assert!(n_lowers >= 1);
        let tmp = tempfile::Builder::new()
            .prefix("strata-ft.")
            .tempdir()
            .expect("tempdir");
        let base = tmp.path().canonicalize().unwrap();
        let lowers: Vec<PathBuf> = (0..n_lowers)
            .map(|i| base.join(format!("lower{i}")))
            .collect();
        for l in &lowers {
            fs::create_dir(l).unwrap();
        }
        let (upper, work, mnt) = (base.join("upper"), base.join("work"), base.join("mnt"));
        for d in [&upper, &work, &mnt] {
            fs::create_dir(d).unwrap();
        }
        // Never the system-wide /var/lib/strata: each fixture has its own state root.
        let root = base.join("root");
        Builder {
            tmp,
            base,
            lowers,
            upper: Some(upper),
            work: Some(work),
            mnt,
            opts: vec![],
            log: None,
            env: vec![("STRATA_ROOT".into(), root.display().to_string())],
            args: vec![],
            root,
        }
    }

    /// An extra `strata mount` argument, e.g. `.arg("--bind").arg("/src:/dst")`.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    /// Extra `strata mount` arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, a: &[S]) -> Self {
        self.args
            .extend(a.iter().map(|x| x.as_ref().to_os_string()));
        self
    }

    /// Use another fixture's state root (`STRATA_ROOT`), e.g. to share its volumes.
    pub fn state_root(mut self, root: &Path) -> Self {
        self.root = root.to_path_buf();
        self.env.retain(|(k, _)| k != "STRATA_ROOT");
        self.env
            .push(("STRATA_ROOT".into(), root.display().to_string()));
        self
    }

    /// The state root this fixture's strata commands use (`BASE/root` unless
    /// [`Builder::state_root`] was called).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A host directory `BASE/NAME` (created) outside the layers, e.g. a bind source.
    pub fn host_dir(&self, name: &str) -> Layer {
        let p = self.base.join(name);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        Layer::new(p)
    }

    /// Make the fixture usable by [`TEST_USER`]: the base dir world-searchable, and the
    /// layers, upper, work, mnt and the state root (created here) owned by the user.
    pub fn owned_by_test_user(self) -> Self {
        let (uid, gid) = ensure_test_user();
        chmod(&self.base, 0o755).unwrap();
        fs::create_dir_all(&self.root).unwrap();
        let mut dirs: Vec<&PathBuf> = self.lowers.iter().collect();
        dirs.extend(self.upper.iter());
        dirs.extend(self.work.iter());
        dirs.push(&self.mnt);
        dirs.push(&self.root);
        for d in dirs {
            for (rel, _) in tree(d) {
                lchown(&join(d, &rel), uid, gid).unwrap();
            }
        }
        self
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Populate lower layer `i` (0 = top-most).
    pub fn lower(self, i: usize, f: impl FnOnce(&Layer)) -> Self {
        f(&Layer::new(self.lowers[i].clone()));
        self
    }

    /// Pre-populate the upper dir (as if a previous mount had written it).
    pub fn upper(self, f: impl FnOnce(&Layer)) -> Self {
        f(&Layer::new(
            self.upper
                .clone()
                .expect("read_only() was called before upper()"),
        ));
        self
    }

    /// Put the upper and work directories on a tmpfs of `size` bytes of their own (BASE/small,
    /// unmounted with the fixture), to fill it up.
    pub fn upper_on_small_tmpfs(mut self, size: u64) -> Self {
        let fs_dir = self.base.join("small");
        fs::create_dir(&fs_dir).unwrap();
        let out = run_cmd(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0755"))
                .arg("tmpfs")
                .arg(&fs_dir),
            CMD_TIMEOUT,
        );
        assert!(out.ok(), "mount tmpfs: {}", out.describe());
        let (upper, work) = (fs_dir.join("upper"), fs_dir.join("work"));
        fs::create_dir(&upper).unwrap();
        fs::create_dir(&work).unwrap();
        self.upper = Some(upper);
        self.work = Some(work);
        self
    }

    /// Put the upper and work directories in a btrfs subvolume limited to `limit` bytes by a
    /// qgroup (BASE/small, a loop-mounted image unmounted with the fixture): writes past the
    /// limit get EDQUOT, whoever makes them. (The kernels this runs on may lack ext4's and XFS's
    /// quota formats; a qgroup limit is the quota every btrfs kernel has.)
    pub fn upper_on_quota_limited_btrfs(mut self, limit: u64) -> Self {
        let (img, fs_dir) = (self.base.join("quota.img"), self.base.join("small"));
        fs::create_dir(&fs_dir).unwrap();
        fs::File::create(&img)
            .and_then(|f| f.set_len(256 << 20))
            .unwrap();
        let sv = fs_dir.join("sv");
        let limit = limit.to_string();
        let steps: [Vec<&OsStr>; 5] = [
            vec![
                "mkfs.btrfs".as_ref(),
                "-q".as_ref(),
                "-f".as_ref(),
                img.as_ref(),
            ],
            vec![
                "mount".as_ref(),
                "-o".as_ref(),
                "loop".as_ref(),
                img.as_ref(),
                fs_dir.as_ref(),
            ],
            vec![
                "btrfs".as_ref(),
                "quota".as_ref(),
                "enable".as_ref(),
                fs_dir.as_ref(),
            ],
            vec![
                "btrfs".as_ref(),
                "subvolume".as_ref(),
                "create".as_ref(),
                sv.as_ref(),
            ],
            vec![
                "btrfs".as_ref(),
                "qgroup".as_ref(),
                "limit".as_ref(),
                limit.as_ref(),
                sv.as_ref(),
            ],
        ];
        for argv in steps {
            let out = run_cmd(Command::new(argv[0]).args(&argv[1..]), CMD_TIMEOUT);
            assert!(out.ok(), "{argv:?}: {}", out.describe());
        }
        let (upper, work) = (sv.join("upper"), sv.join("work"));
        fs::create_dir(&upper).unwrap();
        fs::create_dir(&work).unwrap();
        self.upper = Some(upper);
        self.work = Some(work);
        self
    }

    /// Mount without upperdir/workdir: a read-only mount.
    pub fn read_only(mut self) -> Self {
        self.upper = None;
        self.work = None;
        self
    }

    /// An extra `-o` option, e.g. "redirect_dir=off".
    pub fn opt(mut self, o: &str) -> Self {
        self.opts.push(o.to_string());
        self
    }

    /// `--log BASE/strata.log`.
    pub fn log(mut self) -> Self {
        self.log = Some(self.base.join("strata.log"));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The fixture as a [`Mount`] that is not mounted yet.
    pub fn prepare(self) -> Mount {
        let mut log = self.log;
        let mut env = self.env;
        if log.is_none() && std::env::var_os("STRATA_FT_LOG").is_some() {
            log = Some(self.base.join("strata-debug.log"));
            env.push(("RUST_LOG".into(), "strata=debug".into()));
        }
        Mount {
            tmp: Some(self.tmp),
            base: self.base,
            mnt: self.mnt,
            lowers: self.lowers,
            upper: self.upper,
            work: self.work,
            opts: self.opts,
            log,
            env,
            args: self.args,
            root: self.root,
            mounted: false,
            conn: None,
            n_mounts: 0,
            timeout: OP_TIMEOUT,
        }
    }

    /// Mount with `strata mount`; panics (with strata's stderr) if that fails.
    pub fn mount(self) -> Mount {
        let mut m = self.prepare();
        m.mount_now();
        m
    }
}

pub struct Mount {
    tmp: Option<tempfile::TempDir>,
    pub base: PathBuf,
    pub mnt: PathBuf,
    pub lowers: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub opts: Vec<String>,
    pub log: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// Extra `strata mount` arguments (grafts); change them before a remount.
    pub args: Vec<OsString>,
    /// The state root (`STRATA_ROOT`) of every strata command of this fixture.
    pub root: PathBuf,
    mounted: bool,
    conn: Option<u32>,
    n_mounts: u32,
    pub timeout: Duration,
}

impl Mount {
    /// The `-o` string: lowerdir=..,upperdir=..,workdir=..,extra.
    pub fn option_string(&self) -> String {
        let lowers: Vec<String> = self
            .lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut o = vec![format!("lowerdir={}", lowers.join(":"))];
        if let Some(u) = &self.upper {
            o.push(format!("upperdir={}", u.display()));
        }
        if let Some(w) = &self.work {
            o.push(format!("workdir={}", w.display()));
        }
        o.extend(self.opts.iter().cloned());
        o.join(",")
    }

    pub fn ctx(&self) -> Ctx {
        Ctx {
            base: self.base.clone(),
            mnt: self.mnt.clone(),
            upper: self.upper.clone(),
            work: self.work.clone(),
            lowers: self.lowers.clone(),
        }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.ctx().p(rel)
    }
    pub fn u(&self, rel: &str) -> PathBuf {
        self.ctx().u(rel)
    }
    pub fn l(&self, i: usize, rel: &str) -> PathBuf {
        self.ctx().l(i, rel)
    }

    pub fn upper_layer(&self) -> Layer {
        Layer::new(self.upper.clone().expect("no upper"))
    }
    pub fn lower_layer(&self, i: usize) -> Layer {
        Layer::new(self.lowers[i].clone())
    }

    pub fn is_mounted(&self) -> bool {
        self.mounted
    }

    /// Run filesystem operations on the mount in a child thread, failing after `self.timeout`.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce(Ctx) -> T + Send + 'static) -> T {
        let c = self.ctx();
        with_timeout(
            self.timeout,
            &format!("operations on {}", self.mnt.display()),
            move || f(c),
        )
    }

    /// A `strata ARGS` command with this mount's environment.
    pub fn strata_cmd(&self) -> Command {
        let mut c = Command::new(strata_bin());
        c.env_remove("RUST_LOG");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// `strata mount [--log F] [ARGS] -o OPTS MNT`.
    pub fn mount_cmd(&self) -> Command {
        let mut cmd = self.strata_cmd();
        cmd.arg("mount");
        if let Some(l) = &self.log {
            cmd.arg("--log").arg(l);
        }
        cmd.args(&self.args);
        cmd.arg("-o").arg(self.option_string()).arg(&self.mnt);
        cmd
    }

    /// Run `strata mount` and return its output whether it worked or not; a live mount is
    /// recorded so that Drop unmounts it.
    pub fn try_mount_now(&mut self) -> CmdOut {
        assert!(!self.mounted, "already mounted");
        self.n_mounts += 1;
        let mut cmd = self.mount_cmd();
        let out = try_run_cmd(&mut cmd, CMD_TIMEOUT).unwrap_or_else(|e| {
            force_unmount(&self.mnt, None);
            panic!("strata mount hung: {e}")
        });
        if fuse_mounted(&self.mnt) {
            self.adopt_mount();
        }
        out
    }

    /// `strata mount [--log F] [ARGS] -o OPTS MNT`; panics with stderr unless it returns 0 with a
    /// live mount.
    pub fn mount_now(&mut self) {
        assert!(!self.mounted, "already mounted");
        self.n_mounts += 1;
        let mut cmd = self.mount_cmd();
        let desc = format!("{cmd:?}");
        let out = try_run_cmd(&mut cmd, CMD_TIMEOUT).unwrap_or_else(|e| {
            force_unmount(&self.mnt, None);
            panic!("strata mount hung: {e}")
        });
        if !out.ok() {
            force_unmount(&self.mnt, None);
            panic!("strata mount failed: {desc}\n{}", out.describe());
        }
        if !fuse_mounted(&self.mnt) {
            panic!(
                "strata mount returned 0 but no FUSE mount is live at {} (mounts there: {:?})\n{}",
                self.mnt.display(),
                mounts_at(&self.mnt),
                out.describe()
            );
        }
        self.adopt_mount();
    }

    /// Record that the mount point now holds a live FUSE mount made some other way
    /// (fuse-overlayfs form, mount -t), so Drop will unmount it.
    pub fn adopt_mount(&mut self) {
        self.mounted = true;
        let mnt = self.mnt.clone();
        let dev = with_timeout(
            Duration::from_secs(30),
            "stat of the new mount's root",
            move || fs::metadata(&mnt).map(|m| m.dev()),
        );
        match dev {
            Ok(d) => self.conn = Some(libc::minor(d)),
            Err(e) => panic!("stat {} right after mounting: {e}", self.mnt.display()),
        }
    }

    /// kill -9 the daemon, as a crash would, and take down the dead mount.
    pub fn kill_daemon(&mut self) {
        let pid = self.daemon_pid();
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGKILL) },
            0,
            "kill -9 {pid}"
        );
        assert!(
            wait_until(Duration::from_secs(20), || !Path::new(&format!(
                "/proc/{pid}/exe"
            ))
            .exists()),
            "the daemon {pid} did not die"
        );
        force_unmount(&self.mnt, None);
        self.forget_mount();
    }

    /// Record that the mount was taken down some other way (umount, fusermount3 -u).
    pub fn forget_mount(&mut self) {
        self.mounted = false;
        self.conn = None;
    }

    /// `strata umount MNT`: must succeed, leave nothing mounted, and the daemon must have exited.
    pub fn unmount(&mut self) {
        assert!(self.mounted, "not mounted");
        let mut cmd = self.strata_cmd();
        cmd.arg("umount").arg(&self.mnt);
        let out = run_cmd(&mut cmd, CMD_TIMEOUT);
        assert!(
            out.ok(),
            "strata umount {} failed: {}",
            self.mnt.display(),
            out.describe()
        );
        assert!(
            !fuse_mounted(&self.mnt),
            "strata umount returned 0 but {} is still mounted",
            self.mnt.display()
        );
        self.mounted = false;
        self.conn = None;
        let pids = strata_pids(&self.mnt);
        assert!(
            pids.is_empty(),
            "strata umount returned but the daemon is still running: pids {pids:?}"
        );
    }

    pub fn remount(&mut self) {
        self.unmount();
        self.mount_now();
    }

    /// `strata volume ARGS` with this fixture's state root; any exit status.
    pub fn volume<S: AsRef<OsStr>>(&self, args: &[S]) -> CmdOut {
        let mut cmd = self.strata_cmd();
        cmd.arg("volume").args(args);
        run_cmd(&mut cmd, CMD_TIMEOUT)
    }

    /// `strata volume ARGS` that must exit 0.
    pub fn volume_ok<S: AsRef<OsStr>>(&self, args: &[S]) -> CmdOut {
        let mut cmd = self.strata_cmd();
        cmd.arg("volume").args(args);
        run_ok(&mut cmd)
    }

    /// `ROOT/volumes/NAME/_data`: where a volume's data lives on the host.
    pub fn volume_data(&self, name: &str) -> PathBuf {
        volume_data(&self.root, name)
    }

    /// The pid of the one strata daemon serving this mount.
    pub fn daemon_pid(&self) -> i32 {
        let pids = strata_pids(&self.mnt);
        assert_eq!(
            pids.len(),
            1,
            "expected exactly one strata daemon serving {}, found {pids:?}",
            self.mnt.display()
        );
        pids[0]
    }

    /// Daemon log (when mounted with --log), "" if none.
    pub fn read_log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| fs::read_to_string(l).ok())
            .unwrap_or_default()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.read_log();
            if !log.is_empty() {
                let tail: Vec<&str> = log
                    .lines()
                    .rev()
                    .take(200)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                eprintln!(
                    "--- strata log ({}), last lines ---\n{}",
                    self.log.as_ref().unwrap().display(),
                    tail.join("\n")
                );
            }
        }
        if (self.mounted || fuse_mounted(&self.mnt)) && !force_unmount(&self.mnt, self.conn) {
            eprintln!(
                "could not unmount {}; leaving {} in place",
                self.mnt.display(),
                self.base.display()
            );
            if let Some(t) = self.tmp.take() {
                let _ = t.keep();
            }
            return;
        }
        // Anything else a test mounted inside the fixture (kernel overlayfs, tmpfs).
        drop(UnmountGuard(self.base.clone()));
        if !mounts_under(&self.base).is_empty() {
            if let Some(t) = self.tmp.take() {
                let _ = t.keep();
            }
        }
    }
}

/// The unprivileged user the tests switch to (created if missing).
pub const TEST_USER: &str = "strata-ft";

/// (uid, gid) of [`TEST_USER`], created with useradd if missing (tolerates a concurrent useradd).
pub fn ensure_test_user() -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").arg(flag).arg(TEST_USER).output().ok()?;
        if !o.status.success() {
            return None;
        }
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    let mut last = String::new();
    for _ in 0..10 {
        if let (Some(u), Some(g)) = (id("-u"), id("-g")) {
            return (u, g);
        }
        let out = run_cmd(
            Command::new("useradd").args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ]),
            CMD_TIMEOUT,
        );
        last = out.describe();
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("cannot create the test user {TEST_USER}: {last}");
}

/// A command that runs `argv` as [`TEST_USER`] (setpriv, no supplementary groups, no caps).
pub fn as_test_user(argv: &[&OsStr]) -> Command {
    let (uid, gid) = ensure_test_user();
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg("--");
    c.args(argv);
    c
}

/// Collects failures of independent sub-cases so one test reports all of them.
#[derive(Default)]
pub struct Failures(pub Vec<String>);

impl Failures {
    /// Run a sub-case; a panic inside is recorded instead of ending the test.
    pub fn case(&mut self, name: &str, f: impl FnOnce()) {
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            self.0.push(format!("[{name}] {}", panic_message(&p)));
        }
    }
    pub fn check(self) {
        assert!(
            self.0.is_empty(),
            "{} sub-case(s) failed:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

pub fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "panic".into()
    }
}

pub fn os(s: &str) -> OsString {
    OsString::from(s)
}

// ---------------------------------------------------------------------------------------------
// Grafts and volumes
// ---------------------------------------------------------------------------------------------

/// `ROOT/volumes/NAME/_data`: where a volume's data lives on the host.
pub fn volume_data(root: &Path, name: &str) -> PathBuf {
    root.join("volumes").join(name).join("_data")
}

/// A graft spec `SRC:REST` for --bind / -v, e.g. `spec(&src, "/data:ro")`.
pub fn spec(src: &Path, rest: &str) -> String {
    format!("{}:{rest}", src.display())
}

/// Names of the volumes that exist on disk under `ROOT/volumes` (empty if none yet).
pub fn volume_dirs(root: &Path) -> BTreeSet<String> {
    match fs::read_dir(root.join("volumes")) {
        Ok(rd) => rd
            .flatten()
            .filter(|e| e.path().join("_data").is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// A 64-hex-digit name (anonymous volumes, `volume create` without a name).
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The VOLUME NAME column of `strata volume ls` (checks the header and the DRIVER column).
pub fn parse_volume_table(stdout: &str) -> BTreeSet<String> {
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("volume ls printed nothing (no header):\n{stdout}"));
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["DRIVER", "VOLUME", "NAME"],
        "volume ls header is not `DRIVER    VOLUME NAME`:\n{stdout}"
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(
                f.len() == 2 && f[0] == "local",
                "volume ls row is not `local     NAME`: {l:?}\n{stdout}"
            );
            f[1].to_string()
        })
        .collect()
}

/// The lines of `strata volume ls -q` (names only).
pub fn parse_names(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// A command was refused: non-zero exit, exactly one line on stderr, containing every needle,
/// and no panic. Returns that line.
pub fn assert_one_line_error<'a>(out: &'a CmdOut, needles: &[&str], what: &str) -> &'a str {
    assert!(!out.ok(), "{what} was accepted:\n{}", out.describe());
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one line on stderr:\n{}",
        out.describe()
    );
    assert!(
        !lines[0].contains("panicked"),
        "{what}: strata panicked: {}",
        lines[0]
    );
    for n in needles {
        assert!(
            lines[0].contains(n),
            "{what}: the error line does not name {n:?}: {}",
            lines[0]
        );
    }
    lines[0]
}

/// Every kind of write inside `dir` (a read-only mount, or a read-only graft seen through the
/// mount) fails with EROFS. `dir` must hold a regular file `f` (with xattr `user.orig`), an
/// empty directory `empty` and a non-empty directory `d`. Reports every sub-case that did not.
pub fn assert_every_write_erofs(dir: &Path) {
    let mut f = Failures::default();
    let p = |r: &str| dir.join(r);
    let e = libc::EROFS;
    f.case("create", || {
        assert_errno(File::create(p("new")), e, "create")
    });
    f.case("open O_WRONLY", || {
        assert_errno(
            OpenOptions::new().write(true).open(p("f")),
            e,
            "open for write",
        )
    });
    f.case("open O_APPEND", || {
        assert_errno(
            OpenOptions::new().append(true).open(p("f")),
            e,
            "open for append",
        )
    });
    f.case("open O_TRUNC", || {
        assert_errno(
            OpenOptions::new().write(true).truncate(true).open(p("f")),
            e,
            "open O_TRUNC",
        )
    });
    f.case("mkdir", || {
        assert_errno(fs::create_dir(p("newdir")), e, "mkdir")
    });
    f.case("unlink", || {
        assert_errno(fs::remove_file(p("f")), e, "unlink")
    });
    f.case("rmdir", || {
        assert_errno(fs::remove_dir(p("empty")), e, "rmdir")
    });
    f.case("rename", || {
        assert_errno(fs::rename(p("f"), p("f2")), e, "rename")
    });
    f.case("rename dir", || {
        assert_errno(fs::rename(p("d"), p("d2")), e, "rename dir")
    });
    f.case("symlink", || {
        assert_errno(std::os::unix::fs::symlink("f", p("sl")), e, "symlink")
    });
    f.case("link", || {
        assert_errno(fs::hard_link(p("f"), p("hl")), e, "link")
    });
    f.case("mkfifo", || {
        assert_errno(mkfifo(&p("fifo"), 0o644), e, "mkfifo")
    });
    f.case("mknod", || {
        assert_errno(mknod(&p("cdev"), libc::S_IFCHR | 0o644, 1, 3), e, "mknod")
    });
    f.case("truncate", || {
        let cp = cpath(&p("f"));
        let r = unsafe { libc::truncate(cp.as_ptr(), 0) };
        assert_errno(
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            },
            e,
            "truncate",
        )
    });
    f.case("chmod", || assert_errno(chmod(&p("f"), 0o600), e, "chmod"));
    f.case("chown", || assert_errno(lchown(&p("f"), 1, 1), e, "chown"));
    f.case("utimens", || {
        assert_errno(lutimens(&p("f"), (1, 0), (1, 0)), e, "utimens")
    });
    f.case("setxattr", || {
        assert_errno(lsetxattr(&p("f"), "user.x", b"1", 0), e, "setxattr")
    });
    f.case("removexattr", || {
        assert_errno(lremovexattr(&p("f"), "user.orig"), e, "removexattr")
    });
    f.check();
}

/// No file or directory name below `root` contains `token`, and no regular file's content does
/// (for data that must never reach the disk, e.g. a tmpfs graft's).
pub fn assert_token_nowhere(root: &Path, token: &str) {
    fn walk(p: &Path, token: &str, hits: &mut Vec<String>) {
        let Ok(m) = fs::symlink_metadata(p) else {
            return;
        };
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(token))
        {
            hits.push(format!("name {}", p.display()));
        }
        if m.is_file() {
            if let Ok(b) = fs::read(p) {
                if b.windows(token.len()).any(|w| w == token.as_bytes()) {
                    hits.push(format!("content of {}", p.display()));
                }
            }
        } else if m.is_dir() {
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    walk(&e.path(), token, hits);
                }
            }
        }
    }
    let mut hits = Vec::new();
    walk(root, token, &mut hits);
    assert!(
        hits.is_empty(),
        "{token:?} reached the disk below {}:\n{}",
        root.display(),
        hits.join("\n")
    );
}

/// Run `sh -eu SCRIPT ARGS...` as [`TEST_USER`] (script written to `BASE/run.sh`), with HOME in
/// the fixture and without RUST_LOG/XDG_RUNTIME_DIR; the command must exit 0 and print DONE.
pub fn run_script_as_test_user(base: &Path, script: &str, args: &[&OsStr]) -> CmdOut {
    let path = base.join("run.sh");
    fs::write(&path, script).unwrap();
    chmod(&path, 0o755).unwrap();
    let home = base.join("home");
    let (uid, gid) = ensure_test_user();
    fs::create_dir_all(&home).unwrap();
    lchown(&home, uid, gid).unwrap();
    let mut argv: Vec<&OsStr> = vec![OsStr::new("/bin/sh"), path.as_os_str()];
    argv.extend_from_slice(args);
    let mut cmd = as_test_user(&argv);
    cmd.env_remove("RUST_LOG")
        .env("HOME", &home)
        .env_remove("XDG_RUNTIME_DIR");
    let out = run_cmd(&mut cmd, Duration::from_secs(120));
    assert!(
        out.ok() && out.stdout.contains("DONE"),
        "the unprivileged script failed:\n{}",
        out.describe()
    );
    out
}

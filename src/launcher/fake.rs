//! A recording [`Syscall`] for unit tests: every call becomes one readable line, and chosen
//! calls fail, so the launcher's order of steps and its error paths are tested without root.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::syscall::{SysResult, Syscall};

#[derive(Default)]
pub struct Recorder {
    pub calls: RefCell<Vec<String>>,
    /// A call whose line starts with one of these fails with the errno.
    pub fail: BTreeMap<String, Errno>,
    /// Executables that exist (anything else: ENOENT), and ones that are not executable.
    pub exes: BTreeSet<PathBuf>,
    pub not_exec: BTreeSet<PathBuf>,
    /// Files [`Syscall::read`] finds.
    pub files: BTreeMap<PathBuf, String>,
}

impl Recorder {
    pub fn new() -> Recorder {
        let mut r = Recorder::default();
        for p in ["/bin/sh", "/bin/true", "/usr/bin/env"] {
            r.exes.insert(PathBuf::from(p));
        }
        r
    }

    pub fn failing(mut self, prefix: &str, e: Errno) -> Recorder {
        self.fail.insert(prefix.to_string(), e);
        self
    }

    pub fn lines(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    /// The index of the first call that is `prefix` or starts with it and a space (panics if
    /// there is none).
    pub fn pos(&self, prefix: &str) -> usize {
        self.calls
            .borrow()
            .iter()
            .position(|l| matches(l, prefix))
            .unwrap_or_else(|| panic!("no call {prefix:?} in {:#?}", self.calls.borrow()))
    }

    pub fn has(&self, prefix: &str) -> bool {
        self.calls.borrow().iter().any(|l| matches(l, prefix))
    }

    fn rec(&self, line: String) -> SysResult<()> {
        let fail = self
            .fail
            .iter()
            .find(|(p, _)| line.starts_with(p.as_str()))
            .map(|(_, e)| *e);
        self.calls.borrow_mut().push(line);
        match fail {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn matches(line: &str, prefix: &str) -> bool {
    line == prefix || line.starts_with(&format!("{prefix} "))
}

/// `MsFlags(MS_BIND | MS_REC)` as `MS_BIND | MS_REC`.
fn flags(f: impl std::fmt::Debug) -> String {
    let s = format!("{f:?}");
    match (s.find('('), s.rfind(')')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].to_string(),
        _ => s,
    }
}

fn d(p: &Path) -> String {
    p.display().to_string()
}

impl Syscall for Recorder {
    fn unshare(&self, f: CloneFlags) -> SysResult<()> {
        self.rec(format!("unshare {}", flags(f)))
    }
    fn setns(&self, fd: RawFd, nstype: CloneFlags) -> SysResult<()> {
        self.rec(format!("setns {fd} {}", flags(nstype)))
    }
    fn sethostname(&self, name: &str) -> SysResult<()> {
        self.rec(format!("sethostname {name}"))
    }
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        mflags: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        self.rec(format!(
            "mount {} {} {} {} {}",
            source.map(d).unwrap_or_else(|| "-".into()),
            d(target),
            fstype.unwrap_or("-"),
            flags(mflags),
            data.unwrap_or("-")
        ))
    }
    fn umount2(&self, target: &Path, mflags: MntFlags) -> SysResult<()> {
        self.rec(format!("umount2 {} {}", d(target), flags(mflags)))
    }
    fn mount_flags(&self, path: &Path) -> SysResult<MsFlags> {
        self.rec(format!("mount_flags {}", d(path)))?;
        Ok(MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        self.rec(format!("pivot_root {} {}", d(new_root), d(put_old)))
    }
    fn chroot(&self, path: &Path) -> SysResult<()> {
        self.rec(format!("chroot {}", d(path)))
    }
    fn chdir(&self, path: &Path) -> SysResult<()> {
        self.rec(format!("chdir {}", d(path)))
    }
    fn fchdir(&self, fd: RawFd) -> SysResult<()> {
        self.rec(format!("fchdir {fd}"))
    }
    fn mkdir_all(&self, path: &Path, mode: u32) -> SysResult<()> {
        self.rec(format!("mkdir {} {mode:o}", d(path)))
    }
    fn touch(&self, path: &Path) -> SysResult<()> {
        self.rec(format!("touch {}", d(path)))
    }
    fn symlink(&self, target: &Path, link: &Path) -> SysResult<()> {
        self.rec(format!("symlink {} {}", d(target), d(link)))
    }
    fn open_console(&self, pts: &Path) -> SysResult<PathBuf> {
        self.rec(format!("open_console {}", d(pts)))?;
        Ok(pts.join("0"))
    }
    fn loopback_up(&self) -> SysResult<()> {
        self.rec("loopback_up".into())
    }
    fn drop_bounding(&self, keep: u64) -> SysResult<()> {
        self.rec(format!("drop_bounding {keep:#x}"))
    }
    fn keep_caps(&self, on: bool) -> SysResult<()> {
        self.rec(format!("keep_caps {on}"))
    }
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> SysResult<()> {
        self.rec(format!(
            "capset {effective:#x} {permitted:#x} {inheritable:#x}"
        ))
    }
    fn clear_ambient(&self) -> SysResult<()> {
        self.rec("clear_ambient".into())
    }
    fn no_new_privs(&self) -> SysResult<()> {
        self.rec("no_new_privs".into())
    }
    fn parent_death_signal(&self, sig: i32) -> SysResult<()> {
        self.rec(format!("parent_death_signal {sig}"))
    }
    fn setgroups(&self, groups: &[u32]) -> SysResult<()> {
        self.rec(format!("setgroups {groups:?}"))
    }
    fn setgid(&self, gid: u32) -> SysResult<()> {
        self.rec(format!("setgid {gid}"))
    }
    fn setuid(&self, uid: u32) -> SysResult<()> {
        self.rec(format!("setuid {uid}"))
    }
    fn read(&self, path: &Path) -> SysResult<Vec<u8>> {
        self.files
            .get(path)
            .map(|s| s.as_bytes().to_vec())
            .ok_or(Errno::ENOENT)
    }
    fn executable(&self, path: &Path) -> SysResult<()> {
        if self.not_exec.contains(path) {
            Err(Errno::EACCES)
        } else if self.exes.contains(path) {
            Ok(())
        } else {
            Err(Errno::ENOENT)
        }
    }
    fn execve(&self, path: &Path, argv: &[CString], env: &[CString]) -> Errno {
        let a: Vec<_> = argv.iter().map(|s| s.to_string_lossy()).collect();
        let e: Vec<_> = env.iter().map(|s| s.to_string_lossy()).collect();
        match self.rec(format!("execve {} {a:?} {e:?}", d(path))) {
            Err(e) => e,
            // A real execve would not return; the fake says so with a value tests recognise.
            Ok(()) => Errno::UnknownErrno,
        }
    }
}

//! The fixture of the container tests: a busybox rootfs and a state root in a temporary
//! directory, `strata run` with timeouts, background containers, and their records.
//!
//! A [`Fx`] kills what its containers left running, removes their cgroups and unmounts
//! everything under its directory when dropped, also on panic; a container that cannot start
//! fails the test.
#![allow(dead_code)]

use crate::common::*;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one container may run in these tests.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Docker's default capability set as /proc/PID/status shows it.
pub const DOCKER_CAPS: &str = "00000000a80425fb";

pub struct Fx {
    // Field order: containers and mounts go before the directory.
    _guard: UnmountGuard,
    _tmp: tempfile::TempDir,
    pub base: PathBuf,
    pub rootfs: PathBuf,
    pub root: PathBuf,
}

impl Drop for Fx {
    fn drop(&mut self) {
        // Kill whatever a failed test left running (monitor and container), then drop the
        // cgroups; the guard unmounts after this.
        for id in self.ids() {
            let st = self.state_of(&id).filter(|s| s["status"] == "running");
            for key in ["pid", "monitor_pid"] {
                if let Some(pid) = st.as_ref().and_then(|s| s[key].as_i64()).filter(|p| *p > 0) {
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
            for ctrl in ["memory", "cpu", "pids"] {
                let d = Path::new("/sys/fs/cgroup")
                    .join(ctrl)
                    .join("strata")
                    .join(&id);
                wait_until(Duration::from_secs(5), || {
                    !d.exists() || fs::remove_dir(&d).is_ok()
                });
            }
        }
    }
}

pub fn fx() -> Fx {
    let tmp = tempfile::Builder::new()
        .prefix("strata-ft-ctr.")
        .tempdir()
        .unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let rootfs = base.join("rootfs");
    let bin = rootfs.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static at /bin/busybox");
    let list = run_ok(Command::new("/bin/busybox").arg("--list")).stdout;
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    for d in ["proc", "sys", "dev", "etc", "tmp", "root"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(rootfs.join("etc/group"), "root:x:0:\n").unwrap();
    fs::write(rootfs.join("etc/motd"), "from the image\n").unwrap();
    fs::write(rootfs.join("strata-rootfs-marker"), "").unwrap();
    let root = base.join("state");
    Fx {
        _guard: UnmountGuard(base.clone()),
        _tmp: tmp,
        base,
        rootfs,
        root,
    }
}

impl Fx {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(strata_bin());
        c.env("STRATA_ROOT", &self.root).arg("run").args(args);
        c
    }

    /// `strata VERB ARGS...` (ps, logs, stop, rm) with this fixture's state root.
    pub fn verb(&self, args: &[&str]) -> CmdOut {
        let mut c = Command::new(strata_bin());
        c.env("STRATA_ROOT", &self.root).args(args);
        run_cmd(&mut c, RUN_TIMEOUT)
    }

    /// `strata run ARGS` (the rootfs given by the caller among ARGS).
    pub fn run_raw(&self, args: &[&str]) -> CmdOut {
        run_cmd(&mut self.cmd(args), RUN_TIMEOUT)
    }

    /// `strata run [FLAGS] ROOTFS CMD...`.
    pub fn run(&self, flags: &[&str], cmd: &[&str]) -> CmdOut {
        let r = self.rootfs.to_str().unwrap();
        let mut a: Vec<&str> = flags.to_vec();
        a.push(r);
        a.extend_from_slice(cmd);
        self.run_raw(&a)
    }

    /// A shell script in a throwaway container that must succeed; its stdout.
    pub fn sh(&self, flags: &[&str], script: &str) -> String {
        let mut f = vec!["--rm"];
        f.extend_from_slice(flags);
        let o = self.run(&f, &["sh", "-c", script]);
        assert!(
            o.ok(),
            "strata run {flags:?} sh -c {script:?}: {}",
            o.describe()
        );
        o.stdout
    }

    /// A container started in the background (`strata run` as a child), with its record.
    pub fn spawn(&self, flags: &[&str], cmd: &[&str]) -> Bg {
        let name = format!("bg{}", unique_token().replace('-', ""));
        let r = self.rootfs.to_str().unwrap();
        let mut a: Vec<&str> = vec!["--name", &name];
        a.extend_from_slice(flags);
        a.push(r);
        a.extend_from_slice(cmd);
        let child = self
            .cmd(&a)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start strata run");
        let mut found = None;
        wait_until(Duration::from_secs(30), || {
            found = self.ids().into_iter().find_map(|id| {
                let c = self.config_of(&id)?;
                let s = self.state_of(&id)?;
                (c["name"] == name.as_str() && s["status"] == "running")
                    .then(|| (id, s["pid"].as_i64().unwrap() as i32))
            });
            found.is_some()
        });
        let (id, pid) = found.unwrap_or_else(|| panic!("container {name} never ran"));
        Bg { child, id, pid }
    }

    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub fn ids(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.containers()) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect()
    }

    pub fn json(&self, id: &str, file: &str) -> Option<serde_json::Value> {
        let t = fs::read_to_string(self.containers().join(id).join(file)).ok()?;
        serde_json::from_str(&t).ok()
    }

    pub fn state_of(&self, id: &str) -> Option<serde_json::Value> {
        self.json(id, "state.json")
    }

    pub fn config_of(&self, id: &str) -> Option<serde_json::Value> {
        self.json(id, "config.json")
    }

    pub fn only_id(&self) -> String {
        let ids = self.ids();
        assert_eq!(ids.len(), 1, "one container expected: {ids:?}");
        ids[0].clone()
    }

    /// Nothing of a container left: no record, no mount under the fixture, no cgroup.
    pub fn assert_nothing_left(&self) {
        assert_eq!(self.ids(), Vec::<String>::new(), "container records left");
        let left: Vec<_> = fs::read_dir(self.containers())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lock")
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "left in containers/: {left:?}");
        assert_eq!(mounts_under(&self.base), vec![], "mounts left");
    }
}

pub struct Bg {
    pub child: Child,
    pub id: String,
    /// The container's PID 1 as the host sees it.
    pub pid: i32,
}

impl Bg {
    /// The exit code of `strata run`.
    pub fn wait(mut self) -> i32 {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st
                    .code()
                    .unwrap_or_else(|| panic!("strata run killed: {st}"));
            }
            if t.elapsed() > RUN_TIMEOUT {
                let _ = self.child.kill();
                panic!("strata run did not end within {RUN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

pub fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// `run -d`: the id, printed at once, and the container running behind it.
pub fn detached(f: &Fx, flags: &[&str], cmd: &[&str]) -> (String, i32) {
    let mut a = vec!["-d"];
    a.extend_from_slice(flags);
    let t = std::time::Instant::now();
    let o = f.run(&a, cmd);
    assert!(o.ok(), "{}", o.describe());
    assert!(t.elapsed() < Duration::from_secs(20));
    let id = o.stdout.trim().to_string();
    assert!(
        id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{}",
        o.describe()
    );
    let st = f.state_of(&id).unwrap();
    assert_eq!(st["status"], "running", "{st}");
    (id, st["pid"].as_i64().unwrap() as i32)
}

pub fn proc_alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s[s.rfind(')').unwrap() + 2..].chars().next().unwrap();
            state != 'Z' && state != 'X'
        })
        .unwrap_or(false)
}

/// `ps` output as (header, rows of columns split on runs of 3+ spaces).
pub fn table(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

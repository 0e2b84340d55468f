//! Containers: `strata run` on a busybox rootfs, checked as a user of Docker would check them.
//!
//! Each test has its own rootfs (a static busybox and its applet links) and state root in a
//! temporary directory. A [`Fx`] kills what its containers left running, removes their cgroups
//! and unmounts everything under its directory when dropped, also on panic; every command has
//! a timeout; a container that cannot start fails the test.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one container may run in these tests.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Docker's default capability set as /proc/PID/status shows it.
const DOCKER_CAPS: &str = "00000000a80425fb";

struct Fx {
    // Field order: containers and mounts go before the directory.
    _guard: UnmountGuard,
    _tmp: tempfile::TempDir,
    base: PathBuf,
    rootfs: PathBuf,
    root: PathBuf,
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

fn fx() -> Fx {
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
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(strata_bin());
        c.env("STRATA_ROOT", &self.root).arg("run").args(args);
        c
    }

    /// `strata run ARGS` (the rootfs given by the caller among ARGS).
    fn run_raw(&self, args: &[&str]) -> CmdOut {
        run_cmd(&mut self.cmd(args), RUN_TIMEOUT)
    }

    /// `strata run [FLAGS] ROOTFS CMD...`.
    fn run(&self, flags: &[&str], cmd: &[&str]) -> CmdOut {
        let r = self.rootfs.to_str().unwrap();
        let mut a: Vec<&str> = flags.to_vec();
        a.push(r);
        a.extend_from_slice(cmd);
        self.run_raw(&a)
    }

    /// A shell script in a throwaway container that must succeed; its stdout.
    fn sh(&self, flags: &[&str], script: &str) -> String {
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
    fn spawn(&self, flags: &[&str], cmd: &[&str]) -> Bg {
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

    fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    fn ids(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.containers()) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect()
    }

    fn json(&self, id: &str, file: &str) -> Option<serde_json::Value> {
        let t = fs::read_to_string(self.containers().join(id).join(file)).ok()?;
        serde_json::from_str(&t).ok()
    }

    fn state_of(&self, id: &str) -> Option<serde_json::Value> {
        self.json(id, "state.json")
    }

    fn config_of(&self, id: &str) -> Option<serde_json::Value> {
        self.json(id, "config.json")
    }

    fn only_id(&self) -> String {
        let ids = self.ids();
        assert_eq!(ids.len(), 1, "one container expected: {ids:?}");
        ids[0].clone()
    }

    /// Nothing of a container left: no record, no mount under the fixture, no cgroup.
    fn assert_nothing_left(&self) {
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

struct Bg {
    child: Child,
    id: String,
    /// The container's PID 1 as the host sees it.
    pid: i32,
}

impl Bg {
    /// The exit code of `strata run`.
    fn wait(mut self) -> i32 {
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

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn the_command_is_pid_1_and_the_hostname_is_the_short_id() {
    let f = fx();
    let o = f.run(&[], &["sh", "-c", "echo $$; hostname"]);
    assert!(o.ok(), "{}", o.describe());
    let id = f.only_id();
    assert_eq!(lines(&o.stdout), ["1", &id[..12]]);
    let out = f.sh(&["--hostname", "box"], "hostname; echo $HOSTNAME");
    assert_eq!(lines(&out), ["box", "box"]);
    // Only the container's own processes are visible: the shell alone.
    assert_eq!(f.sh(&[], "echo /proc/[0-9]*"), "/proc/1\n");
}

#[test]
fn network_none_has_only_lo_up_and_host_shares_the_hosts() {
    let f = fx();
    let out = f.sh(&[], "cat /proc/net/dev; echo ---; ip link");
    let (dev, link) = out.split_once("---\n").unwrap();
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"], "{dev}");
    assert!(link.starts_with("1: lo: <LOOPBACK,UP,LOWER_UP>"), "{link}");
    assert_eq!(
        link.lines().filter(|l| !l.starts_with(' ')).count(),
        1,
        "{link}"
    );
    let host = fs::read_to_string("/proc/net/dev").unwrap();
    let out = f.sh(&["--network", "host"], "cat /proc/net/dev");
    assert_eq!(out.lines().count(), host.lines().count(), "{out}");
}

#[test]
fn namespaces_differ_from_the_hosts() {
    let f = fx();
    let kinds = ["mnt", "pid", "uts", "ipc", "net", "cgroup"];
    let host = |k: &str| fs::read_link(format!("/proc/self/ns/{k}")).unwrap();
    let script = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}"))
        .collect::<Vec<_>>()
        .join("; ");
    let out = f.sh(&[], &script);
    for (k, inside) in kinds.iter().zip(out.lines()) {
        assert!(inside.starts_with(&format!("{k}:[")), "{inside}");
        assert_ne!(
            Path::new(inside),
            host(k),
            "{k} namespace shared with the host"
        );
    }
    let out = f.sh(&["--network", "host"], "readlink /proc/self/ns/net");
    assert_eq!(Path::new(out.trim()), host("net"));
}

#[test]
fn dev_is_dockers_minimal_set() {
    let f = fx();
    let out = f.sh(
        &[],
        "ls /dev; echo ---; ls /dev/pts; echo ---; readlink /dev/stdout; readlink /dev/fd; readlink /dev/ptmx; \
         echo gone > /dev/null; head -c 3 /dev/zero | wc -c",
    );
    let parts: Vec<&str> = out.split("---\n").collect();
    let names: BTreeSet<&str> = parts[0].lines().collect();
    let docker: BTreeSet<&str> = [
        "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero",
    ]
    .into();
    assert_eq!(names, docker);
    // A devpts of its own: none of the host's terminals.
    assert_eq!(lines(parts[1]), ["ptmx"]);
    assert_eq!(
        lines(parts[2]),
        ["/proc/self/fd/1", "/proc/self/fd", "pts/ptmx", "3"]
    );
}

#[test]
fn proc_and_sys_are_masked_and_read_only_as_dockers() {
    let f = fx();
    let out = f.sh(
        &[],
        "for p in /proc/kcore /proc/keys /proc/timer_list; do \
           if [ -e $p ]; then echo $p $(wc -c < $p); else echo $p missing; fi; done; \
         ls -A /sys/firmware | wc -l; ls -A /proc/acpi | wc -l; \
         (echo 1 > /proc/sys/vm/drop_caches) 2>&1; (touch /sys/x) 2>&1; \
         grep -E ' /proc/(sys|bus|fs|irq) ' /proc/self/mountinfo | cut -d' ' -f5,6",
    );
    let l = lines(&out);
    // /proc/kcore is masked where the kernel has one (this machine's kernel may not).
    let kcore = if Path::new("/proc/kcore").exists() {
        "/proc/kcore 0"
    } else {
        "/proc/kcore missing"
    };
    assert_eq!(l[0], kcore);
    assert!(fs::metadata("/proc/keys").is_ok() && !read("/proc/timer_list").is_empty());
    assert_eq!(l[1..3], ["/proc/keys 0", "/proc/timer_list 0"]);
    // The host has entries there, so an empty listing is the mask.
    assert!(fs::read_dir("/sys/firmware").unwrap().count() > 0);
    assert_eq!(l[3..5], ["0", "0"], "{out}");
    assert!(l[5].contains("Read-only file system"), "{out}");
    assert!(l[6].contains("Read-only file system"), "{out}");
    let ro: BTreeSet<&str> = l[7..].iter().copied().collect();
    let want: BTreeSet<&str> = [
        "/proc/sys ro,nosuid,nodev,noexec,relatime",
        "/proc/bus ro,nosuid,nodev,noexec,relatime",
        "/proc/fs ro,nosuid,nodev,noexec,relatime",
        "/proc/irq ro,nosuid,nodev,noexec,relatime",
    ]
    .into();
    assert_eq!(ro, want, "{out}");
}

#[test]
fn writes_land_in_the_containers_upper_never_in_the_rootfs() {
    let f = fx();
    let before = host_snapshot(&f.rootfs);
    let o = f.run(
        &["--name", "writer"],
        &[
            "sh",
            "-c",
            "echo new > /etc/new; rm /etc/motd; echo changed > /etc/passwd; mkdir -p /var/x",
        ],
    );
    assert!(o.ok(), "{}", o.describe());
    assert_snapshot_unchanged(&before, &f.rootfs, "the rootfs");
    let id = f.only_id();
    let upper = f.containers().join(&id).join("upper");
    assert_eq!(read(upper.join("etc/new")), "new\n");
    assert_eq!(read(upper.join("etc/passwd")), "changed\n");
    assert!(upper.join("var/x").is_dir());
    assert_upper_whiteout(&upper, "etc/motd");
    // A second container of the same rootfs starts from the image, not from the first's files.
    let out = f.sh(&[], "cat /etc/motd; ls /etc");
    assert_eq!(lines(&out), ["from the image", "group", "motd", "passwd"]);
    // The stopped container keeps its writable layer and its record.
    let st = f.state_of(&id).unwrap();
    assert_eq!(st["status"], "exited");
    assert_eq!(st["exit_code"], 0);
    assert!(st["started_at"].as_str().unwrap() <= st["finished_at"].as_str().unwrap());
    assert_eq!(f.config_of(&id).unwrap()["name"], "writer");
    assert_eq!(mounts_under(&f.base), vec![]);
}

#[test]
fn exit_codes_are_dockers() {
    let f = fx();
    let code = |flags: &[&str], cmd: &[&str]| {
        let o = f.run(flags, cmd);
        (o.status.code().unwrap(), o.stdout, o.stderr)
    };
    assert_eq!(code(&["--rm"], &["true"]).0, 0);
    assert_eq!(code(&["--rm"], &["sh", "-c", "exit 3"]).0, 3);
    let (c, _, err) = code(&["--rm"], &["/etc/passwd"]);
    assert_eq!(
        (c, err.as_str()),
        (126, "strata: exec: \"/etc/passwd\": permission denied\n")
    );
    let (c, _, err) = code(&["--rm"], &["nope"]);
    assert_eq!(
        (c, err.as_str()),
        (
            127,
            "strata: exec: \"nope\": executable file not found in $PATH\n"
        )
    );
    // A command that itself exits 127 is not a start failure: nothing is printed by strata.
    let (c, _, err) = code(&["--rm"], &["sh", "-c", "exit 127"]);
    assert_eq!((c, err.as_str()), (127, ""));
    // PID 1 ignores signals it has no handler for, even SIGKILL from inside, as in Docker...
    let (c, out, _) = code(&["--rm"], &["sh", "-c", "kill -9 $$; echo alive"]);
    assert_eq!((c, out.as_str()), (0, "alive\n"));
    // ...so behind --init the same shell dies: 128+9, and 128+15 for SIGTERM.
    assert_eq!(
        code(&["--rm", "--init"], &["sh", "-c", "kill -9 $$"]).0,
        137
    );
    assert_eq!(
        code(&["--rm", "--init"], &["sh", "-c", "kill -TERM $$"]).0,
        143
    );
    assert_eq!(code(&["--rm", "--init"], &["sh", "-c", "exit 5"]).0, 5);
    f.assert_nothing_left();
}

#[test]
fn signals_from_outside_reach_the_container() {
    let f = fx();
    // SIGKILL from the host kills PID 1: 137, and the record says so.
    let bg = f.spawn(&[], &["sleep", "30"]);
    let id = bg.id.clone();
    unsafe { libc::kill(bg.pid, libc::SIGKILL) };
    assert_eq!(bg.wait(), 137);
    assert_eq!(f.state_of(&id).unwrap()["exit_code"], 137);
    // SIGTERM to `strata run` is passed on (to the init, then to the command): 143.
    let bg = f.spawn(&["--init", "--rm"], &["sleep", "30"]);
    unsafe { libc::kill(bg.child.id() as i32, libc::SIGTERM) };
    assert_eq!(bg.wait(), 143);
    // The --init is PID 1 and the command its child.
    let out = f.sh(&["--init"], "echo $$; cat /proc/1/status | grep PPid");
    assert_eq!(lines(&out), ["2", "PPid:\t0"]);
}

fn caps_of(status: &str) -> Vec<(String, String)> {
    status
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn capabilities_are_dockers_default_set() {
    let f = fx();
    let get = |flags: &[&str]| caps_of(&f.sh(flags, "cat /proc/self/status"));
    let c = get(&[]);
    let want = |eff: &str, bnd: &str| -> Vec<(String, String)> {
        [
            ("CapInh", "0000000000000000"),
            ("CapPrm", eff),
            ("CapEff", eff),
            ("CapBnd", bnd),
            ("CapAmb", "0000000000000000"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    };
    assert_eq!(c, want(DOCKER_CAPS, DOCKER_CAPS));
    let zero = "0000000000000000";
    assert_eq!(get(&["--cap-drop", "ALL"]), want(zero, zero));
    // NET_ADMIN is bit 12; CHOWN (bit 0) dropped.
    assert_eq!(
        get(&["--cap-add", "NET_ADMIN", "--cap-drop", "chown"]),
        want("00000000a80435fa", "00000000a80435fa")
    );
    // What the dropped capabilities guard is refused.
    let o = f.run(
        &["--rm", "--cap-drop", "CHOWN"],
        &["chown", "1:1", "/etc/motd"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert!(
        o.stderr.contains("Operation not permitted"),
        "{}",
        o.describe()
    );
    let out = f.sh(
        &["--security-opt", "no-new-privileges"],
        "grep NoNewPrivs /proc/self/status",
    );
    assert_eq!(out, "NoNewPrivs:\t1\n");
}

#[test]
fn user_runs_as_that_uid_and_gid_without_capabilities() {
    let f = fx();
    let out = f.sh(
        &["-u", "1000:1000"],
        "id -u; id -g; id -G; grep -E '^(Uid|Gid)' /proc/self/status; \
         grep CapEff /proc/self/status; (touch /etc/x) 2>&1; touch /tmp/mine; stat -c %u:%g /tmp/mine",
    );
    assert_eq!(
        lines(&out),
        [
            "1000",
            "1000",
            "1000",
            "Uid:\t1000\t1000\t1000\t1000",
            "Gid:\t1000\t1000\t1000\t1000",
            "CapEff:\t0000000000000000",
            "touch: /etc/x: Permission denied",
            "1000:1000",
        ]
    );
    // A numeric uid without a passwd entry gets gid 0, as with Docker.
    assert_eq!(f.sh(&["-u", "1234"], "id -u; id -g"), "1234\n0\n");
    let o = f.run(&["--rm", "-u", "nobody"], &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", o.describe());
    assert!(
        o.stderr.contains("unable to find user nobody"),
        "{}",
        o.describe()
    );
}

#[test]
fn workdir_and_environment() {
    let f = fx();
    let out = f.sh(
        &["-w", "/srv/app", "-e", "A=1", "-e", "B=two words"],
        "pwd; env | sort",
    );
    let l = lines(&out);
    assert_eq!(l[0], "/srv/app");
    let env: BTreeSet<&str> = l[1..]
        .iter()
        .copied()
        .filter(|e| !e.starts_with("PWD=") && !e.starts_with("SHLVL="))
        .collect();
    let id_line = env.iter().find(|e| e.starts_with("HOSTNAME=")).unwrap();
    assert_eq!(id_line.len(), "HOSTNAME=".len() + 12);
    let want: BTreeSet<&str> = [
        "A=1",
        "B=two words",
        "HOME=/root",
        id_line,
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    .into();
    assert_eq!(env, want);
}

/// What `nsenter -m` (the mount namespace's own root) sees at "/" of a running container.
fn ns_root_listing(f: &Fx, flags: &[&str]) -> (String, String) {
    let bg = f.spawn(flags, &["sh", "-c", "cat /proc/self/mountinfo; sleep 30"]);
    let o = run_ok(
        Command::new("nsenter")
            .arg("-t")
            .arg(bg.pid.to_string())
            .args(["-m", "ls", "-A", "/"]),
    );
    let inside = fs::read_to_string(format!("/proc/{}/mountinfo", bg.pid)).unwrap();
    unsafe { libc::kill(bg.pid, libc::SIGKILL) };
    assert_eq!(bg.wait(), 137);
    (o.stdout, inside)
}

#[test]
fn pivot_root_leaves_no_host_tree_and_chroot_does() {
    let f = fx();
    let (pivot, mi) = ns_root_listing(&f, &["--rm"]);
    assert!(
        pivot.lines().any(|l| l == "strata-rootfs-marker"),
        "{pivot}"
    );
    let root = mi.lines().next().unwrap();
    assert!(
        root.contains(" / / ") && root.contains(" - fuse.strata "),
        "{root}"
    );
    // After pivot_root the namespace holds only the container's mounts.
    assert!(
        mi.lines()
            .all(|l| !l.contains(" /work") && !l.contains(" /tmp/")),
        "{mi}"
    );
    let (chroot, _) = ns_root_listing(&f, &["--rm", "--chroot"]);
    // chroot only moved the process: the namespace's root is still the host's.
    assert!(
        !chroot.lines().any(|l| l == "strata-rootfs-marker"),
        "{chroot}"
    );
    let host: BTreeSet<String> = fs::read_dir("/")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let seen: BTreeSet<String> = chroot.lines().map(String::from).collect();
    assert_eq!(seen, host);
    f.assert_nothing_left();
}

#[test]
fn memory_limit_ends_in_an_oom_kill_reported_as_137() {
    let f = fx();
    let o = f.run(
        &["--memory", "16m", "--name", "oom"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
    );
    assert_eq!(o.status.code(), Some(137), "{}", o.describe());
    let id = f.only_id();
    let st = f.state_of(&id).unwrap();
    assert_eq!(
        (st["exit_code"].as_i64(), st["oom_killed"].as_bool()),
        (Some(137), Some(true))
    );
    for ctrl in ["memory", "cpu", "pids"] {
        let d = Path::new("/sys/fs/cgroup")
            .join(ctrl)
            .join("strata")
            .join(&id);
        assert!(!d.exists(), "{} left", d.display());
    }
    // The same command within its limit runs, and is not an OOM kill.
    let o = f.run(
        &["--rm", "--memory", "64m"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", o.describe());
}

#[test]
fn cpu_and_pids_limits_are_set_in_the_containers_cgroups() {
    let f = fx();
    let bg = f.spawn(
        &[
            "--rm",
            "--cpus",
            "0.5",
            "--pids-limit",
            "20",
            "--memory",
            "32m",
        ],
        &["sleep", "30"],
    );
    let cg = |ctrl: &str, file: &str| {
        read(
            Path::new("/sys/fs/cgroup")
                .join(ctrl)
                .join("strata")
                .join(&bg.id)
                .join(file),
        )
    };
    assert_eq!(cg("cpu", "cpu.cfs_quota_us").trim(), "50000");
    assert_eq!(cg("cpu", "cpu.cfs_period_us").trim(), "100000");
    assert_eq!(cg("pids", "pids.max").trim(), "20");
    assert_eq!(
        cg("memory", "memory.limit_in_bytes").trim(),
        (32u64 << 20).to_string()
    );
    assert!(cg("pids", "cgroup.procs")
        .lines()
        .any(|p| p == bg.pid.to_string()));
    unsafe { libc::kill(bg.pid, libc::SIGKILL) };
    assert_eq!(bg.wait(), 137);
    // Forks past the limit fail inside.
    let o = f.run(
        &["--rm", "--pids-limit", "3"],
        &["sh", "-c", "sleep 2 & sleep 2 & sleep 2 & sleep 2 & wait"],
    );
    assert!(o.stderr.contains("can't fork"), "{}", o.describe());
    f.assert_nothing_left();
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    let f = fx();
    let cases: &[(&[&str], &str)] = &[
        (
            &["/nonexistent", "true"],
            "strata: rootfs /nonexistent: no such directory\n",
        ),
        (
            &["--network", "bridge", "ROOT", "true"],
            "strata: network bridge not found\n",
        ),
        (
            &["--cap-add", "FLY", "ROOT", "true"],
            "strata: invalid capability: \"FLY\"\n",
        ),
        (
            &["--memory", "1k", "ROOT", "true"],
            "strata: Minimum memory limit allowed is 6MB\n",
        ),
        (
            &["--name", "bad/name", "ROOT", "true"],
            "strata: Invalid container name (bad/name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed\n",
        ),
        (&["ROOT"], "strata: no command specified\n"),
    ];
    let r = f.rootfs.to_str().unwrap();
    for (args, err) in cases {
        let a: Vec<&str> = args
            .iter()
            .map(|x| if *x == "ROOT" { r } else { x })
            .collect();
        let o = f.run_raw(&a);
        assert_eq!(
            (o.status.code(), o.stderr.as_str()),
            (Some(125), *err),
            "{a:?}: {}",
            o.describe()
        );
    }
    let o = f.run_raw(&["--bogus", r, "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", o.describe());
    f.assert_nothing_left();
    // A name in use is refused with Docker's words, and the first container stays.
    assert!(f.run(&["--name", "taken"], &["true"]).ok());
    let id = f.only_id();
    let o = f.run(&["--name", "taken"], &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", o.describe());
    assert_eq!(
        o.stderr,
        format!(
            "strata: Conflict. The container name \"/taken\" is already in use by container \
             \"{id}\". You have to remove (or rename) that container to be able to reuse that \
             name.\n"
        )
    );
    assert_eq!(f.ids(), [id]);
}

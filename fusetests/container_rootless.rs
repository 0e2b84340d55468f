//! Rootless containers: every container verb as an unprivileged user, in a user namespace
//! mapping the caller to root and its subordinate ids (/etc/subuid, /etc/subgid) after it, or
//! the caller alone when it has none. The tests start as root, make two users of their own
//! (one with subordinate ids, one without) and run strata as them with setpriv.

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
use common::*;
use fixture::*;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Has subordinate ids from [`SUB`].
const WITH_IDS: &str = "strata-rl";
/// Has none.
const WITHOUT_IDS: &str = "strata-rl0";
const SUB: u32 = 400000;

/// A user of these tests: (uid, gid), made if missing. With `sub`, its subordinate ids are
/// made sure of in /etc/subuid and /etc/subgid (kept, as the user is: tests of this file run
/// at once in separate processes, and one must not take them away from another); without,
/// any line naming it is a failure of the host's setup, not something to silently work with.
fn user(name: &str, sub: bool) -> (u32, u32) {
    assert!(is_root(), "this test must start as root (it makes users)");
    let lock = fs::File::create("/tmp/strata-ft-rootless-users.lock").unwrap();
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").arg(flag).arg(name).output().ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().parse().ok())?
    };
    if id("-u").is_none() {
        run_ok(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ]));
    }
    let (uid, gid) = (id("-u").unwrap(), id("-g").unwrap());
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = fs::read_to_string(file).unwrap_or_default();
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.split(':').next() == Some(name))
            .collect();
        if sub && mine.is_empty() {
            let mut t = text.clone();
            if !t.is_empty() && !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str(&format!("{name}:{SUB}:65536\n"));
            fs::write(file, t).unwrap();
        } else if sub {
            assert_eq!(mine, [format!("{name}:{SUB}:65536")], "{file}");
        } else {
            assert!(mine.is_empty(), "{file} has ids for {name}: {mine:?}");
        }
    }
    (uid, gid)
}

/// Kills every process whose command line or environment names the fixture's directory:
/// monitors and daemons in user and mount namespaces no unmount from here can reach.
struct KillUnder(PathBuf);

fn processes_under(base: &Path) -> Vec<i32> {
    let needle = base.as_os_str().as_encoded_bytes().to_vec();
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me || !proc_alive(pid) {
            continue;
        }
        let names = |f: &str| {
            let b = fs::read(e.path().join(f)).unwrap_or_default();
            b.windows(needle.len()).any(|w| w == needle.as_slice())
        };
        if names("cmdline") || names("environ") {
            out.push(pid);
        }
    }
    out
}

impl Drop for KillUnder {
    fn drop(&mut self) {
        for pid in processes_under(&self.0) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        wait_until(Duration::from_secs(10), || {
            processes_under(&self.0).is_empty()
        });
    }
}

struct Rx {
    // Field order: processes are killed before the fixture unmounts and removes.
    _kill: KillUnder,
    f: Fx,
    uid: u32,
    gid: u32,
    name: &'static str,
}

/// A busybox rootfs owned by the user (as an unpack in its namespace leaves it), its state
/// root and home in the fixture's directory.
fn rx(name: &'static str, sub: bool) -> Rx {
    let (uid, gid) = user(name, sub);
    let f = fx();
    chmod(&f.base, 0o755).unwrap();
    for d in [f.root.clone(), f.base.join("home"), f.base.join("out")] {
        fs::create_dir_all(&d).unwrap();
    }
    let mut all = vec![f.root.clone(), f.base.join("home"), f.base.join("out")];
    all.extend(walk(&f.rootfs));
    for p in all {
        lchown(&p, uid, gid).unwrap();
    }
    Rx {
        _kill: KillUnder(f.base.clone()),
        f,
        uid,
        gid,
        name,
    }
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap().flatten() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

impl Rx {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(strata_bin())
            .args(args)
            .env("STRATA_ROOT", &self.f.root)
            .env("HOME", self.f.base.join("home"))
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("RUST_LOG")
            .current_dir(self.f.base.join("home"));
        c
    }

    /// `strata ARGS` as the user.
    fn strata(&self, args: &[&str]) -> CmdOut {
        run_cmd(&mut self.cmd(args), RUN_TIMEOUT)
    }

    /// `strata ARGS` as the user, which must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.strata(args);
        assert!(o.ok(), "{} strata {args:?}: {}", self.name, o.describe());
        o.stdout
    }

    fn rootfs(&self) -> &str {
        self.f.rootfs.to_str().unwrap()
    }

    /// `strata run --rm ROOTFS sh -c SCRIPT` with `flags`, which must succeed.
    fn sh(&self, flags: &[&str], script: &str) -> String {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(flags);
        a.extend([self.rootfs(), "sh", "-c", script]);
        self.ok(&a)
    }

    fn upper(&self, id: &str) -> PathBuf {
        self.f.containers().join(id).join("upper")
    }

    /// Nothing of any container left: no record or directory, no mount, no process.
    fn assert_nothing_left(&self) {
        self.f.assert_nothing_left();
        assert_eq!(
            processes_under(&self.f.base),
            Vec::<i32>::new(),
            "processes left"
        );
    }
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

#[test]
fn root_inside_is_the_caller_and_its_subordinate_ids_follow() {
    let r = rx(WITH_IDS, true);
    let out = r.sh(
        &["--hostname", "rootless"],
        "id -u; id -g; echo $$; hostname; cat /proc/self/uid_map /proc/self/gid_map",
    );
    let l: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let (u, g, s) = (r.uid.to_string(), r.gid.to_string(), SUB.to_string());
    assert_eq!(
        l,
        [
            vec!["0"],
            vec!["0"],
            vec!["1"],
            vec!["rootless"],
            vec!["0", &u, "1"],
            vec!["1", &s, "65536"],
            vec!["0", &g, "1"],
            vec!["1", &s, "65536"],
        ],
        "{out}"
    );
    // Written as root and as 1000:1000 inside; seen from the host in the upper.
    r.ok(&[
        "run",
        "--name",
        "owners",
        r.rootfs(),
        "sh",
        "-c",
        "echo r > /root/byroot",
    ]);
    let id = r.f.only_id();
    // A second container of the user writes as 1000:1000 in its own upper.
    r.ok(&[
        "run",
        "--name",
        "u1000",
        "-u",
        "1000:1000",
        r.rootfs(),
        "sh",
        "-c",
        "mkdir /tmp/d && echo u > /tmp/d/by1000 && id -u",
    ]);
    assert_eq!(owner(&r.upper(&id).join("root/byroot")), (r.uid, r.gid));
    let other =
        r.f.ids()
            .into_iter()
            .find(|i| *i != id)
            .expect("the second container");
    assert_eq!(
        owner(&r.upper(&other).join("tmp/d/by1000")),
        (SUB + 999, SUB + 999),
        "uid 1000 inside is subordinate id {} outside",
        SUB + 999
    );
    assert_eq!(
        owner(&r.upper(&other).join("tmp/d")),
        (SUB + 999, SUB + 999)
    );
    // rm removes an upper holding subordinate ids' files (the caller alone could not).
    r.ok(&["rm", "owners", "u1000"]);
    r.assert_nothing_left();
}

/// The namespace links of `/proc/self/ns`, then PID 1's, as `NAME LINK` lines.
const NS_SCRIPT: &str = "for n in user pid net mnt uts ipc cgroup; do \
                         echo \"$n $(readlink /proc/self/ns/$n) $(readlink /proc/1/ns/$n)\"; done";

#[test]
fn detached_lifecycle_exec_and_rm_leave_nothing() {
    let r = rx(WITH_IDS, true);
    let id = r
        .ok(&[
            "run",
            "-d",
            "--name",
            "life",
            r.rootfs(),
            "sh",
            "-c",
            "trap 'exit 3' TERM; echo started; echo kept > /root/kept; \
             while :; do sleep 0.2; done",
        ])
        .trim()
        .to_string();
    assert!(is_hex64(&id), "{id}");
    let st = r.f.state_of(&id).unwrap();
    assert_eq!(st["status"], "running", "{st}");
    let pid1 = st["pid"].as_i64().unwrap() as i32;
    assert!(proc_alive(pid1));
    // PID 1 runs as the caller on the host, in a user namespace of its own.
    let status = fs::read_to_string(format!("/proc/{pid1}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some(r.uid.to_string().as_str())
    );
    assert_ne!(
        readlink(format!("/proc/{pid1}/ns/user")),
        readlink("/proc/self/ns/user")
    );
    let ps = table(&r.ok(&["ps"]));
    assert_eq!(ps.len(), 2, "{ps:?}");
    assert_eq!(ps[1][0], id[..12]);
    assert!(ps[1].iter().any(|c| c.starts_with("Up ")), "{ps:?}");
    assert!(wait_until(Duration::from_secs(10), || r
        .ok(&["logs", "life"])
        .contains("started")));
    // exec: in every namespace of PID 1, the user namespace included, as its root.
    let out = r.ok(&[
        "exec",
        "life",
        "sh",
        "-c",
        &format!("id -u; echo $$; {NS_SCRIPT}"),
    ]);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "0", "{out}");
    assert_ne!(l[1], "1", "{out}");
    assert_eq!(l.len(), 9, "{out}");
    for line in &l[2..] {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 3, "{out}");
        assert_eq!(
            f[1], f[2],
            "exec is not in PID 1's {} namespace: {out}",
            f[0]
        );
    }
    let host_user = readlink(format!("/proc/{pid1}/ns/user"));
    assert!(l[2].ends_with(&host_user), "{} vs {host_user}", l[2]);
    let o = r.strata(&["exec", "life", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "{}", o.describe());
    // inspect
    let v: serde_json::Value = serde_json::from_str(&r.ok(&["inspect", "life"])).unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    assert_eq!(v[0]["State"]["Running"], true);
    assert_eq!(v[0]["State"]["Pid"], pid1);
    // stop: the trap's exit code; start: the file is still there.
    r.ok(&["stop", "-t", "20", "life"]);
    assert!(!proc_alive(pid1));
    let ps = r.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (3)"), "{ps}");
    assert_eq!(r.ok(&["wait", "life"]).trim(), "3");
    r.ok(&["start", "life"]);
    assert_eq!(r.ok(&["exec", "life", "cat", "/root/kept"]), "kept\n");
    r.ok(&["restart", "-t", "20", "life"]);
    assert_eq!(r.ok(&["exec", "life", "cat", "/root/kept"]), "kept\n");
    r.ok(&["kill", "life"]);
    assert_eq!(r.ok(&["wait", "life"]).trim(), "137");
    r.ok(&["start", "life"]);
    // rm -f: a running container goes, its monitor and daemon with it.
    r.ok(&["rm", "-f", "life"]);
    assert!(!r.f.containers().join(&id).exists());
    r.assert_nothing_left();
}

#[test]
fn cp_both_ways_running_and_stopped() {
    let r = rx(WITH_IDS, true);
    let home = r.f.base.join("home");
    fs::write(home.join("in.txt"), "from the host\n").unwrap();
    lchown(&home.join("in.txt"), r.uid, r.gid).unwrap();
    r.ok(&[
        "run",
        "-d",
        "--name",
        "files",
        r.rootfs(),
        "sh",
        "-c",
        "echo inside > /root/made; while :; do sleep 0.2; done",
    ]);
    wait_until(Duration::from_secs(10), || {
        r.strata(&["exec", "files", "test", "-f", "/root/made"])
            .ok()
    });
    // Running: in (relative host path), then out.
    r.ok(&["cp", "in.txt", "files:/root/in.txt"]);
    assert_eq!(
        r.ok(&["exec", "files", "cat", "/root/in.txt"]),
        "from the host\n"
    );
    let id = r.f.only_id();
    // Owned by the caller on the host, so by root inside, as Docker's cp leaves it.
    assert_eq!(owner(&r.upper(&id).join("root/in.txt")), (r.uid, r.gid));
    r.ok(&["cp", "files:/root/made", "made.txt"]);
    assert_eq!(read(home.join("made.txt")), "inside\n");
    assert_eq!(owner(&home.join("made.txt")), (r.uid, r.gid));
    // Stopped: out and in, through a mount of its own that is gone after.
    r.ok(&["stop", "-t", "1", "files"]);
    r.ok(&[
        "cp",
        "files:/root/in.txt",
        &r.f.base.join("out/back.txt").to_string_lossy(),
    ]);
    assert_eq!(read(r.f.base.join("out/back.txt")), "from the host\n");
    r.ok(&["cp", "in.txt", "files:/root/later.txt"]);
    assert_eq!(
        processes_under(&r.f.base),
        Vec::<i32>::new(),
        "cp left a daemon"
    );
    let id = r.f.only_id();
    assert_eq!(read(r.upper(&id).join("root/later.txt")), "from the host\n");
    assert_eq!(owner(&r.upper(&id).join("root/later.txt")), (r.uid, r.gid));
    r.ok(&["start", "files"]);
    assert_eq!(
        r.ok(&["exec", "files", "cat", "/root/later.txt"]),
        "from the host\n"
    );
    r.ok(&["rm", "-f", "files"]);
    r.assert_nothing_left();
}

#[test]
fn without_subordinate_ids_the_caller_alone_is_root() {
    let r = rx(WITHOUT_IDS, false);
    let out = r.sh(
        &[],
        "id -u; cat /proc/self/uid_map /proc/self/setgroups; echo x > /root/x",
    );
    let l: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let u = r.uid.to_string();
    assert_eq!(l, [vec!["0"], vec!["0", &u, "1"], vec!["deny"]], "{out}");
    let id = r
        .ok(&[
            "run",
            "-d",
            "--name",
            "alone",
            r.rootfs(),
            "sh",
            "-c",
            "echo x > /root/x; sleep 30",
        ])
        .trim()
        .to_string();
    assert!(wait_until(Duration::from_secs(10), || r
        .upper(&id)
        .join("root/x")
        .exists()));
    assert_eq!(owner(&r.upper(&id).join("root/x")), (r.uid, r.gid));
    assert_eq!(r.ok(&["exec", "alone", "id", "-u"]), "0\n");
    r.ok(&["rm", "-f", "alone"]);
    // A uid the namespace cannot hold: refused with one line, nothing left.
    let o = r.strata(&["run", "--rm", "-u", "1000", r.rootfs(), "id"]);
    assert_eq!(o.status.code(), Some(125), "{}", o.describe());
    assert_one_line_error(&o, &["uid 1000 is not mapped", "subordinate"], "-u 1000");
    r.assert_nothing_left();
}

#[test]
fn resource_limits_are_refused_with_one_line() {
    let r = rx(WITH_IDS, true);
    for (flag, value) in [
        ("--memory", "16m"),
        ("--cpus", "0.5"),
        ("--pids-limit", "10"),
    ] {
        let o = r.strata(&["run", "--rm", flag, value, r.rootfs(), "true"]);
        assert_eq!(o.status.code(), Some(125), "{}", o.describe());
        assert_one_line_error(&o, &[flag, "rootless"], flag);
        let o = r.strata(&["create", flag, value, r.rootfs(), "true"]);
        assert_one_line_error(&o, &[flag, "rootless"], flag);
    }
    r.assert_nothing_left();
}

#[test]
fn network_none_has_only_lo_and_host_shares_the_hosts() {
    let r = rx(WITH_IDS, true);
    let none = r.sh(&["--network", "none"], "ls /sys/class/net");
    assert_eq!(none, "lo\n");
    let host = r.sh(
        &["--network", "host"],
        "ls /sys/class/net; touch /sys/x 2>&1 || true",
    );
    let mut want: Vec<String> = fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    want.sort();
    let got: Vec<&str> = host.lines().filter(|l| !l.contains("touch")).collect();
    assert_eq!(got, want, "{host}");
    assert!(host.contains("Read-only file system"), "{host}");
    r.assert_nothing_left();
}

#[test]
fn a_monitor_killed_with_9_leaves_a_container_rm_removes_whole() {
    let r = rx(WITH_IDS, true);
    let id = r
        .ok(&["run", "-d", "--name", "orphan", r.rootfs(), "sleep", "300"])
        .trim()
        .to_string();
    let st = r.f.state_of(&id).unwrap();
    let (monitor, pid1) = (
        st["monitor_pid"].as_i64().unwrap() as i32,
        st["pid"].as_i64().unwrap() as i32,
    );
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(10), || !proc_alive(pid1)));
    let ps = r.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (137)"), "{ps}");
    // The root's daemon is left in the dead monitor's mount namespace, where no unmount
    // from here reaches: its record names it, and rm stops it before the upper goes.
    let daemon = r.f.state_of(&id).unwrap()["daemon_pid"].as_i64().unwrap() as i32;
    assert!(daemon > 0 && proc_alive(daemon), "daemon {daemon}");
    r.ok(&["rm", "orphan"]);
    assert!(!proc_alive(daemon));
    r.assert_nothing_left();
}

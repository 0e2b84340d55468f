//! Containers: capabilities, users, workdir and environment, pivot_root against chroot, and
//! the cgroup limits (memory with its OOM kill, cpu, pids), as Docker gives them.

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
use common::*;
use fixture::*;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

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
    let envf = f.base.join("env.list");
    fs::write(&envf, "# comment\n\nA=from-file\nB=two words\n").unwrap();
    let out = f.sh(
        &[
            "-w",
            "/srv/app",
            "--env-file",
            envf.to_str().unwrap(),
            "-e",
            "A=1",
        ],
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
    let o = f.verb(&["inspect", "oom"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v[0]["State"]["OOMKilled"], true, "{}", o.stdout);
    assert_eq!(v[0]["State"]["ExitCode"], 137);
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

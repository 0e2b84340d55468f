//! The launcher's order of steps and its failures, against the recording fake.

use std::path::PathBuf;

use nix::errno::Errno;

use super::fake::Recorder;
use super::*;

fn spec() -> Spec {
    Spec {
        rootfs: PathBuf::from("/c/merged"),
        args: vec!["sh".into(), "-c".into(), "echo hi".into()],
        env: vec!["A=1".into()],
        cwd: PathBuf::from("/"),
        user: None,
        hostname: "0123456789ab".into(),
        network: Network::None,
        chroot: false,
        init: false,
        caps: caps::mask_of(caps::DOCKER_DEFAULT),
        no_new_privileges: false,
        console: None,
        tty: false,
        read_only: false,
        writable: vec![],
        userns: None,
    }
}

fn ordered(r: &Recorder, steps: &[&str]) {
    let pos: Vec<usize> = steps.iter().map(|s| r.pos(s)).collect();
    for w in pos.windows(2).zip(steps.windows(2)) {
        assert!(
            w.0[0] < w.0[1],
            "{:?} should come before {:?}: {:#?}",
            w.1[0],
            w.1[1],
            r.lines()
        );
    }
}

#[test]
fn read_only_root_keeps_writable_grafts_and_flags() {
    let r = Recorder::new();
    enter(&r, &spec()).unwrap();
    assert!(!r.has("mount_flags"));
    let r = Recorder::new();
    let s = Spec {
        read_only: true,
        writable: vec!["/data".into(), "/data/sub".into()],
        ..spec()
    };
    enter(&r, &s).unwrap();
    ordered(
        &r,
        &[
            "mount tmpfs /c/merged/dev tmpfs",
            "mount /c/merged/data /c/merged/data - MS_BIND | MS_REC",
            "mount /c/merged/data/sub /c/merged/data/sub - MS_BIND | MS_REC",
            "mount_flags /c/merged",
            "mount - /c/merged - MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND",
            "pivot_root . .",
        ],
    );
}

#[test]
fn steps_run_in_order() {
    let r = Recorder::new();
    let cmd = enter(&r, &spec()).unwrap();
    assert_eq!(cmd.path, PathBuf::from("/bin/sh"));
    ordered(
        &r,
        &[
            "unshare",
            "loopback_up",
            "mount - / - MS_REC | MS_PRIVATE",
            "mount /c/merged /c/merged - MS_BIND | MS_REC",
            "mount proc /c/merged/proc proc",
            "mount sysfs /c/merged/sys sysfs",
            "mount tmpfs /c/merged/dev tmpfs",
            "mount /dev/null /c/merged/dev/null",
            "mount devpts /c/merged/dev/pts devpts",
            "symlink /proc/self/fd /c/merged/dev/fd",
            "chdir /c/merged",
            "pivot_root . .",
            "umount2 . MNT_DETACH",
            "mount /dev/null /proc/kcore",
            "mount /proc/sys /proc/sys",
            "sethostname 0123456789ab",
            "drop_bounding 0xa80425fb",
            "setgroups",
            "setgid 0",
            "setuid 0",
            "capset 0xa80425fb 0xa80425fb 0x0",
        ],
    );
    // Nothing after the capabilities but the workdir and the parent death signal, which a
    // credential change clears: the exec is the caller's.
    let l = r.lines();
    assert_eq!(
        l[l.len() - 2..],
        ["chdir /".to_string(), "parent_death_signal 9".to_string()]
    );
}

#[test]
fn namespaces_for_each_network_mode() {
    let r = Recorder::new();
    enter(&r, &spec()).unwrap();
    let u = &r.lines()[0];
    for ns in [
        "CLONE_NEWNS",
        "CLONE_NEWUTS",
        "CLONE_NEWIPC",
        "CLONE_NEWCGROUP",
        "CLONE_NEWNET",
    ] {
        assert!(u.contains(ns), "{u}");
    }
    let r = Recorder::new();
    let s = Spec {
        network: Network::Host,
        ..spec()
    };
    enter(&r, &s).unwrap();
    assert!(!r.lines()[0].contains("CLONE_NEWNET"));
    assert!(!r.has("loopback_up"));
    // A fresh sysfs all the same: a bind of the host's /sys would bring its writable
    // submounts (/sys/fs/cgroup) along.
    assert!(r.has("mount sysfs /c/merged/sys sysfs MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC"));
    assert!(!r.has("mount /sys /c/merged/sys"));
    assert_eq!(
        namespaces::clone_flags(),
        nix::sched::CloneFlags::CLONE_NEWPID
    );
}

#[test]
fn dev_holds_only_dockers_nodes() {
    let r = Recorder::new();
    enter(&r, &spec()).unwrap();
    let binds: Vec<String> = r
        .lines()
        .into_iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("mount /dev/")?;
            let (node, _) = rest.split_once(' ')?;
            l.contains("/c/merged/dev/").then(|| node.to_string())
        })
        .collect();
    assert_eq!(binds, ["null", "zero", "full", "random", "urandom", "tty"]);
    assert!(
        !r.has("touch /c/merged/dev/console"),
        "no console without a terminal"
    );
    assert!(r.has(
        "mount devpts /c/merged/dev/pts devpts MS_NOSUID | MS_NOEXEC newinstance,ptmxmode=0666,mode=0620,gid=5"
    ));
    assert!(r.has("mount mqueue /c/merged/dev/mqueue mqueue"));
    assert!(r.has("mount shm /c/merged/dev/shm tmpfs"));
    let r = Recorder::new();
    let s = Spec {
        console: Some("/dev/pts/7".into()),
        ..spec()
    };
    enter(&r, &s).unwrap();
    assert!(r.has("mount /dev/pts/7 /c/merged/dev/console - MS_BIND"));
    // -t: the container's own pty, made in its devpts once that is mounted, is the console.
    let r = Recorder::new();
    let s = Spec {
        tty: true,
        ..spec()
    };
    enter(&r, &s).unwrap();
    ordered(
        &r,
        &[
            "mount devpts /c/merged/dev/pts devpts",
            "open_console /c/merged/dev/pts",
            "mount /c/merged/dev/pts/0 /c/merged/dev/console - MS_BIND",
        ],
    );
}

#[test]
fn chroot_instead_of_pivot_root() {
    let r = Recorder::new();
    let s = Spec {
        chroot: true,
        ..spec()
    };
    enter(&r, &s).unwrap();
    assert!(!r.has("pivot_root"));
    assert!(!r.has("umount2"));
    ordered(
        &r,
        &[
            "chdir /c/merged",
            "chroot .",
            "chdir /",
            "mount /dev/null /proc/kcore",
        ],
    );
}

#[test]
fn masks_skip_what_is_missing_and_cover_directories_with_tmpfs() {
    let r = Recorder::new()
        .failing("mount /dev/null /proc/timer_stats", Errno::ENOENT)
        .failing("mount /dev/null /proc/scsi", Errno::ENOTDIR);
    enter(&r, &spec()).unwrap();
    assert!(r.has("mount tmpfs /proc/scsi tmpfs MS_RDONLY"));
    assert!(!r.has("mount tmpfs /proc/timer_stats"));
    assert!(r.has(
        "mount - /proc/sys - MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_REMOUNT | MS_BIND"
    ));
}

#[test]
fn a_non_root_user_keeps_no_capabilities() {
    let r = Recorder::new();
    let s = Spec {
        user: Some("1000:1000".into()),
        ..spec()
    };
    enter(&r, &s).unwrap();
    ordered(
        &r,
        &[
            "drop_bounding 0xa80425fb",
            "keep_caps true",
            "setgroups [1000]",
            "setgid 1000",
            "setuid 1000",
            "keep_caps false",
            "capset 0x0 0x0 0x0",
        ],
    );
}

#[test]
fn users_and_groups_by_name_from_the_containers_files() {
    let mut r = Recorder::new();
    r.files.insert(
        "/etc/passwd".into(),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1002:app:/home/app:/bin/sh\n".into(),
    );
    r.files.insert(
        "/etc/group".into(),
        "root:x:0:\napp:x:1002:\nwheel:x:10:app,root\n".into(),
    );
    let u = process::resolve_user(&r, Some("app")).unwrap();
    assert_eq!(
        (u.uid, u.gid, u.groups.clone(), u.home.as_str()),
        (1001, 1002, vec![1002, 10], "/home/app")
    );
    let u = process::resolve_user(&r, Some("1001:wheel")).unwrap();
    assert_eq!((u.uid, u.gid), (1001, 10));
    // A uid with no passwd entry: gid 0 unless given, as runc.
    let u = process::resolve_user(&r, Some("1234")).unwrap();
    assert_eq!((u.uid, u.gid, u.groups.clone()), (1234, 0, vec![0]));
    let e = process::resolve_user(&r, Some("nobody")).unwrap_err();
    assert_eq!(e.code, EXIT_FAILED);
    assert!(e.msg.contains("unable to find user nobody"), "{}", e.msg);
}

#[test]
fn environment_is_completed_as_docker_does() {
    let r = Recorder::new();
    let cmd = enter(&r, &spec()).unwrap();
    let env: Vec<String> = cmd
        .env
        .iter()
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        env,
        [
            format!("PATH={}", process::DEFAULT_PATH),
            "HOSTNAME=0123456789ab".into(),
            "A=1".into(),
            "HOME=/".into()
        ]
    );
}

#[test]
fn command_lookup_gives_dockers_exit_codes() {
    let mut r = Recorder::new();
    r.not_exec.insert("/etc/passwd".into());
    r.not_exec.insert("/usr/bin/data".into());
    let with = |args: &[&str]| Spec {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..spec()
    };
    let e = enter(&r, &with(&["nope"])).unwrap_err();
    assert_eq!(e.code, EXIT_NOT_FOUND);
    assert_eq!(e.msg, "exec: \"nope\": executable file not found in $PATH");
    let e = enter(&r, &with(&["/etc/passwd"])).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (
            EXIT_NOT_EXECUTABLE,
            "exec: \"/etc/passwd\": permission denied"
        )
    );
    assert_eq!(
        enter(&r, &with(&["data"])).unwrap_err().code,
        EXIT_NOT_EXECUTABLE
    );
    assert_eq!(
        enter(&r, &with(&["/no/such"])).unwrap_err().code,
        EXIT_NOT_FOUND
    );
    assert_eq!(
        enter(&r, &with(&["env"])).unwrap().path,
        PathBuf::from("/usr/bin/env")
    );
    // A failing exec (a script whose interpreter is missing, say) maps the same way.
    let cmd = enter(&r, &spec()).unwrap();
    let r = Recorder::new().failing("execve", Errno::ENOENT);
    assert_eq!(process::exec(&r, &cmd).code, EXIT_NOT_FOUND);
    let r = Recorder::new().failing("execve", Errno::EACCES);
    assert_eq!(process::exec(&r, &cmd).code, EXIT_NOT_EXECUTABLE);
}

#[test]
fn a_failed_step_stops_the_sequence_with_125() {
    let r = Recorder::new().failing("pivot_root", Errno::EINVAL);
    let e = enter(&r, &spec()).unwrap_err();
    assert_eq!(e.code, EXIT_FAILED);
    assert!(e.msg.starts_with("pivot_root /c/merged"), "{}", e.msg);
    assert!(r.lines().last().unwrap().starts_with("pivot_root"));
    assert!(!r.has("sethostname"));
}

#[test]
fn no_new_privileges_comes_last() {
    let r = Recorder::new();
    let s = Spec {
        no_new_privileges: true,
        ..spec()
    };
    enter(&r, &s).unwrap();
    ordered(&r, &["capset", "clear_ambient", "no_new_privs"]);
    let l = r.lines();
    assert_eq!(
        l[l.len() - 3..],
        [
            "no_new_privs".to_string(),
            "chdir /".to_string(),
            "parent_death_signal 9".to_string()
        ]
    );
}

#[test]
fn failure_reports_round_trip() {
    let f = Failure {
        code: 127,
        msg: "exec: \"x\": executable file not found in $PATH".into(),
    };
    let line = format!("{} {}", f.code, f.msg);
    assert_eq!(process::parse_report(&line), Some(f));
    assert_eq!(process::parse_report(""), None);
}

#[test]
fn exec_joins_the_namespaces_then_the_root_then_drops_privileges() {
    let r = Recorder::new();
    let ns: Vec<_> = exec::JOIN
        .iter()
        .enumerate()
        .map(|(i, (_, f))| (10 + i as i32, *f))
        .collect();
    let s = Spec {
        user: Some("1000:1000".into()),
        cwd: "/tmp".into(),
        ..spec()
    };
    let cmd = exec::enter(&r, &ns, 42, &s).unwrap();
    assert_eq!(cmd.path, PathBuf::from("/bin/sh"));
    ordered(
        &r,
        &[
            "setns 10 CLONE_NEWIPC",
            "setns 11 CLONE_NEWUTS",
            "setns 12 CLONE_NEWNET",
            "setns 13 CLONE_NEWCGROUP",
            "setns 14 CLONE_NEWNS",
            "fchdir 42",
            "chroot .",
            "drop_bounding 0xa80425fb",
            "setuid 1000",
            "capset 0x0 0x0 0x0",
            "chdir /tmp",
            "parent_death_signal 9",
        ],
    );
    // Nothing is mounted or unshared: the container's setup is already there.
    assert!(!r.has("unshare") && !r.lines().iter().any(|l| l.starts_with("mount ")));
    let r = Recorder::new().failing("setns 12", Errno::EINVAL);
    let e = exec::enter(&r, &ns, 42, &s).unwrap_err();
    assert_eq!(e.code, EXIT_FAILED);
    assert!(
        e.msg.starts_with("join the container's net namespace"),
        "{}",
        e.msg
    );
}

fn rootless(subordinate: bool) -> Option<userns::UserNs> {
    let sub: &[(u32, u32)] = if subordinate { &[(100000, 65536)] } else { &[] };
    Some(userns::UserNs {
        uids: userns::layout(1000, sub),
        gids: userns::layout(1000, sub),
        subordinate,
    })
}

#[test]
fn rootless_host_network_binds_the_hosts_sys_read_only() {
    let r = Recorder::new();
    let s = Spec {
        network: Network::Host,
        userns: rootless(true),
        ..spec()
    };
    enter(&r, &s).unwrap();
    assert!(
        !r.lines().iter().any(|l| l.contains(" sysfs ")),
        "a user namespace may not mount sysfs for the host's network: {:#?}",
        r.lines()
    );
    ordered(
        &r,
        &[
            "mount /sys /c/merged/sys - MS_BIND | MS_REC",
            "mount_flags /c/merged/sys",
            // Read-only, with the flags the fake reports for it kept.
            "mount - /c/merged/sys - MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND",
        ],
    );
    // Its own network namespace: its own sysfs, as for root.
    let r = Recorder::new();
    let s = Spec {
        userns: rootless(true),
        ..spec()
    };
    enter(&r, &s).unwrap();
    assert!(r.has("mount sysfs /c/merged/sys sysfs"));
}

#[test]
fn rootless_without_subordinate_ids_skips_what_only_one_id_cannot_have() {
    let r = Recorder::new();
    let s = Spec {
        userns: rootless(false),
        ..spec()
    };
    enter(&r, &s).unwrap();
    let pts = r.lines()[r.pos("mount devpts")].clone();
    assert!(
        pts.ends_with("newinstance,ptmxmode=0666,mode=0620"),
        "gid 5 is not mapped: {pts}"
    );
    assert!(!r.has("setgroups"), "setgroups is denied: {:#?}", r.lines());
    assert!(r.has("setuid 0"));
    // With subordinate ids: the tty group and setgroups, as for root.
    let r = Recorder::new();
    let s = Spec {
        userns: rootless(true),
        user: Some("1000".into()),
        ..spec()
    };
    enter(&r, &s).unwrap();
    assert!(r.lines()[r.pos("mount devpts")].ends_with(",gid=5"));
    ordered(&r, &["setgroups [0]", "setuid 1000"]);
    // A uid the namespace does not hold: one line, before any credential changes.
    let r = Recorder::new();
    let s = Spec {
        userns: rootless(false),
        user: Some("1000".into()),
        ..spec()
    };
    let e = enter(&r, &s).unwrap_err();
    assert_eq!(e.code, EXIT_FAILED);
    assert!(e.msg.starts_with("uid 1000 is not mapped"), "{}", e.msg);
    assert!(!r.has("setuid") && !r.has("setgid"));
}

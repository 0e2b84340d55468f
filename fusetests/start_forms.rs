//! The three ways to start strata (strata mount, the fuse-overlayfs command line, mount -t
//! fuse.strata through mount.fuse3), foreground mode, and the ways to stop it (strata umount,
//! fusermount3 -u, umount): the mount is live when the command returns, and the daemon exits
//! once unmounted.

mod common;
use common::*;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn fixture() -> Builder {
    Builder::new(2)
        .lower(0, |l| {
            l.file("hello", "hello from lower0\n");
        })
        .lower(1, |l| {
            l.file("gone", "gone");
            l.file("d/x", "x");
        })
}

const INO_NAMES: [&str; 4] = ["hello", "new", "d/x", "d"];

/// Ops a user would try right after mounting; checks the host view of the upper.
/// Returns st_ino of INO_NAMES, to check the inode table survives the unmount.
fn exercise(m: &Mount) -> Vec<u64> {
    m.run(|c| {
        assert_eq!(read(c.p("hello")), "hello from lower0\n");
        assert_eq!(names(c.p("")), set(&["hello", "gone", "d"]));
        write(c.p("new"), "new");
        rm(c.p("gone"));
        append(c.p("d/x"), "+");
        assert_eq!(read(c.u("new")), "new");
        assert_eq!(read(c.u("d/x")), "x+");
        assert_upper_whiteout(&c.u(""), "gone");
        INO_NAMES.iter().map(|n| ino(c.p(n))).collect()
    })
}

/// After an unmount by other means than `strata umount`: the daemon exits, and the inode
/// table was flushed (st_ino is the same when strata mounts the dirs again).
fn assert_clean_exit_and_same_inos(m: &mut Mount, inos: Vec<u64>) {
    assert!(
        wait_until(Duration::from_secs(15), || strata_pids(&m.mnt).is_empty()),
        "the daemon did not exit after unmount: pids {:?}",
        strata_pids(&m.mnt)
    );
    m.mount_now();
    let again: Vec<u64> = m.run(|c| INO_NAMES.iter().map(|n| ino(c.p(n))).collect());
    assert_eq!(
        inos, again,
        "st_ino of {INO_NAMES:?} changed across the unmount"
    );
}

#[test]
fn strata_mount_is_live_on_return_and_strata_umount_waits_for_the_daemon() {
    let mut m = fixture().mount(); // the harness checks the mount table right after return
    assert!(
        !strata_pids(&m.mnt).is_empty(),
        "no daemon process is serving {}",
        m.mnt.display()
    );
    exercise(&m);
    // Asserts: exit 0, not mounted, no daemon left. Then it mounts again on the same dirs.
    m.unmount();
    m.mount_now();
    m.run(|c| assert_eq!(read(c.p("new")), "new"));
}

#[test]
fn fuse_overlayfs_command_line_and_fusermount3_u() {
    let mut m = fixture().prepare();
    let mut cmd = m.strata_cmd();
    cmd.arg("-o").arg(m.option_string()).arg(&m.mnt);
    let desc = format!("{cmd:?}");
    let out = run_cmd(&mut cmd, CMD_TIMEOUT);
    assert!(out.ok(), "{desc} failed:\n{}", out.describe());
    assert!(
        fuse_mounted(&m.mnt),
        "{desc} returned 0 but nothing is mounted at {}",
        m.mnt.display()
    );
    m.adopt_mount();
    let inos = exercise(&m);
    run_ok(Command::new("fusermount3").arg("-u").arg(&m.mnt));
    assert!(!fuse_mounted(&m.mnt));
    m.forget_mount();
    assert_clean_exit_and_same_inos(&mut m, inos);
}

/// mount.fuse3's `strata SOURCE MNT -o ...` with a SOURCE named like one of strata's verbs.
#[test]
fn a_mount_source_named_like_a_verb_is_still_a_mount() {
    for source in ["run", "ps", "image"] {
        let mut m = fixture().prepare();
        let mut cmd = m.strata_cmd();
        cmd.arg(source).arg(&m.mnt).arg("-o").arg(m.option_string());
        let desc = format!("{cmd:?}");
        let out = run_cmd(&mut cmd, CMD_TIMEOUT);
        assert!(out.ok(), "{desc} failed:\n{}", out.describe());
        assert!(fuse_mounted(&m.mnt), "{desc}: nothing is mounted");
        m.adopt_mount();
        exercise(&m);
        m.unmount();
    }
}

#[test]
fn mount_t_fuse_strata_through_mount_fuse3_and_umount() {
    let mut m = fixture().prepare();
    // mount.fuse3 runs `strata overlay MNT -o OPTS` through sh, found on PATH.
    let bin = m.base.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(strata_bin(), bin.join("strata")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("mount");
    cmd.args(["-t", "fuse.strata", "overlay"])
        .arg(&m.mnt)
        .arg("-o")
        .arg(m.option_string())
        .env("PATH", &path);
    cmd.env_remove("RUST_LOG");
    let desc = format!("{cmd:?}");
    let out = run_cmd(&mut cmd, CMD_TIMEOUT);
    assert!(out.ok(), "{desc} failed:\n{}", out.describe());
    let types = mounts_at(&m.mnt);
    assert!(
        fuse_mounted(&m.mnt),
        "{desc} returned 0 but the mounts at {} are {types:?}",
        m.mnt.display()
    );
    m.adopt_mount();
    let inos = exercise(&m);
    run_ok(Command::new("umount").arg(&m.mnt));
    assert!(!fuse_mounted(&m.mnt));
    m.forget_mount();
    assert_clean_exit_and_same_inos(&mut m, inos);
}

#[test]
fn foreground_mode_serves_until_unmounted() {
    let mut m = fixture().prepare();
    let errf = m.base.join("fg.stderr");
    let mut cmd = m.strata_cmd();
    cmd.arg("mount")
        .arg("-f")
        .arg("-o")
        .arg(m.option_string())
        .arg(&m.mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errf).unwrap());
    let mut child = cmd.spawn().expect("spawn strata mount -f");
    let live = wait_until(Duration::from_secs(30), || {
        fuse_mounted(&m.mnt) || child.try_wait().map(|s| s.is_some()).unwrap_or(true)
    });
    if !fuse_mounted(&m.mnt) {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "strata mount -f did not mount within 30s (live={live}); stderr:\n{}",
            std::fs::read_to_string(&errf).unwrap_or_default()
        );
    }
    m.adopt_mount();
    assert!(
        child.try_wait().unwrap().is_none(),
        "strata mount -f returned while the mount is live"
    );
    let inos = exercise(&m);
    run_ok(Command::new("fusermount3").arg("-u").arg(&m.mnt));
    m.forget_mount();
    let exited = wait_until(Duration::from_secs(20), || {
        child.try_wait().map(|s| s.is_some()).unwrap_or(true)
    });
    if !exited {
        let _ = child.kill();
        panic!("strata mount -f did not exit after fusermount3 -u");
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "strata mount -f exited with {status} after a clean unmount; stderr:\n{}",
        std::fs::read_to_string(&errf).unwrap_or_default()
    );
    assert_clean_exit_and_same_inos(&mut m, inos);
}

#[test]
fn allow_other_and_default_permissions_are_on_by_default_as_root() {
    let b = fixture().lower(0, |l| {
        l.file_mode("private", "root only\n", 0o600);
    });
    std::fs::set_permissions(b.base(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let user_cat = |p: std::path::PathBuf| {
        run_cmd(
            &mut as_test_user(&[OsStr::new("cat"), p.as_os_str()]),
            CMD_TIMEOUT,
        )
    };
    let mut m = b.prepare();
    // Mounted by root with the defaults, then with the options spelled out.
    for explicit in [false, true] {
        if explicit {
            m.opts.push("allow_other".into());
            m.opts.push("default_permissions".into());
        }
        m.mount_now();
        // allow_other: other users get in ...
        let out = user_cat(m.p("hello"));
        assert!(
            out.ok() && out.stdout == "hello from lower0\n",
            "another user cannot read a world-readable file (options {:?}):\n{}",
            m.opts,
            out.describe()
        );
        // ... and default_permissions applies the file modes to them.
        let out = user_cat(m.p("private"));
        assert!(
            !out.ok() && out.stderr.contains("Permission denied"),
            "another user read a 0600 root file (options {:?}):\n{}",
            m.opts,
            out.describe()
        );
        m.unmount();
    }
}

#[test]
fn strata_umount_of_something_else_is_an_error() {
    let m = fixture().prepare();
    let out = run_cmd(
        Command::new(strata_bin()).arg("umount").arg(&m.mnt),
        CMD_TIMEOUT,
    );
    assert!(!out.ok(), "strata umount of an unmounted dir succeeded");
    assert_eq!(
        out.stderr.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn the_daemon_keeps_none_of_the_callers_descriptors() {
    // `flock LOCK strata mount ...` holds LOCK while strata mount runs; once it returns the
    // lock must be free, not held for the mount's life by a daemon that inherited it.
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let mut m = fixture().prepare();
    let lock_path = m.base.join("lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let fd = lock.as_raw_fd();
    let mut cmd = m.mount_cmd();
    unsafe {
        cmd.pre_exec(move || {
            // As flock(1) passes it: open in the command, not close-on-exec.
            if libc::dup2(fd, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = try_run_cmd(&mut cmd, Duration::from_secs(60)).expect("strata mount hung");
    if fuse_mounted(&m.mnt) {
        m.adopt_mount();
    }
    assert!(out.ok(), "{}", out.describe());
    drop(lock);
    let again = std::fs::File::open(&lock_path).unwrap();
    assert_eq!(
        unsafe { libc::flock(again.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0,
        "the caller's lock is still held after strata mount returned (by pids {:?})",
        strata_pids(&m.mnt)
    );
    m.run(|c| assert_eq!(read(c.p("hello")), "hello from lower0\n"));
}

//! Without upperdir/workdir (or with `ro`) the mount is read-only: reads work, every write
//! gets EROFS and nothing on the host changes.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::DirEntryExt;
use std::os::unix::fs::MetadataExt;

fn every_write_is_erofs(c: &Ctx) {
    assert_every_write_erofs(&c.mnt);
    assert_eq!(read(c.p("f")), "f", "the file changed on a read-only mount");
}

#[test]
fn without_upper_every_write_is_erofs() {
    let m = Builder::new(2)
        .read_only()
        .lower(0, |l| {
            l.file("f", "f").xattr("f", "user.orig", b"o");
            l.symlink("s", "f");
            l.file("d/x", "x");
        })
        .lower(1, |l| {
            l.file("d/y", "y");
            l.dir("empty");
            l.file("bottom", "b");
        })
        .prepare();
    let before: Vec<_> = m.lowers.iter().map(|l| host_snapshot(l)).collect();
    let mut m = m;
    m.mount_now();
    m.run(|c| {
        assert_eq!(read(c.p("f")), "f");
        assert_eq!(readlink(c.p("s")), "f");
        assert_eq!(names(c.p("d")), set(&["x", "y"]));
        assert_eq!(read(c.p("bottom")), "b");
        assert_eq!(lgetxattr(&c.p("f"), "user.orig").unwrap(), b"o");
        every_write_is_erofs(&c);
        // Inode numbers are consistent on a read-only mount too (in-memory table).
        for e in fs::read_dir(c.p("d")).unwrap() {
            let e = e.unwrap();
            assert_eq!(
                e.ino(),
                lstat(e.path()).ino(),
                "d_ino != st_ino for {}",
                e.path().display()
            );
        }
        let i = ino(c.p("d/y"));
        assert_eq!(ino(c.p("d/y")), i);
    });
    for (i, b) in before.iter().enumerate() {
        assert_snapshot_unchanged(b, &m.lowers[i], &format!("lower{i}"));
    }
}

#[test]
fn ro_option_with_an_upper_is_read_only_and_writes_nothing() {
    let m = Builder::new(1)
        .opt("ro")
        .upper(|u| {
            u.file("in_upper", "u");
        })
        .lower(0, |l| {
            l.file("f", "f").xattr("f", "user.orig", b"o");
            l.file("d/x", "x");
            l.dir("empty");
        })
        .prepare();
    let upper_before = host_snapshot(m.upper.as_ref().unwrap());
    let mut m = m;
    m.mount_now();
    m.run(|c| {
        assert_eq!(read(c.p("in_upper")), "u");
        every_write_is_erofs(&c);
    });
    m.unmount();
    assert_snapshot_unchanged(
        &upper_before,
        m.upper.as_ref().unwrap(),
        "the upper of an ro mount",
    );
}

fn is_read_only(p: &std::path::Path) -> bool {
    statvfs(p).unwrap().f_flag & libc::ST_RDONLY != 0
}

fn remount_fixture() -> Builder {
    Builder::new(1).lower(0, |l| {
        l.file("f", "f").xattr("f", "user.orig", b"o");
        l.file("d/x", "x");
        l.dir("empty");
    })
}

/// `mount -o remount,ro` turns a read-write strata mount read-only, as it turns kernel
/// overlayfs (xfstests generic/294, generic/306): every write is EROFS and nothing reaches the
/// upper; `remount,rw` makes it writable again.
#[test]
fn mount_o_remount_ro_makes_the_mount_read_only_and_rw_writable_again() {
    let m = remount_fixture().mount();
    m.run(|c| write(c.p("before"), "b"));
    let upper_before = host_snapshot(m.upper.as_ref().unwrap());
    remount_o(&m.mnt, "remount,ro", "");
    assert!(
        is_read_only(&m.mnt),
        "statvfs: not read-only after remount,ro"
    );
    m.run(|c| {
        every_write_is_erofs(&c);
        assert_eq!(read(c.p("before")), "b");
    });
    assert_snapshot_unchanged(&upper_before, m.upper.as_ref().unwrap(), "upper");
    remount_o(&m.mnt, "remount,rw", "");
    assert!(!is_read_only(&m.mnt), "statvfs: read-only after remount,rw");
    m.run(|c| {
        write(c.p("after"), "a");
        append(c.p("f"), "+");
        assert_eq!(read(c.u("after")), "a");
        assert_eq!(read(c.u("f")), "f+");
    });
}

/// A mount started `ro` over an upper takes writes after `remount,rw`, into its upper. (The
/// writes are made where the remount ran: the read-only flag of the mount made first, in this
/// test's mount namespace, is that mount's own, which the remount's namespace cannot clear.)
#[test]
fn a_mount_started_ro_writes_after_remount_rw() {
    let m = remount_fixture().opt("ro").mount();
    m.run(|c| every_write_is_erofs(&c));
    let mnt = m.mnt.display().to_string();
    remount_o(
        &m.mnt,
        "remount,rw",
        &format!("printf n > '{mnt}/new' && rm '{mnt}/d/x'"),
    );
    m.run(|c| {
        assert_eq!(read(c.u("new")), "n");
        assert_eq!(read(c.p("new")), "n");
        assert!(!exists(c.p("d/x")));
        assert_upper_whiteout(&c.u(""), "d/x");
    });
    remount_o(&m.mnt, "remount,ro", "");
    m.run(|c| every_write_is_erofs(&c));
}

/// Per-mount flags given with remount reach the kernel's mount: nosuid, nodev, noexec.
#[test]
fn remount_sets_per_mount_flags() {
    let m = remount_fixture().mount();
    let mnt = m.mnt.display().to_string();
    let opts = remount_o(
        &m.mnt,
        "remount,nosuid,nodev,noexec",
        &format!("findmnt -n -o VFS-OPTIONS --mountpoint '{mnt}'"),
    );
    for f in ["rw", "nosuid", "nodev", "noexec"] {
        assert!(
            opts.trim().split(',').any(|o| o == f),
            "{f} not in the mount's options after remount: {opts}"
        );
    }
    m.run(|c| write(c.p("still-writable"), "w"));
}

/// What a remount cannot do is refused with one line, and the mount stays as it was: a mount
/// without an upper cannot become writable, a layer cannot change, a path that is not a
/// strata mount is not remounted, and an unprivileged caller is told it needs root.
#[test]
fn a_remount_that_cannot_be_done_is_refused_with_one_line() {
    let ro = remount_fixture().read_only().mount();
    let out = run_cmd(
        ro.strata_cmd().arg("-o").arg("remount,rw").arg(&ro.mnt),
        CMD_TIMEOUT,
    );
    assert_one_line_error(
        &out,
        &["upperdir"],
        "remount,rw of a mount without an upper",
    );
    assert!(is_read_only(&ro.mnt));

    let m = remount_fixture().mount();
    let other = m.base.join("other");
    std::fs::create_dir(&other).unwrap();
    let out = run_cmd(
        m.strata_cmd()
            .arg("-o")
            .arg(format!("remount,ro,lowerdir={}", other.display()))
            .arg(&m.mnt),
        CMD_TIMEOUT,
    );
    assert_one_line_error(&out, &["lowerdir"], "remount with another lowerdir");
    let out = run_cmd(
        m.strata_cmd()
            .arg("-o")
            .arg("remount,ro,metacopy=off")
            .arg(&m.mnt),
        CMD_TIMEOUT,
    );
    assert_one_line_error(&out, &["metacopy"], "remount with a strata option");
    assert!(!is_read_only(&m.mnt), "a refused remount changed the mount");

    let out = run_cmd(
        m.strata_cmd().arg("-o").arg("remount,ro").arg(&other),
        CMD_TIMEOUT,
    );
    assert_one_line_error(
        &out,
        &["not a strata mount"],
        "remount of a plain directory",
    );

    let bin = strata_bin();
    let mut cmd = as_test_user(&[
        bin.as_os_str(),
        os("-o").as_os_str(),
        os("remount,ro").as_os_str(),
        m.mnt.as_os_str(),
    ]);
    let out = run_cmd(&mut cmd, CMD_TIMEOUT);
    assert_one_line_error(&out, &["root"], "remount by an unprivileged user");
    assert!(!is_read_only(&m.mnt), "a refused remount changed the mount");
    m.run(|c| write(c.p("still-writable"), "w"));
}

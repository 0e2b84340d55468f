//! Without upperdir/workdir (or with `ro`) the mount is read-only: reads work, every write
//! gets EROFS and nothing on the host changes.

mod common;
use common::*;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::DirEntryExt;
use std::os::unix::fs::MetadataExt;

fn every_write_is_erofs(c: &Ctx) {
    let mut f = Failures::default();
    let p = |r: &str| c.p(r);
    let e = libc::EROFS;
    f.case("create", || {
        assert_errno(fs::File::create(p("new")), e, "create")
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
            "O_TRUNC",
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
    f.case("chmod", || assert_errno(chmod(&p("f"), 0o600), e, "chmod"));
    f.case("chown", || assert_errno(lchown(&p("f"), 1, 1), e, "chown"));
    f.case("utimens", || {
        assert_errno(lutimens(&p("f"), (1, 0), (1, 0)), e, "utimens")
    });
    f.case("truncate", || {
        let cp = cpath(&p("f"));
        let r = unsafe { libc::truncate(cp.as_ptr(), 0) };
        assert_errno(
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            },
            e,
            "truncate",
        )
    });
    f.case("setxattr", || {
        assert_errno(lsetxattr(&p("f"), "user.x", b"1", 0), e, "setxattr")
    });
    f.case("removexattr", || {
        assert_errno(lremovexattr(&p("f"), "user.orig"), e, "removexattr")
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
    f.check();
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

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

//! Hard links across copy-up: two names of one lower file stay one file after a write through
//! either, with the right st_nlink, across a remount, and in the upper as kernel overlayfs
//! reads it (as the kernel keeps them with index=on).

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

const SHARED: &str = "shared\n";
const APPENDED: &str = "shared\nAPPENDED-TO-A\n";

/// The layers: `a` and `b` one file in the lower, `d1/x` and `d2/y` another, across two
/// directories.
fn linked() -> Builder {
    Builder::new(1).lower(0, |l| {
        l.file("a", SHARED).hardlink("a", "b");
        l.file("d1/x", SHARED).dir("d2").hardlink("d1/x", "d2/y");
        l.file("other", "other\n");
    })
}

/// Both names read `want`, are one inode with two links, in the mount and in the upper.
fn assert_one_file(c: &Ctx, a: &str, b: &str, want: &str) {
    for n in [a, b] {
        assert_eq!(read(c.p(n)), want, "{n} through the mount");
        assert_eq!(
            lstat(c.p(n)).nlink(),
            2,
            "st_nlink of {n} through the mount"
        );
    }
    assert_eq!(
        ino(c.p(a)),
        ino(c.p(b)),
        "{a} and {b} are no longer one file"
    );
    let (ua, ub) = (lstat(c.u(a)), lstat(c.u(b)));
    assert_eq!(
        ua.ino(),
        ub.ino(),
        "{a} and {b} are two inodes in the upper"
    );
    assert_eq!(read(c.u(b)), want, "{b} in the upper");
}

#[test]
fn a_write_through_one_name_is_seen_through_the_other_in_one_directory() {
    let mut m = linked().mount();
    let before = m.run(|c| {
        let i = ino(c.p("a"));
        assert_eq!(i, ino(c.p("b")));
        assert_eq!(lstat(c.p("b")).nlink(), 2);
        append(c.p("a"), "APPENDED-TO-A\n");
        assert_one_file(&c, "a", "b", APPENDED);
        assert_eq!(ino(c.p("a")), i, "the copy-up changed st_ino");
        assert_eq!(read(c.l(0, "a")), SHARED, "the lower changed");
        i
    });
    m.remount();
    m.run(move |c| {
        assert_one_file(&c, "a", "b", APPENDED);
        assert_eq!(ino(c.p("b")), before, "st_ino changed across the remount");
    });
}

#[test]
fn a_write_through_one_name_is_seen_through_the_other_in_two_directories() {
    let mut m = linked().mount();
    m.run(|c| {
        lstat(c.p("d1/x"));
        lstat(c.p("d2/y"));
        append(c.p("d2/y"), "APPENDED-TO-A\n");
        assert_one_file(&c, "d1/x", "d2/y", APPENDED);
    });
    m.remount();
    m.run(|c| assert_one_file(&c, "d1/x", "d2/y", APPENDED));
}

#[test]
fn a_name_not_looked_up_before_the_write_shows_the_write_after_a_remount() {
    let mut m = linked().mount();
    m.run(|c| {
        // Only x is known to the mount when it is written.
        append(c.p("d1/x"), "APPENDED-TO-A\n");
        assert_eq!(read(c.p("d1/x")), APPENDED);
    });
    m.remount();
    m.run(|c| {
        assert_eq!(
            read(c.p("d2/y")),
            APPENDED,
            "y lost the write made through x"
        );
        assert_one_file(&c, "d1/x", "d2/y", APPENDED);
        // A write through y now lands in the one file too.
        append(c.p("d2/y"), "AND-Y\n");
        assert_eq!(read(c.p("d1/x")), format!("{APPENDED}AND-Y\n"));
    });
}

#[test]
fn a_name_renamed_before_the_write_stays_linked() {
    let mut m = linked().mount();
    m.run(|c| {
        lstat(c.p("b"));
        rename(c.p("a"), c.p("c"));
        append(c.p("c"), "APPENDED-TO-A\n");
        assert!(!exists(c.p("a")));
        assert_one_file(&c, "c", "b", APPENDED);
    });
    m.remount();
    m.run(|c| assert_one_file(&c, "c", "b", APPENDED));
}

#[test]
fn link_counts_follow_new_links_and_unlinks_of_a_copied_up_hard_link() {
    let m = linked().mount();
    m.run(|c| {
        lstat(c.p("b"));
        append(c.p("a"), "more\n");
        std::fs::hard_link(c.p("a"), c.p("third")).unwrap();
        for n in ["a", "b", "third"] {
            assert_eq!(lstat(c.p(n)).nlink(), 3, "st_nlink of {n}");
        }
        rm(c.p("b"));
        assert_eq!(lstat(c.p("a")).nlink(), 2);
        rm(c.p("third"));
        assert_eq!(lstat(c.p("a")).nlink(), 1);
        assert_eq!(read(c.p("a")), "shared\nmore\n");
        // The lower file's other names are unaffected by any of it.
        assert_eq!(lstat(c.l(0, "a")).nlink(), 2);
    });
}

/// The kernel forgets a directory once nothing in it is cached, even while it keeps a file
/// of that directory open under another name (a hard link in a second directory). Calls on
/// the open file then still work, in the upper (a file made through the mount) and in the
/// lower (where the call copies the file up), and reach the one file both names share.
#[test]
fn an_open_hard_link_works_after_the_kernel_forgets_its_other_directory() {
    let m = linked().mount();
    m.run(|c| {
        mkdir(c.p("n1"));
        mkdir(c.p("n2"));
        write(c.p("n1/f"), SHARED);
        std::fs::hard_link(c.p("n1/f"), c.p("n2/g")).unwrap();
        for (first, open) in [("n1/f", "n2/g"), ("d1/x", "d2/y")] {
            let f = std::fs::File::open(c.p(open)).unwrap();
            // The other name looked up last (past the kernel's cache), then nothing of its
            // directory kept cached.
            drop_cached_entries();
            lstat(c.p(first));
            drop_cached_entries();
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|e| panic!("fchmod of the open {open}: {e}"));
            for n in [first, open] {
                assert_eq!(lstat(c.p(n)).mode() & 0o7777, 0o600, "mode of {n}");
            }
            assert_eq!(ino(c.p(first)), ino(c.p(open)), "{first} and {open}");
            // Read while it is open (with passthrough, its kernel inode still has the lower
            // file behind it: fusetests/passthrough) and once it is closed.
            for n in [first, open] {
                assert_eq!(read(c.p(n)), SHARED, "{n}");
            }
            drop(f);
            for n in [first, open] {
                assert_eq!(read(c.p(n)), SHARED, "{n}");
            }
        }
        assert_eq!(read(c.l(0, "d1/x")), SHARED, "the lower changed");
    });
}

/// Make the kernel drop the entries and inodes it caches and nothing holds (FORGETs follow).
fn drop_cached_entries() {
    for _ in 0..3 {
        std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Kernel overlayfs mounted on the layers strata wrote; unmounted on drop.
struct KernelMount(PathBuf);

impl KernelMount {
    fn new(lower: &Path, upper: &Path, base: &Path) -> KernelMount {
        let work = base.join("kwork");
        let mnt = base.join("kmnt");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&mnt).unwrap();
        let o = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        run_ok(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &o])
                .arg(&mnt),
        );
        KernelMount(mnt)
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        let _ = run_cmd(Command::new("umount").arg(&self.0), CMD_TIMEOUT);
    }
}

#[test]
fn kernel_overlayfs_reads_the_copied_up_link_as_one_file() {
    assert!(is_root(), "kernel overlayfs needs root");
    let mut m = linked().mount();
    m.run(|c| {
        lstat(c.p("b"));
        append(c.p("a"), "APPENDED-TO-A\n");
    });
    m.unmount();
    let k = KernelMount::new(&m.l(0, ""), &m.u(""), &m.base);
    let kp = k.0.clone();
    with_timeout(OP_TIMEOUT, "reading kernel overlayfs", move || {
        for n in ["a", "b"] {
            assert_eq!(read(kp.join(n)), APPENDED, "{n} under kernel overlayfs");
            assert_eq!(
                lstat(kp.join(n)).nlink(),
                2,
                "{n}: st_nlink under kernel overlayfs"
            );
        }
        assert_eq!(ino(kp.join("a")), ino(kp.join("b")));
    });
}

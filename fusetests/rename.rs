//! rename(2): files anywhere, RENAME_NOREPLACE, RENAME_EXCHANGE, lower and merged directories
//! (recorded with a redirect xattr), and EXDEV for directory renames with redirect_dir=off.

mod common;
use common::*;
use std::fs;

fn assert_redirect(upper_dir: &std::path::Path, allowed: &[&str]) {
    let r = redirect_of(upper_dir);
    assert!(
        r.as_deref().is_some_and(|v| allowed.contains(&v)),
        "{} should carry {} = one of {allowed:?}, has {r:?}",
        upper_dir.display(),
        ovl_xattr("redirect")
    );
}

#[test]
fn renaming_lower_files_within_and_across_directories() {
    let m = Builder::new(2)
        .lower(0, |l| {
            l.file("a/f", "F");
            l.file("a/g", "G");
            l.dir("b");
            l.file("h", "H");
            l.file("i", "I");
        })
        .lower(1, |l| {
            l.file("j", "J");
            l.file("a/low", "L");
        })
        .mount();
    m.run(|c| {
        rename(c.p("a/f"), c.p("a/f2"));
        rename(c.p("a/g"), c.p("b/g"));
        rename(c.p("h"), c.p("b/h2"));
        rename(c.p("a/low"), c.p("low-moved"));
        assert_eq!(read(c.p("a/f2")), "F");
        assert_eq!(read(c.p("b/g")), "G");
        assert_eq!(read(c.p("b/h2")), "H");
        assert_eq!(read(c.p("low-moved")), "L");
        for gone in ["a/f", "a/g", "h", "a/low"] {
            assert_enoent(c.p(gone));
            assert_upper_whiteout(&c.u(""), gone);
        }
        assert_eq!(names(c.p("a")), set(&["f2"]));
        assert_eq!(names(c.p("b")), set(&["g", "h2"]));

        // Over an existing lower file.
        rename(c.p("i"), c.p("j"));
        assert_eq!(read(c.p("j")), "I");
        assert_enoent(c.p("i"));
        // Back onto its own whiteout.
        rename(c.p("a/f2"), c.p("a/f"));
        assert_eq!(read(c.p("a/f")), "F");
        assert_eq!(names(c.p("a")), set(&["f"]));
        // A rename onto itself is a no-op.
        rename(c.p("j"), c.p("j"));
        assert_eq!(read(c.p("j")), "I");

        assert_eq!(read(c.l(0, "a/f")), "F");
        assert_eq!(read(c.l(1, "j")), "J");
    });
}

#[test]
fn rename_noreplace() {
    let m = Builder::new(2)
        .lower(0, |l| {
            l.file("x", "X");
            l.file("y", "Y");
        })
        .lower(1, |l| {
            l.file("z", "Z");
        })
        .mount();
    m.run(|c| {
        assert_errno(
            renameat2(&c.p("x"), &c.p("y"), RENAME_NOREPLACE),
            libc::EEXIST,
            "NOREPLACE onto a lower file",
        );
        assert_errno(
            renameat2(&c.p("x"), &c.p("z"), RENAME_NOREPLACE),
            libc::EEXIST,
            "NOREPLACE onto a lower1 file",
        );
        write(c.p("w"), "W");
        assert_errno(
            renameat2(&c.p("x"), &c.p("w"), RENAME_NOREPLACE),
            libc::EEXIST,
            "NOREPLACE onto an upper file",
        );
        assert_eq!(read(c.p("x")), "X");
        assert_eq!(read(c.p("y")), "Y");

        // A deleted (whited-out) target does not exist.
        rm(c.p("y"));
        renameat2(&c.p("x"), &c.p("y"), RENAME_NOREPLACE).expect("NOREPLACE onto a whiteout");
        assert_eq!(read(c.p("y")), "X");
        assert_enoent(c.p("x"));
        renameat2(&c.p("y"), &c.p("fresh"), RENAME_NOREPLACE).expect("NOREPLACE onto a new name");
        assert_eq!(read(c.p("fresh")), "X");
    });
}

#[test]
fn rename_exchange_of_files() {
    let m = Builder::new(2)
        .lower(0, |l| {
            l.file("p", "P");
            l.file("q", "Q");
        })
        .lower(1, |l| {
            l.file("r", "R");
        })
        .mount();
    m.run(|c| {
        renameat2(&c.p("p"), &c.p("q"), RENAME_EXCHANGE).expect("exchange two lower files");
        assert_eq!(read(c.p("p")), "Q");
        assert_eq!(read(c.p("q")), "P");
        write(c.p("u"), "U");
        renameat2(&c.p("u"), &c.p("r"), RENAME_EXCHANGE)
            .expect("exchange an upper and a lower file");
        assert_eq!(read(c.p("u")), "R");
        assert_eq!(read(c.p("r")), "U");
        assert_errno(
            renameat2(&c.p("p"), &c.p("missing"), RENAME_EXCHANGE),
            libc::ENOENT,
            "exchange with a missing name",
        );
        mkdir(c.p("d1"));
        write(c.p("d1/in1"), "1");
        mkdir(c.p("d2"));
        renameat2(&c.p("d1"), &c.p("d2"), RENAME_EXCHANGE).expect("exchange two upper dirs");
        assert_eq!(names(c.p("d2")), set(&["in1"]));
        assert!(names(c.p("d1")).is_empty());
        assert_eq!(names(c.p("")), set(&["p", "q", "r", "u", "d1", "d2"]));
        assert_eq!(read(c.l(0, "p")), "P");
    });
}

#[test]
fn rename_exchange_of_lower_directories() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("ld1/a", "a");
            l.file("ld2/b", "b");
        })
        .mount();
    m.run(|c| {
        renameat2(&c.p("ld1"), &c.p("ld2"), RENAME_EXCHANGE)
            .expect("exchange two lower directories");
        assert_eq!(names(c.p("ld1")), set(&["b"]));
        assert_eq!(names(c.p("ld2")), set(&["a"]));
        assert_eq!(read(c.p("ld1/b")), "b");
        assert_eq!(read(c.p("ld2/a")), "a");
        assert_redirect(&c.u("ld1"), &["ld2", "/ld2"]);
        assert_redirect(&c.u("ld2"), &["ld1", "/ld1"]);
    });
}

#[test]
fn renaming_a_lower_directory_records_a_redirect() {
    let mut m = Builder::new(2)
        .lower(0, |l| {
            l.file("d/f", "F");
            l.file("d/sub/g", "G");
            l.file("full/x", "x");
        })
        .lower(1, |l| {
            l.file("d/h", "H");
        })
        .mount();
    let check = |c: Ctx| {
        assert_enoent(c.p("d"));
        assert_eq!(names(c.p("e")), set(&["f", "sub", "h"]));
        assert_eq!(names(c.p("e/sub")), set(&["g"]));
        assert_eq!(read(c.p("e/f")), "F");
        assert_eq!(read(c.p("e/sub/g")), "G");
        assert_eq!(read(c.p("e/h")), "H");
    };
    m.run(move |c| {
        rename(c.p("d"), c.p("e"));
        check(c.clone());
        assert!(lstat(c.u("e")).is_dir());
        assert_redirect(&c.u("e"), &["d", "/d"]);
        assert_upper_whiteout(&c.u(""), "d");
        assert_no_private_xattrs(&c.p("e"));
        // Onto a non-empty directory: refused.
        assert_errno_in(
            fs::rename(c.p("e"), c.p("full")),
            &[libc::ENOTEMPTY, libc::EEXIST],
            "rename onto a non-empty dir",
        );
        // Writes below the renamed directory land under its new name.
        append(c.p("e/f"), "+");
        assert_eq!(read(c.u("e/f")), "F+");
        // The old name is free again, and a new directory there does not show the old contents.
        mkdir(c.p("d"));
        assert!(
            names(c.p("d")).is_empty(),
            "new d/ shows {:?}",
            names(c.p("d"))
        );
    });
    m.remount();
    m.run(move |c| {
        assert_eq!(names(c.p("e")), set(&["f", "sub", "h"]), "after remount");
        assert_eq!(read(c.p("e/f")), "F+");
        assert_eq!(read(c.p("e/sub/g")), "G");
        assert_eq!(read(c.p("e/h")), "H");
        assert!(names(c.p("d")).is_empty());
    });
}

#[test]
fn renaming_a_merged_directory_to_another_parent() {
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("d/f", "F");
            l.file("d/inner/g", "G");
        })
        .mount();
    m.run(|c| {
        write(c.p("d/new"), "N"); // d/ is now merged: in the upper and the lower
        mkdir(c.p("p"));
        rename(c.p("d"), c.p("p/q"));
        assert_eq!(names(c.p("p/q")), set(&["f", "new", "inner"]));
        assert_eq!(read(c.p("p/q/f")), "F");
        assert_eq!(read(c.p("p/q/new")), "N");
        assert_eq!(read(c.p("p/q/inner/g")), "G");
        assert_enoent(c.p("d"));
        assert_redirect(&c.u("p/q"), &["/d"]);
        // Renames inside the moved directory.
        rename(c.p("p/q/f"), c.p("p/q/f2"));
        rename(c.p("p/q/inner"), c.p("p/q/inner2"));
        assert_eq!(read(c.p("p/q/f2")), "F");
        assert_eq!(read(c.p("p/q/inner2/g")), "G");
    });
    m.remount();
    m.run(|c| {
        assert_eq!(
            names(c.p("p/q")),
            set(&["f2", "new", "inner2"]),
            "after remount"
        );
        assert_eq!(read(c.p("p/q/inner2/g")), "G");
        assert_eq!(names(c.p("")), set(&["p"]));
    });
}

#[test]
fn renaming_a_directory_twice() {
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("d/f", "F");
        })
        .mount();
    m.run(|c| {
        rename(c.p("d"), c.p("e"));
        mkdir(c.p("sub"));
        rename(c.p("e"), c.p("sub/f"));
        rename(c.p("sub/f"), c.p("final"));
        assert_eq!(names(c.p("")), set(&["sub", "final"]));
        assert_eq!(read(c.p("final/f")), "F");
        assert_redirect(&c.u("final"), &["d", "/d"]);
    });
    m.remount();
    m.run(|c| {
        assert_eq!(read(c.p("final/f")), "F", "after remount");
        assert_eq!(names(c.p("")), set(&["sub", "final"]));
    });
}

#[test]
fn redirect_dir_off_gives_exdev_for_lower_and_merged_directories() {
    let m = Builder::new(1)
        .opt("redirect_dir=off")
        .lower(0, |l| {
            l.file("d/f", "F");
            l.file("m/f", "F");
            l.file("file", "file");
        })
        .mount();
    m.run(|c| {
        assert_errno(
            fs::rename(c.p("d"), c.p("e")),
            libc::EXDEV,
            "rename of a lower dir with redirect_dir=off",
        );
        write(c.p("m/new"), "n");
        assert_errno(
            fs::rename(c.p("m"), c.p("m2")),
            libc::EXDEV,
            "rename of a merged dir with redirect_dir=off",
        );
        assert_eq!(read(c.p("d/f")), "F");
        assert_eq!(names(c.p("")), set(&["d", "m", "file"]));
        // Upper-only directories and files still rename.
        mkdir(c.p("up"));
        write(c.p("up/x"), "x");
        rename(c.p("up"), c.p("up2"));
        assert_eq!(read(c.p("up2/x")), "x");
        rename(c.p("file"), c.p("file2"));
        assert_eq!(read(c.p("file2")), "file");
        assert!(redirect_of(&c.u("up2")).is_none());
        assert!(!exists(c.u("e")) && !exists(c.u("m2")));
    });
}

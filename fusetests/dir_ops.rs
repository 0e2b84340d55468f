//! Deleting lower entries (whiteouts), rmdir's emptiness check across all layers, creating over
//! a whiteout, and mkdir over a whiteout giving an opaque directory.

mod common;
use common::*;
use std::fs::{self, OpenOptions};

#[test]
fn deleting_lower_entries_of_every_type_leaves_whiteouts() {
    let m = Builder::new(2)
        .lower(0, |l| {
            l.file("f", "f");
            l.symlink("s", "f");
            l.fifo("p");
            l.chardev("c", 1, 3);
            l.dir("d");
        })
        .lower(1, |l| {
            l.file("low", "low");
            l.file("f", "shadowed copy in lower1");
        })
        .mount();
    m.run(|c| {
        for n in ["f", "s", "p", "c", "low"] {
            rm(c.p(n));
        }
        rmdir(c.p("d"));
        for n in ["f", "s", "p", "c", "low", "d"] {
            assert_enoent(c.p(n));
            assert_upper_whiteout(&c.u(""), n);
        }
        assert!(
            names(c.p("")).is_empty(),
            "root still lists {:?}",
            names(c.p(""))
        );
        assert_errno(
            fs::remove_file(c.p("f")),
            libc::ENOENT,
            "unlink of a deleted file",
        );
        // The lowers are untouched.
        assert_eq!(read(c.l(0, "f")), "f");
        assert_eq!(read(c.l(1, "low")), "low");
    });
}

#[test]
fn rmdir_checks_emptiness_across_all_layers() {
    let m = Builder::new(3)
        .upper(|u| {
            u.dir("d");
        })
        .lower(0, |l| {
            l.file("d/f1", "1");
            // e/ only holds entries that a higher layer deleted: it is empty.
            l.whiteout_oci("e/x");
            l.whiteout("e2/x");
        })
        .lower(1, |l| {
            l.file("d/f2", "2");
            l.file("e/x", "hidden");
            l.file("e2/x", "hidden");
        })
        .lower(2, |l| {
            l.dir("d/sub");
        })
        .mount();
    m.run(|c| {
        let what = "rmdir of a merged directory that still has entries";
        assert_errno_in(
            fs::remove_dir(c.p("d")),
            &[libc::ENOTEMPTY, libc::EEXIST],
            what,
        );
        rm(c.p("d/f1"));
        assert_errno_in(
            fs::remove_dir(c.p("d")),
            &[libc::ENOTEMPTY, libc::EEXIST],
            what,
        );
        rm(c.p("d/f2"));
        assert_errno_in(
            fs::remove_dir(c.p("d")),
            &[libc::ENOTEMPTY, libc::EEXIST],
            what,
        );
        rmdir(c.p("d/sub"));
        assert!(names(c.p("d")).is_empty());
        rmdir(c.p("d"));
        assert_enoent(c.p("d"));
        assert_upper_whiteout(&c.u(""), "d");

        assert!(names(c.p("e")).is_empty());
        rmdir(c.p("e"));
        assert!(names(c.p("e2")).is_empty());
        rmdir(c.p("e2"));
        assert_eq!(names(c.p("")), set(&[]));
        // rmdir of a file and unlink of a directory keep their errnos.
        write(c.p("file"), "x");
        assert_errno(
            fs::remove_dir(c.p("file")),
            libc::ENOTDIR,
            "rmdir of a file",
        );
        mkdir(c.p("newdir"));
        assert_errno_in(
            fs::remove_file(c.p("newdir")),
            &[libc::EISDIR, libc::EPERM],
            "unlink of a directory",
        );
    });
}

#[test]
fn creating_over_a_whiteout_works() {
    let m = Builder::new(2)
        .lower(0, |l| {
            l.file("f", "old");
            l.file("s", "old");
            l.whiteout("kw");
            l.whiteout_oci("ow");
        })
        .lower(1, |l| {
            l.file("kw", "hidden by a kernel whiteout");
            l.file("ow", "hidden by an OCI whiteout");
        })
        .mount();
    m.run(|c| {
        rm(c.p("f"));
        write(c.p("f"), "new");
        assert_eq!(read(c.p("f")), "new");
        assert!(
            lstat(c.u("f")).is_file(),
            "the upper whiteout was not replaced by the new file"
        );
        assert_eq!(read(c.u("f")), "new");

        rm(c.p("s"));
        std::os::unix::fs::symlink("target", c.p("s")).unwrap();
        assert_eq!(readlink(c.p("s")), "target");

        write(c.p("kw"), "created over a lower kernel whiteout");
        write(c.p("ow"), "created over a lower OCI whiteout");
        assert_eq!(read(c.p("kw")), "created over a lower kernel whiteout");
        assert_eq!(read(c.p("ow")), "created over a lower OCI whiteout");
        assert_eq!(names(c.p("")), set(&["f", "s", "kw", "ow"]));

        // O_EXCL over a whiteout is a creation, not EEXIST.
        rm(c.p("f"));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(c.p("f"))
            .expect("O_CREAT|O_EXCL over a whiteout");
        assert_eq!(read(c.p("f")), "");
    });
}

#[test]
fn mkdir_over_a_whiteout_makes_an_opaque_directory() {
    let mut m = Builder::new(2)
        .lower(0, |l| {
            l.file("d/a", "a");
            l.file("d/sub/b", "b");
            l.file("was_file", "file");
            l.whiteout("lw");
        })
        .lower(1, |l| {
            l.file("d/c", "c");
            l.file("lw/hidden", "hidden");
        })
        .mount();
    m.run(|c| {
        fs::remove_dir_all(c.p("d")).unwrap();
        assert_enoent(c.p("d"));
        mkdir(c.p("d"));
        assert!(
            names(c.p("d")).is_empty(),
            "new dir over a whiteout shows {:?}",
            names(c.p("d"))
        );
        assert_opaque(&c.u("d"));
        assert_no_private_xattrs(&c.p("d"));
        write(c.p("d/new"), "n");
        assert_eq!(names(c.p("d")), set(&["new"]));

        rm(c.p("was_file"));
        mkdir(c.p("was_file"));
        assert!(lstat(c.p("was_file")).is_dir());
        assert!(names(c.p("was_file")).is_empty());

        mkdir(c.p("lw"));
        assert!(
            names(c.p("lw")).is_empty(),
            "mkdir over a lower-layer whiteout shows {:?}",
            names(c.p("lw"))
        );
    });
    m.remount();
    m.run(|c| {
        assert_eq!(names(c.p("d")), set(&["new"]), "after remount");
        assert!(names(c.p("lw")).is_empty(), "after remount");
        assert_enoent(c.p("d/a"));
        assert_enoent(c.p("d/c"));
    });
}

#[test]
fn readdir_follows_creates_and_deletes() {
    let m = Builder::new(2)
        .lower(0, |l| {
            l.file("d/a", "a");
            l.file("d/b", "b");
        })
        .lower(1, |l| {
            l.file("d/c", "c");
        })
        .mount();
    m.run(|c| {
        assert_eq!(names(c.p("d")), set(&["a", "b", "c"]));
        rm(c.p("d/b"));
        write(c.p("d/e"), "e");
        rm(c.p("d/c"));
        assert_eq!(names(c.p("d")), set(&["a", "e"]));
        write(c.p("d/c"), "c again");
        assert_eq!(names(c.p("d")), set(&["a", "c", "e"]));
        assert_eq!(read(c.p("d/c")), "c again");
        // A big directory, so readdir needs several FUSE round trips.
        mkdir(c.p("big"));
        for i in 0..600 {
            write(c.p(&format!("big/file-with-a-longish-name-{i:04}")), "");
        }
        assert_eq!(names(c.p("big")).len(), 600);
    });
}

/// Whether a listing comes with attributes depends on what the reading process did before (a
/// walker that only reads names gets plain listings). Either way, every entry is listed once,
/// with its type, and stat of it afterwards gives its own size and the inode number readdir
/// gave.
#[test]
fn listings_are_whole_for_walkers_and_for_readers_that_stat() {
    let mut want = std::collections::BTreeMap::new();
    let m = Builder::new(1)
        .lower(0, |l| {
            for d in 0..3 {
                for f in 0..150 {
                    let body = "x".repeat((d * 150 + f) % 97);
                    l.file(&format!("tree/d{d}/file-{f:03}"), &body);
                    want.insert(format!("f d{d}/file-{f:03}"), body.len());
                }
                l.symlink(&format!("tree/d{d}/link"), "file-000");
                l.dir(&format!("tree/d{d}/sub"));
                want.insert(format!("l d{d}/link"), 8);
                want.insert(format!("d d{d}/sub"), 0);
                want.insert(format!("d d{d}"), 0);
            }
        })
        .mount();
    let tree = m.p("tree");
    let listed = |fmt: &str| -> Vec<String> {
        let o = run_ok(std::process::Command::new("find").arg(&tree).args([
            "-mindepth",
            "1",
            "-printf",
            fmt,
        ]));
        o.stdout.lines().map(String::from).collect()
    };
    // A walker first: names and types only, from listings alone.
    let walked = listed("%y %P\n");
    let mut want_names: Vec<String> = want.keys().cloned().collect();
    let mut got_names = walked.clone();
    want_names.sort();
    got_names.sort();
    assert_eq!(got_names, want_names, "find's walk of a fresh mount");
    // Then a new process that stats every entry, in directories already listed and not.
    for line in listed("%y %s %P\n") {
        let mut it = line.splitn(3, ' ');
        let (kind, size, name) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let key = format!("{kind} {name}");
        let want_size = *want
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected entry {line}"));
        if kind != "d" {
            assert_eq!(size, want_size.to_string(), "size of {name}");
        }
    }
    // And readdir's d_ino is stat's st_ino, in this process too.
    m.run(|c| {
        use std::os::unix::fs::{DirEntryExt, MetadataExt};
        for d in 0..3 {
            for e in fs::read_dir(c.p(&format!("tree/d{d}"))).unwrap() {
                let e = e.unwrap();
                assert_eq!(e.ino(), lstat(e.path()).ino(), "{}", e.path().display());
            }
        }
    });
}

/// A char device 0:0 is what a whiteout is: made through the mount it would hide itself (and
/// what it was made over), so mknod refuses it with EPERM, as kernel overlayfs does. fsstress's
/// mknod makes exactly that and then lost track of its tree.
#[test]
fn mknod_of_a_whiteout_device_is_refused() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("f", "lower");
        })
        .mount();
    m.run(|c| {
        for n in ["new", "f"] {
            assert_errno(
                mknod(&c.p(n), libc::S_IFCHR | 0o644, 0, 0),
                if n == "f" { libc::EEXIST } else { libc::EPERM },
                &format!("mknod {n} c 0 0"),
            );
        }
        assert!(!exists(c.u("new")), "something was made in the upper");
        assert_eq!(read(c.p("f")), "lower");
        mknod(&c.p("dev"), libc::S_IFCHR | 0o644, 1, 3).expect("mknod c 1 3");
        assert_eq!(rdev_of(&lstat(c.p("dev"))), (1, 3));
    });
}

/// A directory removed while open (by rmdir, or by a rename of another directory over it) can
/// still be fstat'ed through its descriptor and has no links, as on any Linux filesystem
/// (xfstests generic/035); from the upper and from a lower layer alike.
#[test]
fn an_open_directory_removed_by_rmdir_or_rename_over_it_still_fstats_with_no_links() {
    use std::os::unix::fs::MetadataExt;
    let m = Builder::new(1)
        .lower(0, |l| {
            l.dir("lower-gone");
            l.dir("lower-over");
            l.dir("lower-src");
        })
        .mount();
    m.run(|c| {
        mkdir(c.p("upper-gone"));
        mkdir(c.p("upper-over"));
        mkdir(c.p("upper-src"));
        let cases = [
            ("upper-gone", None),
            ("lower-gone", None),
            ("upper-over", Some("upper-src")),
            ("lower-over", Some("lower-src")),
        ];
        for (victim, by) in cases {
            let fd = fs::File::open(c.p(victim)).unwrap();
            let ino = fd.metadata().unwrap().ino();
            match by {
                None => rmdir(c.p(victim)),
                Some(src) => rename(c.p(src), c.p(victim)),
            }
            let how = by.map_or("rmdir".to_string(), |s| format!("a rename of {s} over it"));
            let st = fd
                .metadata()
                .unwrap_or_else(|e| panic!("fstat of {victim} after {how}: {e}"));
            assert!(st.is_dir(), "{victim}: no longer a directory");
            assert_eq!(st.nlink(), 0, "{victim}: links after its removal");
            assert_eq!(
                st.ino(),
                ino,
                "{victim}: another inode number after its removal"
            );
        }
        assert_eq!(names(c.p("")), set(&["lower-over", "upper-over"]));
    });
}

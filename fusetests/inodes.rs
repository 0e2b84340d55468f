//! Inode numbers: st_ino never changes (copy-up, rename, unmount/remount), hard links share it,
//! st_nlink is right, and readdir's d_ino equals st_ino.

mod common;
use common::*;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{DirEntryExt, MetadataExt};

fn inos(c: &Ctx, rels: &[&str]) -> BTreeMap<String, u64> {
    rels.iter().map(|r| (r.to_string(), ino(c.p(r)))).collect()
}

#[test]
fn st_ino_is_stable_across_copy_up() {
    let m = Builder::new(2)
        .lower(0, |l| {
            l.file("f", "f");
            l.file("d/g", "g");
            l.symlink("s", "f");
        })
        .lower(1, |l| {
            l.file("h", "h");
            l.file("d/k", "k");
        })
        .mount();
    m.run(|c| {
        let before = inos(&c, &["f", "d", "d/g", "d/k", "h", "s", ""]);
        append(c.p("f"), "+");
        lsetxattr(&c.p("d"), "user.x", b"1", 0).unwrap();
        chmod(&c.p("h"), 0o600).unwrap();
        write(c.p("d/new"), "new");
        append(c.p("d/k"), "+");
        lchown(&c.p("s"), 1, 1).unwrap();
        assert!(exists(c.u("f")) && exists(c.u("h")) && exists(c.u("d/k")) && exists(c.u("s")));
        let after = inos(&c, &["f", "d", "d/g", "d/k", "h", "s", ""]);
        assert_eq!(before, after, "st_ino changed on copy-up");
    });
}

#[test]
fn st_ino_is_stable_across_rename_and_remount() {
    let mut m = Builder::new(2)
        .lower(0, |l| {
            l.file("lower_only", "l");
            l.file("copied", "c");
            l.file("to_rename", "r");
            l.file("dir/x", "x");
            l.file("rdir/y", "y");
            l.symlink("sym", "lower_only");
        })
        .lower(1, |l| {
            l.file("dir/z", "z");
        })
        .mount();
    let before = m.run(|c| {
        append(c.p("copied"), "+");
        write(c.p("new"), "n");
        mkdir(c.p("newdir"));
        let mut i = inos(
            &c,
            &[
                "lower_only",
                "copied",
                "new",
                "dir",
                "dir/x",
                "dir/z",
                "sym",
                "newdir",
                "",
            ],
        );
        let r = ino(c.p("to_rename"));
        let rd = ino(c.p("rdir"));
        let ry = ino(c.p("rdir/y"));
        rename(c.p("to_rename"), c.p("renamed"));
        rename(c.p("rdir"), c.p("rdir2"));
        assert_eq!(
            ino(c.p("renamed")),
            r,
            "st_ino changed on rename of a lower file"
        );
        assert_eq!(
            ino(c.p("rdir2")),
            rd,
            "st_ino changed on rename of a lower dir"
        );
        assert_eq!(
            ino(c.p("rdir2/y")),
            ry,
            "st_ino of a child changed when its lower dir was renamed"
        );
        i.insert("renamed".into(), r);
        i.insert("rdir2".into(), rd);
        i.insert("rdir2/y".into(), ry);
        i
    });
    m.remount();
    let keys: Vec<String> = before.keys().cloned().collect();
    let after = m.run(move |c| {
        keys.iter()
            .map(|k| (k.clone(), ino(c.p(k))))
            .collect::<BTreeMap<_, _>>()
    });
    assert_eq!(before, after, "st_ino changed across unmount/remount");
    // The inode table is kept under the workdir.
    assert!(
        !names(m.work.as_ref().unwrap()).is_empty(),
        "the workdir is empty: where is the inode table?"
    );
}

#[test]
fn hard_links_share_st_ino_and_count_in_st_nlink() {
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("f", "lower data");
            l.file("lh1", "lower hardlinked").hardlink("lh1", "lh2");
        })
        .mount();
    m.run(|c| {
        let f_ino = ino(c.p("f"));
        assert_eq!(lstat(c.p("f")).nlink(), 1);
        fs::hard_link(c.p("f"), c.p("g")).expect("link(2) of a lower file");
        let (sf, sg) = (lstat(c.p("f")), lstat(c.p("g")));
        assert_eq!(sf.ino(), sg.ino(), "hard links have different st_ino");
        assert_eq!(
            sf.ino(),
            f_ino,
            "link(2) changed the st_ino of the lower file"
        );
        assert_eq!((sf.nlink(), sg.nlink()), (2, 2), "st_nlink after link(2)");
        // Both names are one upper file.
        let (uf, ug) = (lstat(c.u("f")), lstat(c.u("g")));
        assert_eq!(
            uf.ino(),
            ug.ino(),
            "the upper has two files instead of two links"
        );
        assert_eq!(uf.nlink(), 2);
        append(c.p("g"), "+g");
        assert_eq!(
            read(c.p("f")),
            "lower data+g",
            "a write through one link is not seen through the other"
        );
        fs::hard_link(c.p("g"), c.p("sub-link")).unwrap();
        assert_eq!(lstat(c.p("f")).nlink(), 3);
        rm(c.p("f"));
        assert_eq!(lstat(c.p("g")).nlink(), 2, "st_nlink after unlink");
        assert_eq!(read(c.p("g")), "lower data+g");
        // Links of an upper file.
        write(c.p("u"), "u");
        fs::hard_link(c.p("u"), c.p("u2")).unwrap();
        assert_eq!(ino(c.p("u")), ino(c.p("u2")));
        assert_eq!(lstat(c.p("u2")).nlink(), 2);
        // Hard links inside a lower layer.
        assert_eq!(
            ino(c.p("lh1")),
            ino(c.p("lh2")),
            "lower hard links differ in st_ino"
        );
        assert_eq!(lstat(c.p("lh1")).nlink(), 2);
    });
    m.remount();
    m.run(|c| {
        assert_eq!(ino(c.p("g")), ino(c.p("sub-link")), "after remount");
        assert_eq!(lstat(c.p("g")).nlink(), 2, "after remount");
        assert_eq!(ino(c.p("u")), ino(c.p("u2")), "after remount");
    });
}

fn check_d_ino(dir: &std::path::Path, seen: &mut HashMap<u64, String>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let st = lstat(&p);
        assert_eq!(
            e.ino(),
            st.ino(),
            "{}: readdir d_ino {} != st_ino {}",
            p.display(),
            e.ino(),
            st.ino()
        );
        if st.nlink() == 1 || st.is_dir() {
            if let Some(other) = seen.insert(st.ino(), p.display().to_string()) {
                panic!(
                    "{} and {other} share st_ino {} but are different files",
                    p.display(),
                    st.ino()
                );
            }
        }
        if st.is_dir() {
            check_d_ino(&p, seen);
        }
    }
}

#[test]
fn readdir_d_ino_equals_st_ino_and_inodes_are_unique() {
    let m = Builder::new(2)
        .upper(|u| {
            u.file("up", "u");
            u.file("merged/up", "u");
        })
        .lower(0, |l| {
            l.file("a", "a");
            l.file("merged/l0", "l0");
            l.symlink("s", "a");
            l.fifo("fifo");
            l.file("copied", "c");
        })
        .lower(1, |l| {
            l.file("b", "b");
            l.file("merged/l1", "l1");
            l.file("merged/deep/x", "x");
        })
        .mount();
    m.run(|c| {
        check_d_ino(&c.p(""), &mut HashMap::new());
        append(c.p("copied"), "+");
        write(c.p("merged/new"), "n");
        rename(c.p("merged/l1"), c.p("merged/l1-renamed"));
        check_d_ino(&c.p(""), &mut HashMap::new());
    });
}

/// A fresh upper gets its inode table at the first copy-up, not at mount, and that copy-up's
/// record is durable before the copy is seen: a kill -9 right after it loses no st_ino.
#[test]
fn a_fresh_upper_makes_its_table_at_the_first_copy_up_and_a_kill_loses_no_number() {
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("f", "x\n");
        })
        .mount();
    let table = m.base.join("work/strata/inodes");
    let before = m.run(|c| ino(c.p("f")));
    assert!(
        !table.join("CURRENT").exists(),
        "a lookup made an inode table for a fresh upper"
    );
    m.run(|c| append(c.p("f"), "y\n"));
    assert!(table.join("CURRENT").exists(), "the copy-up made no table");
    m.kill_daemon();
    m.mount_now();
    m.run(move |c| {
        assert_eq!(ino(c.p("f")), before, "st_ino changed across the kill");
        assert_eq!(read(c.p("f")), "x\ny\n");
    });
}

/// Directories copied up on the way to a new file (what a container start does in /etc and
/// /dev) need no table: a merged directory shows its lower directory's number, before and
/// after the copy-up, after a rename (its redirect leads back to the lower) and a remount.
#[test]
fn directory_copy_ups_make_no_table_and_keep_their_numbers() {
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("etc/d/x", "x\n");
            l.file("srv/y", "y\n");
        })
        .mount();
    let table = m.base.join("work/strata/inodes");
    let before = m.run(|c| inos(&c, &["etc", "etc/d", "srv"]));
    m.run(|c| {
        write(c.p("etc/d/new"), "new\n");
        std::fs::rename(c.p("srv"), c.p("moved")).unwrap();
    });
    assert!(m.u("etc/d/new").exists() && m.u("moved").exists());
    assert!(
        !table.join("CURRENT").exists(),
        "copy-ups of directories made an inode table"
    );
    m.remount();
    m.run(move |c| {
        let now = inos(&c, &["etc", "etc/d", "moved"]);
        assert_eq!(now["etc"], before["etc"]);
        assert_eq!(now["etc/d"], before["etc/d"]);
        assert_eq!(
            now["moved"], before["srv"],
            "the renamed directory got another number"
        );
        assert_eq!(read(c.p("moved/y")), "y\n");
    });
}

//! Copy-up: the first change to a lower entry copies it into the upper with its data (holes
//! kept), mode, owner, timestamps and xattrs; symlinks, fifos and device nodes too; parents
//! first. Also what the host sees in the upper afterwards.

mod common;
use common::*;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};

const T_OLD: i64 = 1_000_000_000; // 2001-09-09
const T_NS: i64 = 123_456_789;

/// vfs_cap_data revision 2, effective, permitted = CAP_NET_BIND_SERVICE.
fn capability_value() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes());
    v.extend_from_slice(&(1u32 << 10).to_le_bytes()); // permitted lo
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable lo
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted hi
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable hi
    v
}

/// Trigger a copy-up without touching data, mode, owner or mtime.
fn touch_xattr(p: &std::path::Path) {
    lsetxattr(p, "user.trigger", b"1", 0)
        .unwrap_or_else(|e| panic!("setxattr user.trigger on {}: {e}", p.display()));
}

#[test]
fn writing_a_lower_file_copies_it_up_and_leaves_the_lower_alone() {
    let m = Builder::new(2)
        .lower(0, |l| {
            l.file("top", "hello top\n");
        })
        .lower(1, |l| {
            l.file("bottom", "hello bottom\n");
            l.file("dir/nested", "nested\n");
        })
        .mount();
    m.run(|c| {
        append(c.p("top"), "more\n");
        append(c.p("bottom"), "more\n");
        write(c.p("dir/nested"), "replaced\n");
        assert_eq!(read(c.p("top")), "hello top\nmore\n");
        assert_eq!(read(c.p("bottom")), "hello bottom\nmore\n");
        assert_eq!(read(c.p("dir/nested")), "replaced\n");
        // Host side: the upper holds the new data, the lowers are untouched.
        assert_eq!(read(c.u("top")), "hello top\nmore\n");
        assert_eq!(read(c.u("bottom")), "hello bottom\nmore\n");
        assert_eq!(read(c.u("dir/nested")), "replaced\n");
        assert_eq!(read(c.l(0, "top")), "hello top\n");
        assert_eq!(read(c.l(1, "bottom")), "hello bottom\n");
        assert_eq!(read(c.l(1, "dir/nested")), "nested\n");
    });
}

#[test]
fn copy_up_keeps_holes_in_sparse_files() {
    const SIZE: u64 = 64 << 20;
    let chunks: &[(u64, &[u8])] = &[(0, b"head"), (32 << 20, b"middle"), (SIZE - 4, b"tail")];
    let m = Builder::new(1)
        .lower(0, |l| {
            l.sparse("by_write", SIZE, chunks);
            l.sparse("by_chmod", SIZE, chunks);
        })
        .mount();
    let lower_blocks = std::fs::metadata(m.l(0, "by_write")).unwrap().blocks();
    assert!(
        lower_blocks < 1024,
        "the lower test file itself is not sparse ({lower_blocks} blocks)"
    );
    m.run(move |c| {
        // One copy-up through a data write, one through a metadata change.
        let f = OpenOptions::new()
            .write(true)
            .open(c.p("by_write"))
            .unwrap();
        f.write_all_at(b"E", 1).unwrap();
        drop(f);
        chmod(&c.p("by_chmod"), 0o600).unwrap();
        for name in ["by_write", "by_chmod"] {
            let up = lstat(c.u(name));
            assert_eq!(up.len(), SIZE, "{name}: size in the upper");
            // A fully written 64 MiB file has 131072 blocks.
            assert!(
                up.blocks() <= lower_blocks + 256,
                "{name}: copy-up filled the holes: upper has {} blocks, lower {lower_blocks}",
                up.blocks()
            );
            let via = lstat(c.p(name));
            assert!(
                via.blocks() <= lower_blocks + 256,
                "{name}: st_blocks through the mount is {}",
                via.blocks()
            );
            let f = File::open(c.p(name)).unwrap();
            let mut buf = [0u8; 6];
            f.read_exact_at(&mut buf[..4], SIZE - 4).unwrap();
            assert_eq!(&buf[..4], b"tail");
            f.read_exact_at(&mut buf, 32 << 20).unwrap();
            assert_eq!(&buf, b"middle");
            let mut hole = vec![1u8; 4096];
            f.read_exact_at(&mut hole, 16 << 20).unwrap();
            assert!(
                hole.iter().all(|b| *b == 0),
                "{name}: a hole reads as non-zero"
            );
        }
        let f = File::open(c.p("by_write")).unwrap();
        let mut head = [0u8; 4];
        f.read_exact_at(&mut head, 0).unwrap();
        assert_eq!(&head, b"hEad");
    });
}

#[test]
fn copy_up_keeps_mode_owner_and_timestamps() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file_mode("f", "data", 0o640)
                .owner("f", 1234, 5678)
                .times("f", T_OLD, T_NS);
            // chown clears set-id bits, so the mode goes last.
            l.file("suid", "data")
                .owner("suid", 0, 0)
                .mode("suid", 0o4755)
                .times("suid", T_OLD, T_NS);
            l.file("d/child", "c")
                .mode("d", 0o750)
                .owner("d", 1234, 5678)
                .times("d", T_OLD, T_NS);
        })
        .mount();
    m.run(|c| {
        for (name, mode, uid, gid) in [
            ("f", 0o640, 1234, 5678),
            ("suid", 0o4755, 0, 0),
            ("d", 0o750, 1234, 5678),
        ] {
            touch_xattr(&c.p(name));
            for (side, p) in [("mount", c.p(name)), ("upper", c.u(name))] {
                let st = lstat(&p);
                assert_eq!(
                    st.mode() & 0o7777,
                    mode,
                    "{name} ({side}): mode {:o}",
                    st.mode() & 0o7777
                );
                assert_eq!((st.uid(), st.gid()), (uid, gid), "{name} ({side}): owner");
                assert_eq!(
                    (st.mtime(), st.mtime_nsec()),
                    (T_OLD, T_NS),
                    "{name} ({side}): mtime"
                );
            }
            assert_eq!(
                lgetxattr(&c.u(name), "user.trigger").unwrap(),
                b"1",
                "{name}: the change is in the upper"
            );
        }
        assert_eq!(names(c.p("d")), set(&["child"]));
        assert_eq!(read(c.u("f")), "data");
        assert_eq!(lstat(c.l(0, "f")).mode() & 0o7777, 0o640);
        assert!(
            lgetxattr(&c.l(0, "f"), "user.trigger").is_err(),
            "the lower file was modified"
        );
    });
}

#[test]
fn copy_up_keeps_xattrs_including_security_capability() {
    let cap = capability_value();
    let cap2 = cap.clone();
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file_mode("bin", "#!/bin/true\n", 0o755)
                .xattr("bin", "security.capability", &cap)
                .xattr("bin", "user.a", b"1")
                .xattr("bin", "user.b", b"two\0with nul");
            l.file("d/x", "x").xattr("d", "user.dirattr", b"yes");
        })
        .mount();
    m.run(move |c| {
        touch_xattr(&c.p("bin"));
        touch_xattr(&c.p("d"));
        for (side, p) in [("mount", c.p("bin")), ("upper", c.u("bin"))] {
            let list = llistxattr(&p).unwrap();
            for n in ["security.capability", "user.a", "user.b", "user.trigger"] {
                assert!(
                    list.contains(&n.to_string()),
                    "{side}: {n} missing from {list:?}"
                );
            }
            assert_eq!(
                lgetxattr(&p, "security.capability").unwrap(),
                cap2,
                "{side}: security.capability"
            );
            assert_eq!(lgetxattr(&p, "user.a").unwrap(), b"1", "{side}: user.a");
            assert_eq!(
                lgetxattr(&p, "user.b").unwrap(),
                b"two\0with nul",
                "{side}: user.b"
            );
        }
        for (side, p) in [("mount", c.p("d")), ("upper", c.u("d"))] {
            assert_eq!(
                lgetxattr(&p, "user.dirattr").unwrap(),
                b"yes",
                "{side}: directory xattr"
            );
        }
    });
}

#[test]
fn copy_up_of_symlinks_fifos_and_device_nodes() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.symlink("ln", "some/relative/target");
            l.symlink("abs", "/nonexistent/abs/target");
            l.fifo("fifo").mode("fifo", 0o640);
            l.chardev("cdev", 1, 3).mode("cdev", 0o620);
            l.blockdev("bdev", 7, 0).mode("bdev", 0o600);
        })
        .mount();
    m.run(|c| {
        lchown(&c.p("ln"), 1234, 1234).unwrap();
        lutimens(&c.p("abs"), (T_OLD, 0), (T_OLD, 0)).unwrap();
        chmod(&c.p("fifo"), 0o600).unwrap();
        lchown(&c.p("cdev"), 1234, 1234).unwrap();
        lchown(&c.p("bdev"), 4321, 4321).unwrap();

        for (side, root) in [("mount", c.p("")), ("upper", c.u(""))] {
            let ln = lstat(root.join("ln"));
            assert!(ln.file_type().is_symlink(), "{side}: ln is not a symlink");
            assert_eq!(readlink(root.join("ln")), "some/relative/target", "{side}");
            assert_eq!(ln.uid(), 1234, "{side}: symlink owner");
            let abs = lstat(root.join("abs"));
            assert_eq!(kind(&abs), 'l', "{side}: abs");
            assert_eq!(
                readlink(root.join("abs")),
                "/nonexistent/abs/target",
                "{side}"
            );
            assert_eq!(abs.mtime(), T_OLD, "{side}: symlink mtime");
            let fifo = lstat(root.join("fifo"));
            assert_eq!(kind(&fifo), 'p', "{side}: fifo type");
            assert_eq!(fifo.mode() & 0o7777, 0o600, "{side}: fifo mode");
            let cdev = lstat(root.join("cdev"));
            assert_eq!(kind(&cdev), 'c', "{side}: cdev type");
            assert_eq!(rdev_of(&cdev), (1, 3), "{side}: cdev rdev");
            assert_eq!(cdev.mode() & 0o7777, 0o620, "{side}: cdev mode");
            assert_eq!(cdev.uid(), 1234, "{side}: cdev owner");
            let bdev = lstat(root.join("bdev"));
            assert_eq!(kind(&bdev), 'b', "{side}: bdev type");
            assert_eq!(rdev_of(&bdev), (7, 0), "{side}: bdev rdev");
            assert_eq!(bdev.uid(), 4321, "{side}: bdev owner");
        }
    });
}

#[test]
fn parents_are_copied_up_first_with_their_attributes() {
    let m = Builder::new(2)
        .lower(0, |l| {
            l.file("a/b/c/file", "deep\n");
            l.mode("a/b/c", 0o777).mode("a/b", 0o705).mode("a", 0o751);
            l.owner("a/b/c", 42, 43)
                .owner("a/b", 3333, 4444)
                .owner("a", 1111, 2222);
            l.times("a/b/c", T_OLD + 3, 0)
                .times("a/b", T_OLD + 2, 0)
                .times("a", T_OLD + 1, 0);
        })
        .lower(1, |l| {
            l.file("a/b/other", "from lower1");
        })
        .mount();
    m.run(|c| {
        append(c.p("a/b/c/file"), "more\n");
        assert_eq!(read(c.u("a/b/c/file")), "deep\nmore\n");
        for (rel, mode, uid, gid) in [
            ("a", 0o751, 1111, 2222),
            ("a/b", 0o705, 3333, 4444),
            ("a/b/c", 0o777, 42, 43),
        ] {
            for (side, p) in [("mount", c.p(rel)), ("upper", c.u(rel))] {
                let st = lstat(&p);
                assert!(st.is_dir(), "{rel} ({side}) is not a directory");
                assert_eq!(
                    st.mode() & 0o7777,
                    mode,
                    "{rel} ({side}): mode {:o}",
                    st.mode() & 0o7777
                );
                assert_eq!((st.uid(), st.gid()), (uid, gid), "{rel} ({side}): owner");
            }
        }
        // Parents that were only copied up (nothing created in them) keep their mtime.
        assert_eq!(lstat(c.u("a")).mtime(), T_OLD + 1, "a: mtime after copy-up");
        assert_eq!(
            lstat(c.u("a/b")).mtime(),
            T_OLD + 2,
            "a/b: mtime after copy-up"
        );
        // The merge below the copied-up parent still works.
        assert_eq!(names(c.p("a/b")), set(&["c", "other"]));
        assert_eq!(read(c.p("a/b/other")), "from lower1");
        assert!(
            !c.u("a/b/other").exists(),
            "an untouched sibling was copied up"
        );
    });
}

#[test]
fn the_host_sees_copy_ups_and_whiteouts_in_the_upper() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("keep", "keep");
            l.file("edit", "edit");
            l.file("gone", "gone");
            l.symlink("gone_link", "keep");
            l.dir("empty_dir");
            l.file("full/x", "x");
            l.file("full/y", "y");
        })
        .mount();
    let lower_before = host_snapshot(&m.lowers[0]);
    m.run(|c| {
        append(c.p("edit"), "ed");
        rm(c.p("gone"));
        rm(c.p("gone_link"));
        rmdir(c.p("empty_dir"));
        rm(c.p("full/x"));
        assert_eq!(names(c.p("")), set(&["keep", "edit", "full"]));
        assert_eq!(names(c.p("full")), set(&["y"]));

        assert_eq!(read(c.u("edit")), "edited");
        assert!(lstat(c.u("edit")).is_file());
        assert_upper_whiteout(&c.u(""), "gone");
        assert_upper_whiteout(&c.u(""), "gone_link");
        assert_upper_whiteout(&c.u(""), "empty_dir");
        assert!(
            lstat(c.u("full")).is_dir(),
            "the parent of a deleted entry is copied up as a directory"
        );
        assert_upper_whiteout(&c.u(""), "full/x");
        assert!(!exists(c.u("keep")), "an untouched file was copied up");
        assert!(!exists(c.u("full/y")), "an untouched file was copied up");
        // Nothing else (no temporary copy-up files) is left in the upper.
        let mut want = set(&["edit", "gone", "gone_link", "empty_dir", "full"]);
        if !is_root() {
            want = set(&["edit", ".wh.gone", ".wh.gone_link", ".wh.empty_dir", "full"]);
        }
        assert_eq!(names(c.u("")), want, "the upper dir as the host sees it");
    });
    assert_snapshot_unchanged(&lower_before, &m.lowers[0], "the lower layer");
}

#[test]
fn copy_up_never_shows_a_partial_file_in_the_upper() {
    // A large lower file is copied up by a chmod while another thread watches the upper: the
    // file must appear there complete (built in the workdir, then renamed into place).
    const SIZE: usize = 256 << 20;
    let m = Builder::new(1)
        .lower(0, |l| {
            let chunk: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8 + 1).collect();
            let mut f = File::create(l.path("big")).unwrap();
            for _ in 0..(SIZE >> 20) {
                std::io::Write::write_all(&mut f, &chunk).unwrap();
            }
            f.sync_all().unwrap();
        })
        .mount();
    m.run(|c| {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (done, up) = (done.clone(), c.u("big"));
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(st) = std::fs::symlink_metadata(&up) {
                        if st.len() != SIZE as u64 || (st.blocks() * 512) < (SIZE as u64) * 9 / 10 {
                            seen.push((st.len(), st.blocks()));
                        }
                    }
                }
                seen
            })
        };
        chmod(&c.p("big"), 0o600).unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let partial = watcher.join().unwrap();
        assert!(
            partial.is_empty(),
            "the upper showed a partial copy (size, blocks) {} times, first {:?}",
            partial.len(),
            partial.first()
        );
        assert_eq!(lstat(c.u("big")).len(), SIZE as u64);
        assert_eq!(lstat(c.u("big")).mode() & 0o7777, 0o600);
    });
}

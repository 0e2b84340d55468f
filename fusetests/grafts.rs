//! Grafts (`strata mount --bind/--volume/--mount/--tmpfs`), with Docker's semantics on Linux:
//! a directory graft replaces what the image had at its target, reads and writes go to the
//! source and never to the upper, host-side changes show at once, `:ro` gives EROFS, moves
//! across a graft boundary give EXDEV and the graft's mountpoint itself is busy. Volume
//! specifics are in volumes.rs.

mod common;
use common::*;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

/// An image with a populated /data (lower and upper), /etc with three files, /opt and a file /f.
fn image() -> Builder {
    Builder::new(1)
        .lower(0, |l| {
            l.file("data/a", "image a")
                .file("data/b", "image b")
                .file("data/sub/c", "image c")
                .file("etc/before", "before")
                .file("etc/conf", "image conf")
                .file("etc/after", "after")
                .dir("opt")
                .file("f", "top f");
        })
        .upper(|u| {
            u.file("data/u", "upper u");
        })
}

#[test]
fn a_directory_bind_replaces_the_target_and_the_image_comes_back_without_it() {
    let b = image();
    let src = b.host_dir("src");
    src.file("x", "host x").file("xd/y", "host y");
    let mut m = b.arg("--bind").arg(spec(&src.root, "/data")).prepare();
    let lower_before = host_snapshot(&m.lowers[0]);
    let upper_data_before = tree(&m.u("data"));
    m.mount_now();
    m.run(|c| {
        assert_eq!(
            names(c.p("data")),
            set(&["x", "xd"]),
            "the bind is merged with the image's /data instead of replacing it"
        );
        assert_eq!(read(c.p("data/x")), "host x");
        assert_eq!(read(c.p("data/xd/y")), "host y");
        for hidden in ["data/a", "data/u", "data/sub/c"] {
            assert_enoent(c.p(hidden));
        }
        // The rest of the image is as it was.
        assert_eq!(read(c.p("etc/conf")), "image conf");
        assert_eq!(read(c.p("f")), "top f");
    });
    m.unmount();
    m.args.clear();
    m.mount_now();
    m.run(|c| {
        assert_eq!(names(c.p("data")), set(&["a", "b", "sub", "u"]));
        assert_eq!(read(c.p("data/a")), "image a");
        assert_eq!(read(c.p("data/u")), "upper u");
        assert_eq!(read(c.p("data/sub/c")), "image c");
        assert_enoent(c.p("data/x"));
    });
    assert_same_tree(
        &upper_data_before,
        &tree(&m.u("data")),
        "upper/data before",
        "upper/data after",
    );
    assert_snapshot_unchanged(&lower_before, &m.lowers[0], "lower0");
}

#[test]
fn reads_and_writes_in_a_bind_go_to_the_source_never_to_the_upper() {
    let b = image();
    let src = b.host_dir("src");
    src.file("old", "old\n")
        .file("gone", "gone")
        .file("ren", "ren");
    let m = b.arg("--bind").arg(spec(&src.root, "/data")).mount();
    let srcp = src.root.clone();
    m.run(move |c| {
        let h = |r: &str| srcp.join(r);
        write(c.p("data/NEWFILE-t0k3n"), "new t0k3n");
        assert_eq!(
            read(h("NEWFILE-t0k3n")),
            "new t0k3n",
            "not on the host at once"
        );
        append(c.p("data/old"), "more t0k3n\n");
        assert_eq!(read(h("old")), "old\nmore t0k3n\n");
        mkdir(c.p("data/DIR-t0k3n"));
        write(c.p("data/DIR-t0k3n/in"), "in t0k3n");
        assert_eq!(read(h("DIR-t0k3n/in")), "in t0k3n");
        std::os::unix::fs::symlink("old", c.p("data/LINK-t0k3n")).unwrap();
        assert_eq!(readlink(h("LINK-t0k3n")), "old");
        rm(c.p("data/gone"));
        assert_enoent(h("gone"));
        rename(c.p("data/ren"), c.p("data/REN2-t0k3n"));
        assert_enoent(h("ren"));
        assert_eq!(read(h("REN2-t0k3n")), "ren");
        chmod(&c.p("data/old"), 0o600).unwrap();
        assert_eq!(lstat(h("old")).mode() & 0o7777, 0o600);
        lsetxattr(&c.p("data/old"), "user.t", b"t0k3n", 0).unwrap();
        assert_eq!(lgetxattr(&h("old"), "user.t").unwrap(), b"t0k3n");
        // The hidden image content is untouched.
        assert_eq!(read(c.l(0, "data/a")), "image a");
    });
    let upper = m.upper.clone().unwrap();
    assert_token_nowhere(&upper, "t0k3n");
    let work = m.work.clone().unwrap();
    assert_token_nowhere(&work, "t0k3n");
    assert_eq!(
        names(upper.join("data")),
        set(&["u"]),
        "the upper's /data changed under the bind"
    );
}

#[test]
fn the_root_of_a_bind_is_the_source_directory() {
    let b = image();
    let src = b.host_dir("src");
    src.file("x", "x")
        .mode("", 0o750)
        .owner("", 4321, 8765)
        .xattr("", "user.host", b"h");
    let m = b.arg("--bind").arg(spec(&src.root, "/data")).mount();
    let srcp = src.root.clone();
    m.run(move |c| {
        let (st, host) = (lstat(c.p("data")), lstat(&srcp));
        assert_eq!(
            (st.mode() & 0o7777, st.uid(), st.gid()),
            (0o750, 4321, 8765),
            "stat of the bind's root shows something else than the source directory"
        );
        assert_eq!(st.mtime(), host.mtime(), "mtime of the bind's root");
        let mut f = Failures::default();
        f.case("getxattr", || {
            assert_eq!(
                lgetxattr(&c.p("data"), "user.host").map_err(|e| e.to_string()),
                Ok(b"h".to_vec()),
                "getxattr user.host on the bind's root"
            )
        });
        f.case("listxattr", || {
            let l = llistxattr(&c.p("data")).unwrap();
            assert!(l.contains(&"user.host".to_string()), "listxattr: {l:?}");
        });
        f.case("setxattr", || {
            lsetxattr(&c.p("data"), "user.set", b"s", 0)
                .unwrap_or_else(|e| panic!("setxattr on the bind's root: {e}"));
            assert_eq!(
                lgetxattr(&srcp, "user.set").ok().as_deref(),
                Some(&b"s"[..])
            );
        });
        f.case("chmod", || {
            chmod(&c.p("data"), 0o755).unwrap_or_else(|e| panic!("chmod the bind's root: {e}"));
            assert_eq!(
                lstat(&srcp).mode() & 0o7777,
                0o755,
                "chmod did not reach the host"
            );
        });
        f.case("host chmod", || {
            chmod(&srcp, 0o700).unwrap();
            assert_eq!(
                lstat(c.p("data")).mode() & 0o7777,
                0o700,
                "stale mode of the root"
            );
        });
        f.check();
    });
    assert!(!exists(m.u("data/x")));
}

#[test]
fn host_side_changes_in_a_bind_are_visible_at_once() {
    let b = image();
    let src = b.host_dir("src");
    src.file("f", "short")
        .file("del", "del")
        .file("same", "aaaa");
    let m = b.arg("--bind").arg(spec(&src.root, "/data")).mount();
    let srcp = src.root.clone();
    m.run(move |c| {
        let h = |r: &str| srcp.join(r);
        // Prime every cache the mount may have.
        assert_eq!(read(c.p("data/f")), "short");
        assert_eq!(lstat(c.p("data/f")).len(), 5);
        assert_eq!(read(c.p("data/same")), "aaaa");
        assert_eq!(names(c.p("data")), set(&["f", "del", "same"]));
        assert_enoent(c.p("data/new"));
        assert_enoent(c.p("data/newdir"));

        write(h("f"), "a much longer content");
        write(h("same"), "bbbb");
        write(h("new"), "new");
        rm(h("del"));
        mkdir(h("newdir"));
        write(h("newdir/inner"), "inner");

        assert_eq!(lstat(c.p("data/f")).len(), 21, "stale size");
        assert_eq!(
            read(c.p("data/f")),
            "a much longer content",
            "stale content"
        );
        assert_eq!(read(c.p("data/same")), "bbbb", "stale same-size content");
        assert_eq!(read(c.p("data/new")), "new");
        assert_enoent(c.p("data/del"));
        assert_eq!(names(c.p("data")), set(&["f", "new", "newdir", "same"]));
        assert_eq!(names(c.p("data/newdir")), set(&["inner"]));
        assert_eq!(read(c.p("data/newdir/inner")), "inner");

        // Shrinking and removing a directory on the host.
        write(h("f"), "x");
        fs::remove_dir_all(h("newdir")).unwrap();
        assert_eq!(lstat(c.p("data/f")).len(), 1, "stale size after shrink");
        assert_eq!(read(c.p("data/f")), "x");
        assert_enoent(c.p("data/newdir"));
    });
}

#[test]
fn a_file_bind_keeps_the_other_entries_of_its_directory() {
    let b = image();
    let host = b.host_dir("host");
    host.file("conf", "host conf");
    let mut m = b
        .arg("--bind")
        .arg(spec(&host.path("conf"), "/etc/conf"))
        .prepare();
    let lower_before = host_snapshot(&m.lowers[0]);
    m.mount_now();
    let hp = host.path("conf");
    m.run(move |c| {
        assert_eq!(names(c.p("etc")), set(&["before", "conf", "after"]));
        assert_eq!(read(c.p("etc/before")), "before");
        assert_eq!(read(c.p("etc/after")), "after");
        assert_eq!(read(c.p("etc/conf")), "host conf");
        write(c.p("etc/conf"), "written in the mount");
        assert_eq!(read(&hp), "written in the mount", "not on the host at once");
        write(&hp, "written on the host, longer");
        assert_eq!(read(c.p("etc/conf")), "written on the host, longer");
        // A sibling can still be written and goes to the upper as usual.
        write(c.p("etc/before"), "changed");
        assert_eq!(read(c.u("etc/before")), "changed");
    });
    m.unmount();
    assert!(
        !exists(m.u("etc/conf")),
        "the upper has etc/conf after writes through a file bind"
    );
    assert_snapshot_unchanged(&lower_before, &m.lowers[0], "lower0");
    m.args.clear();
    m.mount_now();
    m.run(|c| assert_eq!(read(c.p("etc/conf")), "image conf"));
}

#[test]
fn a_missing_target_is_created_empty_in_the_upper() {
    let b = image();
    let src = b.host_dir("src");
    src.file("content", "graft content");
    let host = b.host_dir("host");
    host.file("file", "graft file");
    let mut m = b
        .arg("--bind")
        .arg(spec(&src.root, "/opt/newdir"))
        .arg("--bind")
        .arg(spec(&src.root, "/top"))
        .arg("--bind")
        .arg(spec(&host.path("file"), "/opt/newfile"))
        .mount();
    m.run(|c| {
        assert_eq!(names(c.p("opt")), set(&["newdir", "newfile"]));
        assert_eq!(read(c.p("opt/newdir/content")), "graft content");
        assert_eq!(read(c.p("top/content")), "graft content");
        assert_eq!(read(c.p("opt/newfile")), "graft file");
    });
    m.unmount();
    for d in ["opt/newdir", "top"] {
        let st = lstat(m.u(d));
        assert!(st.is_dir(), "upper/{d} is not a directory");
        assert_eq!(
            names(m.u(d)),
            set(&[]),
            "upper/{d} holds the graft's contents"
        );
    }
    let st = lstat(m.u("opt/newfile"));
    assert!(
        st.is_file() && st.len() == 0,
        "upper/opt/newfile is not an empty regular file (type '{}', size {})",
        kind(&st),
        st.len()
    );
    m.args.clear();
    m.mount_now();
    m.run(|c| {
        assert_eq!(names(c.p("opt/newdir")), set(&[]));
        assert_eq!(names(c.p("top")), set(&[]));
        assert_eq!(read(c.p("opt/newfile")), "");
    });
}

#[test]
fn a_read_only_bind_refuses_every_write_with_erofs() {
    let b = image();
    let src = b.host_dir("src");
    src.file("f", "f")
        .xattr("f", "user.orig", b"o")
        .dir("empty")
        .file("d/g", "g");
    let host = b.host_dir("host");
    host.file("conf", "host conf");
    let mut m = b
        .arg("--bind")
        .arg(spec(&src.root, "/data:ro"))
        .arg("--bind")
        .arg(spec(&host.path("conf"), "/etc/conf:ro"))
        .prepare();
    let src_before = host_snapshot(&src.root);
    let host_before = host_snapshot(&host.root);
    m.mount_now();
    m.run(|c| {
        assert_eq!(read(c.p("data/f")), "f");
        assert_eq!(read(c.p("data/d/g")), "g");
        assert_eq!(lgetxattr(&c.p("data/f"), "user.orig").unwrap(), b"o");
        assert_every_write_erofs(&c.p("data"));
        assert_eq!(read(c.p("etc/conf")), "host conf");
        assert_errno(
            OpenOptions::new().write(true).open(c.p("etc/conf")),
            libc::EROFS,
            "open a read-only file bind for write",
        );
        assert_errno(
            chmod(&c.p("etc/conf"), 0o600),
            libc::EROFS,
            "chmod a ro file bind",
        );
        // The rest of the mount stays writable.
        write(c.p("etc/before"), "rw");
        assert_eq!(read(c.p("data/f")), "f");
    });
    m.unmount();
    assert_snapshot_unchanged(&src_before, &src.root, "the ro bind's source");
    assert_snapshot_unchanged(&host_before, &host.root, "the ro file bind's source");
}

#[test]
fn rename_and_link_across_a_graft_boundary_are_exdev() {
    let b = image();
    let src = b.host_dir("src");
    src.file("x", "x").file("xd/y", "y");
    let m = b.arg("--bind").arg(spec(&src.root, "/data")).mount();
    let srcp = src.root.clone();
    m.run(move |c| {
        let mut f = Failures::default();
        let x = libc::EXDEV;
        for (name, from, to) in [
            ("rename file into the graft", "f", "data/f"),
            ("rename file out of the graft", "data/x", "x"),
            ("rename dir into the graft", "opt", "data/opt"),
            ("rename dir out of the graft", "data/xd", "xd"),
            (
                "rename over a file across the boundary",
                "data/x",
                "etc/conf",
            ),
        ] {
            f.case(name, || {
                assert_errno(
                    fs::rename(c.p(from), c.p(to)),
                    x,
                    &format!("rename /{from} -> /{to}"),
                )
            });
        }
        for (name, from, to) in [
            ("link into the graft", "f", "data/f"),
            ("link out of the graft", "data/x", "x"),
        ] {
            f.case(name, || {
                assert_errno(
                    fs::hard_link(c.p(from), c.p(to)),
                    x,
                    &format!("link /{from} /{to}"),
                )
            });
        }
        f.check();
        // Nothing moved.
        assert_eq!(read(c.p("f")), "top f");
        assert_eq!(read(c.p("data/x")), "x");
        assert_eq!(read(c.p("etc/conf")), "image conf");
        assert_eq!(names(c.p("data")), set(&["x", "xd"]));
        assert_eq!(names(&srcp), set(&["x", "xd"]));
        // Within the graft, rename and link work.
        rename(c.p("data/x"), c.p("data/x2"));
        fs::hard_link(c.p("data/x2"), c.p("data/x3")).unwrap();
        assert_eq!(read(srcp.join("x3")), "x");
    });
}

#[test]
fn the_mountpoint_of_a_graft_is_busy() {
    let b = image();
    let src = b.host_dir("src"); // empty: rmdir can only fail because it is a mountpoint
    let host = b.host_dir("host");
    host.file("conf", "host conf");
    let m = b
        .arg("--bind")
        .arg(spec(&src.root, "/data"))
        .arg("--bind")
        .arg(spec(&host.path("conf"), "/etc/conf"))
        .arg("--tmpfs")
        .arg("/scratch")
        .mount();
    m.run(|c| {
        let mut f = Failures::default();
        let busy = libc::EBUSY;
        f.case("rmdir dir graft", || {
            assert_errno(fs::remove_dir(c.p("data")), busy, "rmdir /data")
        });
        f.case("rmdir tmpfs graft", || {
            assert_errno(fs::remove_dir(c.p("scratch")), busy, "rmdir /scratch")
        });
        f.case("rename dir graft", || {
            assert_errno(
                fs::rename(c.p("data"), c.p("data2")),
                busy,
                "rename /data /data2",
            )
        });
        f.case("unlink file graft", || {
            assert_errno(fs::remove_file(c.p("etc/conf")), busy, "unlink /etc/conf")
        });
        f.case("rename file graft", || {
            assert_errno(
                fs::rename(c.p("etc/conf"), c.p("etc/conf2")),
                busy,
                "rename /etc/conf /etc/conf2",
            )
        });
        f.case("rename onto file graft", || {
            assert_errno(
                fs::rename(c.p("etc/before"), c.p("etc/conf")),
                busy,
                "rename onto /etc/conf",
            )
        });
        f.check();
        assert!(lstat(c.p("data")).is_dir());
        assert!(lstat(c.p("scratch")).is_dir());
        assert_eq!(read(c.p("etc/conf")), "host conf");
        assert_eq!(read(c.p("etc/before")), "before");
    });
    assert_eq!(read(host.path("conf")), "host conf");
    assert!(src.root.is_dir());
}

#[test]
fn a_missing_bind_source_is_refused_before_anything_is_mounted_or_written() {
    let b = image();
    let missing = b.base().join("no-such-source");
    let mut m = b
        .arg("--volume")
        .arg("shouldnotexist:/vol")
        .arg("--tmpfs")
        .arg("/scratch")
        .arg("--bind")
        .arg(spec(&missing, "/data"))
        .prepare();
    let before = host_snapshot(&m.base);
    let out = m.try_mount_now();
    assert_one_line_error(
        &out,
        &[&missing.display().to_string()],
        "strata mount with a missing --bind source",
    );
    assert!(!m.is_mounted(), "something was mounted");
    assert!(
        wait_until(Duration::from_secs(3), || strata_pids(&m.mnt).is_empty()),
        "a strata daemon is still running: {:?}",
        strata_pids(&m.mnt)
    );
    assert_eq!(mounts_under(&m.base), vec![], "something was mounted");
    assert!(
        volume_dirs(&m.root).is_empty(),
        "the volume of the same command line was created: {:?}",
        volume_dirs(&m.root)
    );
    assert_snapshot_unchanged(&before, &m.base, "the fixture (upper, layers, state root)");
}

#[test]
fn malformed_graft_flags_are_refused_before_anything_is_mounted_or_written() {
    let b = image();
    let src = b.host_dir("src");
    let s = spec(&src.root, "");
    let mut m = b.prepare();
    let before = host_snapshot(&m.base);
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "relative bind target",
            vec!["--bind".into(), format!("{s}data")],
        ),
        (
            "bad bind mode",
            vec!["--bind".into(), format!("{s}/data:bogus")],
        ),
        (
            "unknown --mount type",
            vec![
                "--mount".into(),
                format!("type=nosuch,source={},target=/data", src.root.display()),
            ],
        ),
        (
            "--mount without a target",
            vec![
                "--mount".into(),
                format!("type=bind,source={}", src.root.display()),
            ],
        ),
        (
            "relative tmpfs target",
            vec!["--tmpfs".into(), "scratch".into()],
        ),
        (
            "volume name with a slash",
            vec!["-v".into(), "a/b:/data".into()],
        ),
    ];
    let mut f = Failures::default();
    for (what, args) in cases {
        m.args = args.iter().map(|a| a.into()).collect();
        f.case(what, || {
            let out = m.try_mount_now();
            assert_one_line_error(&out, &[], &format!("strata mount {args:?} ({what})"));
        });
        if m.is_mounted() {
            m.unmount();
            f.0.push(format!("[{what}] was mounted"));
        }
    }
    f.check();
    assert!(
        wait_until(Duration::from_secs(3), || strata_pids(&m.mnt).is_empty()),
        "a strata daemon is still running"
    );
    assert_snapshot_unchanged(&before, &m.base, "the fixture (upper, layers, state root)");
}

#[test]
fn v_with_an_absolute_source_is_a_bind() {
    let b = image();
    let src = b.host_dir("src");
    src.file("x", "host x");
    let m = b.arg("-v").arg(spec(&src.root, "/data")).mount();
    let srcp = src.root.clone();
    m.run(move |c| {
        assert_eq!(names(c.p("data")), set(&["x"]));
        write(c.p("data/new"), "new");
        assert_eq!(read(srcp.join("new")), "new");
    });
    assert!(
        volume_dirs(&m.root).is_empty(),
        "-v /abs/path:/dst created a volume: {:?}",
        volume_dirs(&m.root)
    );
}

#[test]
fn the_mount_flag_forms() {
    let b = image().lower(0, |l| {
        l.file("vol/image-file", "image");
    });
    let ro = b.host_dir("ro");
    ro.file("f", "f")
        .xattr("f", "user.orig", b"o")
        .dir("empty")
        .file("d/g", "g");
    let rw = b.host_dir("rw");
    rw.file("r", "r");
    let rw2 = b.host_dir("rw2");
    let m = b
        .arg("--mount")
        .arg(format!(
            "type=bind,source={},target=/data,readonly",
            ro.root.display()
        ))
        .arg("--mount")
        .arg(format!("type=bind,src={},dst=/rw", rw.root.display()))
        .arg("--mount")
        .arg(format!(
            "type=bind,src={},destination=/rw2,ro",
            rw2.root.display()
        ))
        .arg("--mount")
        .arg("type=volume,source=formvol,target=/vol,volume-nocopy")
        .arg("--mount")
        .arg("type=tmpfs,target=/scratch,tmpfs-mode=1770")
        .mount();
    let (rwp, rw2p) = (rw.root.clone(), rw2.root.clone());
    m.run(move |c| {
        assert_eq!(read(c.p("data/f")), "f");
        assert_every_write_erofs(&c.p("data"));
        assert_eq!(read(c.p("rw/r")), "r");
        write(c.p("rw/new"), "new");
        assert_eq!(read(rwp.join("new")), "new");
        assert_errno(
            fs::File::create(c.p("rw2/x")),
            libc::EROFS,
            "create in ro= bind",
        );
        assert_eq!(names(&rw2p), set(&[]));
        assert_eq!(
            names(c.p("vol")),
            set(&[]),
            "volume-nocopy volume was filled"
        );
        write(c.p("vol/v"), "v");
        let st = lstat(c.p("scratch"));
        assert!(st.is_dir());
        assert_eq!(st.mode() & 0o7777, 0o1770, "tmpfs-mode not applied");
        write(c.p("scratch/t"), "t");
        assert_eq!(read(c.p("scratch/t")), "t");
    });
    assert_eq!(read(m.volume_data("formvol").join("v")), "v");
    assert!(!exists(m.volume_data("formvol").join("image-file")));
}

#[test]
fn tmpfs_is_writable_and_gone_at_unmount() {
    let b = image();
    let mut m = b
        .arg("--tmpfs")
        .arg("/scratch:size=64m,mode=1777")
        .arg("--tmpfs")
        .arg("/data")
        .prepare();
    m.mount_now();
    let token = format!("tmpfs-canary-{}", unique_token());
    let t = token.clone();
    m.run(move |c| {
        let st = lstat(c.p("scratch"));
        assert!(st.is_dir());
        assert_eq!(st.mode() & 0o7777, 0o1777, "mode=1777 not applied");
        assert_eq!(
            names(c.p("data")),
            set(&[]),
            "a tmpfs at /data shows the image"
        );
        for d in ["scratch", "data"] {
            write(c.p(&format!("{d}/{t}")), &t);
            mkdir(c.p(&format!("{d}/dir-{t}")));
            write(c.p(&format!("{d}/dir-{t}/inner")), format!("inner {t}"));
            let mut f = OpenOptions::new()
                .append(true)
                .open(c.p(&format!("{d}/{t}")))
                .unwrap();
            f.write_all(b" appended").unwrap();
            f.sync_all().unwrap();
            drop(f);
            assert_eq!(read(c.p(&format!("{d}/{t}"))), format!("{t} appended"));
        }
    });
    m.unmount();
    assert_token_on_no_layer(&m, &token);
    m.mount_now();
    m.run(|c| {
        assert_eq!(
            names(c.p("scratch")),
            set(&[]),
            "tmpfs kept data across a mount"
        );
        assert_eq!(
            names(c.p("data")),
            set(&[]),
            "tmpfs kept data across a mount"
        );
    });
    m.unmount();
    m.args.clear();
    m.mount_now();
    m.run(|c| {
        assert_eq!(names(c.p("data")), set(&["a", "b", "sub", "u"]));
        assert_eq!(names(c.p("scratch")), set(&[]));
    });
    assert_token_on_no_layer(&m, &token);
}

/// The token is nowhere in the layers, upper, workdir, state root or mountpoint (the debug log
/// of STRATA_FT_LOG=1 may name it).
fn assert_token_on_no_layer(m: &Mount, token: &str) {
    let mut dirs = m.lowers.clone();
    dirs.extend(m.upper.clone());
    dirs.extend(m.work.clone());
    dirs.push(m.root.clone());
    dirs.push(m.mnt.clone());
    for d in dirs {
        assert_token_nowhere(&d, token);
    }
}

#[test]
fn a_tmpfs_size_limit_gives_enospc() {
    let m = image()
        .arg("--mount")
        .arg("type=tmpfs,target=/small,tmpfs-size=1048576")
        .mount();
    m.run(|c| {
        let chunk = vec![7u8; 64 * 1024];
        let mut f = fs::File::create(c.p("small/big")).unwrap();
        let mut err = None;
        for _ in 0..64 {
            // 4 MiB in all, four times the limit.
            if let Err(e) = f.write_all(&chunk) {
                err = Some(e);
                break;
            }
        }
        let err = match err {
            Some(e) => Err::<(), _>(e),
            None => f.sync_all(),
        };
        assert_errno(err, libc::ENOSPC, "writing 4 MiB into a 1 MiB tmpfs");
    });
}

#[test]
fn a_bind_nested_in_a_bind() {
    let b = image();
    let outer = b.host_dir("outer");
    outer.file("o", "o").dir("inner");
    let inner = b.host_dir("inner");
    inner.file("i", "i");
    let m = b
        .arg("--bind")
        .arg(spec(&outer.root, "/outer"))
        .arg("--bind")
        .arg(spec(&inner.root, "/outer/inner"))
        .mount();
    let (op, ip) = (outer.root.clone(), inner.root.clone());
    m.run(move |c| {
        assert_eq!(names(c.p("outer")), set(&["o", "inner"]));
        assert_eq!(names(c.p("outer/inner")), set(&["i"]));
        write(c.p("outer/inner/new"), "new");
        write(c.p("outer/new"), "outer new");
        assert_eq!(read(ip.join("new")), "new");
        assert_eq!(read(op.join("new")), "outer new");
        assert_eq!(
            names(op.join("inner")),
            set(&[]),
            "the inner graft wrote into the outer source"
        );
        assert_errno(
            fs::rename(c.p("outer/o"), c.p("outer/inner/o")),
            libc::EXDEV,
            "rename between nested grafts",
        );
        assert_errno(
            fs::remove_dir(c.p("outer/inner")),
            libc::EBUSY,
            "rmdir nested graft",
        );
    });
}

const ROOTLESS_SCRIPT: &str = r#"
set -eu
S="$1"; B="$2"; SRC="$3"
export STRATA_ROOT="$B/root"
M="$B/mnt"
printf AAAA > "$SRC/same"
"$S" mount --bind "$SRC:/data" -o "lowerdir=$B/lower0,upperdir=$B/upper,workdir=$B/work" "$M"
echo "READ $(cat "$M/data/mine")"
# No passthrough here: a file held open reads through the mount's page cache, which must not
# outlive a same-size rewrite on the host.
python3 - "$M/data/same" "$SRC/same" <<'PY'
import sys
f = open(sys.argv[1], "rb")
before = f.read()
open(sys.argv[2], "wb").write(b"BBBB")
f.seek(0)
print("OPEN", before.decode(), f.read().decode())
PY
echo written > "$M/data/new"
echo more >> "$M/data/mine"
mkdir "$M/data/dir"
echo "LS $(ls "$M/data" | tr '\n' ' ')"
"$S" umount "$M"
echo "DONE"
"#;

#[test]
fn an_unprivileged_user_binds_a_dir_it_owns_and_writes_through_it() {
    assert!(
        is_root(),
        "this test must start as root (it drops to {TEST_USER})"
    );
    let (uid, gid) = ensure_test_user();
    let b = Builder::new(1).lower(0, |l| {
        l.file("data/image", "image");
    });
    let src = b.host_dir("src");
    src.file("mine", "mine\n");
    for rel in ["", "mine"] {
        src.owner(rel, uid, gid);
    }
    let m = b.owned_by_test_user().prepare();
    let strata = strata_bin();
    let out = run_script_as_test_user(
        &m.base,
        ROOTLESS_SCRIPT,
        &[strata.as_os_str(), m.base.as_os_str(), src.root.as_os_str()],
    );
    assert!(!fuse_mounted(&m.mnt), "still mounted after strata umount");
    assert!(out.stdout.contains("READ mine"), "{}", out.describe());
    assert!(
        out.stdout.contains("OPEN AAAA BBBB"),
        "an open file kept serving what the host replaced: {}",
        out.describe()
    );
    assert!(
        out.stdout.contains("LS dir mine new same "),
        "{}",
        out.describe()
    );
    assert_eq!(read(src.path("new")), "written\n");
    assert_eq!(read(src.path("mine")), "mine\nmore\n");
    let st = lstat(src.path("new"));
    assert_eq!(
        (st.uid(), st.gid()),
        (uid, gid),
        "new file not owned by the user"
    );
    assert!(lstat(src.path("dir")).is_dir());
    assert!(!exists(m.u("data/new")), "the write went to the upper");
    assert!(!exists(m.u("data/mine")), "the write went to the upper");
}

/// A directory stream rewound and read again (no path walk, no open, so nothing makes the
/// kernel look at the directory again) still shows what the host changed since: the kernel
/// checks a graft directory's mtime before it serves a listing from the start.
#[test]
fn host_side_changes_show_in_a_rewound_directory_stream() {
    let b = image();
    let src = b.host_dir("src");
    src.file("f", "f");
    let m = b.arg("--bind").arg(spec(&src.root, "/data")).mount();
    let srcp = src.root.clone();
    m.run(move |c| {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(c.p("data").as_os_str().as_bytes()).unwrap();
        let dir = unsafe { libc::opendir(path.as_ptr()) };
        assert!(!dir.is_null(), "opendir {}", c.p("data").display());
        let list = || {
            let mut out = Vec::new();
            unsafe {
                libc::rewinddir(dir);
                loop {
                    let e = libc::readdir(dir);
                    if e.is_null() {
                        break;
                    }
                    let n = std::ffi::CStr::from_ptr((*e).d_name.as_ptr());
                    let n = n.to_string_lossy().into_owned();
                    if n != "." && n != ".." {
                        out.push(n);
                    }
                }
            }
            out.sort();
            out
        };
        assert_eq!(list(), ["f"]);
        write(srcp.join("new"), "n");
        rm(srcp.join("f"));
        let after = list();
        unsafe { libc::closedir(dir) };
        assert_eq!(after, ["new"], "stale listing of a bind");
    });
}

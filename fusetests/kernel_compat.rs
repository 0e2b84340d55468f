//! The on-disk contract: an upper written by strata reads the same under kernel overlayfs, and
//! an upper written by kernel overlayfs reads the same under strata. Both trees are compared
//! entry by entry (names, types, modes, owners, sizes, contents, symlink targets, device
//! numbers, xattrs).

mod common;
use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn lowers(b: Builder) -> Builder {
    b.lower(0, |l| {
        l.file("top", "top\n");
        l.file("shared", "from lower0\n");
        l.file("dir/a", "a\n");
        l.file("dir/sub/deep", "deep\n");
        l.file("ren/x", "x\n");
        l.file("ren/y/z", "z\n");
        l.file("merged/l0", "l0\n");
        l.file("ldir/f", "f\n");
        l.symlink("sym", "top");
        l.symlink("abs", "/nonexistent/target");
        l.fifo("fifo");
        l.chardev("cdev", 1, 3);
        l.file_mode("perm", "perm\n", 0o600)
            .owner("perm", 1234, 5678);
        l.file("xat", "xat\n").xattr("xat", "user.k", b"v");
        l.file("todelete", "bye\n");
        l.file("deldir/f", "f\n");
        l.file("opq/o1", "o1\n");
        l.file("big", vec![b'b'; 1 << 20]);
        l.whiteout("hidden");
        l.file("keepdir/k", "k\n");
    })
    .lower(1, |l| {
        l.file("shared", "from lower1\n");
        l.file("bottom", "bottom\n");
        l.file("merged/l1", "l1\n");
        l.file("opq/o2", "o2\n");
        l.file("hidden", "hidden by a whiteout in lower0\n");
        l.file("ren/w", "w\n");
        l.file("deldir/g", "g\n");
        l.file("keepdir/k2", "k2\n");
    })
}

/// A rich set of changes, made through whatever is mounted at `root`.
fn changes(root: PathBuf) {
    let p = |r: &str| root.join(r);
    append(p("top"), "more\n");
    chmod(&p("perm"), 0o640).unwrap();
    lchown(&p("perm"), 4321, 8765).unwrap();
    lsetxattr(&p("xat"), "user.k2", b"v2", 0).unwrap();
    lremovexattr(&p("xat"), "user.k").unwrap();
    mkdir(p("new"));
    write(p("new/file"), "new file\n");
    rm(p("todelete"));
    fs::remove_dir_all(p("deldir")).unwrap();
    fs::remove_dir_all(p("opq")).unwrap();
    mkdir(p("opq"));
    write(p("opq/fresh"), "fresh\n");
    rename(p("ren"), p("renamed"));
    rename(p("renamed/y"), p("renamed/y2"));
    mkdir(p("dest"));
    rename(p("ldir"), p("dest/ldir2"));
    rename(p("bottom"), p("dest/bottom2"));
    std::os::unix::fs::symlink("top", p("newlink")).unwrap();
    lchown(&p("sym"), 1, 1).unwrap();
    mkfifo(&p("newfifo"), 0o640).unwrap();
    mknod(&p("newcdev"), libc::S_IFCHR | 0o600, 1, 5).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(p("big"))
        .unwrap()
        .set_len(4096 + 7)
        .unwrap();
    fs::hard_link(p("top"), p("top-link")).unwrap();
    rm(p("merged/l1"));
    write(p("merged/u"), "u\n");
    renameat2(&p("shared"), &p("new/file"), RENAME_EXCHANGE).unwrap();
}

/// More changes on top of an upper that already has redirects, opaque dirs and whiteouts.
fn more_changes(root: PathBuf) {
    let p = |r: &str| root.join(r);
    rename(p("renamed"), p("dest/renamed-again"));
    append(p("dest/renamed-again/w"), "w+\n");
    rm(p("dest/renamed-again/x"));
    write(p("opq/second"), "second\n");
    rename(p("keepdir"), p("keepdir2"));
    rm(p("keepdir2/k2"));
    rm(p("top-link"));
    write(p("hidden"), "hidden no more\n");
}

fn sanity(t: &BTreeMap<String, Entry>) {
    for must in [
        "renamed/y2/z",
        "renamed/w",
        "dest/ldir2/f",
        "dest/bottom2",
        "opq/fresh",
        "merged/u",
        "newlink",
        "top-link",
    ] {
        assert!(
            t.contains_key(must),
            "{must} is missing from the merged tree"
        );
    }
    for gone in [
        "ren",
        "todelete",
        "deldir",
        "opq/o1",
        "opq/o2",
        "ldir",
        "bottom",
        "merged/l1",
        "hidden",
    ] {
        assert!(
            !t.contains_key(gone),
            "{gone} should be gone from the merged tree"
        );
    }
    assert_eq!(t["shared"].data.as_deref(), Some(b"new file\n".as_slice()));
    assert_eq!(
        t["new/file"].data.as_deref(),
        Some(b"from lower0\n".as_slice())
    );
    assert_eq!(t["top"].data.as_deref(), Some(b"top\nmore\n".as_slice()));
    assert_eq!(t["big"].size, Some(4096 + 7));
    assert_eq!((t["perm"].mode, t["perm"].uid), (0o640, 4321));
}

struct Kernel {
    mnt: PathBuf,
}

impl Kernel {
    fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, mnt: &Path) -> Kernel {
        fs::create_dir_all(work).unwrap();
        fs::create_dir_all(mnt).unwrap();
        let ls: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let o = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=on",
            ls.join(":"),
            upper.display(),
            work.display()
        );
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "overlay", "overlay", "-o", &o]).arg(mnt);
        let desc = format!("{cmd:?}");
        let out = run_cmd(&mut cmd, CMD_TIMEOUT);
        let dmesg = run_cmd(
            Command::new("sh").args(["-c", "dmesg 2>/dev/null | grep -i overlay | tail -5"]),
            CMD_TIMEOUT,
        );
        assert!(
            out.ok(),
            "kernel overlayfs refused the upper: {desc}\n{}\ndmesg:\n{}",
            out.describe(),
            dmesg.stdout
        );
        assert_eq!(mounts_at(mnt).last().map(String::as_str), Some("overlay"));
        Kernel {
            mnt: mnt.to_path_buf(),
        }
    }

    fn tree(&self) -> BTreeMap<String, Entry> {
        let m = self.mnt.clone();
        with_timeout(
            Duration::from_secs(60),
            "reading the kernel overlayfs tree",
            move || tree(&m),
        )
    }

    fn unmount(self) {
        run_ok(Command::new("umount").arg(&self.mnt));
    }
}

#[test]
fn an_upper_written_by_strata_reads_the_same_under_kernel_overlayfs() {
    assert!(is_root(), "kernel overlayfs needs root");
    let mut m = lowers(Builder::new(2)).mount();
    let strata_view = m.run(|c| {
        changes(c.mnt.clone());
        let t = tree(&c.mnt);
        sanity(&t);
        t
    });
    m.unmount();
    let upper = m.upper.clone().unwrap();
    let k = Kernel::mount(
        &m.lowers,
        &upper,
        &m.base.join("kwork"),
        &m.base.join("kmnt"),
    );
    let kernel_view = k.tree();
    k.unmount();
    assert_same_tree(&strata_view, &kernel_view, "strata", "kernel overlayfs");

    // A second round on the same upper, again compared.
    m.mount_now();
    let strata_view2 = m.run(|c| {
        more_changes(c.mnt.clone());
        tree(&c.mnt)
    });
    m.unmount();
    let k = Kernel::mount(
        &m.lowers,
        &upper,
        &m.base.join("kwork2"),
        &m.base.join("kmnt"),
    );
    let kernel_view2 = k.tree();
    k.unmount();
    assert_same_tree(
        &strata_view2,
        &kernel_view2,
        "strata (round 2)",
        "kernel overlayfs (round 2)",
    );
}

#[test]
fn an_upper_written_by_kernel_overlayfs_reads_the_same_under_strata() {
    assert!(is_root(), "kernel overlayfs needs root");
    let mut m = lowers(Builder::new(2)).prepare();
    let upper = m.upper.clone().unwrap();
    let k = Kernel::mount(
        &m.lowers,
        &upper,
        &m.base.join("kwork"),
        &m.base.join("kmnt"),
    );
    let km = k.mnt.clone();
    let kernel_view = with_timeout(
        Duration::from_secs(60),
        "changes through kernel overlayfs",
        move || {
            changes(km.clone());
            let t = tree(&km);
            sanity(&t);
            t
        },
    );
    k.unmount();
    m.mount_now();
    let strata_view = m.run(|c| tree(&c.mnt));
    assert_same_tree(&kernel_view, &strata_view, "kernel overlayfs", "strata");

    // strata keeps working on the kernel's upper, and the kernel reads the result.
    let strata_view2 = m.run(|c| {
        more_changes(c.mnt.clone());
        tree(&c.mnt)
    });
    m.unmount();
    let k = Kernel::mount(
        &m.lowers,
        &upper,
        &m.base.join("kwork2"),
        &m.base.join("kmnt"),
    );
    let kernel_view2 = k.tree();
    k.unmount();
    assert_same_tree(
        &strata_view2,
        &kernel_view2,
        "strata (round 2)",
        "kernel overlayfs (round 2)",
    );
}

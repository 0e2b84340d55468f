//! Hostile layers: lower layers holding what an image from a stranger may hold. Symlinks to
//! absolute and escaping paths, hard links, device nodes, fifos and sockets, names with newlines
//! and invalid UTF-8, 255-byte names, a path longer than PATH_MAX, a tree 2,000 deep, a directory
//! of 10,000 entries (`STRATA_HOSTILE_ENTRIES=1000000` for the long form), and redirects and
//! whiteouts pointing outside the tree or at themselves. Each is served as it is (or refused
//! with the kernel's errno), a copy-up makes the same thing in the upper, the daemon neither
//! crashes nor hangs (every test runs under the harness's timeout and ends with the mount still
//! serving), and the lower layers and the host are unchanged.

mod common;
use common::*;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Run `f` on a mount of `b`, then check the lowers are as they were and the mount still serves.
fn served<T: Send + 'static>(b: Builder, f: impl FnOnce(Ctx) -> T + Send + 'static) -> T {
    let mut m = b.prepare();
    let before: Vec<_> = m.lowers.iter().map(|l| host_snapshot(l)).collect();
    m.timeout = Duration::from_secs(180);
    m.mount_now();
    let r = m.run(f);
    m.run(|c| {
        fs::read_dir(c.p("")).expect("the mount no longer serves");
    });
    m.unmount();
    for (i, b) in before.iter().enumerate() {
        assert_snapshot_unchanged(b, &m.lowers[i], &format!("lower{i}"));
    }
    r
}

fn cs(p: &OsStr) -> std::ffi::CString {
    std::ffi::CString::new(p.as_bytes()).unwrap()
}

/// openat(dirfd, name) of one component, never following a symlink.
fn openat(dfd: Option<&OwnedFd>, name: &OsStr, flags: i32) -> std::io::Result<OwnedFd> {
    let fd = dfd.map(|d| d.as_raw_fd()).unwrap_or(libc::AT_FDCWD);
    let r = unsafe {
        libc::openat(
            fd,
            cs(name).as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(unsafe { OwnedFd::from_raw_fd(r) })
    }
}

/// Walk `comps` below `root` one openat at a time (paths longer than PATH_MAX), making the
/// directories when `make` is set; returns the fd of the last one.
fn walk(root: &Path, comps: &[OsString], make: bool) -> std::io::Result<OwnedFd> {
    let mut fd = openat(None, root.as_os_str(), libc::O_RDONLY | libc::O_DIRECTORY)?;
    for c in comps {
        if make {
            unsafe { libc::mkdirat(fd.as_raw_fd(), cs(c).as_ptr(), 0o755) };
        }
        fd = openat(Some(&fd), c, libc::O_RDONLY | libc::O_DIRECTORY)?;
    }
    Ok(fd)
}

fn read_at(dfd: &OwnedFd, name: &str) -> std::io::Result<String> {
    let fd = openat(Some(dfd), OsStr::new(name), libc::O_RDONLY)?;
    let mut s = String::new();
    std::io::Read::read_to_string(&mut fs::File::from(fd), &mut s)?;
    Ok(s)
}

fn append_at(dfd: &OwnedFd, name: &str, data: &str) -> std::io::Result<()> {
    let fd = openat(
        Some(dfd),
        OsStr::new(name),
        libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT,
    )?;
    std::io::Write::write_all(&mut fs::File::from(fd), data.as_bytes())
}

#[test]
fn special_files_and_escaping_symlinks_are_served_and_copied_up_as_themselves() {
    let b = Builder::new(1);
    let sock = b.base().join("lower0").join("sock");
    let passwd = fs::symlink_metadata("/etc/passwd").unwrap();
    let b = b.lower(0, |l| {
        l.symlink("abs", "/etc/passwd");
        l.symlink("esc", "../../../../../../../../etc");
        l.symlink("dotdot", "..");
        l.symlink("selfloop", "selfloop");
        l.file("h1", "linked\n");
        l.hardlink("h1", "h2");
        l.chardev("null", 1, 3);
        l.blockdev("blk", 7, 200);
        l.fifo("fifo");
    });
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    served(b, |c| {
        assert_eq!(readlink(c.p("abs")), "/etc/passwd");
        assert_eq!(readlink(c.p("esc")), "../../../../../../../../etc");
        assert_eq!(readlink(c.p("dotdot")), "..");
        assert_errno(
            fs::read(c.p("selfloop")),
            libc::ELOOP,
            "open of a looping symlink",
        );
        assert_eq!(lstat(c.p("h1")).nlink(), 2);
        assert_eq!(ino(c.p("h1")), ino(c.p("h2")), "hard links are one inode");
        assert_eq!(kind(&lstat(c.p("null"))), 'c');
        assert_eq!(rdev_of(&lstat(c.p("null"))), (1, 3));
        assert_eq!(kind(&lstat(c.p("blk"))), 'b');
        assert_eq!(rdev_of(&lstat(c.p("blk"))), (7, 200));
        assert_eq!(kind(&lstat(c.p("fifo"))), 'p');
        assert_eq!(kind(&lstat(c.p("sock"))), 's');
        // Copy-ups (by a metadata change) make the same entry in the upper, never touching
        // what a symlink points at.
        for n in ["abs", "esc", "dotdot", "selfloop"] {
            lchown(&c.p(n), 4242, 4242).unwrap_or_else(|e| panic!("lchown {n}: {e}"));
            assert!(lstat(c.u(n)).file_type().is_symlink(), "{n} in the upper");
            assert_eq!(readlink(c.u(n)), readlink(c.l(0, n)));
            assert_eq!(lstat(c.u(n)).uid(), 4242);
        }
        for n in ["null", "blk", "fifo", "sock"] {
            chmod(&c.p(n), 0o600).unwrap_or_else(|e| panic!("chmod {n}: {e}"));
            let (u, l) = (lstat(c.u(n)), lstat(c.l(0, n)));
            assert_eq!(kind(&u), kind(&l), "{n}: the copy is of another type");
            assert_eq!(u.mode() & 0o7777, 0o600);
            if kind(&l) == 'c' || kind(&l) == 'b' {
                assert_eq!(rdev_of(&u), rdev_of(&l), "{n}: device number");
            }
        }
        append(c.p("h1"), "more\n");
        assert_eq!(read(c.p("h2")), "linked\nmore\n", "the other name of h1");
        rename(c.p("esc"), c.p("esc2"));
        assert_eq!(readlink(c.p("esc2")), "../../../../../../../../etc");
        rm(c.p("abs"));
        assert_enoent(c.p("abs"));
    });
    let now = fs::symlink_metadata("/etc/passwd").unwrap();
    assert_eq!(
        (now.uid(), now.mode(), now.mtime()),
        (passwd.uid(), passwd.mode(), passwd.mtime()),
        "/etc/passwd changed"
    );
}

#[test]
fn names_with_newlines_invalid_utf8_and_255_bytes_are_served_renamed_and_removed() {
    let long = "n".repeat(255);
    let names: Vec<OsString> = vec![
        OsString::from("new\nline"),
        OsString::from("\n"),
        OsString::from_vec(b"bad\xff\xfeutf8".to_vec()),
        OsString::from_vec(vec![0x80]),
        OsString::from(long.clone()),
        OsString::from(format!("{}.d", "d".repeat(253))),
    ];
    let b = Builder::new(1);
    let l0 = b.base().join("lower0");
    for (i, n) in names.iter().enumerate() {
        fs::write(l0.join(n), format!("content {i}\n")).unwrap();
    }
    fs::create_dir(l0.join(OsStr::from_bytes(b"dir\n\xff"))).unwrap();
    fs::write(
        l0.join(OsStr::from_bytes(b"dir\n\xff")).join(&long),
        "inner\n",
    )
    .unwrap();
    served(b, move |c| {
        let listed: std::collections::BTreeSet<OsString> = fs::read_dir(c.p(""))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        for n in &names {
            assert!(listed.contains(n), "{n:?} is not listed: {listed:?}");
        }
        assert_eq!(listed.len(), names.len() + 1, "{listed:?}");
        for (i, n) in names.iter().enumerate() {
            assert_eq!(
                fs::read_to_string(c.mnt.join(n)).unwrap(),
                format!("content {i}\n")
            );
        }
        // A name of 256 bytes is refused as the kernel refuses it.
        assert_errno(
            fs::write(c.p(&"m".repeat(256)), "x"),
            libc::ENAMETOOLONG,
            "a 256-byte name",
        );
        let dir = c.mnt.join(OsStr::from_bytes(b"dir\n\xff"));
        assert_eq!(fs::read_to_string(dir.join(&long)).unwrap(), "inner\n");
        // Copy-up (append), rename to another hostile name, unlink (a whiteout of 255 bytes).
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(dir.join(&long))
            .unwrap();
        std::io::Write::write_all(&mut f, b"+").unwrap();
        drop(f);
        assert_eq!(
            fs::read_to_string(
                c.upper
                    .as_ref()
                    .unwrap()
                    .join(OsStr::from_bytes(b"dir\n\xff"))
                    .join(&long)
            )
            .unwrap(),
            "inner\n+"
        );
        let to = c.mnt.join(OsStr::from_bytes(b"renamed\n\xfe"));
        fs::rename(c.mnt.join(&names[0]), &to).unwrap();
        assert_eq!(fs::read_to_string(&to).unwrap(), "content 0\n");
        assert!(!c.mnt.join(&names[0]).exists());
        fs::remove_file(c.mnt.join(&long)).unwrap();
        assert!(fs::symlink_metadata(c.mnt.join(&long)).is_err());
        fs::remove_file(c.mnt.join(&names[2])).unwrap();
        let after: std::collections::BTreeSet<OsString> = fs::read_dir(c.p(""))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!after.contains(OsStr::new(&long)) && !after.contains(&names[2]));
        assert!(after.contains(to.file_name().unwrap()));
    });
}

#[test]
fn a_path_past_path_max_and_a_tree_2000_deep_are_walked_and_copied_up() {
    let long: Vec<OsString> = (0..18)
        .map(|i| OsString::from(format!("{i:02}{}", "p".repeat(248))))
        .collect();
    assert!(long.iter().map(|c| c.len() + 1).sum::<usize>() > libc::PATH_MAX as usize);
    let deep: Vec<OsString> = std::iter::once(OsString::from("deep"))
        .chain((0..1999).map(|_| OsString::from("d")))
        .collect();
    let b = Builder::new(1);
    let l0 = b.base().join("lower0");
    for comps in [&long, &deep] {
        let fd = walk(&l0, comps, true).unwrap();
        append_at(&fd, "leaf", "leaf\n").unwrap();
    }
    served(b, move |c| {
        let upper = c.upper.clone().unwrap();
        for (what, comps) in [("the long path", &long), ("the 2000-deep tree", &deep)] {
            let fd = walk(&c.mnt, comps, false).unwrap_or_else(|e| panic!("walk {what}: {e}"));
            assert_eq!(read_at(&fd, "leaf").unwrap(), "leaf\n", "{what}");
            // A copy-up of the leaf copies up every directory above it.
            append_at(&fd, "leaf", "+").unwrap();
            append_at(&fd, "new", "new\n").unwrap();
            drop(fd);
            let ufd =
                walk(&upper, comps, false).unwrap_or_else(|e| panic!("{what} in the upper: {e}"));
            assert_eq!(read_at(&ufd, "leaf").unwrap(), "leaf\n+", "{what} upper");
            assert_eq!(read_at(&ufd, "new").unwrap(), "new\n", "{what} upper");
        }
        // A directory listing all the way down, through the kernel's own path walk.
        let out = run_cmd(
            std::process::Command::new("find")
                .arg(c.p("deep"))
                .args(["-name", "leaf"]),
            Duration::from_secs(120),
        );
        assert!(out.ok(), "find: {}", out.describe());
        assert_eq!(out.stdout.lines().count(), 1, "find: {}", out.stdout);
        // And removed as a whole (2,000 whiteouts and removals of copied-up directories).
        fs::remove_dir_all(c.p("deep")).unwrap();
        assert_enoent(c.p("deep"));
    });
}

#[test]
fn a_directory_of_many_entries_is_listed_whole() {
    let n: usize = std::env::var("STRATA_HOSTILE_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let b = Builder::new(1);
    let big = b.base().join("lower0").join("big");
    fs::create_dir(&big).unwrap();
    for i in 0..n {
        fs::File::create(big.join(format!("e{i}"))).unwrap();
    }
    served(b, move |c| {
        let count = |p: PathBuf| fs::read_dir(p).unwrap().count();
        assert_eq!(count(c.p("big")), n);
        assert!(exists(c.p(&format!("big/e{}", n - 1))));
        write(c.p("big/added"), "added");
        rm(c.p("big/e0"));
        assert_eq!(count(c.p("big")), n, "one added, one removed");
        assert_eq!(read(c.u("big/added")), "added");
    });
}

#[test]
fn redirects_and_whiteouts_pointing_outside_or_at_themselves_stay_inside_the_layers() {
    let b = Builder::new(3)
        .lower(0, |l| {
            // Redirects whose path leaves the tree, or names the directory itself.
            l.file("out/mine", "mine");
            l.redirect("out", "/../../../../etc");
            l.file("selfname/mine", "mine");
            l.redirect("selfname", "selfname");
            l.file("selfabs/mine", "mine");
            l.redirect("selfabs", "/selfabs");
            l.file("root/mine", "mine");
            l.redirect("root", "/");
            l.file("dots/mine", "mine");
            l.redirect("dots", "..");
            l.file("dot/mine", "mine");
            l.redirect("dot", ".");
            // A loop: p says it was q, and q (a layer down) says it was p.
            l.file("p/top", "top");
            l.redirect("p", "/q");
            // OCI whiteouts of ".", ".." and the empty name hide nothing.
            l.file("w/.wh..", "");
            l.file("w/.wh...", "");
            l.file("w/.wh.", "");
        })
        .lower(1, |l| {
            l.file("etc/layer-etc", "layer etc");
            l.file("selfname/below", "below");
            l.file("selfabs/below", "below");
            l.file("q/middle", "middle");
            l.redirect("q", "/p");
            l.file("w/kept", "kept");
        })
        .lower(2, |l| {
            l.file("p/bottom", "bottom");
            l.file("q/not-reached", "x");
        });
    served(b, move |c| {
        // Refused as kernel overlayfs refuses them: a ".." or "." in the path (EACCES, the
        // kernel's lookup_one_len), an empty path component such as "/" (EINVAL).
        for (d, e) in [
            ("out", libc::EACCES),
            ("dots", libc::EACCES),
            ("dot", libc::EACCES),
            ("root", libc::EINVAL),
        ] {
            assert_errno(fs::symlink_metadata(c.p(d)), e, &format!("lookup of {d}"));
            assert_errno(fs::read_dir(c.p(d)), e, &format!("readdir of {d}"));
        }
        // The listing of their parent still works, and nothing of the host's /etc shows.
        assert!(names(c.p("")).contains("p"));
        assert_enoent(c.p("passwd"));
        // A redirect naming the directory itself is no redirect; a loop across layers ends at
        // the bottom layer.
        assert_eq!(names(c.p("selfname")), set(&["mine", "below"]));
        assert_eq!(names(c.p("selfabs")), set(&["mine", "below"]));
        assert_eq!(names(c.p("p")), set(&["top", "middle", "bottom"]));
        assert_eq!(read(c.p("p/bottom")), "bottom");
        assert_eq!(names(c.p("w")), set(&["kept"]));
        assert_eq!(read(c.p("w/kept")), "kept");
        // Creates and copy-ups below the redirected directories land in the upper only.
        for d in ["selfname", "selfabs", "p"] {
            write(c.p(&format!("{d}/new")), "new");
            assert_eq!(read(c.u(&format!("{d}/new"))), "new");
        }
        append(c.p("p/bottom"), "+");
        assert_eq!(read(c.u("p/bottom")), "bottom+");
        assert_no_private_xattrs(&c.p("p"));
    });
}

//! Attribute and file operations: chmod, chown, utimens, truncate, fallocate, fsync, mknod,
//! mkfifo, symlink/readlink, statfs, xattrs; O_TRUNC, O_APPEND, O_EXCL; unlink of an open file.

mod common;
use common::*;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

#[test]
fn chmod_chown_utimens() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file_mode("f", "f", 0o644);
            l.file_mode("g", "g", 0o644);
            l.file_mode("t", "t", 0o644);
            l.dir("d").mode("d", 0o755);
        })
        .mount();
    m.run(|c| {
        chmod(&c.p("f"), 0o600).unwrap();
        chmod(&c.p("d"), 0o700).unwrap();
        lchown(&c.p("g"), 1234, 5678).unwrap();
        lutimens(
            &c.p("t"),
            (1_111_111_111, 222),
            (1_222_222_222, 333_333_333),
        )
        .unwrap();
        for (side, root) in [("mount", c.p("")), ("upper", c.u(""))] {
            assert_eq!(
                lstat(root.join("f")).mode() & 0o7777,
                0o600,
                "{side}: chmod"
            );
            assert_eq!(
                lstat(root.join("d")).mode() & 0o7777,
                0o700,
                "{side}: chmod of a dir"
            );
            let g = lstat(root.join("g"));
            assert_eq!((g.uid(), g.gid()), (1234, 5678), "{side}: chown");
            let t = lstat(root.join("t"));
            assert_eq!(
                (t.atime(), t.atime_nsec()),
                (1_111_111_111, 222),
                "{side}: atime"
            );
            assert_eq!(
                (t.mtime(), t.mtime_nsec()),
                (1_222_222_222, 333_333_333),
                "{side}: mtime"
            );
        }
        // Only one side changed, and UTIME_NOW works.
        lutimens(&c.p("g"), (0, libc::UTIME_OMIT), (0, libc::UTIME_NOW)).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((lstat(c.p("g")).mtime() - now).abs() <= 5, "UTIME_NOW");
        assert_eq!(
            lstat(c.l(0, "f")).mode() & 0o7777,
            0o644,
            "the lower changed"
        );
        assert_eq!(lstat(c.l(0, "g")).uid(), 0, "the lower changed");
        // chown -1 keeps the other id.
        std::os::unix::fs::chown(c.p("g"), Some(42), None).unwrap();
        let g = lstat(c.p("g"));
        assert_eq!((g.uid(), g.gid()), (42, 5678));
    });
}

#[test]
fn truncate_and_open_flags() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("tr", "0123456789");
            l.file("otrunc", "abc");
            l.file("app", "abc");
            l.file("excl", "excl");
            l.file("wh", "wh");
            l.symlink("dangling", "nowhere");
        })
        .mount();
    m.run(|c| {
        let f = OpenOptions::new().write(true).open(c.p("tr")).unwrap();
        f.set_len(3).unwrap();
        assert_eq!(read(c.p("tr")), "012");
        f.set_len(8192).unwrap();
        drop(f);
        let data = read_bytes(c.p("tr"));
        assert_eq!(data.len(), 8192);
        assert_eq!(&data[..3], b"012");
        assert!(
            data[3..].iter().all(|b| *b == 0),
            "truncate up must read as zeros"
        );
        assert_eq!(lstat(c.u("tr")).len(), 8192);
        assert_eq!(read(c.l(0, "tr")), "0123456789");

        // O_TRUNC
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(c.p("otrunc"))
            .unwrap();
        assert_eq!(lstat(c.p("otrunc")).len(), 0, "O_TRUNC did not truncate");
        f.write_all(b"x").unwrap();
        drop(f);
        assert_eq!(read(c.p("otrunc")), "x");
        assert_eq!(read(c.l(0, "otrunc")), "abc");

        // O_APPEND, from two descriptors
        let mut a = OpenOptions::new().append(true).open(c.p("app")).unwrap();
        let mut b = OpenOptions::new().append(true).open(c.p("app")).unwrap();
        a.write_all(b"d").unwrap();
        b.write_all(b"e").unwrap();
        a.write_all(b"f").unwrap();
        drop((a, b));
        assert_eq!(read(c.p("app")), "abcdef");

        // O_EXCL
        let excl = |p: &std::path::Path| OpenOptions::new().write(true).create_new(true).open(p);
        assert_errno(excl(&c.p("excl")), libc::EEXIST, "O_EXCL on a lower file");
        write(c.p("upper_file"), "u");
        assert_errno(
            excl(&c.p("upper_file")),
            libc::EEXIST,
            "O_EXCL on an upper file",
        );
        assert_errno(
            excl(&c.p("dangling")),
            libc::EEXIST,
            "O_EXCL on a dangling lower symlink",
        );
        assert_enoent(c.p("nowhere"));
        rm(c.p("wh"));
        excl(&c.p("wh")).expect("O_EXCL over a whiteout");
        excl(&c.p("brand_new")).expect("O_EXCL of a new name");
        assert_eq!(
            names(c.p("")),
            set(&[
                "tr",
                "otrunc",
                "app",
                "excl",
                "wh",
                "dangling",
                "upper_file",
                "brand_new"
            ])
        );
    });
}

#[test]
fn large_writes_and_reads_round_trip() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("lower_big", vec![7u8; 3 << 20]);
        })
        .mount();
    m.run(|c| {
        let data: Vec<u8> = (0..(8u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        write(c.p("big"), &data);
        assert!(
            read_bytes(c.p("big")) == data,
            "8 MiB file read back differently through the mount"
        );
        assert!(
            read_bytes(c.u("big")) == data,
            "8 MiB file differs in the upper"
        );
        // Overwrite a range in the middle of a lower file.
        let f = OpenOptions::new()
            .write(true)
            .open(c.p("lower_big"))
            .unwrap();
        f.write_all_at(&[9u8; 100_000], 1_000_000).unwrap();
        drop(f);
        let got = read_bytes(c.p("lower_big"));
        assert_eq!(got.len(), 3 << 20);
        assert!(got[..1_000_000].iter().all(|b| *b == 7));
        assert!(got[1_000_000..1_100_000].iter().all(|b| *b == 9));
        assert!(got[1_100_000..].iter().all(|b| *b == 7));
    });
}

#[test]
fn fallocate_and_fsync() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("lower", "lower data");
        })
        .mount();
    m.run(|c| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(c.p("fa"))
            .unwrap();
        fallocate(&f, 0, 0, 1 << 20).expect("fallocate");
        let st = f.metadata().unwrap();
        assert_eq!(st.len(), 1 << 20, "fallocate did not extend the file");
        assert!(
            st.blocks() >= 2048,
            "fallocate did not allocate: {} blocks",
            st.blocks()
        );
        fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20).expect("fallocate KEEP_SIZE");
        let st = f.metadata().unwrap();
        assert_eq!(st.len(), 1 << 20, "KEEP_SIZE changed the size");
        assert!(
            st.blocks() >= 4096,
            "KEEP_SIZE did not allocate: {} blocks",
            st.blocks()
        );
        f.write_all_at(b"data", 4096).unwrap();
        fallocate(
            &f,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            8192,
        )
        .expect("punch hole");
        let mut buf = [1u8; 8];
        f.read_exact_at(&mut buf, 4096).unwrap();
        assert_eq!(buf, [0u8; 8], "punched range does not read as zeros");
        f.sync_all().expect("fsync");
        f.sync_data().expect("fdatasync");
        drop(f);
        assert!(lstat(c.u("fa")).blocks() >= 2048);

        // On a lower file: copy-up, then allocate.
        let f = OpenOptions::new().write(true).open(c.p("lower")).unwrap();
        fallocate(&f, 0, 0, 65536).expect("fallocate on a lower file");
        f.sync_all().expect("fsync of a copied-up file");
        drop(f);
        assert_eq!(lstat(c.p("lower")).len(), 65536);
        assert_eq!(&read_bytes(c.u("lower"))[..10], b"lower data");

        // fsync of a directory.
        let d = File::open(c.p("")).unwrap();
        d.sync_all().expect("fsync of a directory");
    });
}

#[test]
fn mknod_mkfifo_symlink_readlink() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.symlink("lower_link", "../some/where");
        })
        .mount();
    m.run(|c| {
        mknod(&c.p("cdev"), libc::S_IFCHR | 0o600, 1, 3).expect("mknod char");
        mknod(&c.p("bdev"), libc::S_IFBLK | 0o600, 7, 0).expect("mknod block");
        mknod(&c.p("reg"), libc::S_IFREG | 0o640, 0, 0).expect("mknod regular");
        mknod(&c.p("nfifo"), libc::S_IFIFO | 0o644, 0, 0).expect("mknod fifo");
        mkfifo(&c.p("fifo"), 0o600).expect("mkfifo");
        std::os::unix::fs::symlink("target/x", c.p("sl")).expect("symlink");
        let long = "L".repeat(1000);
        std::os::unix::fs::symlink(&long, c.p("long")).expect("symlink with a long target");
        for (side, root) in [("mount", c.p("")), ("upper", c.u(""))] {
            let cd = lstat(root.join("cdev"));
            assert_eq!(
                (kind(&cd), rdev_of(&cd)),
                ('c', (1, 3)),
                "{side}: char device"
            );
            let bd = lstat(root.join("bdev"));
            assert_eq!(
                (kind(&bd), rdev_of(&bd)),
                ('b', (7, 0)),
                "{side}: block device"
            );
            let r = lstat(root.join("reg"));
            assert_eq!(
                (kind(&r), r.mode() & 0o777),
                ('f', 0o640),
                "{side}: mknod S_IFREG"
            );
            assert_eq!(
                kind(&lstat(root.join("nfifo"))),
                'p',
                "{side}: mknod S_IFIFO"
            );
            assert_eq!(kind(&lstat(root.join("fifo"))), 'p', "{side}: mkfifo");
            assert_eq!(kind(&lstat(root.join("sl"))), 'l', "{side}: symlink");
            assert_eq!(readlink(root.join("sl")), "target/x", "{side}: readlink");
            assert_eq!(
                readlink(root.join("long")),
                long,
                "{side}: readlink of a long target"
            );
            assert_eq!(
                lstat(root.join("long")).len(),
                1000,
                "{side}: symlink st_size"
            );
        }
        assert_eq!(readlink(c.p("lower_link")), "../some/where");
        assert_errno(
            fs::read_link(c.p("reg")),
            libc::EINVAL,
            "readlink of a regular file",
        );
        // Data goes through a fifo created in the mount.
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(c.p("fifo"))
            .expect("open fifo O_RDWR");
        f.write_all(b"through the fifo").unwrap();
        let mut buf = [0u8; 16];
        f.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"through the fifo");
    });
}

#[test]
fn statfs_reports_the_upper_filesystem() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("f", "f");
        })
        .mount();
    m.run(|c| {
        let s = statvfs(&c.p("")).expect("statfs of the mount");
        let u = statvfs(&c.u("")).unwrap();
        assert!(
            s.f_bsize > 0 && s.f_blocks > 0,
            "statfs: bsize {} blocks {}",
            s.f_bsize,
            s.f_blocks
        );
        assert!(s.f_namemax >= 255, "statfs: namemax {}", s.f_namemax);
        let size = |v: &libc::statvfs| v.f_blocks as u128 * v.f_frsize as u128;
        assert_eq!(
            size(&s),
            size(&u),
            "total size differs from the upper filesystem's"
        );
        let free = |v: &libc::statvfs| v.f_bavail as i128 * v.f_frsize as i128;
        assert!(
            (free(&s) - free(&u)).abs() < (256 << 20),
            "free space differs from the upper's"
        );
    });
}

#[test]
fn xattr_get_set_list_remove() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("f", "f")
                .xattr("f", "user.orig", b"lower")
                .xattr("f", "user.drop", b"x");
            l.dir("d");
        })
        .mount();
    m.run(|c| {
        let f = c.p("f");
        assert_eq!(lgetxattr(&f, "user.orig").unwrap(), b"lower");
        assert_eq!(
            llistxattr(&f).unwrap(),
            vec!["user.drop".to_string(), "user.orig".to_string()]
        );
        assert_errno(
            lgetxattr(&f, "user.missing"),
            libc::ENODATA,
            "getxattr of a missing name",
        );

        lsetxattr(&f, "user.a", b"1", 0).unwrap();
        // Big, but leaving room in ext4's one xattr block for the bookkeeping a copy-up adds
        // (kernel overlayfs's trusted.overlay.origin refuses a 4000-byte value there too).
        let big: Vec<u8> = (0..3800u32).map(|i| (i % 251) as u8).collect();
        lsetxattr(&f, "user.big", &big, 0).unwrap();
        assert_eq!(lgetxattr(&f, "user.big").unwrap(), big);
        assert_errno(
            lsetxattr(&f, "user.a", b"2", libc::XATTR_CREATE),
            libc::EEXIST,
            "XATTR_CREATE on an existing name",
        );
        assert_errno(
            lsetxattr(&f, "user.none", b"2", libc::XATTR_REPLACE),
            libc::ENODATA,
            "XATTR_REPLACE on a missing name",
        );
        lsetxattr(&f, "user.a", b"2", libc::XATTR_REPLACE).unwrap();
        assert_eq!(lgetxattr(&f, "user.a").unwrap(), b"2");
        lsetxattr(&f, "user.empty", b"", 0).unwrap();
        assert_eq!(lgetxattr(&f, "user.empty").unwrap(), b"");

        lremovexattr(&f, "user.drop").expect("removexattr of an xattr that lives in the lower");
        assert_errno(
            lgetxattr(&f, "user.drop"),
            libc::ENODATA,
            "getxattr after removexattr",
        );
        assert_errno(
            lremovexattr(&f, "user.drop"),
            libc::ENODATA,
            "removexattr twice",
        );
        assert_eq!(
            llistxattr(&f).unwrap(),
            vec![
                "user.a".to_string(),
                "user.big".to_string(),
                "user.empty".to_string(),
                "user.orig".to_string()
            ]
        );
        // The upper holds the same, besides the overlay's own bookkeeping (the st_ino kept).
        let upper: Vec<String> = llistxattr(&c.u("f"))
            .unwrap()
            .into_iter()
            .filter(|n| !n.starts_with("trusted.overlay.") && !n.starts_with("user.overlay."))
            .collect();
        assert_eq!(upper, llistxattr(&f).unwrap(), "the upper's xattrs");
        assert_eq!(
            lgetxattr(&c.l(0, "f"), "user.drop").unwrap(),
            b"x",
            "the lower changed"
        );

        lsetxattr(&c.p("d"), "user.dir", b"d", 0).unwrap();
        assert_eq!(lgetxattr(&c.p("d"), "user.dir").unwrap(), b"d");
        assert_eq!(lgetxattr(&c.u("d"), "user.dir").unwrap(), b"d");
    });
}

#[test]
fn an_unlinked_open_file_stays_readable() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("lower", "lower data");
        })
        .mount();
    m.run(|c| {
        let mut f = File::open(c.p("lower")).unwrap();
        rm(c.p("lower"));
        assert_enoent(c.p("lower"));
        let mut s = String::new();
        f.read_to_string(&mut s)
            .expect("read of an unlinked lower file");
        assert_eq!(s, "lower data");
        assert_eq!(f.metadata().expect("fstat of an unlinked file").len(), 10);

        write(c.p("upper"), "upper data");
        let mut g = OpenOptions::new()
            .read(true)
            .write(true)
            .open(c.p("upper"))
            .unwrap();
        rm(c.p("upper"));
        g.seek(SeekFrom::End(0)).unwrap();
        g.write_all(b" and more")
            .expect("write to an unlinked file");
        g.seek(SeekFrom::Start(0)).unwrap();
        let mut s = String::new();
        g.read_to_string(&mut s).unwrap();
        assert_eq!(s, "upper data and more");
        drop((f, g));
        assert!(
            names(c.p("")).is_empty(),
            "unlinked files still listed: {:?}",
            names(c.p(""))
        );
    });
}

/// What stress-ng's copy-file, fallocate and fsize stressors do: change a file through its fd
/// after its last name is gone (ftruncate, fchmod, fchown, futimens, fallocate), for a new file
/// and for a lower one opened for writing (so copied up at its open).
#[test]
fn an_unlinked_open_file_can_be_truncated_chmoded_chowned_and_touched() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("lower", "lower data");
        })
        .mount();
    m.run(|c| {
        write(c.p("new"), "new data");
        for name in ["new", "lower"] {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(c.p(name))
                .unwrap();
            rm(c.p(name));
            f.set_len(3)
                .unwrap_or_else(|e| panic!("ftruncate of unlinked {name}: {e}"));
            assert_eq!(f.metadata().unwrap().len(), 3, "{name}");
            f.set_len(1 << 20).unwrap();
            assert_eq!(f.metadata().unwrap().len(), 1 << 20, "{name}");
            let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 2 << 20) };
            assert_eq!(
                r,
                0,
                "fallocate of unlinked {name}: {}",
                io::Error::last_os_error()
            );
            assert_eq!(f.metadata().unwrap().len(), 2 << 20, "{name}");
            f.set_permissions(fs::Permissions::from_mode(0o640))
                .unwrap_or_else(|e| panic!("fchmod of unlinked {name}: {e}"));
            assert_eq!(f.metadata().unwrap().mode() & 0o7777, 0o640, "{name}");
            let r = unsafe { libc::fchown(f.as_raw_fd(), 1234, 5678) };
            assert_eq!(
                r,
                0,
                "fchown of unlinked {name}: {}",
                io::Error::last_os_error()
            );
            let md = f.metadata().unwrap();
            assert_eq!((md.uid(), md.gid()), (1234, 5678), "{name}");
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
            f.set_modified(t)
                .unwrap_or_else(|e| panic!("futimens of unlinked {name}: {e}"));
            assert_eq!(f.metadata().unwrap().mtime(), 1_000_000_000, "{name}");
            let mut head = [0u8; 3];
            f.read_exact_at(&mut head, 0).unwrap();
            assert_eq!(&head, if name == "new" { b"new" } else { b"low" });
        }
        assert!(names(c.p("")).is_empty(), "{:?}", names(c.p("")));
    });
    assert_eq!(read(m.l(0, "lower")), "lower data", "the lower changed");
}

/// A file capability (`cap_net_raw+ep`), as `setcap` writes it.
const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Run `sh -c SCRIPT sh FILE` as root or as the unprivileged test user.
fn sh_on(file: &std::path::Path, script: &str, unprivileged: bool) {
    let argv: Vec<&std::ffi::OsStr> = ["sh", "-c", script, "sh"]
        .into_iter()
        .map(std::ffi::OsStr::new)
        .chain([file.as_os_str()])
        .collect();
    let mut cmd = if unprivileged {
        as_test_user(&argv)
    } else {
        let mut c = std::process::Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    };
    let out = run_cmd(&mut cmd, CMD_TIMEOUT);
    assert!(
        out.ok(),
        "{script} on {}: {}",
        file.display(),
        out.describe()
    );
}

/// Writes, truncations and chowns drop set-user-ID, set-group-ID and file capabilities exactly
/// as the kernel's own filesystems do: each case runs on a host directory (the reference) and
/// on the mount, and the modes must agree, with a few written out as well.
#[test]
fn writes_truncations_and_chowns_drop_privileges_as_linux_does() {
    const WRITE: &str = "echo more >> \"$1\"";
    const TRUNCATE: &str = "truncate -s 1 \"$1\"";
    const O_TRUNC: &str = ": > \"$1\"";
    const CHOWN: &str = "chown 1:1 \"$1\"";
    // (name, mode, operation, as the unprivileged user, expected mode)
    let cases: [(&str, u32, &str, bool, u32); 9] = [
        ("root-write", 0o6777, WRITE, false, 0o6777),
        ("user-write", 0o6777, WRITE, true, 0o777),
        ("user-write-nogx", 0o6767, WRITE, true, 0o767),
        ("root-truncate", 0o6777, TRUNCATE, false, 0o6777),
        ("user-truncate", 0o6777, TRUNCATE, true, 0o777),
        ("root-otrunc", 0o6777, O_TRUNC, false, 0o6777),
        ("user-otrunc", 0o4777, O_TRUNC, true, 0o777),
        ("chown", 0o6777, CHOWN, false, 0o777),
        ("chown-nogx", 0o6767, CHOWN, false, 0o2767),
    ];
    let b = Builder::new(1).lower(0, |l| {
        l.file_mode("lower-suid", "lower", 0o4777);
    });
    let reference = b.host_dir("reference");
    let m = b.mount();
    chmod(&m.base, 0o755).unwrap();
    chmod(&reference.root, 0o755).unwrap();
    let refroot = reference.root.clone();
    m.run(move |c| {
        for (name, mode, script, unprivileged, want) in cases {
            let mut got = Vec::new();
            for root in [refroot.clone(), c.p("")] {
                let f = root.join(name);
                write(&f, "data\n");
                chmod(&f, mode).unwrap();
                sh_on(&f, script, unprivileged);
                got.push(lstat(&f).mode() & 0o7777);
            }
            assert_eq!(
                got[1], got[0],
                "{name}: mode {:o} on the mount, {:o} on the host filesystem",
                got[1], got[0]
            );
            assert_eq!(got[1], want, "{name}: mode {:o}, expected {want:o}", got[1]);
        }
        // A lower set-user-ID file written by a user is copied up without the bit.
        sh_on(&c.p("lower-suid"), WRITE, true);
        assert_eq!(lstat(c.p("lower-suid")).mode() & 0o7777, 0o777);
        assert_eq!(lstat(c.u("lower-suid")).mode() & 0o7777, 0o777);
        assert_eq!(lstat(c.l(0, "lower-suid")).mode() & 0o7777, 0o4777);
        // A file capability goes with any write, even root's; the set-user-ID bit stays.
        let f = c.p("capable");
        write(&f, "data\n");
        chmod(&f, 0o4755).unwrap();
        lsetxattr(&f, "security.capability", &CAP_NET_RAW, 0).unwrap();
        assert!(lgetxattr(&f, "security.capability").is_ok());
        sh_on(&f, WRITE, false);
        assert_errno(
            lgetxattr(&f, "security.capability"),
            libc::ENODATA,
            "security.capability after a write",
        );
        assert_eq!(lstat(&f).mode() & 0o7777, 0o4755);
    });
}

/// A write through a shared mapping changes the file's mtime and ctime, seen by stat once the
/// file is closed (xfstests generic/080), with and without passthrough. With passthrough the
/// mapping is the layer file's, so neither the kernel's FUSE inode nor the daemon sees the
/// write; the close must still leave no cached, stale times behind. The times are asked for
/// alone, as `stat -c %Y` asks: a statx for every field would refresh them with the atime,
/// which the kernel drops from its cache at every mapping.
#[test]
fn a_write_through_mmap_updates_mtime_and_ctime_after_close() {
    for opt in [None, Some("passthrough=off")] {
        let mut b = Builder::new(1).lower(0, |l| {
            l.file("lower", vec![1u8; 4096]);
        });
        if let Some(o) = opt {
            b = b.opt(o);
        }
        let m = b.mount();
        m.run(move |c| {
            let what = opt.unwrap_or("passthrough on");
            for name in ["new", "lower"] {
                let p = c.p(name);
                if name == "new" {
                    let f = File::create(&p).unwrap();
                    f.write_all_at(&[2u8; 4096], 0).unwrap();
                    f.sync_all().unwrap();
                } else {
                    // Copied up (and its attributes cached) before the mapping is made.
                    OpenOptions::new().write(true).open(&p).unwrap();
                }
                let before = times(&p);
                std::thread::sleep(std::time::Duration::from_millis(50));
                let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
                // SAFETY: a fresh shared mapping of 4096 bytes of a file that long, unmapped
                // before the file is closed.
                unsafe {
                    let a = libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        f.as_raw_fd(),
                        0,
                    );
                    assert_ne!(a, libc::MAP_FAILED, "{what}: mmap of {name}");
                    *(a as *mut u8).add(10) = 9;
                    assert_eq!(libc::munmap(a, 4096), 0);
                }
                drop(f);
                let after = times(&p);
                let upper = times(&c.u(name));
                assert_eq!(
                    read_bytes(&p)[10],
                    9,
                    "{what}: {name}: the write is not there"
                );
                assert!(
                    after.0 > before.0,
                    "{what}: {name}: mtime {:?} before the write through mmap, {:?} after \
                     (the upper's: {:?})",
                    before.0,
                    after.0,
                    upper.0
                );
                assert!(
                    after.1 > before.1,
                    "{what}: {name}: ctime unchanged by the write through mmap: {:?}",
                    after.1
                );
                assert_eq!(
                    after, upper,
                    "{what}: {name}: the mount's times are not the upper's"
                );
            }
        });
    }
}

/// mtime and ctime of `p`, and nothing else asked of the filesystem (statx with only those).
fn times(p: &std::path::Path) -> ((i64, u32), (i64, u32)) {
    let c = cpath(p);
    // SAFETY: statx fills the zeroed struct it is given; the path is a NUL-terminated string.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MTIME | libc::STATX_CTIME,
            &mut stx,
        )
    };
    assert_eq!(
        r,
        0,
        "statx {}: {}",
        p.display(),
        io::Error::last_os_error()
    );
    (
        (stx.stx_mtime.tv_sec, stx.stx_mtime.tv_nsec),
        (stx.stx_ctime.tv_sec, stx.stx_ctime.tv_nsec),
    )
}

/// Setting a POSIX access ACL changes the mode (its owner, group and other entries are the
/// mode's bits): stat shows the new mode at once, as on kernel overlayfs (`setfacl -m
/// u::rwx,g::rwx,o::rwx f` then `stat -c %A f`, xfstests generic/375). The mode is asked for
/// alone, as stat(1) asks, so no other field's refresh hides a stale one.
#[test]
fn setting_an_access_acl_shows_its_mode_at_once() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("lower", "x");
        })
        .mount();
    m.run(|c| {
        // system.posix_acl_access, version 2: user::rwx, group::rwx, other::rwx.
        let mut acl = 2u32.to_le_bytes().to_vec();
        for tag in [0x01u16, 0x04, 0x20] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&7u16.to_le_bytes());
            acl.extend_from_slice(&u32::MAX.to_le_bytes());
        }
        write(c.p("new"), "x");
        for name in ["new", "lower"] {
            let p = c.p(name);
            chmod(&p, 0o2755).unwrap();
            assert_eq!(mode_alone(&p), 0o2755, "{name}: mode after chmod");
            lsetxattr(&p, "system.posix_acl_access", &acl, 0).expect("set the access ACL");
            assert_eq!(
                lstat(c.u(name)).mode() & 0o7777,
                0o2777,
                "{name}: the upper's mode after the ACL"
            );
            assert_eq!(
                mode_alone(&p),
                0o2777,
                "{name}: the mount's mode after setting the ACL u::rwx,g::rwx,o::rwx"
            );
        }
    });
}

/// The permission and set-id bits of `p`, and nothing else asked of the filesystem.
fn mode_alone(p: &std::path::Path) -> u32 {
    let c = cpath(p);
    // SAFETY: statx fills the zeroed struct it is given; the path is a NUL-terminated string.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_MODE,
            &mut stx,
        )
    };
    assert_eq!(
        r,
        0,
        "statx {}: {}",
        p.display(),
        io::Error::last_os_error()
    );
    u32::from(stx.stx_mode) & 0o7777
}

/// An owner outside the file's group who sets an access ACL loses the set-group-ID bit, as with
/// chmod; on kernel overlayfs as on any Linux filesystem (xfstests generic/375).
#[test]
fn an_access_acl_set_by_an_owner_outside_the_group_drops_set_group_id() {
    let (uid, gid) = ensure_test_user();
    let m = Builder::new(1).mount();
    m.run(move |c| {
        for name in ["file", "dir"] {
            let p = c.p(name);
            if name == "dir" {
                mkdir(&p);
            } else {
                write(&p, "x");
            }
            // Owned by the test user, in a group it is not in.
            lchown(&p, uid, gid + 1000).unwrap();
            chmod(&p, 0o2755).unwrap();
            // system.posix_acl_access, version 2: user::rwx, group::rwx, other::rwx.
            sh_on(
                &p,
                "setfattr -n system.posix_acl_access \
                 -v 0x0200000001000700ffffffff04000700ffffffff20000700ffffffff \"$1\"",
                true,
            );
            assert_eq!(
                lstat(c.u(name)).mode() & 0o7777,
                0o777,
                "{name}: the upper's mode after the owner outside its group set an ACL"
            );
            assert_eq!(mode_alone(&p), 0o777, "{name}: the mount's mode");
        }
    });
}

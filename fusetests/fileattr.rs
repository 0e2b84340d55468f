//! Inode flags through the mount, as on kernel overlayfs: `lsattr` reads a lower file's flags
//! without copying it up, `chattr` copies the file up and sets them on the upper one, and the
//! flags then mean what they mean: an immutable file refuses every change, an append-only
//! directory allows creating and refuses removing, a lower entry included.

mod common;
use common::*;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Clears the flags the test set on the upper, so that it can be removed even after a failed
/// assertion.
struct ClearFlags(PathBuf);

impl Drop for ClearFlags {
    fn drop(&mut self) {
        let _ = try_run_cmd(
            std::process::Command::new("chattr")
                .args(["-R", "-i", "-a"])
                .arg(&self.0),
            Duration::from_secs(30),
        );
    }
}

fn chattr(flags: &str, p: &Path) -> CmdOut {
    run_cmd(
        std::process::Command::new("chattr").arg(flags).arg(p),
        Duration::from_secs(30),
    )
}

/// The flag letters `lsattr -d` shows for `p`, without the ones every ext4 file has.
fn lsattr(p: &Path) -> String {
    let out = run_ok(std::process::Command::new("lsattr").arg("-d").arg(p));
    let flags = out
        .stdout
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    flags.chars().filter(|c| *c != '-' && *c != 'e').collect()
}

/// FS_IOC_FSGETXATTR's fsx_xflags (xfs_io's `lsattr`).
fn fsx_xflags(p: &Path) -> u32 {
    let f = File::open(p).unwrap();
    let mut buf = [0u8; 28];
    let r = unsafe { libc::ioctl(f.as_raw_fd(), 0x801c_581f, buf.as_mut_ptr()) };
    assert_eq!(
        r,
        0,
        "FS_IOC_FSGETXATTR on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    u32::from_ne_bytes(buf[..4].try_into().unwrap())
}

const FS_XFLAG_IMMUTABLE: u32 = 0x8;
const FS_XFLAG_NODUMP: u32 = 0x80;

#[test]
fn chattr_copies_up_and_an_immutable_file_refuses_every_change() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("f", "lower\n");
            l.file("other", "o\n");
        })
        .mount();
    let upper = m.upper.clone().unwrap();
    let _clear = ClearFlags(upper.clone());
    let lower_before = host_snapshot(&m.lowers[0]);
    m.run(move |c| {
        // Reading flags copies nothing up.
        assert_eq!(lsattr(&c.p("f")), "");
        assert_eq!(fsx_xflags(&c.p("f")) & FS_XFLAG_IMMUTABLE, 0);
        assert!(!exists(c.u("f")), "lsattr copied f up");

        let before = lstat(c.p("f"));
        let out = chattr("+i", &c.p("f"));
        assert!(out.ok(), "chattr +i: {}", out.describe());
        assert_eq!(lsattr(&c.p("f")), "i", "the merged view");
        assert_eq!(lsattr(&c.u("f")), "i", "the upper file");
        assert_ne!(fsx_xflags(&c.p("f")) & FS_XFLAG_IMMUTABLE, 0);
        assert_eq!(read(c.p("f")), "lower\n");
        assert!(
            lstat(c.p("f")).ctime_nsec_pair() > before.ctime_nsec_pair(),
            "chattr did not move the ctime the mount shows"
        );

        let w = OpenOptions::new().append(true).open(c.p("f"));
        assert_errno(w, libc::EPERM, "open an immutable file for appending");
        assert_errno(std::fs::remove_file(c.p("f")), libc::EPERM, "unlink");
        assert_errno(std::fs::rename(c.p("f"), c.p("g")), libc::EPERM, "rename");
        assert_errno(chmod(&c.p("f"), 0o600), libc::EPERM, "chmod");
        assert_errno(
            std::fs::hard_link(c.p("f"), c.p("link")),
            libc::EPERM,
            "link",
        );
        assert_eq!(read(c.p("f")), "lower\n");

        let out = chattr("-i", &c.p("f"));
        assert!(out.ok(), "chattr -i: {}", out.describe());
        assert_eq!(lsattr(&c.p("f")), "");
        append(c.p("f"), "more\n");
        assert_eq!(read(c.p("f")), "lower\nmore\n");

        // xfs_io's interface sets the same flags.
        let out = chattr("+d", &c.p("other"));
        assert!(out.ok(), "chattr +d: {}", out.describe());
        assert_ne!(fsx_xflags(&c.p("other")) & FS_XFLAG_NODUMP, 0);
        assert_eq!(lsattr(&c.u("other")), "d");
    });
    drop(_clear);
    assert_snapshot_unchanged(&lower_before, &m.lowers[0], "lower");
}

#[test]
fn an_append_only_directory_keeps_its_lower_entries() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("d/lower", "l\n");
            l.file("d/sub/x", "x\n");
            l.file("frozen/sub/y", "y\n");
        })
        .mount();
    let _clear = ClearFlags(m.upper.clone().unwrap());
    m.run(|c| {
        let out = chattr("+a", &c.p("d"));
        assert!(out.ok(), "chattr +a: {}", out.describe());
        write(c.p("d/new"), "n\n");
        assert_eq!(
            read(c.p("d/new")),
            "n\n",
            "an append-only directory allows creating"
        );
        assert_errno(
            std::fs::remove_file(c.p("d/lower")),
            libc::EPERM,
            "unlink of a lower entry",
        );
        assert!(
            !exists(c.u("d/lower")) && !exists(oci_whiteout_path(&c.u(""), "d/lower")),
            "a whiteout was left for a refused unlink"
        );
        assert_errno(
            std::fs::remove_file(c.p("d/new")),
            libc::EPERM,
            "unlink of an upper entry",
        );
        assert_errno(
            std::fs::rename(c.p("d/lower"), c.p("moved")),
            libc::EPERM,
            "rename out of it",
        );
        assert_eq!(names(c.p("d")), set(&["lower", "new", "sub"]));

        // The VFS refuses a removal in an immutable directory before it looks at the victim:
        // EPERM, not ENOTEMPTY.
        let out = chattr("+i", &c.p("frozen"));
        assert!(out.ok(), "chattr +i: {}", out.describe());
        assert_errno(std::fs::remove_dir(c.p("frozen/sub")), libc::EPERM, "rmdir");
        assert_errno(
            std::fs::File::create(c.p("frozen/new")),
            libc::EPERM,
            "create in an immutable directory",
        );

        for (d, f) in [("d", "-a"), ("frozen", "-i")] {
            let out = chattr(f, &c.p(d));
            assert!(out.ok(), "chattr {f}: {}", out.describe());
        }
        rm(c.p("d/lower"));
        assert_enoent(c.p("d/lower"));
        assert_eq!(read(c.l(0, "d/lower")), "l\n", "the lower file");
    });
}

/// ctime as (seconds, nanoseconds), comparable.
trait CtimePair {
    fn ctime_nsec_pair(&self) -> (i64, i64);
}

impl CtimePair for std::fs::Metadata {
    fn ctime_nsec_pair(&self) -> (i64, i64) {
        use std::os::unix::fs::MetadataExt;
        (self.ctime(), self.ctime_nsec())
    }
}

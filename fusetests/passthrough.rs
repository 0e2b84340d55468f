//! FUSE passthrough across a copy-up: the kernel keeps one backing file per inode while any
//! file opened with it stays open, so a file open read-only in its lower layer when it is
//! copied up still has the lower file behind its kernel inode. Opens meanwhile must work by
//! every name, write the upper file, and pass through again once the old descriptors are closed
//! (docs/RELIABILITY.md, "A file open across its copy-up").

mod common;
use common::*;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

const LOWER: &str = "lower content\n";

/// A mount of a lower with `f` and its hard link `g`, logging every FUSE request.
fn traced() -> Mount {
    assert!(is_root(), "FUSE passthrough needs root");
    Builder::new(1)
        .lower(0, |l| {
            l.file("f", LOWER).hardlink("f", "g");
            l.file("h", LOWER);
        })
        .log()
        .env("RUST_LOG", "strata=debug")
        .mount()
}

fn pread_all(f: &File) -> String {
    let mut buf = vec![0u8; 4096];
    let n = f.read_at(&mut buf, 0).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The first bytes of `f` through a read-only shared mapping.
fn mapped(f: &File, len: usize) -> String {
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let s =
            String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len)).into_owned();
        libc::munmap(p, len);
        s
    }
}

fn open(p: &Path, how: &str) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    match how {
        "r" => o.read(true),
        "w" => o.write(true),
        "rw" => o.read(true).write(true),
        "a" => o.append(true),
        _ => unreachable!(),
    };
    o.open(p)
}

/// A name nobody has: its lookup marks a place in the daemon's log.
fn mark(c: &Ctx, name: &str) {
    assert!(!exists(c.p(name)));
}

/// The daemon's READ requests between the lookups of `from` and `to`.
fn reads_between(log: &str, from: &str, to: &str) -> usize {
    let at = |m: &str| {
        log.find(&format!("{m:?}"))
            .unwrap_or_else(|| panic!("no lookup of {m} in the log:\n{log}"))
    };
    log[at(from)..at(to)]
        .lines()
        .filter(|l| l.contains("] read "))
        .count()
}

#[test]
fn a_file_open_read_only_across_its_copy_up_opens_again_by_both_names() {
    let mut m = traced();
    m.run(|c| {
        let old = open(&c.p("f"), "r").unwrap();
        assert_eq!(pread_all(&old), LOWER);
        // The copy-up: a write open while the lower file is open.
        let mut w = open(&c.p("f"), "w").unwrap_or_else(|e| panic!("write open of f: {e}"));
        w.write_all(b"NEW!").unwrap();
        drop(w);
        let now = "NEW!r content\n";
        for n in ["f", "g"] {
            let r = open(&c.p(n), "r").unwrap_or_else(|e| panic!("read-only open of {n}: {e}"));
            assert_eq!(pread_all(&r), now, "read of a new open of {n}");
            assert_eq!(read(c.p(n)), now, "{n}");
        }
        // Appends by the other name land in the upper, for every new open and for stat.
        let before = lstat(c.p("f"));
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut a = open(&c.p("g"), "a").unwrap_or_else(|e| panic!("append open of g: {e}"));
        a.write_all(b"more\n").unwrap();
        drop(a);
        let then = "NEW!r content\nmore\n";
        for n in ["f", "g"] {
            assert_eq!(read(c.p(n)), then, "{n} after the append");
            let st = lstat(c.p(n));
            assert_eq!(st.len(), then.len() as u64, "size of {n}");
            assert!(
                (st.mtime(), st.mtime_nsec()) > (before.mtime(), before.mtime_nsec()),
                "mtime of {n} did not move"
            );
        }
        assert_eq!(read(c.u("f")), then, "the upper");
        assert_eq!(read(c.l(0, "f")), LOWER, "the lower changed");
        // Opened for reading and writing, a shared mapping would be of the lower file: refused
        // with a reason, not EIO.
        for n in ["f", "g"] {
            assert_errno(
                open(&c.p(n), "rw"),
                libc::ETXTBSY,
                &format!("read-write open of {n}"),
            );
        }
        // A new open's mapping is the kernel's, of the lower file; its reads are the upper's.
        let r = open(&c.p("f"), "r").unwrap();
        assert_eq!(
            mapped(&r, LOWER.len()),
            LOWER,
            "mapping while the old file is open"
        );
        drop(r);
        // The old descriptor keeps reading the lower file, as on kernel overlayfs.
        assert_eq!(
            pread_all(&old),
            LOWER,
            "the descriptor open before the copy-up"
        );
        drop(old);
        // Every open that held the lower file is closed: passed through to the upper again.
        mark(&c, "closed-1");
        for n in ["f", "g"] {
            let rw = open(&c.p(n), "rw").unwrap_or_else(|e| panic!("read-write open of {n}: {e}"));
            assert_eq!(pread_all(&rw), then, "{n} once the old file is closed");
            assert_eq!(mapped(&rw, then.len()), then, "mapping of {n}");
        }
        mark(&c, "closed-2");
    });
    m.unmount();
    let log = m.read_log();
    assert_eq!(
        reads_between(&log, "closed-1", "closed-2"),
        0,
        "reads reached the daemon after the old descriptor was closed:\n{log}"
    );
}

/// A copy-up that no open makes (chmod) while the lower file is open read-only.
#[test]
fn a_file_open_read_only_opens_again_after_a_chmod_copies_it_up() {
    let m = traced();
    m.run(|c| {
        let old = open(&c.p("h"), "r").unwrap();
        chmod(&c.p("h"), 0o600).unwrap();
        let r = open(&c.p("h"), "r").unwrap_or_else(|e| panic!("read-only open of h: {e}"));
        assert_eq!(pread_all(&r), LOWER);
        let mut w = open(&c.p("h"), "w").unwrap_or_else(|e| panic!("write open of h: {e}"));
        w.write_all(b"UPPER").unwrap();
        drop(w);
        assert_eq!(pread_all(&r), "UPPER content\n", "an open since the chmod");
        assert_eq!(
            pread_all(&old),
            LOWER,
            "the descriptor open before the copy-up"
        );
        assert_eq!(read(c.u("h")), "UPPER content\n");
    });
}

/// The other order: names replaced under open files (an upper one passed through, a lower one
/// renamed over another name) open as the file now there.
#[test]
fn a_name_replaced_under_an_open_file_opens_as_its_new_file() {
    let m = traced();
    m.run(|c| {
        write(c.p("up"), "upper file\n");
        let held = open(&c.p("up"), "rw").unwrap();
        write(c.p("next"), "its replacement\n");
        rename(c.p("next"), c.p("up"));
        for how in ["r", "rw"] {
            let f = open(&c.p("up"), how).unwrap_or_else(|e| panic!("open {how} of up: {e}"));
            assert_eq!(pread_all(&f), "its replacement\n");
        }
        assert_eq!(
            pread_all(&held),
            "upper file\n",
            "the replaced file, still open"
        );
        // A lower file open read-only, renamed over another name (which copies it up).
        let low = open(&c.p("h"), "r").unwrap();
        rename(c.p("h"), c.p("up"));
        for how in ["r", "w"] {
            let f = open(&c.p("up"), how).unwrap_or_else(|e| panic!("open {how} of up: {e}"));
            if how == "r" {
                assert_eq!(pread_all(&f), LOWER);
            }
        }
        assert_eq!(pread_all(&low), LOWER);
        drop(low);
        let f = open(&c.p("up"), "rw").unwrap();
        assert_eq!(pread_all(&f), LOWER);
    });
}

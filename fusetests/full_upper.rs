//! A full upper: with the upper and work directories on a 6 MiB tmpfs, a copy-up, a create, a
//! write, a rename that needs a copy-up and a setxattr that does not fit get ENOSPC; no half-made
//! copy is left in the upper or the workdir, the lower is untouched, and once space is freed the
//! same operations work. The same over a quota: the upper in a btrfs subvolume with a 6 MiB
//! qgroup limit, where the same operations get EDQUOT.

mod common;
use common::*;
use std::fs::OpenOptions;
use std::io::Write;

const MIB: usize = 1 << 20;

/// Names in the workdir's scratch area (what a failed copy-up could leave behind).
fn scratch(c: &Ctx) -> Vec<String> {
    let w = c.work.as_ref().unwrap().join("work");
    std::fs::read_dir(&w)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Fill the upper's filesystem through the mount with one file, until `full` (ENOSPC, EDQUOT).
fn fill(c: &Ctx, name: &str, full: i32) -> usize {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(c.p(name))
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut n = 0;
    loop {
        match f.write(&chunk) {
            Ok(k) if k > 0 => n += k,
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(full), "filling: {e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
    n
}

fn lowers(b: Builder) -> Builder {
    b.lower(0, move |l| {
        let big = vec![b'L'; 2 * MIB];
        l.file("big", &big);
        l.file("dir/big", &big);
        l.file("small", "small\n");
    })
}

#[test]
fn a_full_upper_gives_enospc_and_leaves_nothing_half_made() {
    full_upper(
        lowers(Builder::new(1)).upper_on_small_tmpfs(6 * MIB as u64),
        libc::ENOSPC,
    );
}

#[test]
fn an_upper_over_its_quota_gives_edquot_and_leaves_nothing_half_made() {
    full_upper(
        lowers(Builder::new(1)).upper_on_quota_limited_btrfs(6 * MIB as u64),
        libc::EDQUOT,
    );
}

/// Fill the upper until `full`, check each operation gets `full` and leaves nothing half made,
/// free the space and check they all work.
fn full_upper(b: Builder, full: i32) {
    let big = vec![b'L'; 2 * MIB];
    let m = b.mount();
    let what = errno_name(full);
    m.run(move |c| {
        let filled = fill(&c, "filler", full);
        assert!(filled > MIB, "the filler wrote only {filled} bytes");
        // Copy-up of a 2 MiB file: ENOSPC, and no trace of it.
        let r = OpenOptions::new().append(true).open(c.p("big"));
        assert_errno(r, full, "open for append of a lower file (copy-up)");
        assert!(!exists(c.u("big")), "a half copy-up is in the upper");
        assert_eq!(scratch(&c), Vec::<String>::new(), "workdir scratch left");
        assert_eq!(
            read_bytes(c.p("big")),
            big,
            "the merged view lost the lower data"
        );
        // A rename of a lower file needs its copy-up too.
        assert_errno(
            std::fs::rename(c.p("dir/big"), c.p("moved")),
            full,
            "rename of a big lower file",
        );
        assert!(exists(c.p("dir/big")) && !exists(c.p("moved")));
        // A write past what is left.
        // A create may still find an inode; a write past what is left may not.
        match OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(c.p("new"))
        {
            Ok(mut f) => {
                let r = f.write_all(&vec![1u8; MIB]).and_then(|_| f.sync_all());
                assert_errno(r, full, "writing 1 MiB into a full upper");
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(full), "create: {e} (want {what})"),
        }
        // A setxattr on a lower file needs its copy-up: ENOSPC, and no copy.
        assert_errno(
            lsetxattr(&c.p("small"), "user.k", b"v", 0),
            full,
            "setxattr on a lower file in a full upper",
        );
        assert!(!exists(c.u("small")), "a refused setxattr left a copy");
        assert_eq!(scratch(&c), Vec::<String>::new(), "workdir scratch left");
        // Free the space: everything works again.
        std::fs::remove_file(c.p("filler")).unwrap();
        let _ = std::fs::remove_file(c.p("new"));
        // A btrfs qgroup counts freed space at the next transaction commit.
        unsafe { libc::sync() };
        append(c.p("big"), "appended\n");
        let mut want = big.clone();
        want.extend_from_slice(b"appended\n");
        assert_eq!(read_bytes(c.p("big")), want);
        assert_eq!(read_bytes(c.u("big")), want, "the copy in the upper");
        std::fs::rename(c.p("dir/big"), c.p("moved")).unwrap();
        assert_eq!(read_bytes(c.p("moved")), big);
        lsetxattr(&c.p("small"), "user.k", b"v", 0).unwrap();
        assert_eq!(scratch(&c), Vec::<String>::new(), "workdir scratch left");
    });
    assert_eq!(
        read_bytes(m.l(0, "big")),
        vec![b'L'; 2 * MIB],
        "lower changed"
    );
    assert_eq!(
        read_bytes(m.l(0, "dir/big")),
        vec![b'L'; 2 * MIB],
        "lower changed"
    );
}

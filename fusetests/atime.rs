//! Access times as kernel overlayfs keeps them: a read through the mount never stamps a lower
//! layer's file, and an upper file's atime follows the strata mount's options (strictatime,
//! relatime, noatime, nodiratime; none while read-only), whatever the options of the mount
//! the upper directory is on (relatime here), and again after `mount -o remount`.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Seconds since the epoch.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Set `p`'s atime and mtime to `atime` and `mtime` seconds before now. An atime in the
/// future (negative) is newer than the mtime and the ctime (which the call sets to now), so
/// that relatime leaves it and only strictatime stamps it.
fn set_ago(p: &Path, atime: i64, mtime: i64) {
    let t = now();
    lutimens(p, (t - atime, 0), (t - mtime, 0)).unwrap();
}

/// Whether reading `p` through the mount moved the atime that the mount and `host` (the same
/// file in its layer) show.
fn read_stamps(p: &Path, host: &Path) -> bool {
    let before = lstat(host).atime();
    let _ = std::fs::read(p).unwrap();
    let (seen, real) = (lstat(p).atime(), lstat(host).atime());
    assert_eq!(seen, real, "{}: the mount shows another atime", p.display());
    real != before
}

/// Whether listing directory `p` through the mount moved its atime on the host.
fn list_stamps(p: &Path, host: &Path) -> bool {
    let before = lstat(host).atime();
    let _ = names(p);
    lstat(host).atime() != before
}

fn fixture(opts: &str) -> Mount {
    Builder::new(1)
        .opt(opts)
        .lower(0, |l| {
            l.file("low", "l\n");
        })
        .mount()
}

/// Under strictatime every read stamps an upper file, though the upper directory is on a
/// relatime mount, which leaves an atime newer than the mtime and ctime; a lower file is never
/// stamped. With passthrough (the kernel reads the backing file itself) and without.
#[test]
fn strictatime_stamps_every_read_of_an_upper_file_and_never_a_lower_one() {
    for pt in ["passthrough=on", "passthrough=off"] {
        let m = fixture(&format!("strictatime,{pt}"));
        m.run(move |c| {
            write(c.p("up"), "u\n");
            for round in 0..2 {
                set_ago(&c.p("up"), -100, 200);
                assert!(
                    read_stamps(&c.p("up"), &c.u("up")),
                    "{pt}: read {round} of an upper file did not stamp its atime"
                );
            }
            set_ago(&c.l(0, "low"), 300, 200);
            assert!(
                !read_stamps(&c.p("low"), &c.l(0, "low")),
                "{pt}: a read stamped the lower file's atime"
            );
            assert!(!exists(c.u("low")), "{pt}: reading low copied it up");
        });
    }
}

/// relatime (the default): an atime older than the mtime is stamped, a newer one is left;
/// noatime stamps nothing; nodiratime leaves directories and stamps files.
#[test]
fn relatime_noatime_and_nodiratime_stamp_what_mount_8_says() {
    let m = fixture("relatime");
    m.run(|c| {
        write(c.p("f"), "f\n");
        mkdir(c.p("d"));
        write(c.p("d/x"), "x\n");
        set_ago(&c.p("f"), -100, 200);
        assert!(
            !read_stamps(&c.p("f"), &c.u("f")),
            "relatime: an atime newer than the mtime was stamped"
        );
        set_ago(&c.p("f"), 300, 200);
        assert!(
            read_stamps(&c.p("f"), &c.u("f")),
            "relatime: an atime older than the mtime was left"
        );
        set_ago(&c.p("d"), 300, 200);
        assert!(
            list_stamps(&c.p("d"), &c.u("d")),
            "relatime: listing d left an old atime"
        );
    });
    drop(m);

    let m = fixture("noatime");
    m.run(|c| {
        write(c.p("f"), "f\n");
        mkdir(c.p("d"));
        set_ago(&c.p("f"), 300, 200);
        assert!(
            !read_stamps(&c.p("f"), &c.u("f")),
            "noatime: a read stamped the atime"
        );
        set_ago(&c.p("d"), 300, 200);
        assert!(
            !list_stamps(&c.p("d"), &c.u("d")),
            "noatime: listing stamped the atime"
        );
    });
    drop(m);

    let m = fixture("strictatime,nodiratime");
    m.run(|c| {
        write(c.p("f"), "f\n");
        mkdir(c.p("d"));
        set_ago(&c.p("d"), 300, 200);
        assert!(
            !list_stamps(&c.p("d"), &c.u("d")),
            "nodiratime: listing stamped the directory"
        );
        set_ago(&c.p("f"), -100, 200);
        assert!(
            read_stamps(&c.p("f"), &c.u("f")),
            "strictatime,nodiratime: a file read was not stamped"
        );
    });
}

/// `mount -o remount,strictatime` changes the rule of a live mount, for files opened after and
/// before; `remount,ro` stamps nothing, whatever the atime option.
#[test]
fn remount_changes_the_rule_and_a_read_only_mount_stamps_nothing() {
    let m = fixture("relatime");
    m.run(|c| {
        write(c.p("f"), "f\n");
        set_ago(&c.p("f"), -100, 200);
        assert!(
            !read_stamps(&c.p("f"), &c.u("f")),
            "relatime stamped a newer atime"
        );
    });
    remount_o(&m.mnt, "remount,strictatime", "");
    m.run(|c| {
        set_ago(&c.p("f"), -100, 200);
        assert!(
            read_stamps(&c.p("f"), &c.u("f")),
            "after remount,strictatime a read was not stamped"
        );
    });
    remount_o(&m.mnt, "remount,ro", "");
    m.run(|c| {
        let t = now();
        lutimens(&c.u("f"), (t - 300, 0), (t - 200, 0)).unwrap();
        assert!(
            !read_stamps(&c.p("f"), &c.u("f")),
            "a read-only mount stamped an atime"
        );
    });
}

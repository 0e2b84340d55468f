//! Symlinks that live inside a layer must never be followed by strata itself: a lower layer
//! holding `etc -> /etc`, `x -> ../../..` (which resolves to `/` from the layer) or a link to a
//! host directory must not make lookup, readdir, create, copy-up or rename touch anything
//! outside the upper dir.
//!
//! In each case a directory in the top lower layer sits above a symlink of the same name in a
//! lower layer below: the merged entry is the directory alone, and an implementation that
//! resolved paths inside layers by following symlinks would merge in (and write into) the
//! host directory the symlink points at. The host paths are checked afterwards.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Entries of `dir` whose name contains `token` (canaries that must not exist).
fn canaries_in(dir: &Path, token: &str) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().contains(token))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn symlinks_inside_layers_never_lead_outside_the_upper() {
    let tok = format!("strata-canary-{}", unique_token());
    let b = Builder::new(2);
    let host = b.base().join("host");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("secret"), "host secret").unwrap();
    fs::create_dir(host.join("sub")).unwrap();
    let host_s = host.display().to_string();
    let t = tok.clone();
    let m = b
        .lower(0, move |l| {
            l.file(&format!("etc/{t}-conf"), "lower conf");
            l.file("x/file", "xf");
            l.file("esc/mine", "mine");
            l.file("rel/r", "r");
            // Visible symlinks in the merged view.
            l.symlink("etc2", "/etc");
            l.symlink("up", "../../..");
            l.symlink("hostlink", &host_s);
        })
        .lower(1, |l| {
            l.symlink("etc", "/etc");
            l.symlink("x", "../../..");
            l.symlink("esc", &host.display().to_string());
            l.symlink("rel", "../host");
        })
        .prepare();
    let host = m.base.join("host");
    let host_before = host_snapshot(&host);
    let lowers_before: Vec<_> = m.lowers.iter().map(|l| host_snapshot(l)).collect();
    let etc_meta = fs::symlink_metadata("/etc").unwrap();
    let root_meta = fs::symlink_metadata("/").unwrap();
    let mut m = m;
    m.mount_now();

    let t = tok.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        m.run(move |c| {
            // Lookup and readdir: only the top layer's directories.
            assert_eq!(
                names(c.p("etc")),
                set(&[&format!("{t}-conf")]),
                "etc/ merged with /etc"
            );
            assert_eq!(
                names(c.p("x")),
                set(&["file"]),
                "x/ merged with what ../../.. points at"
            );
            assert_eq!(
                names(c.p("esc")),
                set(&["mine"]),
                "esc/ merged with the host dir"
            );
            assert_eq!(
                names(c.p("rel")),
                set(&["r"]),
                "rel/ merged with the host dir"
            );
            for p in [
                "etc/passwd",
                "etc/hostname",
                "x/etc",
                "x/proc",
                "esc/secret",
                "rel/secret",
                "rel/sub",
            ] {
                assert_enoent(c.p(p));
            }
            assert_eq!(readlink(c.p("etc2")), "/etc");
            assert_eq!(readlink(c.p("up")), "../../..");

            // Create in each of them.
            for d in ["etc", "x", "esc", "rel"] {
                write(c.p(&format!("{d}/{t}")), "created");
            }
            // Copy-up of files inside them.
            append(c.p(&format!("etc/{t}-conf")), "+");
            append(c.p("x/file"), "+");
            append(c.p("esc/mine"), "+");
            append(c.p("rel/r"), "+");
            // mkdir and create below.
            mkdir(c.p("x/etc"));
            write(c.p(&format!("x/etc/{t}")), "deep");
            mkdir(c.p(&format!("esc/{t}-dir")));
            // Renames: file across the dirs, a merged dir, a lower dir.
            rename(c.p(&format!("etc/{t}-conf")), c.p(&format!("x/{t}-moved")));
            rename(c.p("esc"), c.p("esc-renamed"));
            rename(c.p("rel"), c.p(&format!("x/{t}-rel")));
            // Copy-up of the visible symlinks themselves, never of what they point at.
            lchown(&c.p("etc2"), 4242, 4242).expect("lchown of a symlink to /etc");
            lutimens(&c.p("up"), (1_000_000_000, 0), (1_000_000_000, 0))
                .expect("utimens of x -> ../../..");
            lchown(&c.p("hostlink"), 4242, 4242).expect("lchown of a symlink to a host dir");
            rename(c.p("up"), c.p("up-renamed"));
            fs::hard_link(c.p("hostlink"), c.p("hostlink-hard")).expect("link of a symlink");
            // A regular file renamed over a symlink replaces the symlink.
            write(c.p(&format!("{t}-victim")), "victim");
            rename(c.p(&format!("{t}-victim")), c.p("etc2"));
            assert_eq!(read(c.p("etc2")), "victim");
            // Removal below the dirs.
            rm(c.p(&format!("x/{t}")));

            // What the upper holds.
            assert_eq!(read(c.u(&format!("etc/{t}"))), "created");
            assert_eq!(read(c.u(&format!("x/etc/{t}"))), "deep");
            assert_eq!(read(c.u(&format!("x/{t}-moved"))), "lower conf+");
            assert_eq!(read(c.u("x/file")), "xf+");
            assert!(
                lstat(c.u("etc")).is_dir(),
                "the upper's etc is not a plain directory"
            );
            assert!(
                lstat(c.u("x")).is_dir(),
                "the upper's x is not a plain directory"
            );
            assert!(lstat(c.u("esc-renamed")).is_dir());
            let up = lstat(c.u("up-renamed"));
            assert!(
                up.file_type().is_symlink(),
                "up-renamed is not a symlink in the upper"
            );
            assert_eq!(readlink(c.u("up-renamed")), "../../..");
            let hl = lstat(c.u("hostlink"));
            assert!(hl.file_type().is_symlink());
            assert_eq!(hl.uid(), 4242);
            assert!(lstat(c.u("etc2")).is_file());
        })
    }));

    // Host checks, whatever happened above.
    let mut problems = Vec::new();
    for dir in [Path::new("/etc"), Path::new("/")] {
        for p in canaries_in(dir, &tok) {
            problems.push(format!("created on the host: {}", p.display()));
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
    }
    let etc_now = fs::symlink_metadata("/etc").unwrap();
    if (etc_now.uid(), etc_now.gid(), etc_now.mode())
        != (etc_meta.uid(), etc_meta.gid(), etc_meta.mode())
    {
        problems.push(format!(
            "/etc changed: owner {}:{} mode {:o} (was {}:{} {:o})",
            etc_now.uid(),
            etc_now.gid(),
            etc_now.mode(),
            etc_meta.uid(),
            etc_meta.gid(),
            etc_meta.mode()
        ));
        // Put the host back.
        let _ = lchown(Path::new("/etc"), etc_meta.uid(), etc_meta.gid());
        let _ = chmod(Path::new("/etc"), etc_meta.mode() & 0o7777);
    }
    let root_now = fs::symlink_metadata("/").unwrap();
    if (root_now.uid(), root_now.mode(), root_now.mtime())
        != (root_meta.uid(), root_meta.mode(), root_meta.mtime())
    {
        problems.push("/ changed (owner, mode or mtime)".into());
    }
    if let Err(p) =
        std::panic::catch_unwind(|| assert_snapshot_unchanged(&host_before, &host, "the host dir"))
    {
        problems.push(panic_message(&p));
    }
    for (i, b) in lowers_before.iter().enumerate() {
        if let Err(p) = std::panic::catch_unwind(|| {
            assert_snapshot_unchanged(b, &m.lowers[i], &format!("lower{i}"))
        }) {
            problems.push(panic_message(&p));
        }
    }
    assert!(
        problems.is_empty(),
        "strata touched files outside the upper:\n{}",
        problems.join("\n")
    );
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

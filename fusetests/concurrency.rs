//! The mount under concurrent use: a large copy-up does not freeze the rest of the tree, two
//! writers of one lower file get one copy, and a stat racing a rename never mixes two files.

mod common;
use common::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIG: usize = 768 << 20;

/// A lower layer with a large file of real (not sparse) data and names never looked up.
fn big_lower() -> Builder {
    Builder::new(1).lower(0, |l| {
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let mut f = std::fs::File::create(l.path("big")).unwrap();
        for _ in 0..BIG >> 20 {
            f.write_all(&chunk).unwrap();
        }
        for i in 0..20 {
            l.file(&format!("elsewhere/f{i}"), "x");
        }
        l.file("other", "other\n");
    })
}

/// Is a copy under way in the workdir (a temporary file with data in it)?
fn copy_in_progress(work: &std::path::Path) -> bool {
    std::fs::read_dir(work)
        .map(|d| {
            d.flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with("#strata-")
                    && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

#[test]
fn lookups_and_listings_elsewhere_answer_while_a_large_file_is_copied_up() {
    let m = big_lower().mount();
    let work = m.base.join("work/work");
    m.run(move |c| {
        let done = Arc::new(AtomicBool::new(false));
        let (p, d) = (c.p("big"), done.clone());
        let writer = std::thread::spawn(move || {
            let mut f = OpenOptions::new().append(true).open(&p).unwrap();
            d.store(true, Ordering::SeqCst);
            f.write_all(b"tail").unwrap();
        });
        assert!(
            wait_until(Duration::from_secs(30), || copy_in_progress(&work)),
            "the copy-up of big never showed in the workdir"
        );
        let t0 = Instant::now();
        // Never looked up or listed before: each goes to the daemon.
        let listed = names(c.p("elsewhere"));
        let st = lstat(c.p("other"));
        let new = c.p("elsewhere/new");
        write(&new, "made during the copy-up\n");
        let took = t0.elapsed();
        let still_copying = !done.load(Ordering::SeqCst);
        assert_eq!(listed.len(), 20);
        assert_eq!(st.len(), 6);
        assert!(
            still_copying,
            "the listing, the stat and the create waited {took:?}, until the copy-up of big ended"
        );
        writer.join().unwrap();
        assert_eq!(lstat(c.p("big")).len() as usize, BIG + 4);
        assert_eq!(read(c.p("elsewhere/new")), "made during the copy-up\n");
    });
}

#[test]
fn two_writers_of_one_lower_file_get_one_copy_up() {
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("f", vec![b'a'; 64 << 20]);
        })
        .log()
        .env("RUST_LOG", "strata=info")
        .mount();
    let work = m.base.join("work/work");
    m.run(move |c| {
        let writers: Vec<_> = (0..4)
            .map(|i| {
                let p = c.p("f");
                std::thread::spawn(move || {
                    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
                    f.write_all(format!("<{i}>").as_bytes()).unwrap();
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let data = read_bytes(c.p("f"));
        assert_eq!(data.len(), (64 << 20) + 4 * 3, "a write was lost");
        for i in 0..4 {
            let tag = format!("<{i}>");
            assert!(
                data.windows(3).any(|w| w == tag.as_bytes()),
                "the write {tag} is missing"
            );
        }
        let left: Vec<_> = std::fs::read_dir(&work)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| {
                n.to_string_lossy().starts_with("#strata-")
                    && !n.to_string_lossy().contains("whiteout")
            })
            .collect();
        assert!(left.is_empty(), "copies left in the workdir: {left:?}");
    });
    m.unmount();
    let log = m.read_log();
    assert_eq!(
        log.matches("copy-up /f:").count(),
        1,
        "not exactly one copy-up of f:\n{log}"
    );
}

#[test]
fn a_stat_racing_a_rename_never_mixes_two_files() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("p", "1");
            l.file("q", "22222");
        })
        .mount();
    m.run(|c| {
        // Both in the upper, with their numbers and sizes.
        append(c.p("p"), "1");
        append(c.p("q"), "2");
        let pairs = [
            (ino(c.p("p")), lstat(c.p("p")).len()),
            (ino(c.p("q")), lstat(c.p("q")).len()),
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let (s, pp, qp) = (stop.clone(), c.p("p"), c.p("q"));
        let swapper = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                renameat2(&pp, &qp, RENAME_EXCHANGE).unwrap();
                n += 1;
            }
            n
        });
        let checkers: Vec<_> = (0..2)
            .map(|_| {
                let (s, pp, qp) = (stop.clone(), c.p("p"), c.p("q"));
                std::thread::spawn(move || {
                    let mut bad = Vec::new();
                    while !s.load(Ordering::Relaxed) {
                        for p in [&pp, &qp] {
                            if let Ok(m) = std::fs::symlink_metadata(p) {
                                let got = (m.ino(), m.len());
                                if !pairs.contains(&got) && bad.len() < 10 {
                                    bad.push(got);
                                }
                            }
                        }
                    }
                    bad
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(10));
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        let bad: Vec<_> = checkers
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(swaps > 100, "only {swaps} renames in 10 s");
        assert!(
            bad.is_empty(),
            "stat returned one file's st_ino with another's size: {bad:?} (files: {pairs:?})"
        );
    });
}

/// Names made and removed over and over by several threads, each with its own directory, so
/// the upper hands out the same inode numbers again while the kernel is still forgetting the
/// nodes of the removed ones (and drops cached entries under the memory it is given back):
/// no call ever gets ESTALE (a node strata answered with, then dropped from its table) or a
/// spurious EEXIST.
#[test]
fn names_made_and_removed_in_a_storm_never_go_stale() {
    let m = Builder::new(1).mount();
    m.run(|c| {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..4 {
            let root = c.p(&format!("t{t}"));
            std::fs::create_dir(&root).unwrap();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || -> Result<u64, String> {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..20 {
                        let d = root.join(format!("d{i}"));
                        let f = d.join("f");
                        let e =
                            |what: &str, e: std::io::Error| format!("{what} {}: {e}", d.display());
                        std::fs::create_dir(&d).map_err(|x| e("mkdir", x))?;
                        std::fs::write(&f, b"x").map_err(|x| e("create", x))?;
                        std::fs::metadata(&f).map_err(|x| e("stat", x))?;
                        std::fs::remove_file(&f).map_err(|x| e("unlink", x))?;
                        std::fs::remove_dir(&d).map_err(|x| e("rmdir", x))?;
                        n += 1;
                    }
                }
                Ok(n)
            }));
        }
        // Meanwhile the kernel is asked to drop its cached entries, which sends FORGETs.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(8) {
            let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in threads {
            total += t.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(total > 100, "only {total} rounds ran");
    });
}

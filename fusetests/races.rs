//! Races against strata's own path resolution. While swapper threads rename directories away and
//! put symlinks in their place through the mount (`mv a a.old; ln -s /etc a` and
//! `ln -s <canary> a` at the top, `mv low/a low/a.old; ln -s ../../.. low/a` inside a
//! lower-backed directory, and back), worker threads keep directory fds of those directories and,
//! below them, copy up lower files (append, setxattr), create files and directories and rename
//! entries. The workers open their directories with `RESOLVE_NO_SYMLINKS`, so the kernel never
//! follows a symlink on their behalf: anything written outside the upper would be strata
//! resolving a stale or swapped path inside a layer.
//!
//! Afterwards nothing outside the upper may have changed: a canary tree holding the same names
//! as the lower directories (what a symlinked `a` points at) is compared entry by entry (mode,
//! owner, size, times, xattrs), and no entry named with the run's token exists anywhere in
//! `/etc`, in `/`, or next to the fixture (where `../../..` from the upper leads). The host's
//! /etc is checked by name only (other programs may change it meanwhile; every name a worker
//! writes carries the token). The lower is compared as a whole.
//!
//! The short form runs 5 s; `STRATA_RACE_SECS=60` (scripts/stress --only races) is the long one.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FILES: usize = 12;

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Open `p` as a directory without following any symlink on the way.
fn open_dir_nofollow(p: &Path) -> Result<OwnedFd, i32> {
    let cp = cpath(p);
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            cp.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
    }
}

fn openat(dfd: &OwnedFd, name: &str, flags: i32) -> Result<OwnedFd, i32> {
    let r = unsafe {
        libc::openat(
            dfd.as_raw_fd(),
            c(name).as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o644,
        )
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(unsafe { OwnedFd::from_raw_fd(r) })
    }
}

fn check(r: libc::c_int) -> Result<(), i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn write_fd(fd: &OwnedFd, data: &[u8]) -> Result<(), i32> {
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Per operation: how many succeeded, and the errnos of those that did not.
#[derive(Default)]
struct Tally {
    ok: BTreeMap<&'static str, u64>,
    failed: BTreeMap<(&'static str, i32), u64>,
}

impl Tally {
    fn add(&mut self, op: &'static str, r: Result<(), i32>) {
        match r {
            Ok(()) => *self.ok.entry(op).or_default() += 1,
            Err(e) => *self.failed.entry((op, e)).or_default() += 1,
        }
    }
    fn merge(&mut self, o: Tally) {
        for (k, v) in o.ok {
            *self.ok.entry(k).or_default() += v;
        }
        for (k, v) in o.failed {
            *self.failed.entry(k).or_default() += v;
        }
    }
    fn describe(&self) -> String {
        let ok: Vec<String> = self.ok.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let failed: Vec<String> = self
            .failed
            .iter()
            .map(|((k, e), v)| format!("{k}:{}={v}", errno_name(*e)))
            .collect();
        format!("ok [{}] failed [{}]", ok.join(" "), failed.join(" "))
    }
}

/// One round of work below the directory `dir` of the merged view.
fn work_below(mnt: &Path, dir: &str, tok: &str, n: u64, t: &mut Tally) {
    let dfd = match open_dir_nofollow(&join(mnt, dir)) {
        Ok(fd) => fd,
        Err(e) => return t.add("opendir", Err(e)),
    };
    t.add("opendir", Ok(()));
    let k = (n as usize) % FILES;
    // Copy-up by append, and by setxattr on an fd opened read-only.
    let r = openat(&dfd, &format!("f{k}"), libc::O_WRONLY | libc::O_APPEND)
        .and_then(|fd| write_fd(&fd, format!("{tok} {n}\n").as_bytes()));
    t.add("append", r);
    let r = openat(&dfd, &format!("x{k}"), libc::O_RDONLY).and_then(|fd| {
        let (name, v) = (c(&format!("user.{tok}")), n.to_string());
        check(unsafe {
            libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0)
        })
    });
    t.add("setxattr", r);
    // The directory itself (a copy-up of the directory and its parents).
    let (name, v) = (c(&format!("user.{tok}-dir")), b"d");
    t.add(
        "setxattr-dir",
        check(unsafe { libc::fsetxattr(dfd.as_raw_fd(), name.as_ptr(), v.as_ptr().cast(), 1, 0) }),
    );
    // Create, rename, mkdir and create inside.
    let new = format!("{tok}-new-{n}");
    let r = openat(&dfd, &new, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)
        .and_then(|fd| write_fd(&fd, tok.as_bytes()));
    t.add("create", r);
    let ren = format!("{tok}-ren-{n}");
    t.add(
        "rename",
        check(unsafe {
            libc::renameat(
                dfd.as_raw_fd(),
                c(&new).as_ptr(),
                dfd.as_raw_fd(),
                c(&ren).as_ptr(),
            )
        }),
    );
    // A lower file renamed away and back (a copy-up, a whiteout, then its removal).
    let (g, g2) = (format!("g{k}"), format!("g{k}-{tok}"));
    let r = check(unsafe {
        libc::renameat(
            dfd.as_raw_fd(),
            c(&g).as_ptr(),
            dfd.as_raw_fd(),
            c(&g2).as_ptr(),
        )
    })
    .and_then(|_| {
        check(unsafe {
            libc::renameat(
                dfd.as_raw_fd(),
                c(&g2).as_ptr(),
                dfd.as_raw_fd(),
                c(&g).as_ptr(),
            )
        })
    });
    t.add("rename-lower", r);
    let d = format!("{tok}-dir-{n}");
    let r =
        check(unsafe { libc::mkdirat(dfd.as_raw_fd(), c(&d).as_ptr(), 0o755) }).and_then(|_| {
            let sub = openat(&dfd, &d, libc::O_RDONLY | libc::O_DIRECTORY)?;
            openat(&sub, tok, libc::O_WRONLY | libc::O_CREAT).map(drop)
        });
    t.add("mkdir+create", r);
    if n.is_multiple_of(4) {
        // Keep directories from growing without bound.
        let _ = unsafe { libc::unlinkat(dfd.as_raw_fd(), c(&ren).as_ptr(), 0) };
    }
}

/// Swap `dir` (a path in the merged view) for a symlink to `target`, then put it back.
fn swap(mnt: &Path, dir: &str, target: &str, t: &mut Tally) {
    let (p, old) = (join(mnt, dir), join(mnt, &format!("{dir}.old")));
    if let Err(e) = fs::rename(&p, &old) {
        return t.add("swap-rename", Err(e.raw_os_error().unwrap_or(0)));
    }
    t.add("swap-rename", Ok(()));
    let r = std::os::unix::fs::symlink(target, &p).map_err(|e| e.raw_os_error().unwrap_or(0));
    t.add("swap-symlink", r);
    std::thread::yield_now();
    let _ = fs::remove_file(&p);
    let r = fs::rename(&old, &p).map_err(|e| e.raw_os_error().unwrap_or(0));
    t.add("swap-back", r);
}

/// Every path below `root` whose name contains `tok`, not descending into other filesystems.
fn token_names(root: &Path, tok: &str, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().contains(tok) {
            out.push(p.clone());
        }
        if depth > 0 && e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            token_names(&p, tok, depth - 1, out);
        }
    }
}

fn populate(l: &Layer, dir: &str) {
    for k in 0..FILES {
        l.file(&format!("{dir}/f{k}"), format!("lower f{k}\n"));
        l.file(&format!("{dir}/x{k}"), format!("lower x{k}\n"));
        l.file(&format!("{dir}/g{k}"), format!("lower g{k}\n"));
        l.file(&format!("{dir}/sub/f{k}"), format!("lower sub f{k}\n"));
        l.file(&format!("{dir}/sub/x{k}"), format!("lower sub x{k}\n"));
        l.file(&format!("{dir}/sub/g{k}"), format!("lower sub g{k}\n"));
    }
}

#[test]
fn directories_swapped_for_symlinks_never_lead_writes_outside_the_upper() {
    let secs: u64 = std::env::var("STRATA_RACE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let tok = format!("strata-race-{}", unique_token());
    let b = Builder::new(1);
    // The canary stands in for /etc: it has every name the workers open below `a`.
    let canary = b.host_dir("canary");
    populate(&canary, "");
    let canary_path = b.base().join("canary");
    let mut m = b
        .lower(0, |l| {
            populate(l, "a");
            populate(l, "low/a");
            l.file("low/keep", "keep\n");
        })
        .prepare();
    let canary_before = host_snapshot(&canary_path);
    let lower_before = host_snapshot(&m.lowers[0]);
    let base = m.base.clone();
    let outside = base.parent().unwrap().to_path_buf();
    let mut outside_before = Vec::new();
    token_names(&outside, &tok, 0, &mut outside_before);
    m.timeout = Duration::from_secs(secs + 60);
    m.mount_now();

    let t = tok.clone();
    let canary_s = canary_path.display().to_string();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        m.run(move |c| {
            let stop = Arc::new(AtomicBool::new(false));
            let total = Arc::new(Mutex::new(Tally::default()));
            let mut threads = Vec::new();
            let swaps: [(&str, String); 3] = [
                ("a", "/etc".to_string()),
                ("a", canary_s.clone()),
                ("low/a", "../../..".to_string()),
            ];
            for (i, (dir, target)) in swaps.into_iter().enumerate() {
                let (mnt, stop, total) = (c.mnt.clone(), stop.clone(), total.clone());
                // The two swappers of `a` take turns: one at a time per directory.
                if i == 1 {
                    continue;
                }
                let other = if i == 0 { Some(canary_s.clone()) } else { None };
                threads.push(std::thread::spawn(move || {
                    let mut t = Tally::default();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let tg = match (&other, n % 2) {
                            (Some(o), 1) => o.as_str(),
                            _ => target.as_str(),
                        };
                        swap(&mnt, dir, tg, &mut t);
                        // A rename of a directory below, too.
                        let sub = join(&mnt, &format!("{dir}/sub"));
                        if fs::rename(&sub, join(&mnt, &format!("{dir}/sub2"))).is_ok() {
                            let _ = fs::rename(join(&mnt, &format!("{dir}/sub2")), &sub);
                        }
                        n += 1;
                    }
                    total.lock().unwrap().merge(t);
                }));
            }
            for w in 0..4u64 {
                let (mnt, stop, total, tok) =
                    (c.mnt.clone(), stop.clone(), total.clone(), t.clone());
                threads.push(std::thread::spawn(move || {
                    let mut t = Tally::default();
                    let dirs = ["a", "low/a", "a/sub", "low/a/sub", "a.old", "low/a.old"];
                    let mut n = w * 1_000_000;
                    while !stop.load(Ordering::Relaxed) {
                        work_below(&mnt, dirs[(n as usize) % dirs.len()], &tok, n, &mut t);
                        n += 1;
                    }
                    total.lock().unwrap().merge(t);
                }));
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(secs) {
                std::thread::sleep(Duration::from_millis(100));
            }
            stop.store(true, Ordering::Relaxed);
            for th in threads {
                th.join().expect("a race thread panicked");
            }
            let tally = Arc::try_unwrap(total).ok().unwrap().into_inner().unwrap();
            eprintln!("race tally over {secs} s: {}", tally.describe());
            // The run did what it says: swaps, copy-ups, creates and renames happened.
            for op in [
                "swap-symlink",
                "swap-back",
                "append",
                "setxattr",
                "setxattr-dir",
                "create",
                "rename",
                "rename-lower",
                "mkdir+create",
            ] {
                assert!(
                    tally.ok.get(op).copied().unwrap_or(0) > 0,
                    "no {op} succeeded: {}",
                    tally.describe()
                );
            }
            let eio: Vec<_> = tally
                .failed
                .keys()
                .filter(|(_, e)| *e == libc::EIO)
                .collect();
            assert!(eio.is_empty(), "EIO under the race: {}", tally.describe());
            // The directories are back and serve what the workers wrote.
            for d in ["a", "low/a"] {
                assert!(
                    lstat(c.p(d)).is_dir(),
                    "{d} is not a directory after the run"
                );
                assert!(
                    lstat(c.u(d)).is_dir(),
                    "{d} is not a directory in the upper"
                );
                let f0 = read(c.p(&format!("{d}/f0")));
                assert!(f0.starts_with("lower f0\n"), "{d}/f0: {f0:?}");
            }
            let appended = ["a", "low/a", "a/sub", "low/a/sub"]
                .iter()
                .flat_map(|d| (0..FILES).map(move |k| format!("{d}/f{k}")))
                .filter(|p| read(c.p(p)).contains(&t))
                .count();
            assert!(appended > 0, "no append reached any f* file");
            assert_eq!(read(c.p("low/keep")), "keep\n");
        })
    }));

    // Host checks, whatever happened above.
    let mut problems = Vec::new();
    let mut found = Vec::new();
    token_names(Path::new("/etc"), &tok, 8, &mut found);
    token_names(Path::new("/"), &tok, 0, &mut found);
    let mut near = Vec::new();
    token_names(&outside, &tok, 0, &mut near);
    found.extend(near.into_iter().filter(|p| !outside_before.contains(p)));
    token_names(&canary_path, &tok, 8, &mut found);
    for p in &found {
        problems.push(format!("created outside the upper: {}", p.display()));
    }
    for p in [Path::new("/etc"), Path::new("/"), outside.as_path()] {
        if llistxattr(p)
            .unwrap_or_default()
            .iter()
            .any(|x| x.contains(&tok))
        {
            problems.push(format!("an xattr was set on {}", p.display()));
        }
    }
    if let Err(p) = std::panic::catch_unwind(|| {
        assert_snapshot_unchanged(&canary_before, &canary_path, "the canary tree")
    }) {
        problems.push(panic_message(&p));
    }
    if let Err(p) = std::panic::catch_unwind(|| {
        assert_snapshot_unchanged(&lower_before, &m.lowers[0], "lower0")
    }) {
        problems.push(panic_message(&p));
    }
    // Remove what escaped before failing (best effort; only the token's names).
    for p in &found {
        let _ = fs::remove_dir_all(p).or_else(|_| fs::remove_file(p));
    }
    assert!(
        problems.is_empty(),
        "strata wrote outside the upper:\n{}",
        problems.join("\n")
    );
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

//! Checks of the test harness itself: a mount that fails makes the test fail (with strata's
//! stderr), and a hung daemon fails the test within its timeout and is cleaned up.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
#[should_panic(expected = "strata mount failed")]
fn a_failed_mount_fails_the_test() {
    let b = Builder::new(1);
    std::fs::remove_dir(b.base().join("lower0")).unwrap();
    let _m = b.mount();
}

#[test]
fn a_hung_daemon_fails_the_test_and_is_cleaned_up() {
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("f", "f");
        })
        .mount();
    m.timeout = Duration::from_secs(3);
    let mnt = m.mnt.clone();
    let pids = strata_pids(&mnt);
    assert!(!pids.is_empty(), "no daemon found for {}", mnt.display());
    let _killer = KillOnDrop(pids.clone());
    for p in &pids {
        unsafe { libc::kill(*p, libc::SIGSTOP) };
    }
    // SIGSTOP is asynchronous: wait until every thread of the daemon is stopped.
    let all_stopped = || {
        pids.iter().all(|p| {
            std::fs::read_dir(format!("/proc/{p}/task"))
                .map(|rd| {
                    rd.flatten().all(|t| {
                        std::fs::read_to_string(t.path().join("status"))
                            .map(|s| s.contains("State:\tT"))
                            .unwrap_or(true)
                    })
                })
                .unwrap_or(true)
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), all_stopped),
        "the daemon did not stop"
    );
    let start = Instant::now();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.run(|c| read(c.p("f")))));
    let msg = match r {
        Ok(v) => panic!("a read from a stopped daemon returned {v:?}"),
        Err(p) => panic_message(&p),
    };
    assert!(msg.contains("hung"), "unexpected panic: {msg}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the timeout took {:?}",
        start.elapsed()
    );
    let start = Instant::now();
    drop(m);
    assert!(!fuse_mounted(&mnt), "the hung mount was not cleaned up");
    assert!(
        start.elapsed() < Duration::from_secs(90),
        "cleanup took {:?}",
        start.elapsed()
    );
}

/// Kills the stopped daemon however the test ends.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            unsafe {
                libc::kill(*p, libc::SIGKILL);
                libc::kill(*p, libc::SIGCONT);
            }
        }
    }
}

//! Serve a caller from the CPU it runs on.
//!
//! A FUSE request is a synchronous round trip: the caller sleeps until the reply, and the worker
//! that answers sleeps until the next request. When the two sit on different CPUs, every
//! request costs two cross-CPU wake-ups, and each one wakes an idle CPU; on a small VM that is
//! tens of microseconds, several times what serving a lookup or a readlink costs. The
//! scheduler keeps a woken thread on its previous CPU while that CPU is idle, so a worker that
//! starts on the other CPU than its caller stays there for the caller's whole life (`ls -l` of
//! a busybox tree: 49 ms split, 9 ms side by side). Kernel FUSE over io_uring answers this with
//! a queue per CPU; over /dev/fuse a worker moves itself next to its caller instead, when a new
//! caller shows up and then every millisecond for the caller's first 20 ms, and leaves its CPU
//! mask as it was, so the scheduler stays free to move it again. Once the workers share the
//! caller's CPU, the caller's wake-ups keep it there too (its own CPU is busy, the other one
//! long idle).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A worker looks at most this often when callers change ...
const NEW_CALLER: Duration = Duration::from_micros(200);
/// ... and this often while one caller keeps it busy (either may have been moved since).
/// Looking costs a read of /proc/PID/stat, a few microseconds.
const SAME_CALLER: Duration = Duration::from_millis(1);
/// After this long with one caller the scheduler has the last word: a caller that keeps a
/// worker busy this long keeps both CPUs busy, where wake-ups are cheap and the load balancer
/// may rightly put the two apart; moving back every millisecond fought it (stat of 15,000
/// entries, warm: 16% slower).
const FOLLOW_FOR: Duration = Duration::from_millis(20);

thread_local! {
    /// The caller this worker follows, since when, and when it last looked.
    static LAST: Cell<Option<(u32, Instant, Instant)>> = const { Cell::new(None) };
}

/// Called as a request from thread `pid` (in the daemon's pid namespace; 0 for the kernel's
/// own requests) starts being served.
pub fn follow(pid: u32) {
    if pid == 0 {
        return;
    }
    let now = Instant::now();
    let due = LAST.with(|l| {
        let (since, due) = match l.get() {
            Some((last, since, looked)) if last == pid => (
                since,
                now.duration_since(since) < FOLLOW_FOR && now.duration_since(looked) >= SAME_CALLER,
            ),
            Some((_, _, looked)) => (now, now.duration_since(looked) >= NEW_CALLER),
            None => (now, true),
        };
        if due {
            l.set(Some((pid, since, now)));
        }
        due
    });
    if due {
        if let Some(cpu) = cpu_of(pid) {
            move_to(cpu);
        }
    }
}

/// The CPU thread `pid` last ran on (field 39 of /proc/PID/stat), where it wakes again.
fn cpu_of(pid: u32) -> Option<usize> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let end = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[end + 1..]).ok()?;
    rest.split_ascii_whitespace().nth(36)?.parse().ok()
}

/// Move the calling thread to `cpu` if its mask allows that CPU, then give it its mask back.
fn move_to(cpu: usize) {
    unsafe {
        if usize::try_from(libc::sched_getcpu()).ok() == Some(cpu) {
            return;
        }
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut mask: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize
            || libc::sched_getaffinity(0, size, &mut mask) != 0
            || !libc::CPU_ISSET(cpu, &mask)
        {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        // Narrowing the mask moves the running thread at once; widening it again does not move
        // it back.
        if libc::sched_setaffinity(0, size, &one) == 0 {
            libc::sched_setaffinity(0, size, &mask);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask() -> libc::cpu_set_t {
        unsafe {
            let mut m: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(libc::sched_getaffinity(0, size, &mut m), 0);
            m
        }
    }

    fn allowed(m: &libc::cpu_set_t) -> Vec<usize> {
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, m) })
            .collect()
    }

    #[test]
    fn reads_the_cpu_a_thread_runs_on() {
        let before = mask();
        let cpu = *allowed(&before).last().unwrap();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        unsafe {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
        }
        let tid = unsafe { libc::gettid() } as u32;
        let seen = cpu_of(tid);
        unsafe { libc::sched_setaffinity(0, size, &before) };
        assert_eq!(seen, Some(cpu));
        assert_eq!(cpu_of(u32::MAX), None);
    }

    #[test]
    fn moving_gives_the_mask_back() {
        let before = mask();
        for cpu in allowed(&before) {
            move_to(cpu);
            assert!(unsafe { libc::CPU_EQUAL(&before, &mask()) }, "cpu {cpu}");
        }
        // A CPU outside the mask is not moved to, and the mask stays.
        let outside = (0..libc::CPU_SETSIZE as usize)
            .find(|c| !allowed(&before).contains(c))
            .unwrap();
        move_to(outside);
        assert!(unsafe { libc::CPU_EQUAL(&before, &mask()) });
    }
}

//! Durability, as an application that syncs expects it: fsync of a directory reaches the upper
//! directory (and the directories a copy-up made on the way), and a copied-up file's inode
//! record is on disk before the copy becomes visible. Checked by tracing the daemon's sync
//! calls with strace, as scripts/bench's durability audit does.

mod common;
use common::*;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// strace attached to every thread of a daemon, writing to a file; detached on drop.
struct Tracer {
    child: Child,
    out: std::path::PathBuf,
}

impl Tracer {
    fn attach(pid: i32, calls: &str, out: std::path::PathBuf) -> Tracer {
        let child = Command::new("strace")
            .args(["-f", "-qq", "-y", "-e", &format!("trace={calls}"), "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strace (apt-get install strace) must be installed");
        let t = Tracer { child, out };
        // Attached once every thread of the daemon has a tracer.
        let attached = wait_until(Duration::from_secs(20), || {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                return false;
            };
            tasks.flatten().all(|t| {
                std::fs::read_to_string(t.path().join("status"))
                    .map(|s| {
                        s.lines()
                            .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0")
                    })
                    .unwrap_or(false)
            })
        });
        assert!(attached, "strace did not attach to the daemon {pid}");
        t
    }

    /// Detach and return what was traced.
    fn finish(mut self) -> Vec<String> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fsync_dir(p: std::path::PathBuf) {
    let d = File::open(&p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    assert_eq!(
        unsafe { libc::fsync(d.as_raw_fd()) },
        0,
        "fsync {}",
        p.display()
    );
}

/// The traced fsync/fdatasync calls on a directory of the upper (strace -y names the fd).
fn upper_dir_syncs(lines: &[String], upper: &std::path::Path) -> Vec<String> {
    let up = upper.display().to_string();
    lines
        .iter()
        .filter(|l| l.contains("fsync(") || l.contains("fdatasync("))
        .filter(|l| l.contains(&format!("<{up}>")) || l.contains(&format!("<{up}/")))
        .cloned()
        .collect()
}

#[test]
fn fsync_of_a_directory_syncs_it_and_the_directories_copy_up_made_for_it() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("d1/d2/old", "old\n");
            l.file("lonely/x", "x\n");
        })
        .mount();
    // A create deep in a lower-only tree copies d1 and d2 up.
    m.run(|c| write(c.p("d1/d2/new"), "new\n"));
    let t = Tracer::attach(m.daemon_pid(), "fsync,fdatasync", m.base.join("trace1"));
    m.run(|c| fsync_dir(c.p("d1/d2")));
    let first = upper_dir_syncs(&t.finish(), &m.u(""));
    let upper = m.u("").display().to_string();
    for dir in ["/d1/d2>", "/d1>", &format!("{upper}>")] {
        assert!(
            first.iter().any(|l| l.contains(&format!("{dir})"))),
            "fsync(d1/d2) did not sync the upper's {dir}: traced {first:#?}"
        );
    }
    // The copy-up's directories are durable now: a second fsync syncs the directory alone.
    let t = Tracer::attach(m.daemon_pid(), "fsync,fdatasync", m.base.join("trace2"));
    m.run(|c| fsync_dir(c.p("d1/d2")));
    let second = upper_dir_syncs(&t.finish(), &m.u(""));
    assert_eq!(second.len(), 1, "second fsync(d1/d2): {second:#?}");
    // A directory only in the lower has nothing to sync, and says so with success.
    m.run(|c| fsync_dir(c.p("lonely")));
}

#[test]
fn a_copied_up_file_has_its_inode_record_on_disk_before_it_is_visible() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("f", "lower\n");
        })
        .mount();
    let t = Tracer::attach(
        m.daemon_pid(),
        "fsync,fdatasync,rename,renameat,renameat2",
        m.base.join("trace"),
    );
    m.run(|c| append(c.p("f"), "more\n"));
    let lines = t.finish();
    let table = &m.base.join("work/strata/inodes").display().to_string();
    let synced = lines.iter().position(|l| {
        (l.contains("fsync(") || l.contains("fdatasync(")) && l.contains(table.as_str())
    });
    let visible = lines
        .iter()
        .position(|l| l.contains("renameat2(") && l.contains("\"f\""));
    match (synced, visible) {
        (Some(s), Some(v)) => assert!(
            s < v,
            "the inode table was synced only after the copy was renamed into place:\n{}",
            lines.join("\n")
        ),
        _ => panic!(
            "no sync of the inode table ({table}) before the copy-up's rename:\n{}",
            lines.join("\n")
        ),
    }
}

#[test]
fn fsync_0_makes_fsync_and_fsyncdir_return_without_syncing() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("d/old", "old\n");
        })
        .opt("fsync=0")
        .mount();
    m.run(|c| write(c.p("d/new"), "new\n"));
    let t = Tracer::attach(m.daemon_pid(), "fsync,fdatasync", m.base.join("trace"));
    m.run(|c| {
        let f = File::options().append(true).open(c.p("d/new")).unwrap();
        assert_eq!(unsafe { libc::fsync(f.as_raw_fd()) }, 0);
        fsync_dir(c.p("d"));
    });
    let synced: Vec<_> = t
        .finish()
        .into_iter()
        .filter(|l| l.contains(&m.u("").display().to_string()))
        .collect();
    assert!(synced.is_empty(), "fsync=0 still synced: {synced:#?}");
}

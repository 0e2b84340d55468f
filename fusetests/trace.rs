//! `strata trace MOUNT [--json]` prints each copy-up, whiteout, opaque dir, redirect, create,
//! removal, rename and write into a graft as it happens; a reader that never reads holds up no
//! one; trace ends when the mount goes.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `strata trace`, killed on drop; its stdout lines are collected as they come.
struct Trace {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
}

impl Trace {
    /// Start `strata trace ARGS` and wait until it says it is tracing.
    fn start(m: &Mount, args: &[&str], path: &std::path::Path) -> Trace {
        let mut child = m
            .strata_cmd()
            .arg("trace")
            .args(args)
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata trace");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let (out, l) = (child.stdout.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        let (e, er) = (child.stderr.take().unwrap(), err.clone());
        std::thread::spawn(move || {
            let mut r = BufReader::new(e);
            let mut s = String::new();
            while r.read_line(&mut s).unwrap_or(0) > 0 {
                er.lock().unwrap().push_str(&s);
                s.clear();
            }
        });
        let t = Trace { child, lines, err };
        let ready = wait_until(Duration::from_secs(20), || {
            t.err.lock().unwrap().contains("tracing ")
        });
        assert!(
            ready,
            "strata trace did not start; stderr: {}",
            t.err.lock().unwrap()
        );
        t
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait until a line satisfies `f`; all lines so far otherwise, as the panic message.
    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        wait_until(Duration::from_secs(10), || {
            found = self.lines().into_iter().find(|l| f(l));
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "strata trace printed no {what}; it printed:\n{}\nstderr: {}",
                self.lines().join("\n"),
                self.err.lock().unwrap()
            )
        })
    }

    /// Wait until `strata trace` exits by itself.
    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BIG: usize = 300_000;

/// A mount with something of each kind to change, and a bind graft at /data.
fn fixture() -> Mount {
    let b = Builder::new(1).lower(0, |l| {
        l.file("big-7c1e", vec![b'x'; BIG]);
        l.file("dir-a3/gone-5b", "x");
        l.file("old-9d/inside", "y");
        l.dir("empty-4f");
        l.file("moved-2e", "z");
    });
    let src = b.host_dir("graft-src");
    src.file("note", "n");
    let spec = spec(&src.path(""), "/data");
    b.arg("--bind").arg(spec).mount()
}

/// One of each operation.
fn operate(m: &Mount) {
    m.run(|c| {
        append(c.p("big-7c1e"), "+");
        rm(c.p("dir-a3/gone-5b"));
        rename(c.p("old-9d"), c.p("new-9d"));
        rmdir(c.p("empty-4f"));
        mkdir(c.p("empty-4f"));
        write(c.p("fresh-61"), "f");
        rename(c.p("moved-2e"), c.p("moved-2f"));
        rm(c.p("fresh-61"));
        mkdir(c.p("dir-b7"));
        rmdir(c.p("dir-b7"));
        append(c.p("data/note"), "+");
        write(c.p("data/written-3a"), "g");
    });
}

#[test]
fn text_trace_shows_each_kind_of_event() {
    let m = fixture();
    let t = Trace::start(&m, &[], &m.mnt);
    operate(&m);
    let copy = t.wait_for("copy-up of /big-7c1e", |l| {
        l.starts_with("copy-up") && l.contains("/big-7c1e:")
    });
    assert!(
        copy.contains(&format!("{BIG} bytes")) && copy.contains(" ms"),
        "the copy-up line does not give {BIG} bytes and a time: {copy}"
    );
    assert!(
        copy.contains(&m.l(0, "big-7c1e").display().to_string()),
        "the copy-up line does not name the lower file: {copy}"
    );
    let kernel_wh = if is_root() {
        "char device 0:0"
    } else {
        ".wh. file"
    };
    let wh = t.wait_for("whiteout of /dir-a3/gone-5b", |l| {
        l.starts_with("whiteout") && l.contains("/dir-a3/gone-5b:")
    });
    assert!(wh.contains(kernel_wh), "whiteout format missing: {wh}");
    t.wait_for("unlink of /dir-a3/gone-5b", |l| {
        l.starts_with("unlink") && l.ends_with("/dir-a3/gone-5b")
    });
    let rd = t.wait_for("redirect of /new-9d", |l| {
        l.starts_with("redirect") && l.contains("/new-9d:")
    });
    assert!(rd.contains("/old-9d"), "redirect without origin: {rd}");
    let op = t.wait_for("opaque /empty-4f", |l| {
        l.starts_with("opaque") && l.contains("/empty-4f:")
    });
    assert!(op.contains("overlay.opaque"), "opaque without format: {op}");
    t.wait_for("create of /fresh-61", |l| {
        l.starts_with("create") && l.contains("/fresh-61: file")
    });
    t.wait_for("rename of /moved-2e", |l| {
        l.starts_with("rename") && l.ends_with("/moved-2e -> /moved-2f")
    });
    t.wait_for("rmdir of /dir-b7", |l| {
        l.starts_with("rmdir") && l.ends_with("/dir-b7")
    });
    let g = t.wait_for("graft write of /data/written-3a", |l| {
        l.starts_with("graft") && l.contains("/data/written-3a:")
    });
    assert!(
        g.contains("create file") && g.contains("graft-src"),
        "the graft line does not say what was made where: {g}"
    );
    let w = t.wait_for("graft write of /data/note", |l| {
        l.starts_with("graft") && l.contains("/data/note:")
    });
    assert!(w.contains("open for writing"), "{w}");
    assert_eq!(
        read(m.base.join("graft-src/note")),
        "n+",
        "the write did not reach the graft's source"
    );
    // The graft's change went to its source, not the upper: no create line for it.
    assert!(
        !t.lines()
            .iter()
            .any(|l| l.starts_with("create") && l.contains("written-3a")),
        "a write into the graft was reported as a create in the upper:\n{}",
        t.lines().join("\n")
    );
}

#[test]
fn json_trace_gives_one_object_per_line() {
    let m = fixture();
    let t = Trace::start(&m, &["--json"], &m.p("dir-a3"));
    operate(&m);
    t.wait_for("graft write (the last operation)", |l| {
        l.contains("written-3a")
    });
    let events: Vec<serde_json::Value> = t
        .lines()
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object: {l:?}: {e}"))
        })
        .collect();
    let find = |kind: &str, path: &str| {
        events
            .iter()
            .find(|e| e["event"] == kind && (e["path"] == path || e["from"] == path))
            .unwrap_or_else(|| panic!("no {kind} event for {path} in {events:#?}"))
            .clone()
    };
    let c = find("copy-up", "/big-7c1e");
    let size = std::fs::metadata(m.l(0, "big-7c1e")).unwrap().len();
    assert_eq!(c["bytes"], size, "copy-up bytes vs the file's size: {c}");
    assert_eq!(c["layer"], 1, "{c}");
    assert!(c["micros"].as_u64().is_some_and(|t| t > 0), "{c}");
    let w = find("whiteout", "/dir-a3/gone-5b");
    assert_eq!(w["kind"], "file", "{w}");
    assert_eq!(w["cause"], "unlink", "{w}");
    assert_eq!(
        w["format"],
        if is_root() {
            "char device 0:0"
        } else {
            ".wh. file"
        },
        "{w}"
    );
    let r = find("redirect", "/new-9d");
    assert_eq!(r["origin"], "/old-9d", "{r}");
    assert_eq!(r["from"], "/old-9d", "{r}");
    let o = find("opaque", "/empty-4f");
    assert_eq!(o["format"], format!("xattr {}", ovl_xattr("opaque")), "{o}");
    find("create", "/fresh-61");
    find("unlink", "/fresh-61");
    find("rmdir", "/dir-b7");
    let rn = find("rename", "/moved-2e");
    assert_eq!(rn["to"], "/moved-2f", "{rn}");
    let g = find("graft-write", "/data/written-3a");
    assert_eq!(g["op"], "create file", "{g}");
}

#[test]
fn a_reader_that_never_reads_blocks_nothing_and_learns_what_it_missed() {
    let m = fixture();
    let sock = m.work.as_ref().unwrap().join("strata/control.sock");
    let md = std::fs::symlink_metadata(&sock).expect("the control socket");
    assert!(
        md.file_type().is_socket(),
        "{} is no socket",
        sock.display()
    );
    assert_eq!(md.permissions().mode() & 0o777, 0o600, "socket mode");
    let mut stalled = UnixStream::connect(&sock).unwrap();
    stalled.write_all(b"trace\n").unwrap();
    let mut ok = [0u8; 3];
    stalled.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"ok\n");
    // Far more events than a queue and a socket buffer hold, while nobody reads.
    const N: usize = 6000;
    let t = Instant::now();
    m.run(|c| {
        for i in 0..N {
            let p = c.p(&format!("f{i}"));
            write(&p, "x");
            rm(&p);
        }
    });
    let took = t.elapsed();
    // The writes went on (m.run fails after its timeout if they had stopped). Now read: the
    // stream goes on with how many events were dropped.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    m.run(|c| write(c.p("after-stall"), "x"));
    let mut r = BufReader::new(stalled);
    let mut dropped = None;
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dropped.is_none() && Instant::now() < deadline {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "dropped" {
            dropped = v["count"].as_u64();
        }
    }
    let dropped = dropped.unwrap_or_else(|| {
        panic!(
            "no dropped event after {} events to a stalled reader",
            2 * N
        )
    });
    assert!(
        dropped > 0 && dropped < 2 * N as u64,
        "dropped {dropped} of {} events",
        2 * N
    );
    eprintln!(
        "{} ops in {took:?} with a stalled reader; {dropped} events dropped",
        2 * N
    );
}

#[test]
fn trace_ends_when_the_mount_is_unmounted() {
    let mut m = fixture();
    let mut t = Trace::start(&m, &[], &m.mnt);
    m.unmount();
    let st = t
        .wait_exit(Duration::from_secs(10))
        .expect("strata trace still runs 10 s after the unmount");
    assert!(st.success(), "strata trace exited with {st}");
    let err = t.err.lock().unwrap().clone();
    assert!(err.contains("no longer mounted"), "stderr: {err}");
}

#[test]
fn trace_refuses_paths_it_cannot_trace() {
    let m = Builder::new(1).lower(0, |l| {
        l.file("f", "x");
    });
    let base = m.base().to_path_buf();
    let ro = m.read_only().mount();
    for (path, want) in [
        (base.clone(), "is not in a strata mount"),
        (ro.mnt.clone(), "has no control socket"),
        (base.join("missing"), "no such file or directory"),
    ] {
        let out = run_cmd(
            ro.strata_cmd().arg("trace").arg(&path),
            Duration::from_secs(20),
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            path.display(),
            out.describe()
        );
        let err = out.stderr.trim();
        assert!(
            err.lines().count() == 1 && err.contains(want),
            "{}: want one line with {want:?}, got {err:?}",
            path.display()
        );
        assert!(out.stdout.is_empty(), "{}", out.describe());
    }
}

#[test]
fn a_workdir_deeper_than_a_socket_address_allows_still_traces() {
    // A container's workdir under the state root is longer than a socket address (107 bytes).
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("f-18", "x");
        })
        .prepare();
    let long = m.base.join("w".repeat(60)).join("k".repeat(60));
    std::fs::create_dir_all(&long).unwrap();
    assert!(long.join("strata/control.sock").as_os_str().len() > 108);
    m.work = Some(long.clone());
    m.mount_now();
    assert!(
        std::fs::symlink_metadata(long.join("strata/control.sock"))
            .is_ok_and(|md| md.file_type().is_socket()),
        "no control socket in the long workdir"
    );
    let t = Trace::start(&m, &[], &m.mnt);
    m.run(|c| append(c.p("f-18"), "y"));
    let l = t.wait_for("copy-up of /f-18", |l| {
        l.starts_with("copy-up") && l.contains("/f-18:")
    });
    assert!(l.contains(", 1 bytes in"), "the lower file has 1 byte: {l}");
}

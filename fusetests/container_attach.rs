//! `attach`: a running detached container's output from now on (stdout to stdout, stderr to
//! stderr), the caller's stdin to its stdin, its exit code as attach's; with a terminal, the
//! caller's raw, the window size passed on, ctrl-p ctrl-q (or --detach-keys) leaving it
//! running; without one, signals passed on unless --sig-proxy=false; a stopped container
//! refused with Docker's line.

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
#[path = "containers/pty.rs"]
mod pty;
use common::*;
use fixture::*;
use pty::Term;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

fn strata(f: &Fx, args: &[&str]) -> Command {
    let mut c = Command::new(strata_bin());
    c.env("STRATA_ROOT", &f.root).args(args);
    c
}

/// `strata attach ...` as a child with pipes; killed when dropped.
struct Attach {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

impl Attach {
    fn spawn(f: &Fx, args: &[&str]) -> Attach {
        let mut child = strata(f, &[&["attach"], args].concat())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strata attach");
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Attach {
            stdin: child.stdin.take(),
            child,
            out,
            err,
        }
    }

    fn out(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn err(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    fn wait_out(&self, needle: &str) {
        assert!(
            wait_until(T, || self.out().contains(needle)),
            "{needle:?} never came; stdout {:?}, stderr {:?}",
            self.out(),
            self.err()
        );
    }

    /// How attach ended (its exit status), within the timeout.
    fn wait(&mut self) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // The pipes' last bytes.
                std::thread::sleep(Duration::from_millis(100));
                return st;
            }
            assert!(
                t.elapsed() < T,
                "attach did not end; stdout {:?}, stderr {:?}",
                self.out(),
                self.err()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Attach {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn status_of(f: &Fx, id: &str) -> String {
    f.state_of(id).unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn attach_joins_stdin_and_both_streams_and_ends_with_the_exit_code() {
    let f = fx();
    let (id, _) = detached(
        &f,
        &["-i", "--name", "talk"],
        &[
            "sh",
            "-c",
            "echo before; read x; echo \"got $x\"; echo oops >&2; exit 3",
        ],
    );
    assert!(wait_until(T, || f.verb(&["logs", "talk"]).stdout == "before\n"));
    let mut a = Attach::spawn(&f, &["talk"]);
    // The line reaches the container only through the attach: what it prints after is seen.
    a.stdin.as_mut().unwrap().write_all(b"hello\n").unwrap();
    let st = a.wait();
    assert_eq!(st.code(), Some(3), "stderr {:?}", a.err());
    // Output from the attach on, not what came before; each stream on its own.
    assert_eq!(a.out(), "got hello\n");
    assert_eq!(a.err(), "oops\n");
    // Once attach is back, the container is recorded as exited.
    assert_eq!(status_of(&f, &id), "exited");
    let t = table(&f.verb(&["ps", "-a"]).stdout);
    assert!(t[1][4].starts_with("Exited (3) "), "{:?}", t[1]);
    assert!(f.verb(&["rm", &id]).ok());
    f.assert_nothing_left();
}

#[test]
fn signals_are_passed_on_unless_sig_proxy_is_false() {
    let f = fx();
    let script = "trap 'echo got INT; exit 6' INT; while true; do echo tick; sleep 0.2; done";
    let (id, _) = detached(&f, &["--name", "sig"], &["sh", "-c", script]);
    let mut a = Attach::spawn(&f, &["--no-stdin", "sig"]);
    a.wait_out("tick");
    unsafe { libc::kill(a.child.id() as i32, libc::SIGINT) };
    let st = a.wait();
    assert_eq!(st.code(), Some(6), "stderr {:?}", a.err());
    assert!(a.out().ends_with("got INT\n"), "{:?}", a.out());
    assert_eq!(status_of(&f, &id), "exited");
    // --sig-proxy=false: ctrl-c ends the attach, the container goes on.
    let (id2, pid2) = detached(&f, &["--name", "sig2"], &["sh", "-c", script]);
    let mut a = Attach::spawn(&f, &["--sig-proxy=false", "sig2"]);
    a.wait_out("tick");
    unsafe { libc::kill(a.child.id() as i32, libc::SIGINT) };
    let st = a.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGINT)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(proc_alive(pid2));
    assert_eq!(status_of(&f, &id2), "running");
    assert!(!f.verb(&["logs", "sig2"]).stdout.contains("got INT"));
    for c in [&id, &id2] {
        assert!(f.verb(&["rm", "-f", c]).ok());
    }
    f.assert_nothing_left();
}

#[test]
fn a_terminal_is_raw_sized_and_the_detach_keys_leave_it_running() {
    let f = fx();
    let (id, pid) = detached(&f, &["-i", "-t", "--name", "box"], &["sh"]);
    let mut t = Term::spawn(strata(&f, &["attach", "box"]), 30, 100);
    // The window size comes with the attach; what is typed reaches the container's shell.
    t.send("tty; stty size; echo hi-$((1+2))\n");
    t.expect("/dev/pts/0\r\n", T);
    t.expect("30 100\r\n", T);
    t.expect("hi-3\r\n", T);
    let l = t.lflags();
    assert_eq!(l & (libc::ICANON | libc::ECHO | libc::ISIG), 0, "{l:o}");
    t.resize(40, 120);
    std::thread::sleep(Duration::from_millis(500));
    t.send("stty size\n");
    t.expect("40 120\r\n", T);
    // ctrl-p ctrl-q: attach ends with Docker's line and code; the container runs on.
    t.send("\x10\x11");
    assert_eq!(t.wait(T), 1, "{}", t.output());
    t.expect("read escape sequence", T);
    let l = t.lflags();
    assert_eq!(
        l & (libc::ICANON | libc::ECHO | libc::ISIG),
        libc::ICANON | libc::ECHO | libc::ISIG,
        "{l:o}"
    );
    assert!(proc_alive(pid));
    assert_eq!(status_of(&f, &id), "running");
    // Keys of the caller's choice.
    let mut t = Term::spawn(
        strata(&f, &["attach", "--detach-keys", "ctrl-a,x", "box"]),
        24,
        80,
    );
    t.send("echo again-$((2+2))\n");
    t.expect("again-4\r\n", T);
    t.send("\x01x");
    assert_eq!(t.wait(T), 1, "{}", t.output());
    assert_eq!(status_of(&f, &id), "running");
    // The shell's exit code is attach's.
    let mut t = Term::spawn(strata(&f, &["attach", "box"]), 24, 80);
    t.send("exit 4\n");
    assert_eq!(t.wait(T), 4, "{}", t.output());
    assert_eq!(status_of(&f, &id), "exited");
    assert_eq!(f.state_of(&id).unwrap()["exit_code"], 4);
    assert!(f.verb(&["rm", &id]).ok());
    f.assert_nothing_left();
}

#[test]
fn attach_refuses_what_it_cannot_join_with_one_line() {
    let f = fx();
    let o = f.run(&["--name", "done"], &["true"]);
    assert!(o.ok(), "{}", o.describe());
    let cases: &[(&[&str], &str)] = &[
        (
            &["done"],
            "strata: You cannot attach to a stopped container, start it first\n",
        ),
        (&["nope"], "strata: No such container: nope\n"),
        (
            &["--detach-keys", "bogus", "done"],
            "strata: Invalid detach keys (bogus) provided\n",
        ),
    ];
    for (args, line) in cases {
        let o = f.verb(&[&["attach"], *args].concat());
        assert_eq!(
            (o.status.code(), o.stderr.as_str(), o.stdout.as_str()),
            (Some(1), *line, ""),
            "attach {args:?}"
        );
    }
    // A container in the foreground of its `strata run` has no stdio to share.
    let bg = f.spawn(&[], &["sleep", "60"]);
    let o = f.verb(&["attach", &bg.id]);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert!(o.stderr.contains("foreground"), "{}", o.describe());
    assert_eq!(status_of(&f, &bg.id), "running");
    assert!(f.verb(&["rm", "-f", &bg.id]).ok());
    assert!(f.verb(&["rm", "done"]).ok());
}

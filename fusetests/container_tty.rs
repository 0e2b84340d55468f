//! `-i` and `-t`: stdin passed to the process, a pty of the container's own as its terminal
//! (driven here from a terminal the test holds), the caller's terminal raw while attached and
//! restored after, the window size at start and on resize, Ctrl-C reaching the container's
//! foreground job, `-d -t` output in the log, `start -a -i`, and `exec -i -t` / `exec -d`.

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
#[path = "containers/pty.rs"]
mod pty;
use common::*;
use fixture::*;
use pty::Term;

use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn strata(f: &Fx, args: &[&str]) -> Command {
    let mut c = Command::new(strata_bin());
    c.env("STRATA_ROOT", &f.root).args(args);
    c
}

/// `strata run ARGS` with `input` on its stdin.
fn run_with_stdin(f: &Fx, args: &[&str], input: &str) -> CmdOut {
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in");
    std::fs::write(&inp, input).unwrap();
    let c = strata(f, &[&["run"], args].concat());
    let dir2 = dir.path().to_path_buf();
    let script = format!(
        "exec \"$@\" < {} > {}/out 2> {}/err",
        inp.display(),
        dir2.display(),
        dir2.display()
    );
    // run_cmd gives its commands no stdin: a shell puts the file there instead.
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c")
        .arg(script)
        .arg("sh")
        .arg(c.get_program())
        .args(c.get_args());
    sh.envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let o = run_cmd(&mut sh, RUN_TIMEOUT);
    CmdOut {
        status: o.status,
        stdout: std::fs::read_to_string(dir2.join("out")).unwrap_or_default(),
        stderr: std::fs::read_to_string(dir2.join("err")).unwrap_or_default(),
    }
}

#[test]
fn run_it_gives_a_shell_a_terminal_with_job_control() {
    let f = fx();
    let r = f.rootfs.to_str().unwrap();
    let mut t = Term::spawn(strata(&f, &["run", "-it", "--rm", r, "sh"]), 33, 101);
    t.send("tty; stty size\n");
    t.expect("/dev/pts/0\r\n", T);
    t.expect("33 101\r\n", T);
    // While attached, the caller's terminal is raw (no echo, no line editing of its own).
    let l = t.lflags();
    assert_eq!(l & (libc::ICANON | libc::ECHO | libc::ISIG), 0, "{l:o}");
    // A resize reaches the container's terminal.
    t.resize(40, 120);
    std::thread::sleep(Duration::from_millis(300));
    t.send("stty size\n");
    t.expect("40 120\r\n", T);
    // Ctrl-C ends the shell's foreground job, not the shell.
    t.send("sleep 30\n");
    std::thread::sleep(Duration::from_millis(500));
    t.send("\x03");
    t.send("echo sleep-$?\n");
    t.expect("sleep-130", Duration::from_secs(10));
    t.send("echo alive-$((20+22))\n");
    t.expect("alive-42", T);
    t.send("exit 3\n");
    assert_eq!(t.wait(T), 3, "{}", t.output());
    // The terminal is as it was before.
    let l = t.lflags();
    assert_eq!(
        l & (libc::ICANON | libc::ECHO | libc::ISIG),
        libc::ICANON | libc::ECHO | libc::ISIG,
        "{l:o}"
    );
    f.assert_nothing_left();
}

#[test]
fn run_i_passes_stdin_and_without_it_the_process_reads_nothing() {
    let f = fx();
    let r = f.rootfs.to_str().unwrap();
    let o = run_with_stdin(
        &f,
        &["-i", "--rm", r, "sh", "-c", "cat; echo end"],
        "line 1\nline 2\n",
    );
    assert!(o.ok(), "{}", o.describe());
    assert_eq!(o.stdout, "line 1\nline 2\nend\n");
    let o = run_with_stdin(&f, &["--rm", r, "sh", "-c", "cat; echo end"], "line 1\n");
    assert!(o.ok(), "{}", o.describe());
    assert_eq!(o.stdout, "end\n");
    // -t without -i: a terminal, output with its CR LF, the caller's stdin not read.
    let o = run_with_stdin(&f, &["-t", "--rm", r, "sh", "-c", "tty; echo end"], "x\n");
    assert!(o.ok(), "{}", o.describe());
    assert_eq!(o.stdout, "/dev/pts/0\r\nend\r\n");
    f.assert_nothing_left();
}

#[test]
fn it_without_a_terminal_is_refused_and_leaves_nothing() {
    let f = fx();
    let r = f.rootfs.to_str().unwrap();
    let o = run_with_stdin(&f, &["-it", r, "sh"], "");
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert_eq!(o.stderr, "strata: the input device is not a TTY\n");
    f.assert_nothing_left();
}

#[test]
fn detached_tty_output_goes_to_the_log_and_d_i_keeps_stdin_open() {
    let f = fx();
    // A command this short may have ended before `run -d` returns: only its id is printed.
    let o = f.run(&["-d", "-t"], &["sh", "-c", "tty; echo done"]);
    assert!(o.ok(), "{}", o.describe());
    let id = o.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{}", o.describe());
    assert_eq!(f.verb(&["wait", &id]).stdout, "0\n");
    assert_eq!(f.verb(&["logs", &id]).stdout, "/dev/pts/0\r\ndone\r\n");
    // `cat` on a stdin held open keeps running; without -i it ends at once.
    let (held, _) = detached(&f, &["-i"], &["cat"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(f.state_of(&held).unwrap()["status"], "running");
    let (tty_held, _) = detached(&f, &["-i", "-t"], &["sh"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(f.state_of(&tty_held).unwrap()["status"], "running");
    let o = f.run(&["-d"], &["cat"]);
    assert!(o.ok(), "{}", o.describe());
    assert_eq!(f.verb(&["wait", o.stdout.trim()]).stdout, "0\n");
    for c in [&held, &tty_held] {
        assert!(f.verb(&["rm", "-f", c]).ok());
    }
}

#[test]
fn start_a_i_attaches_a_created_containers_terminal() {
    let f = fx();
    let r = f.rootfs.to_str().unwrap();
    let o = f.verb(&["create", "-it", "--name", "later", r, "sh"]);
    assert!(o.ok(), "{}", o.describe());
    let mut t = Term::spawn(strata(&f, &["start", "-a", "-i", "later"]), 24, 80);
    t.send("echo first > /f; tty\n");
    t.expect("/dev/pts/0\r\n", T);
    t.send("exit 4\n");
    assert_eq!(t.wait(T), 4, "{}", t.output());
    // Stopped, and attached again on the same writable layer.
    let mut t = Term::spawn(strata(&f, &["start", "-ai", "later"]), 24, 80);
    t.send("cat /f\n");
    t.expect("first\r\n", T);
    t.send("exit\n");
    assert_eq!(t.wait(T), 0, "{}", t.output());
    // A container made without -t gives its output to `start -a` as it is.
    let o = f.verb(&[
        "create",
        "--name",
        "plain",
        r,
        "sh",
        "-c",
        "echo plain; exit 2",
    ]);
    assert!(o.ok(), "{}", o.describe());
    let o = f.verb(&["start", "-a", "plain"]);
    assert_eq!((o.status.code(), o.stdout.as_str()), (Some(2), "plain\n"));
    let o = run_cmd(
        strata(&f, &["start", "-ai", "later"]).stdin(Stdio::null()),
        RUN_TIMEOUT,
    );
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert_eq!(o.stderr, "strata: the input device is not a TTY\n");
    assert!(f.verb(&["rm", "later", "plain"]).ok());
}

#[test]
fn exec_it_and_exec_d() {
    let f = fx();
    let (id, _) = detached(&f, &["--name", "box"], &["sleep", "60"]);
    let mut t = Term::spawn(strata(&f, &["exec", "-it", "box", "sh"]), 30, 90);
    t.send("tty; stty size; echo $$\n");
    t.expect("/dev/pts/0\r\n", T);
    t.expect("30 90\r\n", T);
    t.send("exit 5\n");
    assert_eq!(t.wait(T), 5, "{}", t.output());
    // -d returns at once; the command goes on in the container.
    let o = f.verb(&[
        "exec",
        "-d",
        "box",
        "sh",
        "-c",
        "sleep 1; echo late > /tmp/d",
    ]);
    assert_eq!(
        (o.status.code(), o.stdout.as_str()),
        (Some(0), ""),
        "{}",
        o.describe()
    );
    let o = f.verb(&["exec", "box", "cat", "/tmp/d"]);
    assert_ne!(o.stdout, "late\n", "exec -d waited for its command");
    assert!(wait_until(Duration::from_secs(10), || f
        .verb(&["exec", "box", "cat", "/tmp/d"])
        .stdout
        == "late\n"));
    let o = f.verb(&["exec", "-d", "box", "nonexistent"]);
    assert_eq!(o.status.code(), Some(127), "{}", o.describe());
    let o = f.verb(&["exec", "-i", "box", "cat"]);
    assert!(o.ok(), "{}", o.describe());
    assert!(f.verb(&["rm", "-f", &id]).ok());
}

#[test]
fn dev_console_is_the_containers_own_terminal_under_t_and_absent_without() {
    let f = fx();
    // The pty's slave, as Docker binds it: same device as the shell's terminal, its user's.
    let script = "stat -c '%t:%T %u' /dev/console /dev/pts/0; tty";
    let o = run_with_stdin(
        &f,
        &[
            "-t",
            "--rm",
            "-u",
            "1000",
            f.rootfs.to_str().unwrap(),
            "sh",
            "-c",
            script,
        ],
        "",
    );
    assert!(o.ok(), "{}", o.describe());
    assert_eq!(o.stdout, "88:0 1000\r\n88:0 1000\r\n/dev/pts/0\r\n");
    // -d -t too: the console is there for the detached container.
    let (id, _) = detached(&f, &["-t"], &["sleep", "60"]);
    let o = f.verb(&["exec", &id, "stat", "-c", "%t:%T", "/dev/console"]);
    assert_eq!(o.stdout, "88:0\n", "{}", o.describe());
    assert!(f.verb(&["rm", "-f", &id]).ok());
    // Without -t there is none, even when the caller has a terminal.
    let mut t = Term::spawn(
        strata(
            &f,
            &[
                "run",
                "--rm",
                f.rootfs.to_str().unwrap(),
                "sh",
                "-c",
                "test -e /dev/console; echo console-$?",
            ],
        ),
        24,
        80,
    );
    t.expect("console-1", T);
    assert_eq!(t.wait(T), 0, "{}", t.output());
    f.assert_nothing_left();
}

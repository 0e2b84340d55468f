//! Container verbs and bad input: `run -d`, `ps`, `logs`, `stop`, `rm`, `start`, `kill`,
//! `wait`, `inspect`, `create`, `restart`, a monitor killed with -9, and bad command lines
//! (one line, Docker's exit code, nothing left behind).

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
use common::*;
use fixture::*;

use std::path::Path;
use std::time::Duration;

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    let f = fx();
    let cases: &[(&[&str], &str)] = &[
        (
            &["/nonexistent", "true"],
            "strata: rootfs /nonexistent: no such directory\n",
        ),
        (
            &["--network", "bridge", "ROOT", "true"],
            "strata: network bridge not found\n",
        ),
        (
            &["--cap-add", "FLY", "ROOT", "true"],
            "strata: invalid capability: \"FLY\"\n",
        ),
        (
            &["--memory", "1k", "ROOT", "true"],
            "strata: Minimum memory limit allowed is 6MB\n",
        ),
        (
            &["--name", "bad/name", "ROOT", "true"],
            "strata: Invalid container name (bad/name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed\n",
        ),
        (&["ROOT"], "strata: no command specified\n"),
    ];
    let r = f.rootfs.to_str().unwrap();
    for (args, err) in cases {
        let a: Vec<&str> = args
            .iter()
            .map(|x| if *x == "ROOT" { r } else { x })
            .collect();
        let o = f.run_raw(&a);
        assert_eq!(
            (o.status.code(), o.stderr.as_str()),
            (Some(125), *err),
            "{a:?}: {}",
            o.describe()
        );
    }
    let o = f.run_raw(&["--bogus", r, "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", o.describe());
    f.assert_nothing_left();
    // A name in use is refused with Docker's words, and the first container stays.
    assert!(f.run(&["--name", "taken"], &["true"]).ok());
    let id = f.only_id();
    let o = f.run(&["--name", "taken"], &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", o.describe());
    assert_eq!(
        o.stderr,
        format!(
            "strata: Conflict. The container name \"/taken\" is already in use by container \
             \"{id}\". You have to remove (or rename) that container to be able to reuse that \
             name.\n"
        )
    );
    assert_eq!(f.ids(), [id]);
}

#[test]
fn detached_run_ps_logs_stop_rm() {
    let f = fx();
    let (id, pid) = detached(
        &f,
        &["--name", "web"],
        &["sh", "-c", "echo out; echo err >&2; sleep 30"],
    );
    let ps = f.verb(&["ps"]);
    assert!(ps.ok(), "{}", ps.describe());
    let t = table(&ps.stdout);
    assert_eq!(
        t[0],
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ]
    );
    assert_eq!(t.len(), 2, "{}", ps.stdout);
    assert_eq!(t[1][0], id[..12]);
    assert_eq!(t[1][1], f.rootfs.to_str().unwrap());
    assert_eq!(t[1][2], "\"sh -c echo out; ech…\"");
    assert!(t[1][3].ends_with(" ago"), "{:?}", t[1]);
    assert!(t[1][4].starts_with("Up "), "{:?}", t[1]);
    assert_eq!(t[1][5], "web");
    assert_eq!(f.verb(&["ps", "-q"]).stdout, format!("{}\n", &id[..12]));
    // The output went to the log, read by name or by a prefix of the id, stdout to stdout
    // and stderr to stderr.
    assert!(wait_until(Duration::from_secs(10), || {
        f.verb(&["logs", "web"]).stderr == "err\n"
    }));
    let o = f.verb(&["logs", &id[..5]]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("out\n", "err\n"));
    // PID 1 has no handler for SIGTERM: stop waits its grace period, then kills.
    let t0 = std::time::Instant::now();
    let o = f.verb(&["stop", "-t", "1", "web"]);
    assert_eq!(
        (o.status.code(), o.stdout.as_str()),
        (Some(0), "web\n"),
        "{}",
        o.describe()
    );
    assert!(t0.elapsed() >= Duration::from_secs(1));
    assert!(!proc_alive(pid));
    let st = f.state_of(&id).unwrap();
    assert_eq!(
        (st["status"].as_str(), st["exit_code"].as_i64()),
        (Some("exited"), Some(137))
    );
    assert_eq!(
        mounts_under(&f.base),
        vec![],
        "the monitor unmounts at the end"
    );
    assert_eq!(table(&f.verb(&["ps"]).stdout).len(), 1);
    let all = table(&f.verb(&["ps", "-a"]).stdout);
    assert!(all[1][4].starts_with("Exited (137) "), "{:?}", all[1]);
    let o = f.verb(&["rm", "web"]);
    assert_eq!(
        (o.status.code(), o.stdout.as_str()),
        (Some(0), "web\n"),
        "{}",
        o.describe()
    );
    f.assert_nothing_left();
    let o = f.verb(&["logs", "web"]);
    assert_eq!(
        (o.status.code(), o.stderr.as_str()),
        (Some(1), "strata: No such container: web\n")
    );
}

#[test]
fn stop_lets_a_process_that_handles_sigterm_end_itself() {
    let f = fx();
    let (id, _) = detached(
        &f,
        &[],
        &["sh", "-c", "trap 'exit 7' TERM; sleep 30 & wait"],
    );
    let t0 = std::time::Instant::now();
    let o = f.verb(&["stop", &id]);
    assert!(o.ok(), "{}", o.describe());
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "stop waited for the grace period"
    );
    assert_eq!(f.state_of(&id).unwrap()["exit_code"], 7);
}

#[test]
fn rm_refuses_a_running_container_unless_forced() {
    let f = fx();
    let (id, pid) = detached(&f, &["--name", "busy"], &["sleep", "30"]);
    let o = f.verb(&["rm", "busy"]);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert_eq!(
        o.stderr,
        format!(
            "strata: You cannot remove a running container {id}. Stop the container before \
             attempting removal or force remove\n"
        )
    );
    assert!(proc_alive(pid));
    let o = f.verb(&["rm", "-f", "busy"]);
    assert_eq!(
        (o.status.code(), o.stdout.as_str()),
        (Some(0), "busy\n"),
        "{}",
        o.describe()
    );
    assert!(!proc_alive(pid));
    f.assert_nothing_left();
}

#[test]
fn a_detached_start_failure_is_reported_and_leaves_nothing() {
    let f = fx();
    let o = f.run(&["-d"], &["nope"]);
    assert_eq!(o.status.code(), Some(127), "{}", o.describe());
    assert_eq!(
        o.stderr,
        "strata: exec: \"nope\": executable file not found in $PATH\n"
    );
    assert_eq!(o.stdout, "");
    f.assert_nothing_left();
}

#[test]
fn a_monitor_killed_with_9_leaves_an_exited_container_that_rm_removes() {
    let f = fx();
    let (id, pid) = detached(&f, &["--name", "orphan"], &["sleep", "30"]);
    let monitor = f.state_of(&id).unwrap()["monitor_pid"].as_i64().unwrap() as i32;
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    // The container does not outlive its monitor.
    assert!(
        wait_until(Duration::from_secs(10), || !proc_alive(pid)),
        "PID 1 survived"
    );
    let all = table(&f.verb(&["ps", "-a"]).stdout);
    assert_eq!(all.len(), 2);
    assert_eq!(all[1][4], "Exited (137)", "{:?}", all[1]);
    // The root is still mounted (its daemon outlives the monitor), and rm takes it down.
    assert_eq!(mounts_under(&f.base).len(), 1);
    let o = f.verb(&["rm", "orphan"]);
    assert!(o.ok(), "{}", o.describe());
    f.assert_nothing_left();
    for ctrl in ["memory", "cpu", "pids"] {
        let d = Path::new("/sys/fs/cgroup")
            .join(ctrl)
            .join("strata")
            .join(&id);
        assert!(!d.exists(), "{} left", d.display());
    }
}

#[test]
fn start_runs_a_stopped_container_again_on_its_writable_layer() {
    let f = fx();
    let script = "echo one >> /tmp/log; cat /tmp/log; exit 3";
    let o = f.run(&["--name", "keep"], &["sh", "-c", script]);
    assert_eq!(
        (o.status.code(), o.stdout.as_str()),
        (Some(3), "one\n"),
        "{}",
        o.describe()
    );
    let o = f.verb(&["start", "-a", "keep"]);
    assert_eq!(
        (o.status.code(), o.stdout.as_str()),
        (Some(3), "one\none\n"),
        "{}",
        o.describe()
    );
    // Another container of the same rootfs has none of it.
    let o = f.run(&["--rm"], &["cat", "/tmp/log"]);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    // Detached: the name, then wait gives the exit code and the log the output.
    let o = f.verb(&["start", "keep"]);
    assert_eq!(
        (o.status.code(), o.stdout.as_str()),
        (Some(0), "keep\n"),
        "{}",
        o.describe()
    );
    let o = f.verb(&["wait", "keep"]);
    assert_eq!(o.stdout, "3\n", "{}", o.describe());
    assert_eq!(f.verb(&["logs", "keep"]).stdout, "one\none\none\n");
    assert_eq!(mounts_under(&f.base), vec![]);
}

#[test]
fn kill_signals_pid_1() {
    let f = fx();
    let (id, pid) = detached(&f, &["--name", "kk"], &["sleep", "30"]);
    // PID 1 has no handler for SIGTERM: it goes on.
    let o = f.verb(&["kill", "-s", "TERM", "kk"]);
    assert_eq!(o.stdout, "kk\n", "{}", o.describe());
    std::thread::sleep(Duration::from_millis(200));
    assert!(proc_alive(pid));
    assert!(f.verb(&["kill", &id[..8]]).ok());
    assert_eq!(f.verb(&["wait", "kk"]).stdout, "137\n");
    let o = f.verb(&["kill", "kk"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        o.stderr,
        format!("strata: Cannot kill container: kk: Container {id} is not running\n")
    );
    let o = f.verb(&["kill", "-s", "NOPE", "kk"]);
    assert_eq!(
        (o.status.code(), o.stderr.as_str()),
        (Some(1), "strata: Invalid signal: NOPE\n")
    );
}

#[test]
fn inspect_shows_dockers_fields() {
    let f = fx();
    let (id, pid) = detached(&f, &["--name", "seen", "--memory", "32m"], &["sleep", "30"]);
    let o = f.verb(&["inspect", "seen"]);
    assert!(o.ok(), "{}", o.describe());
    assert!(
        o.stdout.starts_with("[\n    {\n        \""),
        "4-space indent: {}",
        o.stdout
    );
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let c = &v[0];
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "/seen");
    assert_eq!(c["Path"], "sleep");
    assert_eq!(c["Args"], serde_json::json!(["30"]));
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(c["State"]["Pid"], pid);
    assert_eq!(c["HostConfig"]["Memory"], 32 << 20);
    let dir = f.containers().join(&id);
    let data = &c["GraphDriver"]["Data"];
    assert_eq!(data["LowerDir"], f.rootfs.to_str().unwrap());
    for (k, sub) in [
        ("UpperDir", "upper"),
        ("WorkDir", "work"),
        ("MergedDir", "merged"),
    ] {
        assert_eq!(data[k], dir.join(sub).to_str().unwrap(), "{k}");
    }
    assert!(f.verb(&["kill", "seen"]).ok());
    assert_eq!(f.verb(&["wait", "seen"]).stdout, "137\n");
    let v: serde_json::Value = serde_json::from_str(&f.verb(&["inspect", &id]).stdout).unwrap();
    let st = &v[0]["State"];
    assert_eq!(
        (st["Status"].as_str(), st["Running"].as_bool()),
        (Some("exited"), Some(false))
    );
    assert_eq!(
        (st["ExitCode"].as_i64(), st["Pid"].as_i64()),
        (Some(137), Some(0))
    );
    assert_eq!(st["OOMKilled"], false);
    let o = f.verb(&["inspect", "seen", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(o.stderr, "strata: No such container: nope\n");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[test]
fn logs_tail_and_follow() {
    let f = fx();
    let (_, _) = detached(
        &f,
        &["--name", "talk"],
        &["sh", "-c", "echo 1; echo 2; echo 3; sleep 1; echo done"],
    );
    assert!(wait_until(Duration::from_secs(10), || {
        f.verb(&["logs", "talk"]).stdout == "1\n2\n3\n"
    }));
    assert_eq!(f.verb(&["logs", "--tail", "1", "talk"]).stdout, "3\n");
    assert_eq!(f.verb(&["logs", "-n", "all", "talk"]).stdout, "1\n2\n3\n");
    // -f prints what was there and what comes, and returns when the container exits.
    let o = f.verb(&["logs", "-f", "talk"]);
    assert_eq!(o.stdout, "1\n2\n3\ndone\n", "{}", o.describe());
    assert_eq!(f.state_of(&f.only_id()).unwrap()["status"], "exited");
    let o = f.verb(&["logs", "--tail", "x", "talk"]);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
}

/// Runs `strata ARGS` under a shell with stderr sent to /dev/null, as a user types
/// `strata logs C 2>/dev/null`: what is left on stdout.
fn stdout_only(f: &Fx, args: &[&str]) -> String {
    let mut sh = std::process::Command::new("/bin/sh");
    sh.env("STRATA_ROOT", &f.root)
        .arg("-c")
        .arg("exec \"$@\" 2>/dev/null")
        .arg("sh")
        .arg(strata_bin())
        .args(args);
    let o = run_cmd(&mut sh, RUN_TIMEOUT);
    assert!(o.ok(), "{}", o.describe());
    o.stdout
}

#[test]
fn logs_keep_stdout_and_stderr_apart_in_order() {
    let f = fx();
    let (id, _) = detached(
        &f,
        &["--name", "two"],
        &[
            "sh",
            "-c",
            // Apart in time: two pipes read as they come keep the order of writes that
            // are (written at once, either may be read first, as with Docker).
            "echo o1; sleep 0.1; echo e1 >&2; sleep 0.1; echo o2; sleep 0.1; echo e2 >&2; \
             sleep 1; echo o3; sleep 0.1; echo e3 >&2",
        ],
    );
    assert!(wait_until(Duration::from_secs(10), || {
        f.verb(&["logs", "two"]).stderr == "e1\ne2\n"
    }));
    assert_eq!(stdout_only(&f, &["logs", "two"]), "o1\no2\n");
    let o = f.verb(&["logs", "two"]);
    assert_eq!(o.stdout, "o1\no2\n");
    // --tail counts lines of both streams, each still on its own.
    let o = f.verb(&["logs", "--tail", "2", "two"]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("o2\n", "e2\n"));
    // -f too; and both streams into one file keep the order they were written in.
    let o = f.verb(&["logs", "-f", "two"]);
    assert_eq!(o.stdout, "o1\no2\no3\n", "{}", o.describe());
    assert_eq!(o.stderr, "e1\ne2\ne3\n", "{}", o.describe());
    let mut sh = std::process::Command::new("/bin/sh");
    sh.env("STRATA_ROOT", &f.root)
        .arg("-c")
        .arg("exec \"$@\" 2>&1")
        .arg("sh")
        .arg(strata_bin())
        .args(["logs", "two"]);
    let o = run_cmd(&mut sh, RUN_TIMEOUT);
    assert_eq!(o.stdout, "o1\ne1\no2\ne2\no3\ne3\n");
    // A terminal has one stream, as in Docker: all of it on stdout.
    let o = f.run(&["-d", "-t"], &["sh", "-c", "echo t-out; echo t-err >&2"]);
    assert!(o.ok(), "{}", o.describe());
    let tty = o.stdout.trim().to_string();
    assert_eq!(f.verb(&["wait", &tty]).stdout, "0\n");
    let o = f.verb(&["logs", &tty]);
    assert_eq!(
        (o.stdout.as_str(), o.stderr.as_str()),
        ("t-out\r\nt-err\r\n", "")
    );
    for c in [&id, &tty] {
        assert!(f.verb(&["rm", "-f", c]).ok());
    }
}

#[test]
fn create_then_start_and_restart() {
    let f = fx();
    let r = f.rootfs.to_str().unwrap();
    let o = f.verb(&[
        "create",
        "--name",
        "later",
        r,
        "sh",
        "-c",
        "echo x >> /tmp/n; wc -l < /tmp/n; sleep 30",
    ]);
    assert!(o.ok(), "{}", o.describe());
    let id = o.stdout.trim().to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(f.state_of(&id).unwrap()["status"], "created");
    assert!(table(&f.verb(&["ps", "-a"]).stdout)[1][4] == "Created");
    assert_eq!(
        mounts_under(&f.base),
        vec![],
        "nothing mounted before start"
    );
    assert_eq!(f.verb(&["start", "later"]).stdout, "later\n");
    assert_eq!(f.state_of(&id).unwrap()["status"], "running");
    let pid = f.state_of(&id).unwrap()["pid"].as_i64().unwrap() as i32;
    // The first run must have written its line before it is killed, or the
    // second run counts one line, not two.
    assert!(wait_until(Duration::from_secs(10), || f
        .verb(&["logs", "later"])
        .stdout
        == "1\n"));
    let o = f.verb(&["restart", "-t", "0", "later"]);
    assert_eq!(o.stdout, "later\n", "{}", o.describe());
    assert!(!proc_alive(pid));
    let st = f.state_of(&id).unwrap();
    assert_eq!(st["status"], "running");
    assert!(wait_until(Duration::from_secs(10), || f
        .verb(&["logs", "later"])
        .stdout
        == "1\n2\n"));
    assert!(f.verb(&["rm", "-f", "later"]).ok());
    f.assert_nothing_left();
}

#[test]
fn a_detached_container_keeps_nothing_its_caller_had_open() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let f = fx();
    // A pipe whose write end `strata run -d` inherits as fd 7 (as a build's flock hands its
    // lock to the command it runs): once run has returned and we close our copy, the read
    // end must see EOF while the container runs on.
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut c = f.cmd(&["-d", f.rootfs.to_str().unwrap(), "sleep", "30"]);
    let w = wr.as_raw_fd();
    unsafe {
        c.pre_exec(move || {
            if libc::dup2(w, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = run_cmd(&mut c, RUN_TIMEOUT);
    assert!(o.ok(), "{}", o.describe());
    let id = o.stdout.trim().to_string();
    drop(wr);
    let st = f.state_of(&id).unwrap();
    assert_eq!(st["status"], "running", "{st}");
    let mut p = libc::pollfd {
        fd: rd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let n = unsafe { libc::poll(&mut p, 1, 5000) };
    assert!(
        n == 1 && p.revents & libc::POLLHUP != 0,
        "the container's monitor or daemon still holds the caller's fd 7 (poll: {n}, revents {:#x})",
        p.revents
    );
    let o = f.verb(&["rm", "-f", &id]);
    assert!(o.ok(), "{}", o.describe());
    f.assert_nothing_left();
}

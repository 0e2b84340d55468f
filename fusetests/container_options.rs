//! `--read-only`, the stop signal (`--stop-signal` and an image's StopSignal) and
//! `ps --filter` (before= and since= too), as Docker has them.

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
use common::*;
use fixture::*;

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn read_only_root_keeps_volumes_binds_and_tmpfs_writable() {
    let f = fx();
    let host = f.base.join("host");
    std::fs::create_dir(&host).unwrap();
    let bind = format!("{}:/bind", host.display());
    let script = "for p in /x /etc/hosts /tmp/x /ro/x /data/x /bind/x /t/x /anon/x /dev/shm/x; do \
                    if e=$(touch $p 2>&1); then echo \"$p ok\"; else echo \"$p ${e##*: }\"; fi; \
                  done";
    let out = f.sh(
        &[
            "--read-only",
            "-v",
            "vol1:/data",
            "-v",
            "vol2:/ro:ro",
            "-v",
            &bind,
            "--tmpfs",
            "/t",
            "-v",
            "/anon",
        ],
        script,
    );
    assert_eq!(
        lines(&out),
        [
            "/x Read-only file system",
            "/etc/hosts Read-only file system",
            "/tmp/x Read-only file system",
            "/ro/x Read-only file system",
            "/data/x ok",
            "/bind/x ok",
            "/t/x ok",
            "/anon/x ok",
            "/dev/shm/x ok",
        ]
    );
    assert!(host.join("x").exists());
    assert!(volume_data(&f.root, "vol1").join("x").exists());
    // Without the flag the same root is writable, and inspect tells which it was.
    assert_eq!(f.sh(&[], "touch /x /tmp/x && echo ok"), "ok\n");
    let (id, _) = detached(&f, &["--read-only"], &["sleep", "30"]);
    let o = f.verb(&["inspect", &id]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v[0]["HostConfig"]["ReadonlyRootfs"], true);
    assert!(f.verb(&["rm", "-f", &id]).ok());
}

/// A script for PID 1 that says which signal it got, and exits with a code of its own.
const TRAPS: &str = "trap 'echo got USR1; exit 7' USR1; trap 'echo got INT; exit 6' INT; \
                     trap 'echo got TERM; exit 8' TERM; echo ready; \
                     while true; do sleep 0.1; done";

fn stop_and_check(f: &Fx, id: &str, code: i64, said: &str) {
    assert!(wait_until(Duration::from_secs(10), || f
        .verb(&["logs", id])
        .stdout
        .contains("ready")));
    let o = f.verb(&["stop", "-t", "20", id]);
    assert!(o.ok(), "{}", o.describe());
    assert_eq!(f.state_of(id).unwrap()["exit_code"], code);
    assert_eq!(f.verb(&["logs", id]).stdout, format!("ready\n{said}\n"));
}

/// A docker-archive of the fixture's rootfs whose config has `StopSignal` and `Labels`.
fn image_with_stop_signal(f: &Fx) {
    let dir = f.base.join("archive");
    std::fs::create_dir(&dir).unwrap();
    let script = r#"set -e
        cd "$1"
        tar -C "$2" -cf layer.tar .
        diff=$(sha256sum layer.tar | cut -d' ' -f1)
        printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"StopSignal":"SIGINT","Labels":{"tier":"web","team":"a"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff" > config.json
        printf '[{"Config":"config.json","RepoTags":["sig:1"],"Layers":["layer.tar"]}]' > manifest.json
        tar -cf ../sig.tar manifest.json config.json layer.tar"#;
    run_ok(
        Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(&dir)
            .arg(&f.rootfs),
    );
    let o = f.verb(&["image", "import", f.base.join("sig.tar").to_str().unwrap()]);
    assert!(o.ok(), "{}", o.describe());
}

#[test]
fn stop_sends_the_stop_signal_then_sigkill() {
    let f = fx();
    // --stop-signal, shown by inspect.
    let (id, _) = detached(&f, &["--stop-signal", "SIGUSR1"], &["sh", "-c", TRAPS]);
    let o = f.verb(&["inspect", &id]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v[0]["Config"]["StopSignal"], "SIGUSR1");
    stop_and_check(&f, &id, 7, "got USR1");
    // Neither flag nor image: SIGTERM, and Docker's inspect has no StopSignal.
    let (id, _) = detached(&f, &[], &["sh", "-c", TRAPS]);
    let o = f.verb(&["inspect", &id]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(
        v[0]["Config"].get("StopSignal").is_none(),
        "{o:?}",
        o = o.stdout
    );
    stop_and_check(&f, &id, 8, "got TERM");
    // The image's StopSignal; the flag wins over it.
    image_with_stop_signal(&f);
    let o = f.verb(&["run", "-d", "sig:1", "sh", "-c", TRAPS]);
    assert!(o.ok(), "{}", o.describe());
    stop_and_check(&f, o.stdout.trim(), 6, "got INT");
    let o = f.verb(&[
        "run",
        "-d",
        "--stop-signal",
        "USR1",
        "sig:1",
        "sh",
        "-c",
        TRAPS,
    ]);
    stop_and_check(&f, o.stdout.trim(), 7, "got USR1");
    // A PID 1 that does not end on it is killed after -t seconds (137).
    let (id, _) = detached(&f, &["--stop-signal", "SIGWINCH"], &["sleep", "60"]);
    let t = Instant::now();
    let o = f.verb(&["stop", "-t", "1", &id]);
    assert!(o.ok(), "{}", o.describe());
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(f.state_of(&id).unwrap()["exit_code"], 137);
    // A signal that does not exist is refused before anything is made.
    let before = f.ids().len();
    let o = f.run(&["--stop-signal", "SIGBOGUS"], &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", o.describe());
    assert_eq!(o.stderr, "strata: Invalid signal: SIGBOGUS\n");
    assert_eq!(f.ids().len(), before);
}

#[test]
fn ps_filters_as_dockers() {
    let f = fx();
    assert_eq!(
        f.run(&["--name", "alpha"], &["sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
    let (beta, _) = detached(&f, &["--name", "beta"], &["sleep", "60"]);
    let r = f.rootfs.to_str().unwrap();
    assert!(f
        .verb(&["create", "--name", "gamma", "-v", "v1:/data", r, "true"])
        .ok());
    image_with_stop_signal(&f);
    assert!(f.verb(&["create", "--name", "delta", "sig:1"]).ok());
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ps"];
        a.extend_from_slice(args);
        let o = f.verb(&a);
        assert!(o.ok(), "{}", o.describe());
        let mut n: Vec<String> = table(&o.stdout)[1..]
            .iter()
            .map(|row| row.last().unwrap().clone())
            .collect();
        n.sort();
        n
    };
    // A status filter shows stopped ones without -a; exited= only with -a.
    assert_eq!(names(&["--filter", "status=exited"]), ["alpha"]);
    assert_eq!(names(&["--filter", "exited=3"]), Vec::<String>::new());
    assert_eq!(names(&["-a", "--filter", "exited=3"]), ["alpha"]);
    assert_eq!(names(&["-a", "-f", "exited=0"]), Vec::<String>::new());
    assert_eq!(names(&["-a", "--filter", "name=lph"]), ["alpha"]);
    assert_eq!(
        names(&["-a", "--filter", &format!("id={}", &beta[..6])]),
        ["beta"]
    );
    assert_eq!(names(&["-a", "--filter", "volume=v1"]), ["gamma"]);
    assert_eq!(names(&["-a", "--filter", "volume=/data"]), ["gamma"]);
    assert_eq!(names(&["-a", "--filter", "ancestor=sig:1"]), ["delta"]);
    // A name without a tag is NAME:latest, as Docker reads it.
    assert_eq!(
        names(&["-a", "--filter", "ancestor=sig"]),
        Vec::<String>::new()
    );
    assert_eq!(names(&["-a", "--filter", "label=tier=web"]), ["delta"]);
    assert_eq!(names(&["-a", "--filter", "label=team"]), ["delta"]);
    assert_eq!(
        names(&["-a", "--filter", "label=tier=db"]),
        Vec::<String>::new()
    );
    // Different filters all hold; values of one are alternatives.
    assert_eq!(
        names(&["-a", "-f", "name=a", "-f", "status=running"]),
        ["beta"]
    );
    assert_eq!(
        names(&["-f", "status=running", "-f", "status=created"]),
        ["beta", "delta", "gamma"]
    );
    // before= and since= name a container: those made before or after it (created in the
    // order alpha, beta, gamma, delta); without -a still only the running ones.
    assert_eq!(
        names(&["-a", "--filter", "since=alpha"]),
        ["beta", "delta", "gamma"]
    );
    assert_eq!(names(&["--filter", "since=alpha"]), ["beta"]);
    assert_eq!(
        names(&["-a", "--filter", "before=gamma"]),
        ["alpha", "beta"]
    );
    assert_eq!(
        names(&["-a", "-f", "since=alpha", "-f", "before=delta"]),
        ["beta", "gamma"]
    );
    assert_eq!(
        names(&["-a", "-f", "since=beta", "-f", "since=alpha"]),
        ["delta", "gamma"]
    );
    assert_eq!(
        names(&["-a", "-f", &format!("before={}", &beta[..8])]),
        ["alpha"]
    );
    let o = f.verb(&["ps", "-a", "-q", "--filter", "name=beta"]);
    assert_eq!(o.stdout, format!("{}\n", &beta[..12]));
    // Bad filters: one line, exit 1.
    for (arg, err) in [
        ("foo=bar", "strata: Invalid filter 'foo'\n"),
        ("before=nope", "strata: no such container nope\n"),
        ("status=bogus", "strata: Invalid filter 'status=bogus'\n"),
        (
            "foo",
            "strata: invalid argument \"foo\" for \"-f, --filter\" flag: bad format of filter (expected name=value)\n",
        ),
    ] {
        let o = f.verb(&["ps", "--filter", arg]);
        assert_eq!((o.status.code(), o.stderr.as_str()), (Some(1), err), "{arg}");
        assert_eq!(o.stdout, "");
    }
    assert!(f.verb(&["rm", "-f", &beta]).ok());
}

//! `strata exec`: a command in a running container, in its namespaces, root and cgroups.

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
use common::*;
use fixture::*;

use std::time::Duration;

#[test]
fn exec_runs_in_the_containers_namespaces_root_and_cgroups() {
    let f = fx();
    let (id, pid1) = detached(
        &f,
        &["--name", "box", "-e", "FROM_RUN=1"],
        &["sh", "-c", "echo from-run > /tmp/f; sleep 30"],
    );
    let script = "echo $$; hostname; cat /tmp/f; echo $FROM_RUN $X; \
                  for n in pid net mnt uts ipc cgroup; do \
                    [ $(readlink /proc/self/ns/$n) = $(readlink /proc/1/ns/$n) ] && echo $n; \
                  done; grep CapEff /proc/self/status; echo from-exec > /tmp/g; exit 4";
    let o = f.verb(&["exec", "-e", "X=2", "box", "sh", "-c", script]);
    assert_eq!(o.status.code(), Some(4), "{}", o.describe());
    let l: Vec<&str> = o.stdout.lines().collect();
    assert_ne!(l[0], "1");
    assert_eq!(
        l[1..],
        [
            &id[..12],
            "from-run",
            "1 2",
            "pid",
            "net",
            "mnt",
            "uts",
            "ipc",
            "cgroup",
            &format!("CapEff:\t{DOCKER_CAPS}"),
        ]
    );
    // The same root: what exec wrote is in the container's upper.
    let upper = f.containers().join(&id).join("upper");
    assert_eq!(read(upper.join("tmp/g")), "from-exec\n");
    // In the container's cgroups: at the root of its cgroup namespace, which is the
    // container's cgroup (a process outside it would show a path with "..").
    let o = f.verb(&["exec", "box", "cat", "/proc/self/cgroup"]);
    assert!(o.ok(), "{}", o.describe());
    for ctrl in ["memory", "cpu", "pids"] {
        assert!(
            o.stdout.lines().any(|l| l.ends_with(&format!(":{ctrl}:/"))),
            "{ctrl}: {}",
            o.stdout
        );
    }
    let o = f.verb(&[
        "exec",
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "box",
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    assert_eq!(o.stdout, "1000\n/tmp\n", "{}", o.describe());
    let o = f.verb(&["exec", "box", "nope"]);
    assert_eq!(o.status.code(), Some(127), "{}", o.describe());
    assert_eq!(
        o.stderr,
        "strata: exec: \"nope\": executable file not found in $PATH\n"
    );
    assert!(proc_alive(pid1), "the container goes on");
    unsafe { libc::kill(pid1, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(10), || f
        .state_of(&id)
        .unwrap()["status"]
        == "exited"));
    let o = f.verb(&["exec", "box", "true"]);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert_eq!(o.stderr, format!("strata: Container {id} is not running\n"));
}

#[test]
fn exec_enters_a_chroot_containers_root() {
    let f = fx();
    let (_, pid1) = detached(&f, &["--name", "ch", "--chroot"], &["sleep", "30"]);
    let o = f.verb(&["exec", "ch", "ls", "/"]);
    assert!(o.ok(), "{}", o.describe());
    assert!(
        o.stdout.lines().any(|l| l == "strata-rootfs-marker"),
        "{}",
        o.stdout
    );
    unsafe { libc::kill(pid1, libc::SIGKILL) };
}

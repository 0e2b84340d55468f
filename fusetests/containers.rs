//! Containers: `strata run` on a busybox rootfs, checked as a user of Docker would check them:
//! PID 1, the hostname, the namespaces, /dev, /proc, where writes go, exit codes and signals.
//! The fixture (containers/fixture.rs) cleans up after each test, also on panic.

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
use common::*;
use fixture::*;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

#[test]
fn the_command_is_pid_1_and_the_hostname_is_the_short_id() {
    let f = fx();
    let o = f.run(&[], &["sh", "-c", "echo $$; hostname"]);
    assert!(o.ok(), "{}", o.describe());
    let id = f.only_id();
    assert_eq!(lines(&o.stdout), ["1", &id[..12]]);
    let out = f.sh(&["--hostname", "box"], "hostname; echo $HOSTNAME");
    assert_eq!(lines(&out), ["box", "box"]);
    // Docker's generated /etc files, bound from the container's directory.
    let out = f.sh(
        &["--hostname", "box"],
        "cat /etc/hostname; grep -E '^127' /etc/hosts; echo 10.0.0.9 db >> /etc/hosts",
    );
    assert_eq!(
        lines(&out),
        ["box", "127.0.0.1\tlocalhost", "127.0.1.1\tbox"]
    );
    let dir = f.containers().join(&id);
    assert_eq!(read(dir.join("hostname")), format!("{}\n", &id[..12]));
    assert!(read(dir.join("hosts")).ends_with(&format!("127.0.1.1\t{}\n", &id[..12])));
    // What the container writes to them stays in its directory, not in its upper.
    let o = f.run(
        &["--name", "hostsw"],
        &["sh", "-c", "echo 10.0.0.9 db >> /etc/hosts"],
    );
    assert!(o.ok(), "{}", o.describe());
    let w = f
        .ids()
        .into_iter()
        .find(|i| f.config_of(i).unwrap()["name"] == "hostsw")
        .unwrap();
    let wdir = f.containers().join(&w);
    assert!(read(wdir.join("hosts")).ends_with("10.0.0.9 db\n"));
    assert_eq!(
        fs::metadata(wdir.join("upper/etc/hosts"))
            .map(|m| m.len())
            .unwrap_or(0),
        0
    );
    // Only the container's own processes are visible: the shell alone.
    assert_eq!(f.sh(&[], "echo /proc/[0-9]*"), "/proc/1\n");
}

#[test]
fn network_none_has_only_lo_up_and_host_shares_the_hosts() {
    let f = fx();
    let out = f.sh(&[], "cat /proc/net/dev; echo ---; ip link");
    let (dev, link) = out.split_once("---\n").unwrap();
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"], "{dev}");
    assert!(link.starts_with("1: lo: <LOOPBACK,UP,LOWER_UP>"), "{link}");
    assert_eq!(
        link.lines().filter(|l| !l.starts_with(' ')).count(),
        1,
        "{link}"
    );
    let host = fs::read_to_string("/proc/net/dev").unwrap();
    let out = f.sh(&["--network", "host"], "cat /proc/net/dev");
    assert_eq!(out.lines().count(), host.lines().count(), "{out}");
    // /sys shows the namespace's devices, and nothing of the host's mounts below /sys.
    assert_eq!(f.sh(&[], "ls /sys/class/net"), "lo\n");
    let mut host_net: Vec<String> = fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    host_net.sort();
    let out = f.sh(
        &["--network", "host"],
        "ls /sys/class/net; grep ' /sys/' /proc/self/mountinfo | cut -d' ' -f5",
    );
    let mut want = host_net.clone();
    want.push("/sys/firmware".into());
    assert_eq!(lines(&out), want);
}

#[test]
fn namespaces_differ_from_the_hosts() {
    let f = fx();
    let kinds = ["mnt", "pid", "uts", "ipc", "net", "cgroup"];
    let host = |k: &str| fs::read_link(format!("/proc/self/ns/{k}")).unwrap();
    let script = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}"))
        .collect::<Vec<_>>()
        .join("; ");
    let out = f.sh(&[], &script);
    for (k, inside) in kinds.iter().zip(out.lines()) {
        assert!(inside.starts_with(&format!("{k}:[")), "{inside}");
        assert_ne!(
            Path::new(inside),
            host(k),
            "{k} namespace shared with the host"
        );
    }
    let out = f.sh(&["--network", "host"], "readlink /proc/self/ns/net");
    assert_eq!(Path::new(out.trim()), host("net"));
}

#[test]
fn dev_is_dockers_minimal_set() {
    let f = fx();
    let out = f.sh(
        &[],
        "ls /dev; echo ---; ls /dev/pts; echo ---; readlink /dev/stdout; readlink /dev/fd; readlink /dev/ptmx; \
         echo gone > /dev/null; head -c 3 /dev/zero | wc -c",
    );
    let parts: Vec<&str> = out.split("---\n").collect();
    let names: BTreeSet<&str> = parts[0].lines().collect();
    let docker: BTreeSet<&str> = [
        "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero",
    ]
    .into();
    assert_eq!(names, docker);
    // A devpts of its own: none of the host's terminals.
    assert_eq!(lines(parts[1]), ["ptmx"]);
    assert_eq!(
        lines(parts[2]),
        ["/proc/self/fd/1", "/proc/self/fd", "pts/ptmx", "3"]
    );
}

#[test]
fn proc_and_sys_are_masked_and_read_only_as_dockers() {
    let f = fx();
    let out = f.sh(
        &[],
        "for p in /proc/kcore /proc/keys /proc/timer_list; do \
           if [ -e $p ]; then echo $p $(wc -c < $p); else echo $p missing; fi; done; \
         ls -A /sys/firmware | wc -l; ls -A /proc/acpi | wc -l; \
         (echo 1 > /proc/sys/vm/drop_caches) 2>&1; (touch /sys/x) 2>&1; \
         grep -E ' /proc/(sys|bus|fs|irq) ' /proc/self/mountinfo | cut -d' ' -f5,6",
    );
    let l = lines(&out);
    // /proc/kcore is masked where the kernel has one (this machine's kernel may not).
    let kcore = if Path::new("/proc/kcore").exists() {
        "/proc/kcore 0"
    } else {
        "/proc/kcore missing"
    };
    assert_eq!(l[0], kcore);
    assert!(fs::metadata("/proc/keys").is_ok() && !read("/proc/timer_list").is_empty());
    assert_eq!(l[1..3], ["/proc/keys 0", "/proc/timer_list 0"]);
    // The host has entries there, so an empty listing is the mask.
    assert!(fs::read_dir("/sys/firmware").unwrap().count() > 0);
    assert_eq!(l[3..5], ["0", "0"], "{out}");
    assert!(l[5].contains("Read-only file system"), "{out}");
    assert!(l[6].contains("Read-only file system"), "{out}");
    let ro: BTreeSet<&str> = l[7..].iter().copied().collect();
    let want: BTreeSet<&str> = [
        "/proc/sys ro,nosuid,nodev,noexec,relatime",
        "/proc/bus ro,nosuid,nodev,noexec,relatime",
        "/proc/fs ro,nosuid,nodev,noexec,relatime",
        "/proc/irq ro,nosuid,nodev,noexec,relatime",
    ]
    .into();
    assert_eq!(ro, want, "{out}");
}

#[test]
fn writes_land_in_the_containers_upper_never_in_the_rootfs() {
    let f = fx();
    let before = host_snapshot(&f.rootfs);
    let o = f.run(
        &["--name", "writer"],
        &[
            "sh",
            "-c",
            "echo new > /etc/new; rm /etc/motd; echo changed > /etc/passwd; mkdir -p /var/x",
        ],
    );
    assert!(o.ok(), "{}", o.describe());
    assert_snapshot_unchanged(&before, &f.rootfs, "the rootfs");
    let id = f.only_id();
    let upper = f.containers().join(&id).join("upper");
    assert_eq!(read(upper.join("etc/new")), "new\n");
    assert_eq!(read(upper.join("etc/passwd")), "changed\n");
    assert!(upper.join("var/x").is_dir());
    assert_upper_whiteout(&upper, "etc/motd");
    // A second container of the same rootfs starts from the image, not from the first's files.
    let out = f.sh(&[], "cat /etc/motd; ls /etc");
    assert_eq!(
        lines(&out),
        [
            "from the image",
            "group",
            "hostname",
            "hosts",
            "motd",
            "passwd",
            "resolv.conf"
        ]
    );
    // The stopped container keeps its writable layer and its record.
    let st = f.state_of(&id).unwrap();
    assert_eq!(st["status"], "exited");
    assert_eq!(st["exit_code"], 0);
    assert!(st["started_at"].as_str().unwrap() <= st["finished_at"].as_str().unwrap());
    assert_eq!(f.config_of(&id).unwrap()["name"], "writer");
    assert_eq!(mounts_under(&f.base), vec![]);
}

#[test]
fn exit_codes_are_dockers() {
    let f = fx();
    let code = |flags: &[&str], cmd: &[&str]| {
        let o = f.run(flags, cmd);
        (o.status.code().unwrap(), o.stdout, o.stderr)
    };
    assert_eq!(code(&["--rm"], &["true"]).0, 0);
    assert_eq!(code(&["--rm"], &["sh", "-c", "exit 3"]).0, 3);
    let (c, _, err) = code(&["--rm"], &["/etc/passwd"]);
    assert_eq!(
        (c, err.as_str()),
        (126, "strata: exec: \"/etc/passwd\": permission denied\n")
    );
    let (c, _, err) = code(&["--rm"], &["nope"]);
    assert_eq!(
        (c, err.as_str()),
        (
            127,
            "strata: exec: \"nope\": executable file not found in $PATH\n"
        )
    );
    // A command that itself exits 127 is not a start failure: nothing is printed by strata.
    let (c, _, err) = code(&["--rm"], &["sh", "-c", "exit 127"]);
    assert_eq!((c, err.as_str()), (127, ""));
    // PID 1 ignores signals it has no handler for, even SIGKILL from inside, as in Docker...
    let (c, out, _) = code(&["--rm"], &["sh", "-c", "kill -9 $$; echo alive"]);
    assert_eq!((c, out.as_str()), (0, "alive\n"));
    // ...so behind --init the same shell dies: 128+9, and 128+15 for SIGTERM.
    assert_eq!(
        code(&["--rm", "--init"], &["sh", "-c", "kill -9 $$"]).0,
        137
    );
    assert_eq!(
        code(&["--rm", "--init"], &["sh", "-c", "kill -TERM $$"]).0,
        143
    );
    assert_eq!(code(&["--rm", "--init"], &["sh", "-c", "exit 5"]).0, 5);
    f.assert_nothing_left();
}

#[test]
fn signals_from_outside_reach_the_container() {
    let f = fx();
    // SIGKILL from the host kills PID 1: 137, and the record says so.
    let bg = f.spawn(&[], &["sleep", "30"]);
    let id = bg.id.clone();
    unsafe { libc::kill(bg.pid, libc::SIGKILL) };
    assert_eq!(bg.wait(), 137);
    assert_eq!(f.state_of(&id).unwrap()["exit_code"], 137);
    // SIGTERM to `strata run` is passed on (to the init, then to the command): 143.
    let bg = f.spawn(&["--init", "--rm"], &["sleep", "30"]);
    unsafe { libc::kill(bg.child.id() as i32, libc::SIGTERM) };
    assert_eq!(bg.wait(), 143);
    // The --init is PID 1 and the command its child.
    let out = f.sh(&["--init"], "echo $$; cat /proc/1/status | grep PPid");
    assert_eq!(lines(&out), ["2", "PPid:\t0"]);
}

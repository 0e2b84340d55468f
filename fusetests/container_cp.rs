//! `strata cp`: files between containers and the host, and tar streams on stdin/stdout, for
//! running, stopped and created containers, with Docker 20.10's rules for where a copy lands;
//! copying in goes through the union (a lower file is copied up, the image stays untouched),
//! copying out sees volumes at their targets; and a symlink swapped in by the container while
//! copies run never leads a copy out of the container's root (CVE-2018-15664).

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
use common::*;
use fixture::*;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn cp(f: &Fx, args: &[&str]) -> CmdOut {
    let mut a = vec!["cp"];
    a.extend_from_slice(args);
    f.verb(&a)
}

fn cp_ok(f: &Fx, args: &[&str]) {
    let o = cp(f, args);
    assert!(o.ok(), "strata cp {args:?}: {}", o.describe());
    assert_eq!(o.stderr, "", "strata cp {args:?}");
}

fn exec(f: &Fx, c: &str, script: &str) -> String {
    let o = f.verb(&["exec", c, "sh", "-c", script]);
    assert!(o.ok(), "exec {script:?}: {}", o.describe());
    o.stdout
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

/// `strata cp SRC DST` with stdin from `input`.
fn cp_stdin(f: &Fx, input: &Path, dst: &str) -> CmdOut {
    let mut c = Command::new("sh");
    c.env("STRATA_ROOT", &f.root)
        .arg("-c")
        .arg("exec \"$0\" cp - \"$1\" < \"$2\"")
        .arg(strata_bin())
        .arg(dst)
        .arg(input);
    run_cmd(&mut c, RUN_TIMEOUT)
}

#[test]
fn cp_both_ways_on_a_running_container_as_docker() {
    let f = fx();
    let (id, _) = detached(&f, &["--name", "cx", "-v", "vol:/data"], &["sleep", "1000"]);
    exec(
        &f,
        "cx",
        "mkdir -p /d/sub; echo in > /d/sub/y; chown 42:43 /d/sub/y; echo v > /data/v; \
         ln -s /d /dl",
    );
    let h = f.base.join("h");
    fs::create_dir_all(h.join("exist")).unwrap();
    let hp = |p: &str| h.join(p).to_str().unwrap().to_string();

    // Out: a file as a new file, a directory as a new one, into an existing one, its
    // contents (`/.`) into one, a file into a directory under its own name.
    cp_ok(&f, &["cx:/etc/motd", &hp("motd")]);
    assert_eq!(read(h.join("motd")), "from the image\n");
    cp_ok(&f, &["cx:/d", &hp("new")]);
    assert_eq!(read(h.join("new/sub/y")), "in\n");
    cp_ok(&f, &["cx:/d", &hp("exist")]);
    assert_eq!(read(h.join("exist/d/sub/y")), "in\n");
    cp_ok(&f, &["cx:/d/.", &hp("exist")]);
    assert_eq!(read(h.join("exist/sub/y")), "in\n");
    cp_ok(&f, &["cx:/etc/motd", &hp("exist")]);
    assert_eq!(read(h.join("exist/motd")), "from the image\n");
    // Owned by the caller, unless -a keeps the source's ids.
    assert_eq!(owner(&h.join("exist/sub/y")), (0, 0));
    cp_ok(&f, &["-a", "cx:/d/sub/y", &hp("y-archive")]);
    assert_eq!(owner(&h.join("y-archive")), (42, 43));
    // A symlink is copied as one; -L copies what it points to (inside the container).
    cp_ok(&f, &["cx:/dl", &hp("l1")]);
    assert_eq!(readlink(h.join("l1")), "/d");
    cp_ok(&f, &["-L", "cx:/dl", &hp("l2")]);
    assert_eq!(read(h.join("l2/sub/y")), "in\n");
    // The volume, at its target.
    cp_ok(&f, &["cx:/data/v", &hp("v")]);
    assert_eq!(read(h.join("v")), "v\n");

    // In: onto an image file (copied up, the image untouched), into a directory, into the
    // volume; the host file's ids are kept (Docker 20.10).
    write(h.join("motd2"), "new motd\n");
    lchown(&h.join("motd2"), 1234, 5678).unwrap();
    cp_ok(&f, &[&hp("motd2"), "cx:/etc/motd"]);
    cp_ok(&f, &[&hp("new"), "cx:/tmp"]);
    cp_ok(&f, &[&hp("motd2"), "cx:/data/m"]);
    assert_eq!(
        exec(
            &f,
            "cx",
            "cat /etc/motd /tmp/new/sub/y; stat -c %u:%g /etc/motd"
        ),
        "new motd\nin\n1234:5678\n"
    );
    let upper = f.containers().join(&id).join("upper");
    assert_eq!(read(upper.join("etc/motd")), "new motd\n");
    assert_eq!(read(f.rootfs.join("etc/motd")), "from the image\n");
    assert_eq!(read(f.root.join("volumes/vol/_data/m")), "new motd\n");
    assert!(
        !upper.join("data/m").exists(),
        "the volume's file landed in the upper"
    );

    // Tar streams: out on stdout (the tar's names start at the source's base name), in on
    // stdin into an existing directory only.
    // (All of it ASCII: the captured text is the stream's bytes.)
    let o = cp(&f, &["cx:/d", "-"]);
    assert!(o.ok(), "{}", o.describe());
    let mut names: Vec<String> = tar::Archive::new(o.stdout.as_bytes())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["d/", "d/sub/", "d/sub/y"]);
    let tarfile = f.base.join("in.tar");
    let mut b = tar::Builder::new(fs::File::create(&tarfile).unwrap());
    b.append_path_with_name(h.join("motd"), "from-tar").unwrap();
    b.finish().unwrap();
    drop(b);
    let o = cp_stdin(&f, &tarfile, "cx:/tmp");
    assert!(o.ok(), "{}", o.describe());
    assert_eq!(exec(&f, "cx", "cat /tmp/from-tar"), "from the image\n");
    let o = cp_stdin(&f, &tarfile, "cx:/tmp/nonexist");
    assert_one_line_error(
        &o,
        &["destination \"cx:/tmp/nonexist\" must be a directory"],
        "-",
    );

    // Docker's refusals, one line each, exit 1.
    let nope = hp("nope");
    let cases: Vec<([String; 2], String)> = vec![
        (
            ["cx:/nope".into(), hp("x")],
            "No such container:path: cx:/nope".into(),
        ),
        (
            ["cx:/etc/motd".into(), hp("no/such/x")],
            format!(
                "invalid output path: directory \"{}\" does not exist",
                hp("no/such")
            ),
        ),
        (
            ["cx:/etc/motd".into(), hp("newdir/")],
            "no such directory".into(),
        ),
        (["cx:/d".into(), hp("motd")], "cannot copy directory".into()),
        (
            [hp("motd"), "cx:/no/such/x".into()],
            "No such container:path: cx:/no/such".into(),
        ),
        (
            [hp("motd"), "cx:/newdir/".into()],
            "no such directory".into(),
        ),
        (
            [hp("exist"), "cx:/etc/motd".into()],
            "cannot copy directory".into(),
        ),
        (
            [hp("motd"), "cx:/etc/motd/x".into()],
            "extraction point is not a directory".into(),
        ),
        (
            [nope.clone(), "cx:/x".into()],
            format!("lstat {nope}: no such file or directory"),
        ),
        (
            [hp("motd"), hp("x")],
            "must specify at least one container source".into(),
        ),
        (
            ["cx:/etc".into(), "cx:/x".into()],
            "copying between containers is not supported".into(),
        ),
        (
            ["nosuch:/etc".into(), hp("x")],
            "No such container: nosuch".into(),
        ),
    ];
    for (args, needle) in &cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = cp(&f, &a);
        assert_eq!(o.status.code(), Some(1), "{a:?}: {}", o.describe());
        assert_one_line_error(&o, &[needle], &format!("cp {a:?}"));
    }
    assert!(!h.join("x").exists() && !h.join("no").exists());
    let o = f.verb(&["rm", "-f", "cx"]);
    assert!(o.ok(), "{}", o.describe());
    f.assert_nothing_left();
}

#[test]
fn cp_mounts_a_stopped_or_created_containers_root_for_the_copy() {
    let f = fx();
    let r = f.rootfs.to_str().unwrap();
    let o = f.verb(&[
        "create",
        "--name",
        "sx",
        "-u",
        "4321:4322",
        r,
        "cat",
        "/in/f",
        "/etc/motd",
    ]);
    assert!(o.ok(), "{}", o.describe());
    let id = o.stdout.trim().to_string();
    let merged = f.containers().join(&id).join("merged");
    let h = f.base.join("h");
    fs::create_dir_all(h.join("in")).unwrap();
    write(h.join("in/f"), "copied in\n");
    write(h.join("motd"), "replaced\n");
    cp_ok(&f, &[h.join("in").to_str().unwrap(), "sx:/"]);
    // -a: owned by the container's user.
    cp_ok(
        &f,
        &["-a", h.join("motd").to_str().unwrap(), "sx:/etc/motd"],
    );
    assert_eq!(mounts_under(&merged), vec![], "the copy's mount was left");
    let upper = f.containers().join(&id).join("upper");
    assert_eq!(read(upper.join("in/f")), "copied in\n");
    assert_eq!(owner(&upper.join("etc/motd")), (4321, 4322));
    assert_eq!(read(f.rootfs.join("etc/motd")), "from the image\n");
    let o = f.verb(&["start", "-a", "sx"]);
    assert!(o.ok(), "{}", o.describe());
    assert_eq!(o.stdout, "copied in\nreplaced\n");
    // Exited now: out of it, and in again.
    cp_ok(&f, &["sx:/in/f", h.join("back").to_str().unwrap()]);
    assert_eq!(read(h.join("back")), "copied in\n");
    write(h.join("in/f"), "second\n");
    cp_ok(&f, &[h.join("in/f").to_str().unwrap(), "sx:/in/f"]);
    assert_eq!(mounts_under(&merged), vec![], "the copy's mount was left");
    let o = f.verb(&["start", "-a", "sx"]);
    assert_eq!(o.stdout, "second\nreplaced\n", "{}", o.describe());
    // A bad copy mounts nothing and leaves nothing.
    let o = cp(&f, &[h.join("nope").to_str().unwrap(), "sx:/x"]);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert_eq!(mounts_under(&merged), vec![]);
    let o = f.verb(&["rm", "sx"]);
    assert!(o.ok(), "{}", o.describe());
    f.assert_nothing_left();
}

#[test]
fn cp_never_follows_a_swapped_symlink_out_of_the_root() {
    let f = fx();
    let canary = f.base.join("canary");
    fs::create_dir(&canary).unwrap();
    let secret = format!("HOST-SECRET-{}", unique_token());
    write(canary.join("secret"), &secret);
    let before = host_snapshot(&canary);
    let host_passwd = read("/etc/passwd");
    // /w/d flips between a real directory and a symlink to the host's canary directory (a
    // path that means nothing inside the container); /w/e between one and a symlink to `/`.
    let script = format!(
        "mkdir -p /w; while :; do \
           rm -rf /w/d /w/e; mkdir -p /w/d /w/e/etc; echo inside > /w/d/secret; \
           echo inside > /w/e/etc/passwd; \
           rm -rf /w/d /w/e; ln -s {} /w/d; ln -s / /w/e; \
         done",
        canary.display()
    );
    detached(&f, &["--name", "racer"], &["sh", "-c", &script]);
    let h = f.base.join("h");
    fs::create_dir(&h).unwrap();
    let payload_name = format!("payload-{}", unique_token());
    let payload = h.join(&payload_name);
    write(&payload, "payload\n");
    let out = h.join("out");
    let out_s = out.to_str().unwrap();
    let (mut inside, mut swapped) = (0, 0);
    let t = Instant::now();
    for i in 0.. {
        if i >= 40 && inside >= 3 && swapped >= 3 || t.elapsed() > Duration::from_secs(90) {
            break;
        }
        let _ = fs::remove_file(&out);
        let o = cp(&f, &["racer:/w/d/secret", out_s]);
        match fs::read_to_string(&out) {
            Ok(s) => {
                assert!(!s.contains("HOST-SECRET"), "copied out of the root: {s:?}");
                // (Or caught half-written.)
                inside += usize::from(s == "inside\n");
            }
            Err(_) => {
                assert!(!o.ok(), "{}", o.describe());
                swapped += 1
            }
        }
        let _ = fs::remove_file(&out);
        let _ = cp(&f, &["racer:/w/e/etc/passwd", out_s]);
        if let Ok(s) = fs::read_to_string(&out) {
            assert_ne!(s, host_passwd, "the host's /etc/passwd was copied out");
        }
        let _ = cp(&f, &[payload.to_str().unwrap(), "racer:/w/d/"]);
        let _ = cp(&f, &[payload.to_str().unwrap(), "racer:/w/e/etc/"]);
        assert_snapshot_unchanged(&before, &canary, "the host's canary");
        assert!(
            !Path::new("/etc").join(&payload_name).exists(),
            "written into the host's /etc"
        );
    }
    assert!(
        inside >= 3 && swapped >= 3,
        "the race was not exercised: {inside} copies of the real file, {swapped} refused"
    );
    assert_eq!(read(canary.join("secret")), secret);
    let o = f.verb(&["rm", "-f", "racer"]);
    assert!(o.ok(), "{}", o.describe());
    f.assert_nothing_left();
}

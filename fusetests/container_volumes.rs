//! Containers with volumes, binds and tmpfs: in place inside the root before the command runs,
//! served by the union's daemon; named volumes outlive every container, anonymous ones go with
//! `rm -v` or `run --rm`, a read-only bind refuses writes, and nothing of a graft lands in the
//! container's upper but its mount point.

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
use common::*;
use fixture::*;

use std::fs;

fn volume_names(f: &Fx) -> Vec<String> {
    let o = f.verb(&["volume", "ls", "-q"]);
    assert!(o.ok(), "{}", o.describe());
    o.stdout.lines().map(String::from).collect()
}

#[test]
fn volumes_binds_and_tmpfs_in_a_container() {
    let f = fx();
    let www = f.base.join("www");
    fs::create_dir(&www).unwrap();
    fs::write(www.join("index"), "page\n").unwrap();
    let before = host_snapshot(&www);
    let bind = format!("{}:/var/www:ro", www.display());
    let script = "echo kept > /data/f; echo anon > /scratch/f; cat /var/www/index; \
                  (touch /var/www/x) 2>&1; \
                  head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /run/t; cat /run/t";
    let o = f.run(
        &[
            "--name",
            "vols",
            "-v",
            "data:/data",
            "-v",
            "/scratch",
            "-v",
            &bind,
            "--tmpfs",
            "/run",
        ],
        &["sh", "-c", script],
    );
    assert!(o.ok(), "{}", o.describe());
    let l: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(l[..2], ["page", "touch: /var/www/x: Read-only file system"]);
    // A token made inside, kept in the tmpfs only.
    let token = l[2];
    assert_eq!(token.len(), 32, "{}", o.stdout);
    assert_snapshot_unchanged(&before, &www, "the bind's source");
    let id = f.only_id();
    let upper = f.containers().join(&id).join("upper");
    // Only the mount points the grafts needed are in the upper.
    let mut top: Vec<String> = fs::read_dir(&upper)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["data", "etc", "run", "scratch", "var"]);
    // etc holds only the empty mount points of the generated files the rootfs lacks.
    for e in fs::read_dir(upper.join("etc")).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(
            ["hostname", "hosts", "resolv.conf"].contains(&n.as_str()),
            "{n}"
        );
        assert_eq!(e.metadata().unwrap().len(), 0, "{n}");
    }
    assert_eq!(fs::read_dir(upper.join("run")).unwrap().count(), 0);
    assert_token_nowhere(&f.base, token);
    let v: serde_json::Value = serde_json::from_str(&f.verb(&["inspect", "vols"]).stdout).unwrap();
    let mounts = v[0]["Mounts"].as_array().unwrap();
    let anon = mounts[1]["Name"].as_str().unwrap().to_string();
    assert_eq!(anon.len(), 64);
    assert_eq!(mounts[1]["Destination"], "/scratch");
    assert_eq!(
        (mounts[2]["Type"].as_str(), mounts[2]["RW"].as_bool()),
        (Some("bind"), Some(false))
    );
    assert_eq!(read(f.root.join("volumes/data/_data/f")), "kept\n");
    let mut names = volume_names(&f);
    names.sort();
    let mut want = vec![anon.clone(), "data".to_string()];
    want.sort();
    assert_eq!(names, want);
    // start finds the same anonymous volume.
    let o = f.verb(&["start", "-a", "vols"]);
    assert!(o.ok(), "{}", o.describe());
    let o = f.run_raw(&[
        "--rm",
        "-v",
        &format!("{anon}:/s"),
        f.rootfs.to_str().unwrap(),
        "cat",
        "/s/f",
    ]);
    assert_eq!(o.stdout, "anon\n", "{}", o.describe());
    // rm -v removes the anonymous volume, never the named one.
    let o = f.verb(&["rm", "-v", "vols"]);
    assert!(o.ok(), "{}", o.describe());
    assert_eq!(volume_names(&f), ["data"]);
    let o = f.run(&["--rm", "-v", "data:/data"], &["cat", "/data/f"]);
    assert_eq!(o.stdout, "kept\n", "{}", o.describe());
    // run --rm takes its anonymous volumes with it; a bind source that is missing is refused.
    let o = f.run(
        &["--rm", "-v", "/tmpvol"],
        &["sh", "-c", "echo x > /tmpvol/x"],
    );
    assert!(o.ok(), "{}", o.describe());
    assert_eq!(volume_names(&f), ["data"]);
    let o = f.run(&["--rm", "-v", "/no/such/dir:/x"], &["true"]);
    assert_eq!(o.status.code(), Some(125), "{}", o.describe());
    f.assert_nothing_left();
}

#[test]
fn volumes_from_takes_another_containers_volumes_and_binds_with_their_modes() {
    let f = fx();
    let www = f.base.join("www");
    fs::create_dir(&www).unwrap();
    fs::write(www.join("page"), "page\n").unwrap();
    let r = f.rootfs.to_str().unwrap();
    let bind = format!("{}:/b:ro", www.display());
    let o = f.verb(&[
        "create",
        "--name",
        "src",
        "-v",
        "named1:/n",
        "-v",
        "/anon",
        "-v",
        &bind,
        "--tmpfs",
        "/t",
        r,
        "true",
    ]);
    assert!(o.ok(), "{}", o.describe());
    let src: serde_json::Value = serde_json::from_str(&f.verb(&["inspect", "src"]).stdout).unwrap();
    let anon = src[0]["Mounts"][1]["Name"].as_str().unwrap().to_string();
    // The volumes and the bind, with their modes; not the tmpfs.
    let out = f.sh(
        &["--volumes-from", "src"],
        "echo x > /n/f; echo y > /anon/f; cat /b/page; (touch /b/x) 2>&1; \
         grep -c ' /t ' /proc/mounts; ls -d /t 2>&1; true",
    );
    assert_eq!(
        lines(&out)[..2],
        ["page", "touch: /b/x: Read-only file system"],
        "{out}"
    );
    assert!(!out.contains("tmpfs"), "{out}");
    assert_eq!(read(f.root.join("volumes/named1/_data/f")), "x\n");
    assert_eq!(read(f.root.join(format!("volumes/{anon}/_data/f"))), "y\n");
    // :ro makes every one read-only, as inspect shows; :rw leaves the bind read-only.
    for (mode, rw) in [
        ("src:ro", [false, false, false]),
        ("src:rw", [true, true, false]),
    ] {
        let o = f.verb(&[
            "create",
            "--name",
            "taker",
            "--volumes-from",
            mode,
            r,
            "true",
        ]);
        assert!(o.ok(), "{}", o.describe());
        let v: serde_json::Value =
            serde_json::from_str(&f.verb(&["inspect", "taker"]).stdout).unwrap();
        let mounts: Vec<(String, bool)> = v[0]["Mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| !m["Destination"].as_str().unwrap().starts_with("/etc/"))
            .map(|m| {
                (
                    m["Destination"].as_str().unwrap().to_string(),
                    m["RW"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            mounts,
            [
                ("/n".into(), rw[0]),
                ("/anon".into(), rw[1]),
                ("/b".into(), rw[2])
            ],
            "{mode}"
        );
        assert!(f.verb(&["rm", "taker"]).ok());
    }
    let out = f.sh(&["--volumes-from", "src:ro"], "(touch /n/g) 2>&1; cat /n/f");
    assert_eq!(out, "touch: /n/g: Read-only file system\nx\n");
    // A container's own -v wins over an inherited one at the same target.
    let out = f.sh(&["--volumes-from", "src", "-v", "other:/n"], "ls /n");
    assert_eq!(out, "");
    // Docker's errors: 125, one line, nothing made.
    let before = f.ids().len();
    for (from, needle) in [
        ("nope", "No such container: nope"),
        ("src:bad", "invalid mode: bad"),
    ] {
        let o = f.run(&["--volumes-from", from], &["true"]);
        assert_eq!(o.status.code(), Some(125), "{}", o.describe());
        assert_one_line_error(&o, &[needle], from);
        assert_eq!(f.ids().len(), before, "a container was left");
    }
    assert!(f.verb(&["rm", "-v", "src"]).ok());
    f.assert_nothing_left();
}

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

//! Named and anonymous volumes: the `strata volume` verbs (create, ls with filters, inspect,
//! rm, prune), a new volume filled from the image (owners, modes, xattrs), `nocopy`, a volume
//! with data used as it is, two mounts sharing one volume, `:ro`, and that nothing written and
//! fsynced to a volume is lost when the daemon is killed. Every command uses the fixture's own
//! state root (`STRATA_ROOT=BASE/root`).

mod common;
use common::*;
use serde_json::Value;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `strata volume inspect NAMES...` as parsed JSON (must exit 0 and print an array).
fn inspect(m: &Mount, names: &[&str]) -> Vec<Value> {
    let mut args = vec!["inspect"];
    args.extend_from_slice(names);
    let out = m.volume_ok(&args);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("volume inspect did not print JSON ({e}):\n{}", out.stdout));
    match v {
        Value::Array(a) => a,
        other => panic!("volume inspect printed {other} instead of a JSON array"),
    }
}

fn ls_table(m: &Mount, extra: &[&str]) -> std::collections::BTreeSet<String> {
    let mut args = vec!["ls"];
    args.extend_from_slice(extra);
    parse_volume_table(&m.volume_ok(&args).stdout)
}

fn ls_q(m: &Mount, extra: &[&str]) -> std::collections::BTreeSet<String> {
    let mut args = vec!["ls", "-q"];
    args.extend_from_slice(extra);
    parse_names(&m.volume_ok(&args).stdout)
}

/// Seconds since the epoch of an RFC 3339 time (`2026-11-23T10:00:00Z`, fraction and offset
/// allowed); panics if it is not one.
fn parse_rfc3339(s: &str) -> i64 {
    let bad = || panic!("CreatedAt {s:?} is not an RFC 3339 time");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        bad();
    }
    if b[13] != b':' || b[16] != b':' {
        bad();
    }
    let num = |r: std::ops::Range<usize>| -> i64 {
        s.get(r)
            .filter(|x| x.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(bad)
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    );
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            bad();
        }
        rest = &r[n..];
    }
    let off = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) && &r[3..4] == ":" => {
            let at = s.len() - 6;
            let v = num(at + 1..at + 3) * 3600 + num(at + 4..at + 6) * 60;
            if r.starts_with('+') {
                v
            } else {
                -v
            }
        }
        _ => bad(),
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        bad();
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    days * 86400 + h * 3600 + mi * 60 + se - off
}

/// An image whose /data has owners, modes, xattrs, a symlink, nested dirs, a file from the
/// upper and a whiteout.
fn rich_image() -> Builder {
    Builder::new(1)
        .lower(0, |l| {
            l.file_mode("data/f", "file f", 0o640)
                .owner("data/f", 1001, 1002)
                .xattr("data/f", "user.k", b"v")
                .file_mode("data/exec", "#!/bin/sh\n", 0o755)
                .symlink("data/link", "f")
                .owner("data/link", 1003, 1004)
                .file("data/nested/deep/g", "deep g")
                .mode("data/nested/deep", 0o700)
                .owner("data/nested", 1005, 1006)
                .dir("data/shared")
                .mode("data/shared", 0o2775)
                .file("data/wh", "whited out")
                .mode("data", 0o750)
                .owner("data", 1234, 5678)
                .xattr("data", "user.dir", b"d")
                .file("other", "other");
        })
        .upper(|u| {
            // As a copy-up of data/ would leave it.
            u.file("data/upperfile", "from the upper")
                .whiteout("data/wh")
                .mode("data", 0o750)
                .owner("data", 1234, 5678)
                .xattr("data", "user.dir", b"d");
        })
}

#[test]
fn create_prints_the_name_and_ls_lists_it() {
    let m = Builder::new(1).prepare();
    let out = m.volume_ok(&["create", "alpha"]);
    assert_eq!(
        out.stdout.trim(),
        "alpha",
        "volume create alpha printed:\n{}",
        out.stdout
    );
    assert!(
        m.volume_data("alpha").is_dir(),
        "no {}",
        m.volume_data("alpha").display()
    );
    let again = m.volume_ok(&["create", "alpha"]);
    assert_eq!(again.stdout.trim(), "alpha", "creating an existing volume");
    let anon = m.volume_ok(&["create"]);
    let anon = anon.stdout.trim().to_string();
    assert!(
        is_hex64(&anon),
        "volume create without a name printed {anon:?}"
    );
    assert!(m.volume_data(&anon).is_dir());
    let anon2 = m.volume_ok(&["create"]).stdout.trim().to_string();
    assert!(
        is_hex64(&anon2) && anon2 != anon,
        "two random names: {anon} {anon2}"
    );
    let all = set(&["alpha", &anon, &anon2]);
    assert_eq!(ls_table(&m, &[]), all);
    assert_eq!(ls_q(&m, &[]), all);
    assert_eq!(volume_dirs(&m.root), all);
    m.volume_ok(&["rm", &anon, &anon2]);
    assert_eq!(ls_q(&m, &[]), set(&["alpha"]), "volume rm with two names");
    assert_eq!(volume_dirs(&m.root), set(&["alpha"]));
}

#[test]
fn the_root_flag_before_and_after_the_verb() {
    let m = Builder::new(1).prepare();
    let other = m.base.join("other-root");
    // --root wins over STRATA_ROOT (which the fixture sets to BASE/root).
    let mut c = m.strata_cmd();
    c.arg("--root").arg(&other).args(["volume", "create", "g1"]);
    run_ok(&mut c);
    let mut c = m.strata_cmd();
    c.args(["volume", "create", "g2", "--root"]).arg(&other);
    run_ok(&mut c);
    assert_eq!(volume_dirs(&other), set(&["g1", "g2"]));
    assert_eq!(
        volume_dirs(&m.root),
        set(&[]),
        "--root was ignored for STRATA_ROOT"
    );
    let mut c = m.strata_cmd();
    c.args(["volume", "ls", "-q", "--root"]).arg(&other);
    assert_eq!(parse_names(&run_ok(&mut c).stdout), set(&["g1", "g2"]));
    let mut c = m.strata_cmd();
    c.arg("--root").arg(&other).args(["volume", "ls", "-q"]);
    assert_eq!(parse_names(&run_ok(&mut c).stdout), set(&["g1", "g2"]));
    assert_eq!(ls_q(&m, &[]), set(&[]));
}

#[test]
fn invalid_volume_names_are_refused() {
    let m = Builder::new(1).prepare();
    m.volume_ok(&["create", "existing"]);
    // What a user would see change: a volume, or a directory anywhere beside the layers (the
    // store's own records under ROOT may be rewritten by any verb).
    let volumes_before = host_snapshot(&m.root.join("volumes"));
    let (base_before, root_before) = (names(&m.base), names(&m.root));
    for bad in ["a/b", "..", "../escape", "/abs"] {
        let out = m.volume(&["create", bad]);
        assert_one_line_error(&out, &[], &format!("volume create {bad:?}"));
        assert_snapshot_unchanged(
            &volumes_before,
            &m.root.join("volumes"),
            &format!("ROOT/volumes after create {bad:?}"),
        );
        assert_eq!(names(&m.base), base_before, "after create {bad:?}");
        assert_eq!(names(&m.root), root_before, "after create {bad:?}");
    }
    assert!(!exists(m.base.join("escape")) && !exists(m.root.join("escape")));
    assert_eq!(ls_q(&m, &[]), set(&["existing"]));
}

#[test]
fn ls_filters() {
    let b = Builder::new(1).lower(0, |l| {
        l.dir("data");
    });
    let m = b.arg("-v").arg("blue-vol:/data").prepare();
    m.volume_ok(&[
        "create",
        "red-vol",
        "--label",
        "env=prod",
        "--label",
        "tier=gold",
    ]);
    m.volume_ok(&["create", "blue-vol", "--label", "env=dev"]);
    m.volume_ok(&["create", "green-x"]);
    let mut m = m;
    m.mount_now();
    let mut f = Failures::default();
    let cases: [(&str, &[&str]); 7] = [
        ("name=red-vol", &["red-vol"]),
        ("name=green-x", &["green-x"]),
        ("label=env", &["red-vol", "blue-vol"]),
        ("label=env=prod", &["red-vol"]),
        ("label=tier", &["red-vol"]),
        ("dangling=true", &["red-vol", "green-x"]),
        ("dangling=false", &["blue-vol"]),
    ];
    for (filter, want) in cases {
        f.case(filter, || {
            assert_eq!(
                ls_q(&m, &["--filter", filter]),
                set(want),
                "ls -q --filter {filter}"
            );
            assert_eq!(
                ls_table(&m, &["--filter", filter]),
                set(want),
                "ls --filter {filter}"
            );
        });
    }
    f.check();
    m.unmount();
    assert_eq!(
        ls_q(&m, &["--filter", "dangling=true"]),
        set(&["red-vol", "blue-vol", "green-x"]),
        "after unmount every volume is dangling"
    );
    assert_eq!(ls_q(&m, &["--filter", "dangling=false"]), set(&[]));
}

#[test]
fn inspect_reports_the_volume_and_who_uses_it() {
    let m = Builder::new(1).arg("-v").arg("insp:/data").prepare();
    m.volume_ok(&["create", "insp", "--label", "k=v", "--label", "team=a b"]);
    m.volume_ok(&["create", "second"]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let a = inspect(&m, &["insp"]);
    assert_eq!(a.len(), 1, "{a:?}");
    let v = &a[0];
    assert_eq!(v["Name"], "insp", "{v}");
    assert_eq!(v["Driver"], "local", "{v}");
    assert_eq!(v["Scope"], "local", "{v}");
    assert_eq!(
        v["Mountpoint"].as_str(),
        Some(m.volume_data("insp").to_str().unwrap()),
        "{v}"
    );
    assert_eq!(
        v["Labels"],
        serde_json::json!({"k": "v", "team": "a b"}),
        "{v}"
    );
    assert!(v["Options"].is_object(), "Options is not an object: {v}");
    assert_eq!(
        v["UsedBy"],
        serde_json::json!([]),
        "UsedBy of an unused volume: {v}"
    );
    let created = v["CreatedAt"]
        .as_str()
        .unwrap_or_else(|| panic!("no CreatedAt string: {v}"));
    let t = parse_rfc3339(created);
    assert!(
        (t - now).abs() < 2 * 86400,
        "CreatedAt {created} is not today (now = {now} s since the epoch)"
    );
    let both = inspect(&m, &["insp", "second"]);
    let names: Vec<&str> = both
        .iter()
        .map(|v| v["Name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["insp", "second"]);

    let mut m = m;
    m.mount_now();
    let pid = m.daemon_pid();
    let v = &inspect(&m, &["insp"])[0];
    let used = v["UsedBy"]
        .as_array()
        .unwrap_or_else(|| panic!("UsedBy is not an array: {v}"));
    assert_eq!(used.len(), 1, "UsedBy of a volume one mount uses: {v}");
    assert_eq!(used[0]["Mountpoint"], m.mnt.to_str().unwrap(), "{v}");
    assert_eq!(used[0]["Pid"], pid, "{v}");
    assert_eq!(inspect(&m, &["second"])[0]["UsedBy"], serde_json::json!([]));
    m.unmount();
    assert_eq!(inspect(&m, &["insp"])[0]["UsedBy"], serde_json::json!([]));

    let out = m.volume(&["inspect", "nosuchvolume"]);
    assert!(
        !out.ok(),
        "inspect of a missing volume succeeded:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("nosuchvolume"),
        "stderr does not name the missing volume:\n{}",
        out.describe()
    );
}

#[test]
fn rm_is_refused_while_mounted_and_a_volume_outlives_its_mount() {
    let mut m = Builder::new(1).arg("-v").arg("held:/data").mount();
    m.run(|c| write(c.p("data/kept"), "kept"));
    let out = m.volume(&["rm", "held"]);
    assert!(
        !out.ok(),
        "volume rm of a mounted volume succeeded:\n{}",
        out.describe()
    );
    assert!(
        out.stderr.contains(m.mnt.to_str().unwrap()),
        "stderr does not name the mountpoint using the volume:\n{}",
        out.describe()
    );
    assert_eq!(read(m.volume_data("held").join("kept")), "kept");
    m.run(|c| assert_eq!(read(c.p("data/kept")), "kept"));
    m.unmount();
    assert_eq!(
        read(m.volume_data("held").join("kept")),
        "kept",
        "data gone at unmount"
    );
    assert_eq!(ls_table(&m, &[]), set(&["held"]), "volume gone at unmount");
    assert!(
        !exists(m.u("data/kept")),
        "the volume's data landed in the upper"
    );
    m.volume_ok(&["rm", "held"]);
    assert!(
        !exists(m.root.join("volumes/held")),
        "ROOT/volumes/held left behind"
    );
    assert_eq!(ls_q(&m, &[]), set(&[]));
    let out = m.volume(&["rm", "held"]);
    assert!(!out.ok(), "rm of a removed volume succeeded");
}

#[test]
fn prune_removes_only_volumes_no_mount_uses() {
    let m = Builder::new(1).arg("-v").arg("used:/data").prepare();
    m.volume_ok(&["create", "unused1"]);
    m.volume_ok(&["create", "unused2"]);
    let mut m = m;
    m.mount_now();
    m.run(|c| write(c.p("data/x"), "x"));
    let out = m.volume_ok(&["prune", "-f"]);
    let mut lines = out.stdout.lines().map(str::trim).filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some("Deleted Volumes:"), "{}", out.stdout);
    let deleted: std::collections::BTreeSet<String> = lines
        .take_while(|l| !l.starts_with("Total"))
        .map(String::from)
        .collect();
    assert_eq!(deleted, set(&["unused1", "unused2"]), "{}", out.stdout);
    assert_eq!(ls_q(&m, &[]), set(&["used"]));
    assert_eq!(read(m.volume_data("used").join("x")), "x");
    m.run(|c| assert_eq!(read(c.p("data/x")), "x"));
    m.unmount();
    let out = m.volume_ok(&["prune", "-f"]);
    assert!(out.stdout.contains("used"), "{}", out.stdout);
    assert_eq!(ls_q(&m, &[]), set(&[]));
}

#[test]
fn a_new_volume_is_filled_from_the_image_keeping_owners_modes_and_xattrs() {
    let mut m = rich_image().prepare();
    m.mount_now();
    let image: std::collections::BTreeMap<String, Entry> = m.run(|c| tree(&c.p("data")));
    assert!(
        image.contains_key("upperfile") && !image.contains_key("wh"),
        "{image:?}"
    );
    m.unmount();
    let upper_before = host_snapshot(&m.u("data"));

    m.args = vec!["-v".into(), "filled:/data".into()];
    m.mount_now();
    let data = m.volume_data("filled");
    // What a user checks on the host, one by one.
    let st = lstat(&data);
    assert_eq!(
        (st.uid(), st.gid(), st.mode() & 0o7777),
        (1234, 5678, 0o750),
        "_data itself"
    );
    assert_eq!(
        lgetxattr(&data, "user.dir").ok().as_deref(),
        Some(&b"d"[..]),
        "_data xattr"
    );
    let st = lstat(data.join("f"));
    assert_eq!(
        (st.uid(), st.gid(), st.mode() & 0o7777),
        (1001, 1002, 0o640),
        "f"
    );
    assert_eq!(
        lgetxattr(&data.join("f"), "user.k").ok().as_deref(),
        Some(&b"v"[..]),
        "f xattr"
    );
    assert_eq!(read(data.join("f")), "file f");
    assert_eq!(readlink(data.join("link")), "f");
    let st = lstat(data.join("link"));
    assert_eq!((st.uid(), st.gid()), (1003, 1004), "symlink owner");
    assert_eq!(lstat(data.join("exec")).mode() & 0o7777, 0o755);
    assert_eq!(lstat(data.join("shared")).mode() & 0o7777, 0o2775);
    assert_eq!(lstat(data.join("nested")).uid(), 1005);
    assert_eq!(lstat(data.join("nested/deep")).mode() & 0o7777, 0o700);
    assert_eq!(read(data.join("nested/deep/g")), "deep g");
    assert_eq!(read(data.join("upperfile")), "from the upper");
    assert!(!exists(data.join("wh")), "a whited-out file was copied");
    assert_same_tree(
        &image,
        &tree(&data),
        "the image's /data",
        "the new volume on the host",
    );
    let through = m.run(|c| tree(&c.p("data")));
    assert_same_tree(
        &image,
        &through,
        "the image's /data",
        "/data through the mount",
    );
    m.run(|c| {
        write(c.p("data/new"), "new");
        write(c.p("data/f"), "changed");
    });
    assert_eq!(read(data.join("new")), "new");
    assert_eq!(read(data.join("f")), "changed");
    m.unmount();
    assert_snapshot_unchanged(&upper_before, &m.u("data"), "upper/data");
    assert_eq!(read(m.l(0, "data/f")), "file f", "the lower changed");
}

#[test]
fn a_volume_created_empty_is_filled_at_its_first_mount() {
    let m = rich_image().arg("-v").arg("precreated:/data").prepare();
    m.volume_ok(&["create", "precreated"]);
    let mut m = m;
    m.mount_now();
    let data = m.volume_data("precreated");
    assert_eq!(
        names(&data),
        set(&["f", "exec", "link", "nested", "shared", "upperfile"])
    );
    assert_eq!(lstat(data.join("f")).uid(), 1001);
}

#[test]
fn nocopy_leaves_a_new_volume_empty() {
    let mut m = rich_image()
        .arg("-v")
        .arg("empty1:/data:nocopy")
        .arg("--mount")
        .arg("type=volume,src=empty2,dst=/data2,volume-nocopy")
        .mount();
    m.run(|c| {
        assert_eq!(
            names(c.p("data")),
            set(&[]),
            "nocopy volume shows the image"
        );
        assert_eq!(
            names(c.p("data2")),
            set(&[]),
            "volume-nocopy volume shows the image"
        );
        write(c.p("data/mine"), "mine");
    });
    assert_eq!(names(m.volume_data("empty1")), set(&["mine"]));
    assert_eq!(names(m.volume_data("empty2")), set(&[]));
    m.unmount();
    assert_eq!(names(m.volume_data("empty1")), set(&["mine"]));
}

#[test]
fn a_volume_that_holds_data_is_used_as_it_is() {
    let b = Builder::new(1).lower(0, |l| {
        l.file("data/a", "image a").file("data/b", "image b");
    });
    let mut m = b.arg("-v").arg("v1:/data").prepare();
    m.mount_now();
    m.run(|c| {
        assert_eq!(names(c.p("data")), set(&["a", "b"]));
        rm(c.p("data/b"));
        write(c.p("data/a"), "edited");
    });
    m.unmount();
    m.mount_now();
    m.run(|c| {
        assert_eq!(names(c.p("data")), set(&["a"]), "the image's b came back");
        assert_eq!(
            read(c.p("data/a")),
            "edited",
            "the image's a was copied again"
        );
    });
    m.unmount();
    // A volume filled on the host before its first mount.
    m.volume_ok(&["create", "v2"]);
    write(m.volume_data("v2").join("own"), "own");
    m.args = vec!["-v".into(), "v2:/data".into()];
    m.mount_now();
    m.run(|c| assert_eq!(names(c.p("data")), set(&["own"])));
    assert_eq!(names(m.volume_data("v2")), set(&["own"]));
}

#[test]
fn an_anonymous_volume_gets_a_random_name_and_outlives_the_mount() {
    let b = Builder::new(1).lower(0, |l| {
        l.file("data/a", "image a");
    });
    let mut m = b.arg("--volume").arg("/data").prepare();
    m.mount_now();
    let first = ls_q(&m, &[]);
    assert_eq!(
        first.len(),
        1,
        "volumes after mounting --volume /data: {first:?}"
    );
    let name = first.iter().next().unwrap().clone();
    assert!(is_hex64(&name), "anonymous volume name {name:?}");
    m.run(|c| {
        assert_eq!(read(c.p("data/a")), "image a");
        write(c.p("data/new"), "new");
    });
    let data = m.volume_data(&name);
    assert_eq!(read(data.join("a")), "image a");
    assert_eq!(read(data.join("new")), "new");
    assert!(
        !exists(m.u("data/new")),
        "anonymous volume data in the upper"
    );
    m.unmount();
    assert_eq!(
        ls_table(&m, &[]),
        first,
        "the anonymous volume went away with the mount"
    );
    assert_eq!(read(data.join("new")), "new");
    m.mount_now();
    let second = ls_q(&m, &[]);
    assert_eq!(second.len(), 2, "a second anonymous volume: {second:?}");
    let other = second.iter().find(|n| **n != name).unwrap().clone();
    assert!(is_hex64(&other));
    m.run(|c| {
        assert_eq!(
            names(c.p("data")),
            set(&["a"]),
            "a new anonymous volume is fresh"
        )
    });
}

#[test]
fn two_mounts_share_one_volume() {
    let a = Builder::new(1)
        .lower(0, |l| {
            l.file("data/from-a", "a");
        })
        .arg("-v")
        .arg("shared:/data")
        .mount();
    let b = Builder::new(1)
        .lower(0, |l| {
            l.file("data/from-b", "b");
        })
        .state_root(&a.root)
        .arg("-v")
        .arg("shared:/data")
        .mount();
    let (ca, cb) = (a.ctx(), b.ctx());
    with_timeout(OP_TIMEOUT, "operations on two mounts", move || {
        // The first mount filled it; the second uses it as it is.
        assert_eq!(names(cb.p("data")), set(&["from-a"]));
        assert_eq!(names(ca.p("data")), set(&["from-a"]));
        write(ca.p("data/x"), "written in a");
        assert_eq!(read(cb.p("data/x")), "written in a");
        write(cb.p("data/x"), "overwritten in b, longer");
        assert_eq!(read(ca.p("data/x")), "overwritten in b, longer");
        assert_eq!(lstat(ca.p("data/x")).len(), 24);
        mkdir(cb.p("data/dir"));
        assert!(lstat(ca.p("data/dir")).is_dir());
        rm(ca.p("data/x"));
        assert_enoent(cb.p("data/x"));

        write(ca.p("data/log"), "");
        let n = 300;
        let spawn = |c: Ctx, tag: &'static str| {
            std::thread::spawn(move || {
                for i in 0..n {
                    let mut f = OpenOptions::new()
                        .append(true)
                        .open(c.p("data/log"))
                        .unwrap();
                    f.write_all(format!("{tag}-{i:04}\n").as_bytes()).unwrap();
                }
            })
        };
        let ta = spawn(ca.clone(), "A");
        let tb = spawn(cb.clone(), "B");
        ta.join().unwrap();
        tb.join().unwrap();
        for c in [&ca, &cb] {
            let text = read(c.p("data/log"));
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort();
            let mut want: Vec<String> = (0..n)
                .flat_map(|i| [format!("A-{i:04}"), format!("B-{i:04}")])
                .collect();
            want.sort();
            let missing: Vec<&String> = want
                .iter()
                .filter(|w| !lines.contains(&w.as_str()))
                .collect();
            assert!(
                missing.is_empty() && lines.len() == want.len(),
                "O_APPEND from two mounts lost or mangled lines: {} lines, {} missing (first: \
                 {:?})",
                lines.len(),
                missing.len(),
                missing.first()
            );
        }
    });
    let host = read(a.volume_data("shared").join("log"));
    assert_eq!(
        host.lines().count(),
        600,
        "the host file has {} lines",
        host.lines().count()
    );
    assert!(!exists(a.u("data/log")) && !exists(b.u("data/log")));
}

#[test]
fn kill_9_loses_nothing_fsynced_to_a_volume() {
    let m = Builder::new(1).arg("-v").arg("durable:/data").mount();
    let payload: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let p2 = payload.clone();
    m.run(move |c| {
        mkdir(c.p("data/sub"));
        let mut f = fs::File::create(c.p("data/sub/file")).unwrap();
        f.write_all(&p2).unwrap();
        f.sync_all().unwrap();
        fs::File::open(c.p("data/sub")).unwrap().sync_all().unwrap();
        fs::File::open(c.p("data")).unwrap().sync_all().unwrap();
    });
    let pid = m.daemon_pid();
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGKILL) },
        0,
        "kill -9 {pid}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || !Path::new(&format!(
            "/proc/{pid}/exe"
        ))
        .exists()),
        "the daemon {pid} did not die"
    );
    assert_eq!(
        read_bytes(m.volume_data("durable").join("sub/file")),
        payload,
        "fsynced data lost with the daemon"
    );
    assert_eq!(ls_table(&m, &[]), set(&["durable"]));
    let out = m.volume(&["rm", "durable"]);
    let state = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().and_then(|r| r.trim().chars().next()));
    assert!(
        out.ok(),
        "a dead mount still holds the volume (daemon {pid} state: {}):\n{}",
        match state {
            Some('Z') => "zombie, killed but not reaped by its parent".to_string(),
            Some(c) => format!("{c}"),
            None => "gone".to_string(),
        },
        out.describe()
    );
    assert!(!exists(m.root.join("volumes/durable")));
    let mnt = m.mnt.clone();
    drop(m);
    assert_eq!(
        mounts_under(&mnt),
        vec![],
        "the dead FUSE mount was not cleaned up"
    );
}

#[test]
fn a_read_only_volume_refuses_every_write() {
    let m = Builder::new(1)
        .arg("-v")
        .arg("rovol:/data:ro")
        .arg("--mount")
        .arg("type=volume,source=rovol,target=/data2,readonly")
        .prepare();
    m.volume_ok(&["create", "rovol"]);
    let data = Layer::new(m.volume_data("rovol"));
    data.file("f", "f")
        .xattr("f", "user.orig", b"o")
        .dir("empty")
        .file("d/g", "g");
    let before = host_snapshot(&data.root);
    let mut m = m;
    m.mount_now();
    m.run(|c| {
        for d in ["data", "data2"] {
            assert_eq!(read(c.p(&format!("{d}/f"))), "f");
            assert_eq!(read(c.p(&format!("{d}/d/g"))), "g");
            assert_every_write_erofs(&c.p(d));
        }
    });
    m.unmount();
    assert_snapshot_unchanged(&before, &data.root, "the read-only volume");
}

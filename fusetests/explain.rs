//! `strata explain`: for every case a student asks about (upper, each lower, grafts, a
//! container's generated files, whiteouts and opaque directories in both formats, a redirect,
//! a copy-up, a rename, a remount), explain names the layer that supplies the path and what
//! hides the others, and what it says agrees with what `stat` and `ls` show through the mount.

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
use common::*;

use std::path::Path;

use serde_json::Value;

/// `strata explain --json PATHS` with the mount's environment; must succeed.
fn explain(m: &Mount, paths: &[&Path]) -> Vec<Value> {
    let mut c = m.strata_cmd();
    c.arg("explain").arg("--json").args(paths);
    let o = run_cmd(&mut c, CMD_TIMEOUT);
    assert!(o.ok(), "strata explain {paths:?}: {}", o.describe());
    let v: Value = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("explain --json is not JSON ({e}): {}", o.stdout));
    let a = v.as_array().expect("a JSON array").clone();
    assert_eq!(a.len(), paths.len(), "{}", o.stdout);
    a
}

fn one(m: &Mount, rel: &str) -> Value {
    explain(m, &[&m.p(rel)]).remove(0)
}

/// The layer that supplies `e`.
fn supplier(e: &Value) -> String {
    e["supplied_by"]["layer"]
        .as_str()
        .unwrap_or("-")
        .to_string()
}

/// (layer, what hides it, format) of each layer that has the path but does not show it.
fn hidden(e: &Value) -> Vec<(String, String, String)> {
    e["hidden"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["at"]["layer"].as_str().unwrap().to_string(),
                format!(
                    "{} in {} at {}",
                    h["by"]["what"].as_str().unwrap_or("?"),
                    h["by"]["layer"].as_str().unwrap_or("?"),
                    h["by"]["path"].as_str().unwrap_or("?")
                ),
                h["by"]["format"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// explain's st_ino equals the one stat shows through the mount.
fn assert_ino(m: &Mount, rel: &str, e: &Value) {
    assert_eq!(
        e["inode"]["st_ino"].as_u64(),
        Some(ino(m.p(rel))),
        "st_ino of /{rel}: explain says {e}"
    );
}

/// A 3-layer image with one of each case, and an upper.
fn image() -> Builder {
    Builder::new(3)
        .lower(0, |l| {
            l.file("top", "1")
                .file("shadow", "from lower 1")
                .whiteout("wk")
                .whiteout_oci("wo")
                .opaque("ok")
                .file("ok/mine", "1")
                .opaque_oci("oo")
                .file("oo/mine", "1")
                .file("d/a", "1")
                .file("d/b", "1");
        })
        .lower(1, |l| {
            l.file("mid", "2")
                .file("shadow", "from lower 2")
                .file("ok/below", "2")
                .file("oo/below", "2")
                .file("d/c", "2");
        })
        .lower(2, |l| {
            l.file("bottom", "3")
                .file("wk", "3")
                .file("wo", "3")
                .file("d/a", "3")
                .file("d/e", "3")
                .file("d/f", "3");
        })
        .upper(|u| {
            u.file("new", "upper");
        })
}

#[test]
fn each_layer_whiteouts_and_opaque_directories_in_both_formats() {
    let mut m = image().prepare();
    m.mount_now();
    for (rel, layer) in [
        ("new", "upper"),
        ("top", "lower 1"),
        ("mid", "lower 2"),
        ("bottom", "lower 3"),
        ("shadow", "lower 1"),
    ] {
        let e = one(&m, rel);
        assert_eq!(e["visible"], true, "{e}");
        assert_eq!(supplier(&e), layer, "/{rel}: {e}");
        assert_eq!(e["kind"], "file");
        assert_eq!(e["copied_up"], false, "{e}");
        assert_ino(&m, rel, &e);
        let dir = &e["supplied_by"]["dir"];
        assert!(
            Path::new(dir.as_str().unwrap()).join(rel).exists(),
            "the layer directory named for /{rel} holds it: {e}"
        );
    }
    let e = one(&m, "shadow");
    assert_eq!(
        hidden(&e),
        [(
            "lower 2".to_string(),
            "covered in lower 1 at /shadow".to_string(),
            String::new()
        )]
    );
    // Whiteouts: the path is not there, and explain says which layer has it and what hides it.
    for (rel, format) in [("wk", "character device 0:0"), ("wo", ".wh.NAME")] {
        assert_enoent(m.p(rel));
        let e = one(&m, rel);
        assert_eq!(e["visible"], false, "{e}");
        let h = hidden(&e);
        assert_eq!(h.len(), 1, "{e}");
        assert_eq!(h[0].0, "lower 3");
        assert_eq!(h[0].1, format!("whiteout in lower 1 at /{rel}"));
        assert!(h[0].2.contains(format), "/{rel}: format {:?}", h[0].2);
    }
    // Opaque directories: only the top one is merged; what is below is hidden by it.
    for (dir, format) in [("ok", "overlay.opaque=y"), ("oo", ".wh..wh..opq")] {
        let e = one(&m, dir);
        assert_eq!(supplier(&e), "lower 1");
        let merged: Vec<&str> = e["merged"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["at"]["layer"].as_str().unwrap())
            .collect();
        assert_eq!(merged, ["lower 1"], "{e}");
        let h = hidden(&e);
        assert_eq!(h.len(), 1, "{e}");
        assert_eq!(h[0].1, format!("opaque in lower 1 at /{dir}"));
        assert!(h[0].2.contains(format), "{dir}: format {:?}", h[0].2);
        assert_eq!(names(m.p(dir)), set(&["mine"]));
        let below = format!("{dir}/below");
        assert_enoent(m.p(&below));
        let e = one(&m, &below);
        assert_eq!(e["visible"], false);
        let h = hidden(&e);
        assert_eq!(h[0].0, "lower 2");
        assert_eq!(h[0].1, format!("opaque in lower 1 at /{dir}"));
    }
    // A merged directory: which layers give what, and it adds up to what ls shows.
    let e = one(&m, "d");
    let merged: Vec<(String, u64, u64)> = e["merged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["at"]["layer"].as_str().unwrap().to_string(),
                x["entries"].as_u64().unwrap(),
                x["shown"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        merged,
        [
            ("lower 1".to_string(), 2, 2),
            ("lower 2".to_string(), 1, 1),
            ("lower 3".to_string(), 3, 2)
        ]
    );
    let listed = names(m.p("d"));
    assert_eq!(listed.len() as u64, merged.iter().map(|x| x.2).sum::<u64>());
    assert_ino(&m, "d", &e);
    // Every entry ls shows, explained at once: visible, and the number stat shows.
    let mut all = names(m.p("")).into_iter().collect::<Vec<_>>();
    all.extend(listed.iter().map(|n| format!("d/{n}")));
    let paths: Vec<_> = all.iter().map(|r| m.p(r)).collect();
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    for (rel, e) in all.iter().zip(explain(&m, &refs)) {
        assert_eq!(e["visible"], true, "/{rel}: {e}");
        assert_ino(&m, rel, &e);
    }
    let root = one(&m, "");
    let shown: u64 = root["merged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["shown"].as_u64().unwrap())
        .sum();
    assert_eq!(shown, names(m.p("")).len() as u64, "{root}");
    assert_ino(&m, "", &root);
}

#[test]
fn copy_up_rename_unlink_and_remount_are_explained_as_the_mount_shows_them() {
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("a", "lower a")
                .file("gone", "x")
                .file("dir/f", "in dir");
        })
        .prepare();
    m.mount_now();
    let before = one(&m, "a");
    assert_eq!(supplier(&before), "lower 1");
    assert_eq!(before["copied_up"], false);
    let lower_ino = ino(m.p("a"));
    append(m.p("a"), " changed");
    let e = one(&m, "a");
    assert_eq!(supplier(&e), "upper", "right after the copy-up: {e}");
    assert_eq!(e["copied_up"], true, "{e}");
    assert_eq!(e["inode"]["st_ino"].as_u64(), Some(lower_ino), "{e}");
    assert!(e["inode"]["how"].as_str().unwrap().contains("kept"), "{e}");
    assert_eq!(hidden(&e)[0].0, "lower 1");
    // A rename of the copy: the new name is the copy, the old one a whiteout over the lower.
    rename(m.p("a"), m.p("b"));
    let e = one(&m, "b");
    assert_eq!(
        (supplier(&e), e["copied_up"].clone()),
        ("upper".into(), true.into())
    );
    assert_ino(&m, "b", &e);
    let e = one(&m, "a");
    assert_eq!(e["visible"], false, "{e}");
    assert_eq!(hidden(&e)[0].1, "whiteout in upper at /a");
    // unlink of a lower file.
    rm(m.p("gone"));
    let e = one(&m, "gone");
    assert_eq!(e["visible"], false);
    assert_eq!(hidden(&e)[0].1, "whiteout in upper at /gone");
    // A renamed lower directory: its content is found through the redirect.
    rename(m.p("dir"), m.p("moved"));
    let e = one(&m, "moved/f");
    assert_eq!(supplier(&e), "lower 1", "{e}");
    assert_eq!(e["supplied_by"]["path"], "/dir/f", "{e}");
    let r = e["redirect"].as_str().unwrap_or("");
    assert!(r.contains("/moved") && r.contains("dir"), "{e}");
    assert_ino(&m, "moved/f", &e);
    let e = one(&m, "dir/f");
    assert_eq!(e["visible"], false);
    assert_eq!(hidden(&e)[0].1, "whiteout in upper at /dir");
    // The same after a remount.
    let inos: Vec<u64> = ["b", "moved", "moved/f"]
        .iter()
        .map(|r| ino(m.p(r)))
        .collect();
    m.remount();
    for (rel, want) in ["b", "moved", "moved/f"].iter().zip(inos) {
        let e = one(&m, rel);
        assert_eq!(
            e["inode"]["st_ino"].as_u64(),
            Some(want),
            "/{rel} after remount: {e}"
        );
        assert_ino(&m, rel, &e);
    }
    assert_eq!(supplier(&one(&m, "b")), "upper");
    assert_eq!(one(&m, "a")["visible"], false);
    assert_eq!(supplier(&one(&m, "moved/f")), "lower 1");
}

#[test]
fn grafts_bind_ro_rw_volume_and_tmpfs() {
    let b = Builder::new(1).lower(0, |l| {
        l.file("data/a", "image a").file("etc/conf", "image conf");
    });
    let ro = b.host_dir("ro");
    ro.file("r", "ro file");
    let rw = b.host_dir("rw");
    rw.file("w", "rw file");
    let conf = b.host_dir("conf");
    conf.file("conf", "host conf");
    let mut m = b
        .arg("--bind")
        .arg(spec(&ro.root, "/data:ro"))
        .arg("--bind")
        .arg(spec(&rw.root, "/rw"))
        .arg("--bind")
        .arg(format!("{}:/etc/conf", conf.root.join("conf").display()))
        .arg("-v")
        .arg("vol:/vol")
        .arg("--tmpfs")
        .arg("/scratch")
        .prepare();
    m.mount_now();
    write(m.p("vol/v"), "in volume");
    write(m.p("scratch/t"), "in tmpfs");
    for (rel, kind, mode, source) in [
        ("data/r", "bind", "ro", ro.root.display().to_string()),
        ("rw/w", "bind", "rw", rw.root.display().to_string()),
        (
            "etc/conf",
            "bind",
            "rw",
            conf.root.join("conf").display().to_string(),
        ),
        (
            "vol/v",
            "volume",
            "rw",
            m.volume_data("vol").display().to_string(),
        ),
        ("scratch/t", "tmpfs", "rw", String::new()),
    ] {
        let e = one(&m, rel);
        assert_eq!(e["visible"], true, "{e}");
        assert_eq!(supplier(&e), "graft", "{e}");
        assert_eq!(e["graft"]["kind"], kind, "{e}");
        assert_eq!(e["graft"]["mode"], mode, "{e}");
        assert_eq!(e["graft"]["init_file"], false, "{e}");
        if !source.is_empty() {
            assert_eq!(e["graft"]["source"], source.as_str(), "{e}");
        }
        assert_ino(&m, rel, &e);
    }
    assert_eq!(one(&m, "vol/v")["graft"]["volume"], "vol");
    // The image's content under a graft is hidden by it.
    let e = one(&m, "data/a");
    assert_eq!(e["visible"], false, "{e}");
    assert_eq!(
        hidden(&e)[0],
        (
            "lower 1".into(),
            "graft in graft at /data".into(),
            String::new()
        )
    );
    let e = one(&m, "etc/conf");
    assert_eq!(hidden(&e)[0].1, "graft in graft at /etc/conf", "{e}");
    let e = one(&m, "data");
    assert_eq!(supplier(&e), "graft");
    assert_ino(&m, "data", &e);
}

#[test]
fn a_containers_generated_files_and_its_image() {
    let f = fixture::fx();
    let (id, _) = fixture::detached(&f, &["--name", "ex"], &["sleep", "60"]);
    let merged = f.containers().join(&id).join("merged");
    let o = f.verb(&[
        "explain",
        "--json",
        "--mount",
        merged.to_str().unwrap(),
        "/etc/hosts",
        "/etc/motd",
    ]);
    assert!(o.ok(), "{}", o.describe());
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    let (hosts, motd) = (&v[0], &v[1]);
    assert_eq!(hosts["supplied_by"]["layer"], "init file", "{hosts}");
    assert_eq!(hosts["graft"]["init_file"], true, "{hosts}");
    assert_eq!(
        hosts["graft"]["source"],
        f.containers().join(&id).join("hosts").to_str().unwrap()
    );
    assert_eq!(
        hosts["inode"]["st_ino"].as_u64(),
        Some(ino(merged.join("etc/hosts")))
    );
    assert_eq!(motd["supplied_by"]["layer"], "lower 1", "{motd}");
    assert_eq!(motd["supplied_by"]["dir"], f.rootfs.to_str().unwrap());
    // The plain form: the path as the host sees it.
    let o = f.verb(&["explain", merged.join("etc/hostname").to_str().unwrap()]);
    assert!(o.ok(), "{}", o.describe());
    assert!(o.stdout.contains("supplied by init file"), "{}", o.stdout);
    // layers draws the container's stack with the generated files at the side.
    let o = f.verb(&["layers", "ex"]);
    assert!(o.ok(), "{}", o.describe());
    for s in [
        "upper",
        "lower 1",
        f.rootfs.to_str().unwrap(),
        "/etc/hosts (init file rw)",
    ] {
        assert!(o.stdout.contains(s), "{s:?} is not in:\n{}", o.stdout);
    }
    let o = f.verb(&["stop", "-t", "0", &id]);
    assert!(o.ok(), "{}", o.describe());
}

#[test]
fn a_path_outside_any_strata_mount_or_in_no_layer_is_one_line_and_exit_1() {
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("x", "x");
        })
        .prepare();
    m.mount_now();
    let outside = m.base.join("lower0/x");
    let mut c = m.strata_cmd();
    c.arg("explain").arg(&outside);
    let o = run_cmd(&mut c, CMD_TIMEOUT);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert_one_line_error(
        &o,
        &["not inside a strata mount"],
        "explain outside a mount",
    );
    assert!(o.stdout.is_empty(), "{}", o.describe());
    let mut c = m.strata_cmd();
    c.arg("explain").arg(m.p("nowhere"));
    let o = run_cmd(&mut c, CMD_TIMEOUT);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert_one_line_error(
        &o,
        &["no layer", "/nowhere"],
        "explain of a name no layer has",
    );
    let mut c = m.strata_cmd();
    c.arg("explain").arg("--mount").arg(&m.base).arg("x");
    let o = run_cmd(&mut c, CMD_TIMEOUT);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    assert_one_line_error(
        &o,
        &["not a strata mount"],
        "explain --mount of a plain directory",
    );
}

#[test]
fn output_into_a_pipe_closed_early_ends_quietly() {
    // `strata explain ... | head -1`: strata dies of SIGPIPE, as ls would, with nothing on
    // stderr (no panic of println!). Enough paths that the output outgrows the pipe.
    let m = image().mount();
    let p = m.p("shadow");
    let c = m.strata_cmd();
    let strata = format!("{:?}", c.get_program());
    let mut sh = std::process::Command::new("bash");
    sh.envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))));
    sh.arg("-c").arg(format!(
        "set -o pipefail; {strata} explain \"$@\" | head -c 1 >/dev/null; echo \"exit $?\""
    ));
    sh.arg("explain");
    for _ in 0..3000 {
        sh.arg(&p);
    }
    let o = run_cmd(&mut sh, CMD_TIMEOUT);
    assert_eq!(o.stdout, "exit 141\n", "{}", o.describe());
    assert_eq!(o.stderr, "", "{}", o.describe());
}

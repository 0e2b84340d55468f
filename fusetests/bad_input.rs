//! Bad input: `strata mount` must print one line naming the problem, exit non-zero, mount
//! nothing, leave no daemon behind and write nothing in the layers, upper, workdir or mountpoint.

mod common;
use common::*;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Fx {
    // Field order matters: mounts are taken down before the directory is removed.
    _guard: UnmountGuard,
    _tmp: tempfile::TempDir,
    base: PathBuf,
    l1: PathBuf,
    l2: PathBuf,
    u: PathBuf,
    w: PathBuf,
    mnt: PathBuf,
}

fn fx() -> Fx {
    let tmp = tempfile::Builder::new()
        .prefix("strata-ft-bad.")
        .tempdir()
        .unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let d = |n: &str| {
        let p = base.join(n);
        fs::create_dir(&p).unwrap();
        p
    };
    let (l1, l2, u, w, mnt) = (d("l1"), d("l2"), d("u"), d("w"), d("mnt"));
    fs::write(l1.join("a"), "a").unwrap();
    fs::write(l2.join("b"), "b").unwrap();
    Fx {
        _guard: UnmountGuard(base.clone()),
        _tmp: tmp,
        base,
        l1,
        l2,
        u,
        w,
        mnt,
    }
}

fn opts(lowers: &[&Path], upper: Option<&Path>, work: Option<&Path>, extra: &[&str]) -> String {
    let ls: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let mut o = vec![format!("lowerdir={}", ls.join(":"))];
    if lowers.is_empty() {
        o.clear();
    }
    if let Some(u) = upper {
        o.push(format!("upperdir={}", u.display()));
    }
    if let Some(w) = work {
        o.push(format!("workdir={}", w.display()));
    }
    o.extend(extra.iter().map(|s| s.to_string()));
    o.join(",")
}

fn mount_args(o: &str, mnt: &Path) -> Vec<OsString> {
    vec!["mount".into(), "-o".into(), o.into(), mnt.into()]
}

/// Run strata with `args` and check it is refused cleanly; the one stderr line must contain
/// one of `needles`.
fn expect_rejected(f: &Fx, args: Vec<OsString>, mnt: &Path, needles: &[String]) {
    let before = host_snapshot(&f.base);
    let mounts_before = mounts_under(&f.base);
    let mut cmd = Command::new(strata_bin());
    cmd.args(&args).env_remove("RUST_LOG");
    let desc = format!("{cmd:?}");
    let out = run_cmd(&mut cmd, Duration::from_secs(30));
    let line = assert_one_line_error(&out, &[], &desc);
    assert!(
        needles.iter().any(|n| line.contains(n.as_str())),
        "{desc}: the error line does not name the problem (expected one of {needles:?}):\n{line}"
    );
    assert_eq!(
        mounts_under(&f.base),
        mounts_before,
        "{desc}: something was mounted"
    );
    assert!(
        wait_until(Duration::from_secs(3), || strata_pids(mnt).is_empty()),
        "{desc}: a strata daemon is still running: {:?}",
        strata_pids(mnt)
    );
    assert_snapshot_unchanged(
        &before,
        &f.base,
        "the layers, upper, workdir and mountpoint",
    );
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn missing_lower_layer() {
    let f = fx();
    let missing = f.base.join("no-such-layer");
    let o = opts(&[&f.l1, &missing], Some(&f.u), Some(&f.w), &[]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &[s(&missing)]);
}

#[test]
fn lower_layer_is_not_a_directory() {
    let f = fx();
    let file = f.base.join("a-file");
    fs::write(&file, "x").unwrap();
    let o = opts(&[&file, &f.l2], Some(&f.u), Some(&f.w), &[]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &[s(&file)]);
}

#[test]
fn missing_upper_dir() {
    let f = fx();
    let missing = f.base.join("no-such-upper");
    let o = opts(&[&f.l1], Some(&missing), Some(&f.w), &[]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &[s(&missing)]);
}

#[test]
fn upper_dir_is_not_a_directory() {
    let f = fx();
    let file = f.base.join("upper-file");
    fs::write(&file, "x").unwrap();
    let o = opts(&[&f.l1], Some(&file), Some(&f.w), &[]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &[s(&file)]);
}

#[test]
fn upper_inside_a_lower() {
    let f = fx();
    let inner = f.l1.join("inner");
    fs::create_dir(&inner).unwrap();
    let o = opts(&[&f.l1, &f.l2], Some(&inner), Some(&f.w), &[]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &[s(&inner)]);
}

#[test]
fn lower_inside_the_upper() {
    let f = fx();
    let inner = f.u.join("inner");
    fs::create_dir(&inner).unwrap();
    let o = opts(&[&f.l1, &inner], Some(&f.u), Some(&f.w), &[]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &[s(&inner)]);
}

#[test]
fn workdir_inside_the_upper() {
    let f = fx();
    let inner = f.u.join("work");
    fs::create_dir(&inner).unwrap();
    let o = opts(&[&f.l1], Some(&f.u), Some(&inner), &[]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &[s(&inner)]);
}

#[test]
fn workdir_on_another_filesystem_than_upper() {
    let f = fx();
    let t = f.base.join("tmpfs");
    fs::create_dir(&t).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&t),
    );
    let w = t.join("work");
    fs::create_dir(&w).unwrap();
    let o = opts(&[&f.l1], Some(&f.u), Some(&w), &[]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &[s(&w), s(&f.u)]);
    assert!(
        names(&w).is_empty(),
        "something was created in the workdir on tmpfs"
    );
}

#[test]
fn mountpoint_missing() {
    let f = fx();
    let missing = f.base.join("no-such-mountpoint");
    let o = opts(&[&f.l1], Some(&f.u), Some(&f.w), &[]);
    expect_rejected(&f, mount_args(&o, &missing), &missing, &[s(&missing)]);
}

#[test]
fn mountpoint_already_a_mount() {
    let f = fx();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&f.mnt),
    );
    let o = opts(&[&f.l1], Some(&f.u), Some(&f.w), &[]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &[s(&f.mnt)]);
    assert_eq!(mounts_at(&f.mnt), vec!["tmpfs".to_string()]);
}

#[test]
fn unknown_option_with_a_value() {
    let f = fx();
    let o = opts(&[&f.l1], Some(&f.u), Some(&f.w), &["frobnicate=1"]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &["frobnicate".into()]);
}

#[test]
fn unknown_flag_option() {
    let f = fx();
    let o = opts(&[&f.l1], Some(&f.u), Some(&f.w), &["nosuchflag"]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &["nosuchflag".into()]);
}

#[test]
fn bad_redirect_dir_value() {
    let f = fx();
    let o = opts(&[&f.l1], Some(&f.u), Some(&f.w), &["redirect_dir=maybe"]);
    expect_rejected(
        &f,
        mount_args(&o, &f.mnt),
        &f.mnt,
        &["redirect_dir".into(), "maybe".into()],
    );
}

#[test]
fn no_lowerdir() {
    let f = fx();
    let o = opts(&[], Some(&f.u), Some(&f.w), &[]);
    expect_rejected(&f, mount_args(&o, &f.mnt), &f.mnt, &["lowerdir".into()]);
}

#[test]
fn fuse_overlayfs_form_rejects_bad_input_too() {
    let f = fx();
    let o = opts(&[&f.l1], Some(&f.u), Some(&f.w), &["frobnicate"]);
    expect_rejected(
        &f,
        vec!["-o".into(), o.into(), f.mnt.clone().into()],
        &f.mnt,
        &["frobnicate".into()],
    );
    let missing = f.base.join("nope");
    let o = opts(&[&missing], Some(&f.u), Some(&f.w), &[]);
    expect_rejected(
        &f,
        vec!["-o".into(), o.into(), f.mnt.clone().into()],
        &f.mnt,
        &[s(&missing)],
    );
}

/// A word that is no verb, without `-o`, is not taken for a fuse-overlayfs command line: the
/// one line names the word.
#[test]
fn an_unknown_command_is_named() {
    let f = fx();
    expect_rejected(
        &f,
        vec!["bogus-verb".into(), s(&f.mnt).into()],
        &f.mnt,
        &["unknown command 'bogus-verb'".to_string()],
    );
}

//! Mount options as the kernel's overlayfs has them (redirect_dir modes; options accepted,
//! refused).

mod common;
use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Kernel overlayfs mounted at `mnt` by a test; unmounted by the fixture's guard on panic.
struct Kernel {
    mnt: PathBuf,
}

impl Kernel {
    fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, mnt: &Path, extra: &str) -> Kernel {
        fs::create_dir_all(work).unwrap();
        fs::create_dir_all(mnt).unwrap();
        let ls: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let mut o = format!(
            "lowerdir={},upperdir={},workdir={}",
            ls.join(":"),
            upper.display(),
            work.display()
        );
        if !extra.is_empty() {
            o.push(',');
            o.push_str(extra);
        }
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "overlay", "overlay", "-o", &o]).arg(mnt);
        let desc = format!("{cmd:?}");
        let out = run_cmd(&mut cmd, CMD_TIMEOUT);
        assert!(out.ok(), "kernel overlayfs: {desc}\n{}", out.describe());
        Kernel {
            mnt: mnt.to_path_buf(),
        }
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce(PathBuf) -> T + Send + 'static) -> T {
        let m = self.mnt.clone();
        with_timeout(Duration::from_secs(60), "kernel overlayfs", move || f(m))
    }

    fn unmount(self) {
        run_ok(Command::new("umount").arg(&self.mnt));
    }
}

fn errno(e: io::Error) -> String {
    errno_name(e.raw_os_error().unwrap_or(0))
}

fn listing(p: &Path) -> Result<BTreeSet<String>, String> {
    Ok(fs::read_dir(p)
        .map_err(errno)?
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect())
}

// ---------------------------------------------------------------------------------------------
// redirect_dir=on|follow|off|nofollow
// ---------------------------------------------------------------------------------------------

/// What a user sees of an upper whose `d` (a lower directory) was renamed to `e` under
/// redirect_dir=on, and what a new rename of the lower directory `g` does.
#[derive(Debug, PartialEq)]
struct RedirectView {
    root: BTreeSet<String>,
    renamed: Result<BTreeSet<String>, String>,
    renamed_file: Result<String, String>,
    new_rename: Result<(), String>,
}

fn redirect_view(m: PathBuf) -> RedirectView {
    RedirectView {
        root: listing(&m).unwrap(),
        renamed: listing(&m.join("e")),
        renamed_file: fs::read_to_string(m.join("e/f")).map_err(errno),
        new_rename: fs::rename(m.join("g"), m.join("g2")).map_err(errno),
    }
}

/// The upper after `mv d e` under redirect_dir=on, viewed by strata and by kernel overlayfs
/// (each on its own copy of that upper) mounted with `redirect_dir=MODE`.
fn redirect_mode(mode: &str) -> (RedirectView, RedirectView, Option<String>) {
    assert!(is_root(), "kernel overlayfs needs root");
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("d/f", "lower content of d\n");
            l.file("g/h", "h\n");
        })
        .prepare();
    m.opts = vec!["redirect_dir=on".into()];
    m.mount_now();
    m.run(|c| rename(c.p("d"), c.p("e")));
    m.unmount();
    assert!(redirect_of(&m.u("e")).is_some(), "no redirect on upper/e");
    // The same upper for the kernel.
    let kupper = m.base.join("kupper");
    run_ok(Command::new("cp").arg("-a").arg(m.u("")).arg(&kupper));

    m.opts = vec![format!("redirect_dir={mode}")];
    m.mount_now();
    let strata = m.run(|c| redirect_view(c.mnt.clone()));
    m.unmount();
    let written = redirect_of(&m.u("g2"));

    let k = Kernel::mount(
        &m.lowers,
        &kupper,
        &m.base.join("kwork"),
        &m.base.join("kmnt"),
        &format!("redirect_dir={mode}"),
    );
    let kernel = k.run(redirect_view);
    k.unmount();
    assert_eq!(
        strata, kernel,
        "redirect_dir={mode}: strata (left) and kernel overlayfs (right) differ"
    );
    (strata, kernel, written)
}

fn follows(v: &RedirectView, mode: &str) {
    assert_eq!(v.root, set(&["e", "g"]), "redirect_dir={mode}");
    assert_eq!(v.renamed, Ok(set(&["f"])), "redirect_dir={mode}: e");
    assert_eq!(
        v.renamed_file.as_deref(),
        Ok("lower content of d\n"),
        "redirect_dir={mode}: e/f"
    );
}

#[test]
fn redirect_dir_on_follows_and_creates_redirects() {
    let (v, _, written) = redirect_mode("on");
    follows(&v, "on");
    assert_eq!(v.new_rename, Ok(()));
    assert!(
        written.is_some(),
        "renaming a lower directory wrote no redirect"
    );
}

#[test]
fn redirect_dir_follow_follows_redirects_and_refuses_to_create_one() {
    let (v, _, written) = redirect_mode("follow");
    follows(&v, "follow");
    assert_eq!(v.new_rename, Err(errno_name(libc::EXDEV)));
    assert_eq!(written, None);
}

/// With the kernel's default redirect_always_follow=Y, `off` still follows the redirects an
/// upper holds: the renamed directory shows its content (it used to look empty, and `rm -r`
/// there took the lower content away unseen).
#[test]
fn redirect_dir_off_follows_existing_redirects_and_creates_none() {
    let (v, _, written) = redirect_mode("off");
    follows(&v, "off");
    assert_eq!(v.new_rename, Err(errno_name(libc::EXDEV)));
    assert_eq!(written, None);
}

#[test]
fn redirect_dir_nofollow_neither_follows_nor_creates() {
    let (v, _, written) = redirect_mode("nofollow");
    assert_eq!(v.root, set(&["e", "g"]));
    // As the kernel: a directory whose redirect it may not follow is refused, not shown empty.
    assert_eq!(v.renamed, Err(errno_name(libc::EPERM)));
    assert_eq!(v.new_rename, Err(errno_name(libc::EXDEV)));
    assert_eq!(written, None);
}

// ---------------------------------------------------------------------------------------------
// Options accepted and refused
// ---------------------------------------------------------------------------------------------

#[test]
fn options_that_strata_cannot_honour_are_refused_and_nothing_is_mounted() {
    for (o, needle) in [
        ("metacopy=on", "metacopy=on"),
        ("context=system_u:object_r:container_file_t:s0", "context="),
        (
            "fscontext=system_u:object_r:container_file_t:s0",
            "fscontext=",
        ),
        (
            "defcontext=system_u:object_r:container_file_t:s0",
            "defcontext=",
        ),
        (
            "rootcontext=system_u:object_r:container_file_t:s0",
            "rootcontext=",
        ),
        ("index=maybe", "index"),
        ("xino=sometimes", "xino"),
    ] {
        let mut m = Builder::new(1)
            .lower(0, |l| {
                l.file("a", "a");
            })
            .opt(o)
            .prepare();
        let before = host_snapshot(&m.base);
        let out = m.try_mount_now();
        assert_one_line_error(&out, &[needle], &format!("mount -o ...,{o}"));
        assert!(!fuse_mounted(&m.mnt), "{o}: mounted");
        assert!(
            wait_until(Duration::from_secs(3), || strata_pids(&m.mnt).is_empty()),
            "{o}: a daemon is left"
        );
        assert_snapshot_unchanged(&before, &m.base, o);
    }
}

#[test]
fn options_that_ask_for_what_strata_does_are_accepted() {
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("a", "a");
        })
        .opt("index=on,xino=on,metacopy=off,volatile")
        .mount();
    m.run(|c| {
        write(c.p("b"), "b");
        assert_eq!(read(c.p("b")), "b");
    });
    drop(m);
    for o in ["index=off", "xino=auto", "xino=off"] {
        let m = Builder::new(1).opt(o).mount();
        m.run(|c| write(c.p("x"), "x"));
    }
}

//! Mount options as the kernel's overlayfs has them (redirect_dir modes; options accepted,
//! refused), the whiteout format of each layer (`.wh.` names are plain names in an upper that
//! uses the kernel's format), and a mount that fails late leaving nothing behind.

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

// ---------------------------------------------------------------------------------------------
// `.wh.` names: whiteouts only in the layers that use that format
// ---------------------------------------------------------------------------------------------

/// A kernel overlayfs upper (kernel-format whiteouts) holding a plain file `.wh.version`:
/// kernel overlayfs shows both `.wh.version` and the lower `version`, and so must strata.
#[test]
fn a_kernel_upper_file_named_wh_version_is_a_plain_name() {
    assert!(is_root(), "kernel overlayfs needs root");
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("version", "v1\n");
            l.file("gone", "gone\n");
            l.file("dir/inner", "inner\n");
        })
        .prepare();
    let k = Kernel::mount(
        &m.lowers,
        &m.u(""),
        &m.base.join("kwork"),
        &m.base.join("kmnt"),
        "",
    );
    let kernel = k.run(|km| {
        write(km.join(".wh.version"), "not a whiteout\n");
        write(km.join("dir/.wh.inner"), "nor this\n");
        rm(km.join("gone"));
        tree(&km)
    });
    k.unmount();
    assert!(
        kernel.contains_key(".wh.version") && kernel.contains_key("version"),
        "kernel overlayfs itself: {:?}",
        kernel.keys()
    );
    m.mount_now();
    let strata = m.run(|c| tree(&c.mnt));
    assert_same_tree(&kernel, &strata, "kernel overlayfs", "strata");

    // Deleting and recreating around such names works, and the kernel reads the result.
    let after = m.run(|c| {
        rm(c.p("version"));
        assert_eq!(
            listing(&c.mnt).unwrap(),
            set(&[".wh.version", "dir"]),
            "after rm version"
        );
        assert_eq!(read(c.p(".wh.version")), "not a whiteout\n");
        write(c.p("version"), "v2\n");
        rm(c.p(".wh.version"));
        assert_eq!(read(c.p("version")), "v2\n");
        assert_eq!(read(c.p("dir/.wh.inner")), "nor this\n");
        assert_eq!(read(c.p("dir/inner")), "inner\n");
        tree(&c.mnt)
    });
    m.unmount();
    let k = Kernel::mount(
        &m.lowers,
        &m.u(""),
        &m.base.join("kwork2"),
        &m.base.join("kmnt"),
        "",
    );
    let kernel2 = k.run(|km| tree(&km));
    k.unmount();
    assert_same_tree(&after, &kernel2, "strata", "kernel overlayfs");
}

#[test]
fn a_root_mount_creates_lists_renames_and_removes_wh_names() {
    assert!(is_root(), "a root mount writes kernel-format whiteouts");
    let mut m = Builder::new(1)
        .lower(0, |l| {
            l.file("x", "lower x\n");
        })
        .mount();
    let view = m.run(|c| {
        write(c.p(".wh.x"), "a plain file\n");
        // Creating `.wh.x` hides nothing.
        assert_eq!(read(c.p("x")), "lower x\n");
        assert_eq!(listing(&c.mnt).unwrap(), set(&[".wh.x", "x"]));
        mkdir(c.p(".wh.dir"));
        write(c.p(".wh.dir/.wh..wh..opq"), "also plain\n");
        rename(c.p(".wh.x"), c.p(".wh.y"));
        assert_eq!(listing(&c.mnt).unwrap(), set(&[".wh.dir", ".wh.y", "x"]));
        assert_eq!(listing(&c.p(".wh.dir")).unwrap(), set(&[".wh..wh..opq"]));
        rm(c.p("x"));
        write(c.p(".wh.x"), "again\n");
        assert_eq!(
            listing(&c.mnt).unwrap(),
            set(&[".wh.dir", ".wh.x", ".wh.y"])
        );
        rm(c.p(".wh.y"));
        tree(&c.mnt)
    });
    assert_eq!(
        read(m.u(".wh.x")),
        "again\n",
        "the upper holds `.wh.x` as a plain file"
    );
    m.unmount();
    let k = Kernel::mount(
        &m.lowers,
        &m.u(""),
        &m.base.join("kwork"),
        &m.base.join("kmnt"),
        "",
    );
    let kernel = k.run(|km| tree(&km));
    k.unmount();
    assert_same_tree(&view, &kernel, "strata", "kernel overlayfs");
}

const ROOTLESS_WH: &str = r#"
set -u
S="$1"; B="$2"; M="$B/mnt"
"$S" mount -o "lowerdir=$B/lower0,upperdir=$B/upper,workdir=$B/work" "$M" || exit 1
if touch "$M/.wh.x" 2>"$B/home/touch.err"; then echo "CREATED"; else echo "REFUSED $(cat "$B/home/touch.err")"; fi
echo "LS $(ls -A "$M" | tr '\n' ' ')"
"$S" umount "$M"
echo "DONE"
"#;

/// Unprivileged mounts write `.wh.NAME` whiteouts, so there such a name stays refused.
#[test]
fn an_unprivileged_mount_still_refuses_wh_names() {
    assert!(
        is_root(),
        "this test starts as root and drops to {TEST_USER}"
    );
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("x", "x");
        })
        .owned_by_test_user()
        .prepare();
    let strata = strata_bin();
    let out = run_script_as_test_user(
        &m.base,
        ROOTLESS_WH,
        &[strata.as_os_str(), m.base.as_os_str()],
    );
    assert!(
        out.stdout.contains("REFUSED") && out.stdout.contains("Invalid argument"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.contains("LS x \n"), "{}", out.describe());
    assert!(!exists(m.u(".wh.x")));
}

// ---------------------------------------------------------------------------------------------
// A mount that fails after its checks leaves nothing behind
// ---------------------------------------------------------------------------------------------

/// `-v /data` fills a new anonymous volume from the image, then a graft inside it cannot be
/// placed (a directory onto the image's file /data/x): the mount fails, and neither the
/// volume nor anything in the upper stays. Twice, as a user retrying would.
#[test]
fn a_mount_failing_after_its_volume_was_made_leaves_no_volume() {
    let b = Builder::new(1).lower(0, |l| {
        l.file("data/x", "a file in the image\n");
    });
    let src = b.host_dir("src");
    let mut m = b
        .arg("-v")
        .arg("/data")
        .arg("--bind")
        .arg(spec(&src.root, "/data/x"))
        .prepare();
    let before = host_snapshot(&m.u(""));
    for run in 1..=2 {
        let out = m.try_mount_now();
        assert_one_line_error(&out, &["/data/x"], &format!("mount #{run}"));
        assert!(!fuse_mounted(&m.mnt), "mount #{run}: still mounted");
        assert!(
            wait_until(Duration::from_secs(3), || strata_pids(&m.mnt).is_empty()),
            "mount #{run}: a daemon is left"
        );
        let ls = m.volume_ok(&["ls", "-q"]);
        assert_eq!(
            parse_names(&ls.stdout),
            BTreeSet::new(),
            "mount #{run} left volumes"
        );
        assert_eq!(volume_dirs(&m.root), BTreeSet::new(), "mount #{run}");
        assert_snapshot_unchanged(&before, &m.u(""), "the upper");
    }
}

const ROOTLESS_LATE_FAILURE: &str = r#"
set -u
S="$1"; B="$2"; M="$B/mnt"
export STRATA_ROOT="$B/root"
for run in 1 2; do
  if "$S" mount -v /data -v /made -o "lowerdir=$B/lower0,upperdir=$B/upper,workdir=$B/work" "$M" 2>"$B/home/err"; then
    echo "MOUNTED"; "$S" umount "$M"
  else
    echo "FAILED $(cat "$B/home/err")"
  fi
done
echo "DONE"
"#;

/// fusermount3 refuses a mountpoint the user may not write, which strata's own checks do not
/// see: neither the anonymous volumes `-v /data` (filled from the image) and `-v /made` asked
/// for nor the directory /made would need in the upper may be left behind.
#[test]
fn a_mount_refused_by_fusermount_leaves_no_volume() {
    assert!(
        is_root(),
        "this test starts as root and drops to {TEST_USER}"
    );
    let m = Builder::new(1)
        .lower(0, |l| {
            l.file("data/seed", "seed\n");
        })
        .owned_by_test_user()
        .prepare();
    // A mountpoint of root's, 0755: fusermount3 refuses it to the user.
    lchown(&m.mnt, 0, 0).unwrap();
    let before = host_snapshot(&m.u(""));
    let strata = strata_bin();
    let out = run_script_as_test_user(
        &m.base,
        ROOTLESS_LATE_FAILURE,
        &[strata.as_os_str(), m.base.as_os_str()],
    );
    assert_eq!(
        out.stdout.matches("FAILED").count(),
        2,
        "{}",
        out.describe()
    );
    assert!(out.stdout.contains("fusermount3"), "{}", out.describe());
    assert!(!fuse_mounted(&m.mnt));
    let ls = m.volume_ok(&["ls", "-q"]);
    assert_eq!(parse_names(&ls.stdout), BTreeSet::new(), "volumes left");
    assert_eq!(volume_dirs(&m.root), BTreeSet::new());
    assert_snapshot_unchanged(&before, &m.u(""), "the upper");
}

/// `passthrough=off` keeps every read in the daemon; by default, as root on a kernel with FUSE
/// passthrough, an open file's reads go straight to its layer file and never reach the daemon.
#[test]
fn passthrough_off_serves_every_read_from_the_daemon() {
    assert!(is_root(), "FUSE passthrough needs root");
    let reads_of = |opt: Option<&str>| -> (usize, String) {
        let mut b = Builder::new(1)
            .lower(0, |l| {
                l.file("data", "some lower data\n");
            })
            .log()
            .env("RUST_LOG", "strata=debug");
        if let Some(o) = opt {
            b = b.opt(o);
        }
        let mut m = b.mount();
        m.run(|c| {
            assert_eq!(read(c.p("data")), "some lower data\n");
        });
        m.unmount();
        let log = m.read_log();
        let n = log.lines().filter(|l| l.contains("] read ")).count();
        (n, log)
    };
    let (on, log_on) = reads_of(None);
    assert!(
        log_on.contains("kernel FUSE passthrough: on"),
        "this kernel gives no FUSE passthrough:\n{log_on}"
    );
    assert_eq!(
        on, 0,
        "reads reached the daemon with passthrough:\n{log_on}"
    );
    let (off, log_off) = reads_of(Some("passthrough=off"));
    assert!(
        log_off.contains("kernel FUSE passthrough: off"),
        "{log_off}"
    );
    assert!(
        off >= 1,
        "no read reached the daemon with passthrough=off:\n{log_off}"
    );
    let mut m = Builder::new(1).opt("passthrough=maybe").prepare();
    let out = m.try_mount_now();
    assert!(!out.ok(), "passthrough=maybe was accepted");
    assert!(out.stderr.contains("passthrough"), "{}", out.describe());
}

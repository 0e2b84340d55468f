//! `strata diff` and `strata commit`: what a container changed, read from its upper, as
//! Docker's A/C/D lines; and that change as a new image on top of the container's, whose layer
//! tar has OCI whiteouts, a renamed directory written whole, and volumes' mountpoints without
//! their content.

mod common;
#[path = "containers/fixture.rs"]
mod fixture;
use common::*;
use fixture::*;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(180);

/// The changes every test makes: write, delete, rename a directory, chmod, replace a
/// directory, make a new tree.
const SCRIPT: &str = "echo new > /etc/new; rm /etc/group; mv /root /home; \
    echo n > /home/added; chmod 600 /etc/motd; rm -r /tmp; mkdir /tmp; echo p > /tmp/p; \
    mkdir -p /a/b; echo z > /a/b/z";

fn base_fx() -> Fx {
    let f = fx();
    fs::write(f.rootfs.join("root/.profile"), "profile\n").unwrap();
    fs::write(f.rootfs.join("tmp/old"), "old\n").unwrap();
    f
}

fn ok(f: &Fx, args: &[&str]) -> String {
    let o = f.verb(args);
    assert!(o.ok(), "strata {args:?}: {}", o.describe());
    o.stdout
}

#[test]
fn diff_prints_dockers_lines_for_each_kind_of_change() {
    with_timeout(T, "diff", || {
        let f = base_fx();
        let o = f.run(&["--name", "ctr"], &["sh", "-c", SCRIPT]);
        assert!(o.ok(), "{}", o.describe());
        let want = "A /a\nA /a/b\nA /a/b/z\nC /etc\nD /etc/group\nC /etc/motd\nA /etc/new\n\
                    A /home\nA /home/.profile\nA /home/added\nD /root\nC /tmp\nA /tmp/p\n";
        assert_eq!(ok(&f, &["diff", "ctr"]), want);
        // By id prefix too; a container that changed nothing prints nothing.
        let id = f.only_id();
        assert_eq!(ok(&f, &["diff", &id[..8]]), want);
        assert!(f.run(&["--name", "idle"], &["true"]).ok());
        assert_eq!(ok(&f, &["diff", "idle"]), "");
        let o = f.verb(&["diff", "nope"]);
        assert_eq!(
            (o.status.code(), o.stderr.as_str()),
            (Some(1), "strata: No such container: nope\n")
        );
    });
}

/// An image without /etc: the /etc that holds the generated hosts, hostname and resolv.conf is
/// the runtime's (Docker's init layer), not the container's change.
#[test]
fn diff_leaves_out_the_directory_made_for_the_generated_files() {
    with_timeout(T, "diff without /etc", || {
        let f = fx();
        fs::remove_dir_all(f.rootfs.join("etc")).unwrap();
        let o = f.run(
            &["--name", "noetc"],
            &[
                "sh",
                "-c",
                "echo hi > /greeting; cat /etc/hostname >/dev/null",
            ],
        );
        assert!(o.ok(), "{}", o.describe());
        assert_eq!(ok(&f, &["diff", "noetc"]), "A /greeting\n");
        // A change of its own inside it is shown, with the directory.
        let o = f.run(&["--name", "own"], &["sh", "-c", "echo x > /etc/own"]);
        assert!(o.ok(), "{}", o.describe());
        assert_eq!(ok(&f, &["diff", "own"]), "A /etc\nA /etc/own\n");
    });
}

#[test]
fn commit_makes_an_image_of_the_change_that_reads_back_as_the_container_saw_it() {
    with_timeout(T, "commit", || {
        let f = base_fx();
        let o = f.run(&["--name", "ctr"], &["sh", "-c", SCRIPT]);
        assert!(o.ok(), "{}", o.describe());
        let out = ok(
            &f,
            &[
                "commit",
                "-m",
                "the change",
                "-c",
                "CMD [\"cat\", \"/etc/new\"]",
                "-c",
                "ENV MODE=committed",
                "-c",
                "WORKDIR /home",
                "ctr",
                "mine:v1",
            ],
        );
        let id = out.trim_end();
        assert!(id.starts_with("sha256:") && id.len() == 71, "{out:?}");
        let i: serde_json::Value =
            serde_json::from_str(&ok(&f, &["image", "inspect", "mine:v1"])).unwrap();
        let i = &i[0];
        assert_eq!(i["Id"], id);
        assert_eq!(i["Config"]["Cmd"], serde_json::json!(["cat", "/etc/new"]));
        assert_eq!(i["Config"]["Env"], serde_json::json!(["MODE=committed"]));
        assert_eq!(i["Config"]["WorkingDir"], "/home");
        let layers = i["RootFS"]["Layers"].as_array().unwrap().clone();
        assert_eq!(layers.len(), 2, "the rootfs as a layer, and the change");
        let h = ok(&f, &["image", "history", "--no-trunc", "mine:v1"]);
        let top = h.lines().nth(1).unwrap();
        assert!(top.contains(SCRIPT) && top.contains("the change"), "{h}");
        assert_eq!(h.lines().count(), 3, "{h}");
        // The new layer holds the change only, with OCI whiteouts.
        let layer = f
            .root
            .join("layers/sha256")
            .join(layers[1].as_str().unwrap().trim_start_matches("sha256:"));
        assert_eq!(kind(&lstat(layer.join("etc/.wh.group"))), 'f');
        assert_eq!(kind(&lstat(layer.join(".wh.root"))), 'f');
        assert_eq!(kind(&lstat(layer.join("tmp/.wh..wh..opq"))), 'f');
        assert_eq!(
            read(layer.join("home/.profile")),
            "profile\n",
            "written whole"
        );
        assert!(
            !layer.join("etc/passwd").exists(),
            "unchanged files stay below"
        );
        assert!(!layer.join("bin").exists());
        // Mounted, the image is what the container saw.
        let m = f.base.join("m");
        fs::create_dir(&m).unwrap();
        ok(&f, &["image", "mount", "mine:v1", m.to_str().unwrap()]);
        assert_eq!(read(m.join("etc/new")), "new\n");
        assert_enoent(m.join("etc/group"));
        assert_enoent(m.join("root"));
        assert_eq!(names(m.join("home")), set(&[".profile", "added"]));
        assert_eq!(names(m.join("tmp")), set(&["p"]));
        assert_eq!(lstat(m.join("etc/motd")).mode() & 0o7777, 0o600);
        assert_eq!(read(m.join("a/b/z")), "z\n");
        // A container run on it sees the change.
        let o = f.run_raw(&[
            m.to_str().unwrap(),
            "sh",
            "-c",
            "cat /etc/new /home/.profile; ls /tmp; test ! -e /etc/group",
        ]);
        assert!(o.ok(), "{}", o.describe());
        assert_eq!(o.stdout, "new\nprofile\np\n", "{}", o.describe());
        ok(&f, &["image", "umount", m.to_str().unwrap()]);
        // Saved, the layer tar is written again byte for byte: its sha256 is its diff_id.
        let saved = f.base.join("saved");
        let o = f.verb(&["image", "save", "mine:v1", saved.to_str().unwrap()]);
        assert!(o.ok() && o.stderr.is_empty(), "{}", o.describe());
        for l in &layers {
            let d = l.as_str().unwrap().trim_start_matches("sha256:");
            let p = f.base.join("saved/blobs/sha256").join(d);
            let sum = run_ok(Command::new("sha256sum").arg(&p)).stdout;
            assert_eq!(sum.split_whitespace().next(), Some(d));
        }
        // umoci unpacks it as the mount showed it.
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image", "saved:v1", "un"])
                .current_dir(&f.base),
        );
        let r = f.base.join("un/rootfs");
        assert_eq!(read(r.join("etc/new")), "new\n");
        assert_enoent(r.join("root"));
        assert_eq!(names(r.join("home")), set(&[".profile", "added"]));
        assert_eq!(names(r.join("tmp")), set(&["p"]));
        // A container run from the committed image sees the change.
        let o = f.run_raw(&[
            "--rm",
            "mine:v1",
            "sh",
            "-c",
            "cat /etc/new /home/.profile; ls /tmp; test ! -e /etc/group && test ! -e /root",
        ]);
        assert!(o.ok(), "{}", o.describe());
        assert_eq!(o.stdout, "new\nprofile\np\n");
        let o = f.run_raw(&["--rm", "mine:v1"]);
        assert_eq!(o.stdout, "new\n", "-c CMD: {}", o.describe());
        // Committed without a name: an untagged image.
        let o = ok(&f, &["commit", "ctr"]);
        assert!(o.starts_with("sha256:"), "{o}");
        let o = f.verb(&["commit", "-c", "RUN rm -rf /", "ctr"]);
        assert!(!o.ok() && o.stderr.lines().count() == 1, "{}", o.describe());
    });
}

#[test]
fn a_volumes_content_stays_out_of_the_commit_but_its_mountpoint_stays() {
    with_timeout(T, "commit volume", || {
        let f = base_fx();
        let o = f.run(
            &["--name", "ctr", "-v", "vol:/srv/data"],
            &[
                "sh",
                "-c",
                "echo v > /srv/data/in-volume; echo k > /srv/kept; cat /etc/hosts >/dev/null",
            ],
        );
        assert!(o.ok(), "{}", o.describe());
        assert_eq!(
            ok(&f, &["diff", "ctr"]),
            "A /srv\nA /srv/kept\n",
            "the mountpoint and the generated /etc/hosts are left out"
        );
        ok(&f, &["commit", "ctr", "vol:1"]);
        let i: serde_json::Value =
            serde_json::from_str(&ok(&f, &["image", "inspect", "vol:1"])).unwrap();
        let top = i[0]["RootFS"]["Layers"][1]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        let layer = f.root.join("layers/sha256").join(top);
        assert!(
            lstat(layer.join("srv/data")).is_dir(),
            "the mountpoint stays"
        );
        assert_eq!(
            names(layer.join("srv/data")),
            set(&[]),
            "its content does not"
        );
        assert_eq!(read(layer.join("srv/kept")), "k\n");
        assert!(!layer.join("etc/hosts").exists());
        // Run again from the committed image: the file is there, the volume's content is not.
        let o = f.run_raw(&[
            "--rm",
            "vol:1",
            "sh",
            "-c",
            "cat /srv/kept; ls -A /srv/data",
        ]);
        assert!(o.ok(), "{}", o.describe());
        assert_eq!(o.stdout, "k\n");
    });
}

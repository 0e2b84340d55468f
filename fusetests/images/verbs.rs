//! ls, inspect, history, tag, rm and prune as a user reads them; a rootless import.

use std::fs;
use std::os::unix::fs::MetadataExt;

use super::common::*;
use super::fixture::*;

/// `image ls` rows split into their columns (Docker's: separated by at least two spaces).
fn rows(ls: &str) -> Vec<Vec<String>> {
    ls.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:")[..12].to_string()
}

#[test]
fn ls_inspect_history_and_tag_print_dockers_formats() {
    timed("verbs", || {
        let fx = Fx::new();
        fx.umoci_images();
        let base = fx.import(&["oci:base", "busybox:1"]);
        let app = fx.import(&["oci:app", "app"]);
        let ls = fx.ok(&["image", "ls"]);
        let t = rows(&ls);
        assert_eq!(
            t[0],
            ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
            "{ls}"
        );
        assert!(
            ls.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
            "{ls}"
        );
        assert_eq!(t.len(), 3, "{ls}");
        let row = t.iter().find(|r| r[0] == "busybox").unwrap();
        assert_eq!(row[1], "1");
        assert_eq!(row[2], short(&base));
        assert!(row[3].ends_with(" ago"), "{ls}");
        assert!(row[4].ends_with("MB"), "{ls}");
        let ids = fx.ok(&["image", "ls", "-q"]);
        assert_eq!(ids.lines().count(), 2, "{ids}");
        let full = fx.ok(&[
            "image",
            "ls",
            "-q",
            "--no-trunc",
            "--filter",
            "reference=busy*",
        ]);
        assert_eq!(full, format!("{base}\n"));
        let t = rows(&fx.ok(&["image", "ls", "--filter", "reference=app:*"]));
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t[1][0], "app");
        let e = fx.fails(&["image", "ls", "--filter", "size=3"]);
        assert!(e.contains("unknown filter"), "{e}");
        // inspect: Docker's fields, several names at once, a missing one reported.
        let v: serde_json::Value =
            serde_json::from_str(&fx.ok(&["image", "inspect", "busybox:1", "app"])).unwrap();
        assert_eq!(v[0]["Id"], base);
        assert_eq!(v[0]["RepoTags"], serde_json::json!(["busybox:1"]));
        assert_eq!(v[1]["Id"], app);
        assert_eq!(v[0]["Config"]["Env"], serde_json::json!(["A=1"]));
        assert_eq!(v[0]["Config"]["Labels"]["k"], "v");
        assert!(v[0]["Config"]["Volumes"].get("/data").is_some());
        assert!(v[1]["Size"].as_u64().unwrap() > v[0]["Size"].as_u64().unwrap() - 1);
        assert_eq!(v[0]["Created"], fx.oci_config("base")["created"]);
        let o = fx.strata(&["image", "inspect", "app", "nosuch"]);
        assert!(
            !o.ok() && o.stderr.trim() == "strata: No such image: nosuch",
            "{}",
            o.describe()
        );
        // An id, `sha256:` or not, or a unique prefix of one names the image.
        for n in [base.clone(), base[7..].to_string(), base[7..12].to_string()] {
            assert_eq!(fx.inspect(&n)["Id"], base, "{n}");
        }
        // history: one line per config history entry, newest first, the id on the first.
        let h = fx.ok(&["image", "history", "app"]);
        let hist = fx.oci_config("app")["history"].as_array().unwrap().len();
        let t = rows(&h);
        assert_eq!(
            t[0],
            ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            "{h}"
        );
        assert_eq!(t.len(), hist + 1, "{h}");
        assert_eq!(t[1][0], short(&app));
        assert!(t[2..].iter().all(|r| r[0] == "<missing>"), "{h}");
        assert!(t[1][2].starts_with("umoci"), "{h}");
        // tag: a second name for the same image.
        assert_eq!(fx.ok(&["image", "tag", "busybox:1", "busybox"]), "");
        let t = rows(&fx.ok(&["image", "ls"]));
        let tagged: Vec<_> = t
            .iter()
            .filter(|r| r[2] == short(&base))
            .map(|r| r[1].clone())
            .collect();
        assert_eq!(tagged.len(), 2, "{t:?}");
        assert!(tagged.contains(&"latest".to_string()));
        let e = fx.fails(&["image", "tag", "nosuch", "x"]);
        assert_eq!(e, "strata: No such image: nosuch");
    });
}

#[test]
fn rm_untags_then_deletes_and_layers_go_with_their_last_image() {
    timed("rm", || {
        let fx = Fx::new();
        fx.umoci_images();
        let base = fx.import(&["oci:base", "busybox:1"]);
        let app = fx.import(&["oci:app", "app"]);
        fx.ok(&["image", "tag", "busybox:1", "busybox:2"]);
        assert_eq!(
            fx.ok(&["image", "rm", "busybox:2"]),
            "Untagged: busybox:2\n"
        );
        fx.ok(&["image", "tag", "busybox:1", "busybox:2"]);
        let e = fx.fails(&["image", "rm", &base[7..12]]);
        assert!(
            e.contains("must be forced") && e.contains("multiple repositories"),
            "{e}"
        );
        let out = fx.ok(&["image", "rm", "-f", &base[7..12]]);
        assert_eq!(
            out,
            format!("Untagged: busybox:1\nUntagged: busybox:2\nDeleted: {base}\n"),
            "the shared base layer stays: app uses it"
        );
        assert_eq!(fx.layer_dirs().len(), 2);
        let out = fx.ok(&["image", "rm", "app"]);
        assert!(
            out.starts_with(&format!("Untagged: app:latest\nDeleted: {app}\n")),
            "{out}"
        );
        assert_eq!(
            out.lines()
                .filter(|l| l.starts_with("Deleted: sha256:"))
                .count(),
            3,
            "{out}"
        );
        assert!(fx.layer_dirs().is_empty(), "{:?}", fx.layer_dirs());
        assert_eq!(fx.ok(&["image", "ls", "-q"]), "");
        let e = fx.fails(&["image", "rm", "app"]);
        assert_eq!(e, "strata: No such image: app");
    });
}

#[test]
fn prune_removes_untagged_images_but_not_one_a_container_uses() {
    timed("prune", || {
        let fx = Fx::new();
        fx.umoci_images();
        let id = fx.import(&["oci:base"]);
        let t = rows(&fx.ok(&["image", "ls"]));
        assert_eq!(t[1][..3], ["<none>", "<none>", short(&id).as_str()]);
        let dangling = fx.ok(&["image", "ls", "-q", "--filter", "dangling=true"]);
        assert_eq!(dangling, format!("{}\n", short(&id)));
        // A container record naming the image keeps it.
        let c = fx.root().join("containers/c1");
        fs::create_dir_all(&c).unwrap();
        fs::write(c.join("config.json"), format!("{{\"Image\": \"{id}\"}}")).unwrap();
        assert_eq!(
            fx.ok(&["image", "prune", "-f"]),
            "Total reclaimed space: 0B\n"
        );
        fx.ok(&["image", "tag", &id, "used"]);
        let e = fx.fails(&["image", "rm", "used"]);
        assert!(
            e.contains("container c1 is using its referenced image"),
            "{e}"
        );
        assert_eq!(
            fx.ok(&["image", "rm", "-f", "used"]),
            "Untagged: used:latest\n"
        );
        assert_eq!(
            fx.layer_dirs().len(),
            1,
            "the container's image keeps its layer"
        );
        fs::remove_dir_all(&c).unwrap();
        let out = fx.ok(&["image", "prune"]);
        let diff = &diff_ids(&fx.oci_config("base"))[0];
        assert!(
            out.starts_with(&format!(
                "Deleted Images:\ndeleted: {id}\ndeleted: {diff}\n\nTotal reclaimed space: "
            )),
            "{out}"
        );
        assert!(out.trim_end().ends_with("MB"), "{out}");
        assert!(fx.layer_dirs().is_empty());
    });
}

#[test]
fn a_rootless_import_keeps_owners_that_a_mount_shows() {
    timed("rootless", || {
        let fx = Fx::rootless();
        let r = fx.base().join("rootfs");
        fs::create_dir(&r).unwrap();
        fx.populate(&r);
        fx.tool(
            "tar",
            &[
                "--xattrs",
                "--xattrs-include=user.*",
                "-C",
                "rootfs",
                "-cf",
                "r.tar",
                ".",
            ],
        );
        let mnt = fx.base().join("mnt");
        let _guard = UnmountGuard(mnt.clone());
        let script = r#"set -e
export STRATA_ROOT="$1"
"$2" image import "$3" rl
L=$("$2" image inspect rl | sed -n 's/.*"LowerDir": "\(.*\)".*/\1/p')
"$2" mount -o "lowerdir=$L" "$4"
stat -c '%n %u:%g %a %F' "$4/etc/motd" "$4/dev/null" "$4/usr/bin/suid" "$4/run/fifo"
"$2" umount "$4"
echo DONE
"#;
        let (bin, tar) = (strata_bin(), fx.base().join("r.tar"));
        let args = [
            fx.root().as_os_str(),
            bin.as_os_str(),
            tar.as_os_str(),
            mnt.as_os_str(),
        ];
        let out = run_script_as_test_user(fx.base(), script, &args);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert!(lines[0].starts_with("sha256:"), "{}", out.describe());
        let m = mnt.display();
        let (uid, gid) = ensure_test_user();
        assert_eq!(lines.last(), Some(&"DONE"));
        assert_eq!(
            lines[1..lines.len() - 1],
            [
                format!("{m}/etc/motd 1000:1001 640 regular file"),
                format!("{m}/dev/null 0:0 644 character special file"),
                format!("{m}/usr/bin/suid 0:0 4755 regular file"),
                // user.* xattrs are not allowed on fifos: its owner is the importer.
                format!("{m}/run/fifo {uid}:{gid} 644 fifo"),
            ],
            "{}",
            out.describe()
        );
        // In the store: the user's files, the image's owners in the override record.
        let layer = fs::read_dir(fx.root().join("layers/sha256"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(lstat(layer.join("etc/motd")).uid(), uid);
        assert_eq!(
            lgetxattr(&layer.join("etc/motd"), "user.strata.override_stat").unwrap(),
            b"1000:1001:0100640"
        );
    });
}

#[test]
fn image_mount_is_the_read_only_union_of_its_layers() {
    timed("image mount", || {
        let fx = Fx::new();
        fx.umoci_images();
        let app = fx.import(&["oci:app", "app"]);
        let mnt = fx.base().join("mnt");
        let _guard = UnmountGuard(mnt.clone());
        assert_eq!(fx.ok(&["image", "mount", "app", "mnt"]), "");
        assert!(fuse_mounted(&mnt));
        // Entry by entry what umoci unpacks: the whiteout applied, owners and xattrs kept.
        let strip = |mut t: std::collections::BTreeMap<String, Entry>| {
            t.remove(".");
            t
        };
        let want = strip(tree(&fx.base().join("ab/rootfs")));
        assert_same_tree(
            &want,
            &strip(tree(&mnt)),
            "umoci unpack",
            "strata image mount",
        );
        assert_enoent(mnt.join("old/x"));
        let e = fx.fails(&["image", "rm", "app"]);
        assert!(
            e.contains("is mounted at") && e.contains(&mnt.display().to_string()),
            "{e}"
        );
        assert_eq!(fx.ok(&["image", "umount", "mnt"]), "");
        assert!(!fuse_mounted(&mnt));
        assert!(fx
            .ok(&["image", "rm", "app"])
            .contains(&format!("Deleted: {app}")));
        // Every kind of write fails with EROFS.
        let r = fx.base().join("w");
        Layer::new(&r)
            .file("f", "data\n")
            .xattr("f", "user.orig", b"1")
            .dir("empty")
            .file("d/x", "x\n");
        fx.import(&["w", "w"]);
        assert_eq!(fx.ok(&["image", "mount", "w", "mnt"]), "");
        assert_every_write_erofs(&mnt);
        fx.ok(&["image", "umount", "mnt"]);
        let e = fx.fails(&["image", "mount", "nosuch", "mnt"]);
        assert_eq!(e, "strata: No such image: nosuch");
        assert!(!fuse_mounted(&mnt));
    });
}

#[test]
fn a_container_run_from_an_images_layer_keeps_the_image() {
    timed("container keeps image", || {
        let fx = Fx::new();
        fx.umoci_images();
        let id = fx.import(&["oci:base", "bb"]);
        let lower = fx.inspect("bb")["GraphDriver"]["Data"]["LowerDir"]
            .as_str()
            .unwrap()
            .to_string();
        let out = fx.ok(&["run", "--name", "c1", &lower, "/bin/busybox", "echo", "hi"]);
        assert_eq!(out, "hi\n");
        let cid = fx.ok(&["ps", "-a", "-q"]).trim().to_string();
        let e = fx.fails(&["image", "rm", "bb"]);
        assert!(
            e.contains(&format!("container {} is using", &cid[..12])),
            "{e}"
        );
        assert_eq!(fx.ok(&["image", "rm", "-f", "bb"]), "Untagged: bb:latest\n");
        assert_eq!(fx.ok(&["image", "prune"]), "Total reclaimed space: 0B\n");
        assert_eq!(fx.layer_dirs().len(), 1, "the container's layer stays");
        fx.ok(&["rm", "c1"]);
        let out = fx.ok(&["image", "prune"]);
        assert!(out.contains(&format!("deleted: {id}")), "{out}");
        assert!(fx.layer_dirs().is_empty());
    });
}

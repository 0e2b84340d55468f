//! `image save`: an OCI layout that umoci and skopeo read, a docker-archive that `image import`
//! and skopeo read, and layer tars whose digests are their diff_ids, umoci's layers too.

use std::fs;

use super::common::*;
use super::fixture::*;

/// sha256 of a file, as `sha256:<hex>`.
fn sha256_file(fx: &Fx, p: &str) -> String {
    let out = fx.tool("sha256sum", &[p]);
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

#[test]
fn a_saved_oci_layout_is_read_by_umoci_and_skopeo_and_imports_as_the_same_image() {
    timed("save oci", || {
        let fx = Fx::new();
        let r = fx.base().join("rootfs");
        fs::create_dir(&r).unwrap();
        fx.populate(&r);
        let id = fx.import(&["rootfs", "bb:1"]);
        fx.ok(&["image", "save", "bb:1", "out"]);
        let index = blob_json(&fx.base().join("out/index.json"));
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "1"
        );
        assert!(fx.base().join("out/oci-layout").is_file());
        // The layer blob is the uncompressed tar whose sha256 is the diff_id.
        let diffs = fx.inspect("bb:1")["RootFS"]["Layers"].clone();
        let d = diffs[0].as_str().unwrap();
        let blob = format!("out/blobs/sha256/{}", d.trim_start_matches("sha256:"));
        assert_eq!(sha256_file(&fx, &blob), d);
        let sk: serde_json::Value =
            serde_json::from_str(&fx.tool("skopeo", &["inspect", "oci:out:1"])).unwrap();
        assert_eq!(sk["Layers"], diffs, "skopeo reads the layer digests");
        fx.tool("umoci", &["unpack", "--image", "out:1", "un"]);
        let motd = lstat(fx.base().join("un/rootfs/etc/motd"));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (motd.uid(), motd.gid(), motd.mode() & 0o7777),
            (1000, 1001, 0o640)
        );
        assert_eq!(
            lgetxattr(&fx.base().join("un/rootfs/etc/motd"), "user.test").unwrap(),
            b"42"
        );
        assert_eq!(readlink(fx.base().join("un/rootfs/bin/sh")), "busybox");
        // Imported into a fresh state root, it is the same image.
        let fresh = Fx::new();
        let out = fx.base().join("out");
        let src = format!("oci:{}:1", out.display());
        assert_eq!(fresh.import(&[&src, "bb:1"]), id);
        // skopeo converts it to a docker-archive, which imports as the same image too.
        fx.tool(
            "skopeo",
            &["copy", "oci:out:1", "docker-archive:sk.tar:bb:1"],
        );
        let sk_tar = fx.base().join("sk.tar");
        let third = Fx::new();
        assert_eq!(third.import(&[sk_tar.to_str().unwrap()]), id);
    });
}

#[test]
fn a_saved_docker_archive_imports_with_its_tag_and_foreign_layers_keep_their_diff_ids() {
    timed("save docker-archive", || {
        let fx = Fx::new();
        let r = fx.base().join("rootfs");
        fs::create_dir(&r).unwrap();
        fx.populate(&r);
        let id = fx.import(&["rootfs", "bb:2"]);
        fx.ok(&[
            "image",
            "save",
            "--format",
            "docker-archive",
            "-o",
            "bb.tar",
            "bb:2",
        ]);
        let listing = fx.tool("tar", &["tf", "bb.tar"]);
        assert!(listing.lines().any(|l| l == "manifest.json"), "{listing}");
        let fresh = Fx::new();
        let tar = fx.base().join("bb.tar");
        assert_eq!(fresh.import(&[tar.to_str().unwrap()]), id);
        assert_eq!(
            fresh.inspect("bb:2")["RepoTags"],
            serde_json::json!(["bb:2"])
        );
        // skopeo reads it as Docker's.
        let sk: serde_json::Value =
            serde_json::from_str(&fx.tool("skopeo", &["inspect", "docker-archive:bb.tar"]))
                .unwrap();
        assert_eq!(sk["Layers"], fx.inspect("bb:2")["RootFS"]["Layers"]);
        // umoci's layers (gzip in its layout) are written again byte for byte from the store
        // and the record of their tars: the same diff_ids, the same image id, no warning.
        fx.umoci_images();
        let app = fx.import(&["oci:app", "app"]);
        let o = fx.strata(&["image", "save", "app", "saved"]);
        assert!(o.ok() && o.stderr.is_empty(), "{}", o.describe());
        let sk: serde_json::Value =
            serde_json::from_str(&fx.tool("skopeo", &["inspect", "oci:saved:latest"])).unwrap();
        assert_eq!(sk["Layers"], fx.inspect("app")["RootFS"]["Layers"]);
        for l in sk["Layers"].as_array().unwrap() {
            let d = l.as_str().unwrap();
            let blob = format!("saved/blobs/sha256/{}", d.trim_start_matches("sha256:"));
            assert_eq!(&sha256_file(&fx, &blob), d);
        }
        let again = Fx::new();
        let src = format!("oci:{}:latest", fx.base().join("saved").display());
        assert_eq!(again.import(&[&src, "app"]), app);
        // A layer's record goes with the layer.
        let split = fx.root().join("layers/split");
        assert_eq!(
            fs::read_dir(&split).unwrap().count(),
            3,
            "bb's layer and app's two"
        );
        fx.ok(&["image", "rm", "app"]);
        assert_eq!(fs::read_dir(&split).unwrap().count(), 1);
    });
}

//! Choosing the manifest in an OCI layout's index (src/image/oci_index.rs): bytes as index.json,
//! optionally followed by a NUL and the REF that `DIR:REF` names. Any input picks a manifest or
//! fails with an error, never a panic; a name picks the one manifest annotated with it; the
//! platform step gives a linux manifest of this machine's architecture, or the only one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::image::{Descriptor, ImageIndex};
use strata_parsers::image::config::go_arch;
use strata_parsers::image::oci_index::{for_this_platform, pick, REF_NAME};

fn name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

fuzz_target!(|data: &[u8]| {
    let (json, want) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], std::str::from_utf8(&data[i + 1..]).ok()),
        None => (data, None),
    };
    let Ok(index) = serde_json::from_slice::<ImageIndex>(json) else {
        return;
    };
    let m = index.manifests();
    assert_eq!(pick(m, None).is_ok(), m.len() == 1);
    let wanted = want
        .into_iter()
        .chain(m.iter().filter_map(name))
        .collect::<Vec<_>>();
    for w in wanted {
        let named = m.iter().filter(|d| name(d) == Some(w)).count();
        match pick(m, Some(w)) {
            Ok(d) => {
                assert_eq!(name(d), Some(w));
                assert_eq!(named, 1);
            }
            Err(_) => assert_ne!(named, 1, "{w:?} names one manifest, not picked"),
        }
    }
    if let Ok(d) = for_this_platform(m) {
        let here = d.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == "linux" && p.architecture().to_string() == go_arch()
        });
        assert!(
            here || m.len() == 1,
            "picked a manifest for another platform"
        );
    }
});

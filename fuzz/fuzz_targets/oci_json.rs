//! The OCI JSON parsers: an image index, a manifest and an image config (with the checks
//! strata adds to it, and what `run` and `inspect` take from it), from any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::image::{ImageIndex, ImageManifest};
use strata_parsers::image::{config, digest};

fuzz_target!(|data: &[u8]| {
    if let Ok(i) = serde_json::from_slice::<ImageIndex>(data) {
        for m in i.manifests() {
            let _ = m.media_type().to_string();
            let _ = digest::sha256_hex(m.digest().as_ref());
        }
    }
    if let Ok(m) = serde_json::from_slice::<ImageManifest>(data) {
        let _ = digest::sha256_hex(m.config().digest().as_ref());
        for l in m.layers() {
            let _ = l.media_type().to_string();
            let _ = digest::sha256_hex(l.digest().as_ref());
        }
    }
    if let Ok(c) = config::parse(data) {
        let _ = config::run_config(&c);
    }
    let _ = config::exec_section(data);
    let _ = digest::Compression::sniff(data);
});

//! Which manifest of an OCI layout's `index.json` to import: the one `DIR:REF` names by its
//! `org.opencontainers.image.ref.name` annotation, or the only one; in a nested image index
//! (a multi-platform image), the one for this machine's platform.

use anyhow::{bail, Result};
use oci_spec::image::Descriptor;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The manifest `want` names, or the only one.
pub fn pick<'a>(manifests: &'a [Descriptor], want: Option<&str>) -> Result<&'a Descriptor> {
    let name = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
    };
    let names: Vec<String> = manifests.iter().filter_map(name).collect();
    match want {
        Some(w) => {
            let found: Vec<&Descriptor> = manifests
                .iter()
                .filter(|d| name(d).as_deref() == Some(w))
                .collect();
            match found.as_slice() {
                [one] => Ok(one),
                [] => bail!(
                    "no manifest named {w:?} in the layout (it has: {})",
                    list(&names)
                ),
                _ => bail!("{} manifests are named {w:?}", found.len()),
            }
        }
        None => match manifests {
            [one] => Ok(one),
            [] => bail!("the layout has no manifest"),
            _ => bail!(
                "the layout has {} manifests: name one as DIR:REF (it has: {})",
                manifests.len(),
                list(&names)
            ),
        },
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "no names".into()
    } else {
        names.join(", ")
    }
}

pub fn for_this_platform(manifests: &[Descriptor]) -> Result<&Descriptor> {
    let arch = super::config::go_arch();
    let here = manifests.iter().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == arch)
    });
    match (here, manifests) {
        (Some(d), _) => Ok(d),
        (None, [one]) => Ok(one),
        _ => bail!("the image index has no manifest for linux/{arch}"),
    }
}

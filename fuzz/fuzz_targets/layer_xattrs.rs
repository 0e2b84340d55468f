//! The readers of what a layer records: a redirect xattr's value (trusted./user.overlay.redirect,
//! any bytes a layer may hold), whiteout names and the private xattr names. Every value is a
//! redirect, none, or an errno, and no accepted redirect can leave the layers' tree.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Component;

use libfuzzer_sys::fuzz_target;
use strata_parsers::union::layer::{self, Redirect};

fuzz_target!(|data: &[u8]| {
    match layer::parse_redirect(data) {
        Ok(Some(Redirect::Abs(p))) => {
            assert!(p.is_relative(), "{p:?}");
            assert!(
                p.components().all(|c| matches!(c, Component::Normal(_))),
                "{p:?}"
            );
        }
        Ok(Some(Redirect::Name(n))) => {
            let b = n.as_bytes();
            assert!(
                !b.contains(&b'/') && b != b"." && b != b".." && !b.is_empty(),
                "{n:?}"
            );
        }
        Ok(None) => {}
        Err(e) => assert!(e == libc::EINVAL || e == libc::EACCES, "{e}"),
    }
    let name = OsStr::from_bytes(data);
    if layer::is_whiteout_name(name) {
        assert!(data.starts_with(layer::WH_PREFIX));
    }
    let _ = layer::whiteout_name(name);
    let _ = layer::is_private_xattr(name);
});

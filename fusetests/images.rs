//! Image import and the layer store, with real images built by umoci and skopeo.

mod common;

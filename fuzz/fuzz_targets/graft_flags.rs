//! The graft flag parsers: `-v`/`--volume`, `--mount`, `--tmpfs` and `--bind` specs, sizes and
//! volume names. Any input is a graft or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_parsers::volume::spec;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = spec::bind(s);
    let _ = spec::volume(s);
    let _ = spec::mount(s);
    let _ = spec::tmpfs(s);
    let _ = spec::size(s);
    let _ = spec::check_volume_name(s);
    // Several specs on one line, ordered as a container's grafts are.
    let grafts: Vec<_> = s.split('\n').filter_map(|l| spec::volume(l).ok()).collect();
    let _ = spec::order(grafts);
});

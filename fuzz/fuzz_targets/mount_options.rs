//! The mount option parser (`-o` groups, as `mount -o` passes them): any input gets options or
//! an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_parsers::daemon::options;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // A NUL separates the -o groups given on one command line.
    let groups: Vec<String> = s.split('\0').map(str::to_owned).collect();
    let _ = options::parse(&groups);
});

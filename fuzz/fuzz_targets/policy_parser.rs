//! Any text given as a policy: an Ok policy or an Err with a message, never a panic; and an Ok
//! policy's normalised form (what `check` prints) is itself a valid policy.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = corpusgate::policy::Policy::from_text(Path::new("fuzz.yaml"), text, String::new()) {
        let normalised = p.to_normalized_yaml();
        corpusgate::policy::Policy::from_text(Path::new("normalised.yaml"), &normalised, String::new())
            .expect("check's output must parse as a policy");
    }
});

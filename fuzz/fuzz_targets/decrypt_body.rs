//! A `POST /v1/decrypt` body, parsed and opened with a fixed session key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wxlogin::fuzzing::decrypt_body(data);
});

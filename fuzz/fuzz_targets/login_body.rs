//! A `POST /v1/login` body, as JSON or as a form.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    wxlogin::fuzzing::login_body(selector % 2 == 1, body);
});

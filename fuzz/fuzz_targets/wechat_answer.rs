//! A code2Session answer from WeChat (or from whatever sits on the path): any status, any body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    // Mostly 200, as WeChat answers everything; sometimes a gateway's status.
    let status = match selector % 8 {
        0 => 502,
        1 => 404,
        2 => u16::from(selector) + 100,
        _ => 200,
    };
    wxlogin::fuzzing::wechat_answer(status, body);
});

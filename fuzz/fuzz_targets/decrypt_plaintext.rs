//! Arbitrary plaintext encrypted as WeChat would, then decrypted: the decryptor must accept
//! exactly this app's JSON objects, and give them back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (iv, plaintext) = data.split_at(16);
    wxlogin::fuzzing::decrypt_plaintext(iv.try_into().expect("16 bytes"), plaintext);
});

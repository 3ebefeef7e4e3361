//! Every JSON request body the API decodes, from arbitrary bytes: a value or an error, never a
//! panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = herald::api::fuzz::decode_request_bodies(data);
});

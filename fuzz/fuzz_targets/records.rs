//! Every stored record type, from arbitrary bytes (a damaged database file): decoded or an
//! error, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = herald::storage::decode_any_record(data);
});

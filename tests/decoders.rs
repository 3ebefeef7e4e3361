//! Bounded fuzzing of the decoders inside `cargo test` (the coverage-guided run is
//! `scripts/fuzz.sh`): seeded mutations of valid request bodies and stored records must decode
//! or be refused, never panic.

use rand::{Rng, SeedableRng};

/// Mutated inputs per corpus entry.
const ROUNDS: usize = 3_000;

fn seeds() -> Vec<Vec<u8>> {
    std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/seeds/request_bodies"
    ))
    .unwrap()
    .map(|e| std::fs::read(e.unwrap().path()).unwrap())
    .collect()
}

fn mutate(rng: &mut impl Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        match rng.gen_range(0..6) {
            0 if !out.is_empty() => {
                let i = rng.gen_range(0..out.len());
                out[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !out.is_empty() => out.truncate(rng.gen_range(0..out.len())),
            2 => {
                let i = rng.gen_range(0..=out.len());
                let junk: Vec<u8> = (0..rng.gen_range(1..8)).map(|_| rng.r#gen()).collect();
                out.splice(i..i, junk);
            }
            3 => {
                // Splice in a token that changes a value's type.
                let tokens: [&[u8]; 8] = [
                    b"null",
                    b"[]",
                    b"{}",
                    b"-1",
                    b"1e999",
                    b"\"\\ud800\"",
                    b"true",
                    b"\"\xff\"",
                ];
                let t = tokens[rng.gen_range(0..tokens.len())];
                let i = rng.gen_range(0..=out.len());
                out.splice(i..i, t.iter().copied());
            }
            4 if out.len() > 2 => {
                let i = rng.gen_range(0..out.len());
                let j = rng.gen_range(i..out.len());
                let copy = out[i..j].to_vec();
                out.splice(j..j, copy);
            }
            _ => out.reverse(),
        }
    }
    out
}

#[test]
fn mutated_request_bodies_never_panic_a_decoder() {
    let seed: u64 = rand::thread_rng().r#gen();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let corpus = seeds();
    let mut accepted = 0;
    let mut total = 0;
    for base in &corpus {
        assert!(
            herald::api::fuzz::decode_request_bodies(base) > 0,
            "each seed is a valid body for something"
        );
        for _ in 0..ROUNDS {
            accepted += herald::api::fuzz::decode_request_bodies(&mutate(&mut rng, base));
            total += 1;
        }
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(herald::api::fuzz::decode_request_bodies(deep.as_bytes()), 0);
    println!("{total} mutated bodies, {accepted} decodings accepted");
}

#[test]
fn damaged_records_never_panic_the_codec() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(rand::thread_rng().r#gen());
    for len in 0..64 {
        for _ in 0..500 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            let _ = herald::storage::decode_any_record(&bytes);
            // Version byte 1 then noise: the path that reaches postcard.
            let mut versioned = vec![1u8];
            versioned.extend_from_slice(&bytes);
            let _ = herald::storage::decode_any_record(&versioned);
        }
    }
}

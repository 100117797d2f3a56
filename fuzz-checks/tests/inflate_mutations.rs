//! Until a fuzzer has run the `inflate` target for long, a bounded,
//! seeded stand-in on stable: every committed seed, mutated a few thousand
//! ways (bytes flipped, cut, repeated, spliced), through the target's
//! checks. Deterministic, so a failure reproduces.

use std::path::Path;

#[test]
fn mutated_seeds_pass_the_inflate_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/inflate");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty());
    let mut rng = fastrand::Rng::with_seed(0x1f1a7e);
    for round in 0..4000 {
        let mut data = seeds[rng.usize(..seeds.len())].clone();
        for _ in 0..rng.usize(1..4) {
            if data.len() < 2 {
                data.push(rng.u8(..));
                continue;
            }
            match rng.u8(..4) {
                0 => {
                    let i = rng.usize(1..data.len());
                    data[i] ^= 1 << rng.u8(..8);
                }
                1 => data.truncate(rng.usize(1..=data.len())),
                2 => {
                    let i = rng.usize(1..data.len());
                    let piece = data[i..].to_vec();
                    data.extend_from_slice(&piece);
                }
                _ => {
                    let other = &seeds[rng.usize(..seeds.len())];
                    if other.len() > 1 {
                        let at = rng.usize(1..other.len());
                        data.extend_from_slice(&other[at..]);
                    }
                }
            }
        }
        data[0] = rng.u8(..);
        eprintln!("round {round}: {} bytes", data.len());
        ringfan_fuzz_checks::inflate::check(&data);
    }
}

//! Payload (un)masking, RFC 6455 §5.3.
//!
//! Every byte a client sends is XORed with a 4-byte key, so the server must
//! touch every payload byte once. This is the hottest loop on the receive
//! path, hence hand-written SIMD with runtime dispatch: the binary is built
//! for baseline x86-64 and picks AVX-512 or AVX2 on the machine it runs on.
//!
//! All functions take a `phase`: the offset, modulo 4, of `buf[0]` within
//! the frame's payload. It lets a payload that arrives in several pieces be
//! unmasked piece by piece, in place, as each piece lands.

use std::sync::OnceLock;

/// Signature shared by every implementation: XOR `buf` with `mask`, where
/// `buf[0]` is payload byte number `phase` (mod 4).
pub type MaskFn = fn(&mut [u8], [u8; 4], usize);

/// The key rotated so that `buf[0]` lines up with key byte `phase % 4`.
#[inline]
fn rotate(mask: [u8; 4], phase: usize) -> [u8; 4] {
    let m = u32::from_ne_bytes(mask);
    // Byte order in memory is what matters: on little endian, shifting
    // right moves later key bytes to the front.
    let r = if cfg!(target_endian = "little") {
        m.rotate_right(8 * (phase as u32 & 3))
    } else {
        m.rotate_left(8 * (phase as u32 & 3))
    };
    r.to_ne_bytes()
}

/// The byte-at-a-time definition from the RFC; the oracle for every other
/// implementation and the baseline in the benches.
pub fn apply_mask_reference(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[(i + phase) & 3];
    }
}

/// Portable fallback: eight bytes per step with a u64 key. LLVM turns the
/// loop into SSE2 on x86-64 and NEON on aarch64.
pub fn apply_mask_word(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    let m = rotate(mask, phase);
    let word = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    // The tail starts at a multiple of 8 from buf[0], so the key lines up.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn apply_mask_avx2(buf: &mut [u8], mask: [u8; 4], phase: usize) {
        let m = super::rotate(mask, phase);
        let key32 = i32::from_ne_bytes(m);
        let key = _mm256_set1_epi32(key32);
        let len = buf.len();
        let ptr = buf.as_mut_ptr();
        let mut i = 0;
        // Four vectors per iteration keeps the load/store ports busy.
        while i + 128 <= len {
            // SAFETY: i + 128 <= len, so all four 32-byte unaligned
            // accesses stay inside `buf`, which we borrow mutably.
            unsafe {
                let p = ptr.add(i) as *mut __m256i;
                let a = _mm256_loadu_si256(p);
                let b = _mm256_loadu_si256(p.add(1));
                let c = _mm256_loadu_si256(p.add(2));
                let d = _mm256_loadu_si256(p.add(3));
                _mm256_storeu_si256(p, _mm256_xor_si256(a, key));
                _mm256_storeu_si256(p.add(1), _mm256_xor_si256(b, key));
                _mm256_storeu_si256(p.add(2), _mm256_xor_si256(c, key));
                _mm256_storeu_si256(p.add(3), _mm256_xor_si256(d, key));
            }
            i += 128;
        }
        while i + 32 <= len {
            // SAFETY: i + 32 <= len keeps the 32-byte access inside `buf`.
            unsafe {
                let p = ptr.add(i) as *mut __m256i;
                _mm256_storeu_si256(p, _mm256_xor_si256(_mm256_loadu_si256(p), key));
            }
            i += 32;
        }
        // i is a multiple of 32, hence of 4: the key phase is unchanged.
        super::apply_mask_word(&mut buf[i..], m, 0);
    }

    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW (masked byte stores).
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn apply_mask_avx512(buf: &mut [u8], mask: [u8; 4], phase: usize) {
        let m = super::rotate(mask, phase);
        let key = _mm512_set1_epi32(i32::from_ne_bytes(m));
        let len = buf.len();
        let ptr = buf.as_mut_ptr();
        // len >= 64 with a partial last vector: load the last 64 bytes
        // now, before any store, and write them back XORed at the end. The
        // bytes it shares with the last full vector get the same value
        // twice. A plain store instead of a masked one: a later load of
        // these bytes (UTF-8 validation) can be forwarded from it.
        let overlap_tail = if len >= 64 && !len.is_multiple_of(64) {
            // SAFETY: len >= 64, so len - 64 .. len is inside `buf`.
            Some(unsafe { _mm512_loadu_si512(ptr.add(len - 64) as *const __m512i) })
        } else {
            None
        };
        let mut i = 0;
        while i + 256 <= len {
            // SAFETY: i + 256 <= len, so the four 64-byte unaligned
            // accesses stay inside `buf`.
            unsafe {
                let p = ptr.add(i) as *mut __m512i;
                let a = _mm512_loadu_si512(p);
                let b = _mm512_loadu_si512(p.add(1));
                let c = _mm512_loadu_si512(p.add(2));
                let d = _mm512_loadu_si512(p.add(3));
                _mm512_storeu_si512(p, _mm512_xor_si512(a, key));
                _mm512_storeu_si512(p.add(1), _mm512_xor_si512(b, key));
                _mm512_storeu_si512(p.add(2), _mm512_xor_si512(c, key));
                _mm512_storeu_si512(p.add(3), _mm512_xor_si512(d, key));
            }
            i += 256;
        }
        while i + 64 <= len {
            // SAFETY: i + 64 <= len keeps the 64-byte access inside `buf`.
            unsafe {
                let p = ptr.add(i) as *mut __m512i;
                _mm512_storeu_si512(p, _mm512_xor_si512(_mm512_loadu_si512(p), key));
            }
            i += 64;
        }
        if let Some(t) = overlap_tail {
            let kt = _mm512_set1_epi32(i32::from_ne_bytes(super::rotate(m, len & 3)));
            // SAFETY: as for the load above.
            unsafe {
                _mm512_storeu_si512(ptr.add(len - 64) as *mut __m512i, _mm512_xor_si512(t, kt))
            };
            return;
        }
        let rest = len - i;
        if rest > 0 {
            // A masked load/store touches only the `rest` low lanes, so a
            // short tail (and a short message, the common case for market
            // data) costs one vector op instead of a scalar loop.
            let k: __mmask64 = (1u64 << rest) - 1; // rest < 64
                                                   // SAFETY: lanes outside `k` are neither read nor written (and
                                                   // masked-off lanes never fault), so only buf[i..len] is touched.
            unsafe {
                let p = ptr.add(i) as *mut i8;
                let v = _mm512_maskz_loadu_epi8(k, p);
                _mm512_mask_storeu_epi8(p, k, _mm512_xor_si512(v, key));
            }
        }
    }
}

/// Each implementation this CPU can run, with its name, fastest last. For
/// tests and benches that must exercise every path, not only the chosen one.
pub fn implementations() -> Vec<(&'static str, MaskFn)> {
    #[allow(unused_mut)]
    let mut v: Vec<(&'static str, MaskFn)> = vec![
        ("reference", apply_mask_reference),
        ("word", apply_mask_word),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            v.push(("avx2", avx2));
        }
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            v.push(("avx512", avx512));
        }
    }
    v
}

#[cfg(target_arch = "x86_64")]
fn avx2(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    // SAFETY: only handed out by `implementations`/`select` after
    // `is_x86_feature_detected!("avx2")` returned true.
    unsafe { x86::apply_mask_avx2(buf, mask, phase) }
}

#[cfg(target_arch = "x86_64")]
fn avx512(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    // SAFETY: only handed out after AVX-512F and AVX-512BW were detected.
    unsafe { x86::apply_mask_avx512(buf, mask, phase) }
}

/// The implementation chosen for this CPU, detected once.
pub fn selected() -> (&'static str, MaskFn) {
    static CHOSEN: OnceLock<(&'static str, MaskFn)> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        if std::env::var_os("RINGFAN_MASK_PORTABLE").is_some() {
            return ("word", apply_mask_word as MaskFn);
        }
        implementations()
            .pop()
            .unwrap_or(("word", apply_mask_word as MaskFn))
    })
}

/// XOR `buf` with `mask` in place; `buf[0]` is payload byte `phase` (mod 4).
/// Masking and unmasking are the same operation.
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    // Below one vector the call overhead of dispatch is not worth it.
    if buf.len() < 16 {
        apply_mask_reference(buf, mask, phase);
    } else {
        (selected().1)(buf, mask, phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length 0..=4096, every phase, every alignment within a 64-byte
    /// line, for every implementation this CPU has, against the reference.
    #[test]
    fn all_implementations_match_reference_exhaustively() {
        let mask = [0x3a, 0xc5, 0x91, 0x07];
        let mut src = vec![0u8; 4096 + 64];
        fastrand::Rng::with_seed(7).fill(&mut src);
        let impls = implementations();
        assert!(impls.len() >= 2);
        let mut want = vec![0u8; src.len()];
        let mut got = vec![0u8; src.len()];
        for len in 0..=4096usize {
            for phase in 0..4 {
                // Alignments: every offset for short buffers where the tail
                // handling dominates; a spread of them above.
                let aligns: &[usize] = if len <= 300 {
                    &[0, 1, 2, 3, 5, 7, 8, 13, 16, 31, 32, 33, 48, 63]
                } else {
                    &[0, 1, 3, 7, 31, 63]
                };
                for &al in aligns {
                    want[..].copy_from_slice(&src);
                    apply_mask_reference(&mut want[al..al + len], mask, phase);
                    for (name, f) in &impls[1..] {
                        got[..].copy_from_slice(&src);
                        f(&mut got[al..al + len], mask, phase);
                        assert!(
                            got == want,
                            "{name} differs: len {len} phase {phase} align {al}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_alignment_for_each_phase() {
        let mask = [1, 2, 4, 8];
        for (name, f) in implementations() {
            for al in 0..64 {
                for phase in 0..8 {
                    let mut buf = vec![0u8; 64 + 700];
                    f(&mut buf[al..al + 700], mask, phase);
                    for (i, &b) in buf[al..al + 700].iter().enumerate() {
                        assert_eq!(b, mask[(i + phase) % 4], "{name} al {al} phase {phase}");
                    }
                    assert!(buf[..al].iter().all(|&b| b == 0), "{name} wrote before");
                    assert!(
                        buf[al + 700..].iter().all(|&b| b == 0),
                        "{name} wrote after"
                    );
                }
            }
        }
    }

    #[test]
    fn piecewise_unmask_equals_whole() {
        let mask = [0xde, 0xad, 0xbe, 0xef];
        let mut whole: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut pieces = whole.clone();
        apply_mask(&mut whole, mask, 0);
        let mut off = 0;
        for step in [1usize, 2, 3, 5, 17, 64, 100, 250, 558] {
            apply_mask(&mut pieces[off..off + step], mask, off);
            off += step;
        }
        assert_eq!(off, 1000);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn masking_twice_is_identity() {
        let orig: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut buf = orig.clone();
        apply_mask(&mut buf, [9, 8, 7, 6], 3);
        assert_ne!(buf, orig);
        apply_mask(&mut buf, [9, 8, 7, 6], 3);
        assert_eq!(buf, orig);
    }

    #[test]
    fn selects_fastest_available() {
        let (name, _) = selected();
        let last = implementations().pop().map(|(n, _)| n);
        if std::env::var_os("RINGFAN_MASK_PORTABLE").is_none() {
            assert_eq!(Some(name), last);
        }
    }
}

//! The validating JSON scanner behind the fast path: skips one value and
//! says where it ends, or `None` when the bytes are not JSON *or* fall
//! outside the subset it vouches for without serde_json. SWAR helpers (a
//! word of eight bytes at a time) for strings and digits.

/// `v` is exactly one JSON value of the subset we vouch for, with no
/// surrounding whitespace.
#[inline]
pub(super) fn whole_value(v: &[u8]) -> bool {
    if let Some(end) = skip_flat_object(v) {
        return end == v.len();
    }
    matches!(v.first(), Some(&c) if !is_ws(c)) && skip_strict(v, 0) == Some(v.len())
}

/// All eight bytes of the word are ASCII digits.
#[inline]
pub(super) fn all_digits(w: u64) -> bool {
    const NIBBLE: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    w & NIBBLE == THREES && w.wrapping_add(ONES * 6) & NIBBLE == THREES
}

#[inline(always)]
pub(super) fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// The byte at `i`, or 0 past the end. A zero byte is invalid wherever the
/// scanner looks (outside strings it is no token; inside, a raw control
/// character), so running off the end takes the same "not JSON" branch as a
/// bad byte, without a check of its own.
#[inline(always)]
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The eight bytes at `i` as a little-endian word, if there are eight.
#[inline(always)]
fn word(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..)
        .and_then(<[u8]>::first_chunk::<8>)
        .map(|w| u64::from_le_bytes(*w))
}

#[inline(always)]
pub(super) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while is_ws(at(b, i)) {
        i += 1;
    }
    i
}

/// Deeper data is left to serde_json (whose own limit is 128 levels for the
/// whole message).
const MAX_DEPTH: u32 = 64;
/// Longer numbers are left to serde_json, which rejects values that round to
/// infinity (a 310-digit integer does).
const MAX_NUMBER_LEN: usize = 300;

/// Validating skip over one JSON value starting at `b[i]` (leading
/// whitespace allowed); returns the index just past it. `None` when the
/// bytes are not JSON *or* fall outside the subset we can vouch for without
/// serde_json: exponents, `\uD800`–`\uDFFF` escapes, numbers over
/// [`MAX_NUMBER_LEN`] bytes, nesting over [`MAX_DEPTH`].
///
/// Iterative, with the kinds of the open containers as bits of a `u64`, so
/// hostile nesting costs no stack.
fn skip_strict(b: &[u8], mut i: usize) -> Option<usize> {
    let mut objects: u64 = 0; // bit d: the container at depth d+1 is an object
    let mut depth: u32 = 0;
    'value: loop {
        i = skip_ws(b, i);
        match at(b, i) {
            b'"' => i = skip_string(b, i + 1)?,
            b'-' | b'0'..=b'9' => i = skip_number(b, i)?,
            open @ (b'{' | b'[') => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let obj = open == b'{';
                objects = (objects & !(1 << depth)) | (u64::from(obj) << depth);
                depth += 1;
                i = skip_ws(b, i + 1);
                match at(b, i) {
                    b'}' if obj => {
                        depth -= 1;
                        i += 1;
                    }
                    b']' if !obj => {
                        depth -= 1;
                        i += 1;
                    }
                    b'"' if obj => {
                        i = skip_key(b, i + 1)?;
                        continue 'value;
                    }
                    _ if obj => return None,
                    _ => continue 'value,
                }
            }
            b't' => i = skip_literal(b, i, b"true")?,
            b'f' => i = skip_literal(b, i, b"false")?,
            b'n' => i = skip_literal(b, i, b"null")?,
            _ => return None,
        }
        // After a value: close containers until the next element starts.
        loop {
            if depth == 0 {
                return Some(i);
            }
            i = skip_ws(b, i);
            let obj = (objects >> (depth - 1)) & 1 != 0;
            match at(b, i) {
                b',' => {
                    i = skip_ws(b, i + 1);
                    if obj {
                        if at(b, i) != b'"' {
                            return None;
                        }
                        i = skip_key(b, i + 1)?;
                    }
                    continue 'value;
                }
                b'}' if obj => {
                    depth -= 1;
                    i += 1;
                }
                b']' if !obj => {
                    depth -= 1;
                    i += 1;
                }
                _ => return None,
            }
        }
    }
}

/// The common case of [`skip_strict`], several times faster: a compact
/// object whose values are strings, numbers and literals (every payload this
/// generator and the feed simulator publish). `None` on anything else —
/// whitespace, nesting, or a value outside the subset — and the caller
/// falls back to [`skip_strict`].
#[inline(always)]
fn skip_flat_object(b: &[u8]) -> Option<usize> {
    if at(b, 0) != b'{' {
        return None;
    }
    if at(b, 1) == b'}' {
        return Some(2);
    }
    let mut i = 1;
    loop {
        if at(b, i) != b'"' {
            return None;
        }
        i = skip_string(b, i + 1)?;
        if at(b, i) != b':' {
            return None;
        }
        i += 1;
        i = match at(b, i) {
            b'"' => skip_string(b, i + 1)?,
            b'-' | b'0'..=b'9' => skip_number(b, i)?,
            b't' => skip_literal(b, i, b"true")?,
            b'f' => skip_literal(b, i, b"false")?,
            b'n' => skip_literal(b, i, b"null")?,
            _ => return None,
        };
        match at(b, i) {
            b',' => i += 1,
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// From just after a key's opening quote: the key, whitespace, the colon;
/// returns the index after the colon.
#[inline(always)]
fn skip_key(b: &[u8], i: usize) -> Option<usize> {
    let j = skip_ws(b, skip_string(b, i)?);
    (at(b, j) == b':').then_some(j + 1)
}

#[inline(always)]
fn skip_literal(b: &[u8], i: usize, lit: &[u8]) -> Option<usize> {
    (b.get(i..i + lit.len())? == lit).then_some(i + lit.len())
}

#[inline(always)]
fn skip_number(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + usize::from(at(b, start) == b'-');
    match at(b, i) {
        b'0' => i += 1,
        b'1'..=b'9' => i = skip_digits(b, i + 1),
        _ => return None,
    }
    if at(b, i) == b'.' {
        let j = skip_digits(b, i + 1);
        if j == i + 1 {
            return None;
        }
        i = j;
    }
    if matches!(at(b, i), b'e' | b'E') || i - start > MAX_NUMBER_LEN {
        return None;
    }
    Some(i)
}

#[inline(always)]
fn skip_digits(b: &[u8], mut i: usize) -> usize {
    while word(b, i).is_some_and(all_digits) {
        i += 8;
    }
    while at(b, i).is_ascii_digit() {
        i += 1;
    }
    i
}

pub(super) const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit of the byte) the bytes of the little-endian word that are
/// `"`, `\` or control characters. These has-zero / has-less-than bit tricks
/// can also flag a byte *above* a true hit, never below one, so the lowest
/// flag is exact (and a zero mask means none).
#[inline(always)]
fn attention(w: u64) -> u64 {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = has_zero(w ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control
}

/// Index of the first `"`, `\` or control byte in `b[j..]`, or `b.len()`.
/// ORs the bytes it passes (and perhaps a few after) into `seen`, so the
/// caller can tell from `seen & HIGH` whether a UTF-8 check is needed.
///
/// Two words (sixteen bytes) a step with one branch: portable, no `unsafe`,
/// about as fast per byte as serde_json's own string skipping. String bytes
/// are cheap next to the per-message cost at the sizes where the delivery
/// rate matters.
#[inline(always)]
pub(super) fn find_special(b: &[u8], mut j: usize, seen: &mut u64) -> usize {
    while let Some((w0, rest)) = b.get(j..).and_then(<[u8]>::split_first_chunk::<8>) {
        let w0 = u64::from_le_bytes(*w0);
        let m0 = attention(w0);
        *seen |= w0;
        if m0 != 0 {
            return j + (m0.trailing_zeros() / 8) as usize;
        }
        let Some((w1, _)) = rest.split_first_chunk::<8>() else {
            j += 8;
            break;
        };
        let w1 = u64::from_le_bytes(*w1);
        let m1 = attention(w1);
        *seen |= w1;
        if m1 != 0 {
            return j + 8 + (m1.trailing_zeros() / 8) as usize;
        }
        j += 16;
    }
    loop {
        let c = at(b, j);
        if c == b'"' || c == b'\\' || c < 0x20 {
            return j; // at the end, `at` gave 0 and j == b.len()
        }
        *seen |= u64::from(c);
        j += 1;
    }
}

/// From just after a string's opening quote; returns the index after the
/// closing quote. Non-ASCII strings are checked as UTF-8 once at the end,
/// as serde_json would.
#[inline(always)]
fn skip_string(b: &[u8], start: usize) -> Option<usize> {
    let mut j = start;
    let mut seen = 0u64;
    loop {
        j = find_special(b, j, &mut seen);
        match at(b, j) {
            b'"' => break,
            b'\\' => j = skip_escape(b, j)?,
            _ => return None, // a raw control character, or the end
        }
    }
    if seen & HIGH != 0 {
        std::str::from_utf8(b.get(start..j)?).ok()?;
    }
    Some(j + 1)
}

/// An escape at `b[j]` (the backslash); returns the index after it.
/// Surrogate escapes are serde_json's call (pairing rules).
#[inline(always)]
fn skip_escape(b: &[u8], j: usize) -> Option<usize> {
    match at(b, j + 1) {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(j + 2),
        b'u' => {
            let mut cp = 0u32;
            for &c in b.get(j + 2..j + 6)? {
                cp = cp * 16 + char::from(c).to_digit(16)?;
            }
            (!(0xD800..=0xDFFF).contains(&cp)).then_some(j + 6)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn swar_matches_bytewise(
            bytes in prop::array::uniform8(prop_oneof![
                Just(b'"'), Just(b'\\'), 0u8..0x21, any::<u8>(), 0x80u8..=0xff
            ])
        ) {
            let w = u64::from_le_bytes(bytes);
            let first = bytes.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(attention(w) != 0, first.is_some());
            prop_assert_eq!(first.unwrap_or(8), (attention(w).trailing_zeros() / 8) as usize);
            // And through the 16/8/1-byte stepping at every offset.
            let mut long = vec![b'a'; 21];
            long.extend_from_slice(&bytes);
            long.extend_from_slice(b"bcdefghijklmnopqrstu");
            for start in 0..long.len() {
                let naive = long[start..]
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                    .map_or(long.len(), |k| start + k);
                prop_assert_eq!(find_special(&long, start, &mut 0), naive);
            }
        }
    }
}

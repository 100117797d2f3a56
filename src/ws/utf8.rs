//! Incremental UTF-8 validation for text messages (RFC 6455 §8.1).
//!
//! A text message may arrive in many fragments, and each fragment in many
//! reads; a code point may straddle any of those boundaries. We validate each
//! piece as it lands with `simdutf8` and carry at most the 3 bytes of an
//! unfinished code point forward, so an invalid message fails at its first
//! bad byte instead of after the whole message was buffered.

use simdutf8::compat::from_utf8;

/// Invalid UTF-8 was seen (close code 1007).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: u8,
}

/// Length of the sequence a lead byte starts, or None if it cannot lead.
fn seq_len(lead: u8) -> Option<usize> {
    match lead {
        0x00..=0x7f => Some(1),
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

impl Utf8Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no partial code point is pending.
    pub fn is_clean(&self) -> bool {
        self.carry_len == 0
    }

    pub fn reset(&mut self) {
        self.carry_len = 0;
    }

    /// Validate the next piece of the message.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carry_len > 0 {
            let have = self.carry_len as usize;
            let need = seq_len(self.carry[0]).ok_or(InvalidUtf8)?;
            let take = (need - have).min(data.len());
            self.carry[have..have + take].copy_from_slice(&data[..take]);
            let filled = have + take;
            data = &data[take..];
            match from_utf8(&self.carry[..filled]) {
                Ok(_) => self.carry_len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                // Still incomplete: only possible when `data` ran out.
                Err(_) => {
                    self.carry_len = filled as u8;
                    return Ok(());
                }
            }
        }
        match from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                // A prefix of a valid sequence ends the piece: keep it.
                let tail = &data[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// The message ended: a pending partial code point is an error.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let clean = self.is_clean();
        self.reset();
        if clean {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

/// Whole-buffer validation, for payloads that arrived complete.
#[inline]
pub fn validate(data: &[u8]) -> Result<(), InvalidUtf8> {
    simdutf8::basic::from_utf8(data)
        .map(|_| ())
        .map_err(|_| InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split_validate(data: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &c in cuts {
            let c = c.clamp(start, data.len());
            v.feed(&data[start..c])?;
            start = c;
        }
        v.feed(&data[start..])?;
        v.finish()
    }

    #[test]
    fn code_point_split_at_every_byte() {
        let s = "a€𝄞ü\u{10FFFF}z".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(split_validate(s, &[i, j]), Ok(()), "cuts {i} {j}");
            }
        }
    }

    #[test]
    fn fails_at_first_bad_piece_not_at_end() {
        let mut v = Utf8Validator::new();
        v.feed("κόσμε".as_bytes()).unwrap();
        // 0xed 0xa0 0x80 is a UTF-16 surrogate: invalid as soon as the
        // second byte is seen, before the message ends.
        v.feed(&[0xce, 0xbc, 0xed]).unwrap();
        assert_eq!(v.feed(&[0xa0]), Err(InvalidUtf8));
    }

    #[test]
    fn truncated_message_is_invalid() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xf0, 0x9f, 0x98]).unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
        // finish() leaves the validator ready for the next message.
        v.feed(b"ok").unwrap();
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn invalid_lead_and_overlong() {
        assert_eq!(split_validate(&[0xc0, 0x80], &[1]), Err(InvalidUtf8));
        assert_eq!(split_validate(&[0xff], &[]), Err(InvalidUtf8));
        assert_eq!(
            split_validate(&[0xf4, 0x90, 0x80, 0x80], &[2]),
            Err(InvalidUtf8)
        );
        assert_eq!(split_validate(&[0x80], &[0]), Err(InvalidUtf8));
    }

    proptest! {
        #[test]
        fn incremental_agrees_with_std(data in proptest::collection::vec(any::<u8>(), 0..64),
                                       cuts in proptest::collection::vec(0usize..64, 0..6),
                                       mostly_valid in any::<bool>()) {
            let data = if mostly_valid {
                String::from_utf8_lossy(&data).into_owned().into_bytes()
            } else {
                data
            };
            let mut cuts = cuts;
            cuts.sort_unstable();
            let want = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(split_validate(&data, &cuts).is_ok(), want);
        }
    }
}

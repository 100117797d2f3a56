//! Topic names and subscription patterns (protocol.md, "Topics").
//!
//! A topic is dot-separated tokens, each 1..64 bytes of `[A-Za-z0-9_\-:@]`,
//! at most 255 bytes and 16 tokens. A pattern may also use `*` (exactly one
//! token) and, as its last token, `>` (one or more tokens).

pub const MAX_TOPIC_LEN: usize = 255;
pub const MAX_TOKENS: usize = 16;
pub const MAX_TOKEN_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    Empty,
    TooLong,
    TooManyTokens,
    EmptyToken,
    TokenTooLong,
    BadChar,
    /// A wildcard where only a plain topic is allowed (publishing).
    Wildcard,
    /// `>` not as the last token.
    GtNotLast,
}

impl TopicError {
    pub fn message(self) -> &'static str {
        match self {
            Self::Empty => "topic is empty",
            Self::TooLong => "topic is longer than 255 bytes",
            Self::TooManyTokens => "topic has more than 16 tokens",
            Self::EmptyToken => "topic has an empty token",
            Self::TokenTooLong => "topic token is longer than 64 bytes",
            Self::BadChar => "topic tokens may hold only A-Z a-z 0-9 _ - : @",
            Self::Wildcard => "cannot publish to a wildcard topic",
            Self::GtNotLast => "'>' may only be the last token",
        }
    }
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for TopicError {}

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'@')
}

/// Validate a topic or pattern; `wildcards` allows `*` and `>`.
fn check(s: &str, wildcards: bool) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    let mut n = 0;
    let mut tokens = s.split('.').peekable();
    while let Some(t) = tokens.next() {
        n += 1;
        if n > MAX_TOKENS {
            return Err(TopicError::TooManyTokens);
        }
        match t {
            "" => return Err(TopicError::EmptyToken),
            "*" | ">" if !wildcards => return Err(TopicError::Wildcard),
            "*" => {}
            ">" if tokens.peek().is_some() => return Err(TopicError::GtNotLast),
            ">" => {}
            _ if t.len() > MAX_TOKEN_LEN => return Err(TopicError::TokenTooLong),
            _ if !t.bytes().all(token_char) => return Err(TopicError::BadChar),
            _ => {}
        }
    }
    Ok(())
}

/// A topic one may publish to.
pub fn check_topic(s: &str) -> Result<(), TopicError> {
    check(s, true).and_then(|()| {
        if is_pattern(s) {
            Err(TopicError::Wildcard)
        } else {
            Ok(())
        }
    })
}

/// A subscription: a topic or a pattern with wildcards.
pub fn check_pattern(s: &str) -> Result<(), TopicError> {
    check(s, true)
}

/// The first of `topics` that is not a valid pattern, and why: a `sub` or
/// `unsub` answers with it (see `wire::bad_topic`).
pub fn first_bad_pattern<S: AsRef<str>>(topics: &[S]) -> Option<(&str, TopicError)> {
    topics
        .iter()
        .find_map(|t| check_pattern(t.as_ref()).err().map(|e| (t.as_ref(), e)))
}

/// Does the (valid) subscription contain a wildcard token?
pub fn is_pattern(s: &str) -> bool {
    s.split('.').any(|t| t == "*" || t == ">")
}

/// Does (valid) `pattern` match (valid) `topic`? The reference definition;
/// the trie must agree with it.
pub fn matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('.');
    let mut t = topic.split('.');
    loop {
        match (p.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_topics() {
        for t in ["md.NASDAQ.AAPL", "a", "a-b_c:d@e.F9", &"x".repeat(64)] {
            assert_eq!(check_topic(t), Ok(()), "{t}");
        }
        let sixteen = vec!["a"; 16].join(".");
        assert_eq!(check_topic(&sixteen), Ok(()));
        let long = vec!["abcdefghijklmno"; 16].join("."); // 255 bytes
        assert_eq!(long.len(), 255);
        assert_eq!(check_topic(&long), Ok(()));
    }

    #[test]
    fn invalid_topics() {
        assert_eq!(check_topic(""), Err(TopicError::Empty));
        assert_eq!(check_topic("a..b"), Err(TopicError::EmptyToken));
        assert_eq!(check_topic(".a"), Err(TopicError::EmptyToken));
        assert_eq!(check_topic("a."), Err(TopicError::EmptyToken));
        assert_eq!(check_topic("a b"), Err(TopicError::BadChar));
        assert_eq!(check_topic("a/b"), Err(TopicError::BadChar));
        assert_eq!(check_topic("é"), Err(TopicError::BadChar));
        assert_eq!(check_topic(&"x".repeat(65)), Err(TopicError::TokenTooLong));
        assert_eq!(
            check_topic(&vec!["a"; 17].join(".")),
            Err(TopicError::TooManyTokens)
        );
        assert_eq!(check_topic(&"x".repeat(256)), Err(TopicError::TooLong));
        assert_eq!(check_topic("md.*.AAPL"), Err(TopicError::Wildcard));
        assert_eq!(check_topic("md.>"), Err(TopicError::Wildcard));
        assert_eq!(check_topic("a*"), Err(TopicError::BadChar));
    }

    #[test]
    fn patterns() {
        for p in ["md.*.MSFT", "md.>", ">", "*", "*.*", "a.*.>"] {
            assert_eq!(check_pattern(p), Ok(()), "{p}");
            assert!(is_pattern(p));
        }
        assert_eq!(check_pattern("a.>.b"), Err(TopicError::GtNotLast));
        assert_eq!(check_pattern("a.**"), Err(TopicError::BadChar));
        assert!(!is_pattern("md.NASDAQ.AAPL"));
    }

    #[test]
    fn first_bad_pattern_names_it() {
        assert_eq!(first_bad_pattern(&["a.*", "b", ">"]), None);
        assert_eq!(
            first_bad_pattern(&["a.*", "a..b", "c d"]),
            Some(("a..b", TopicError::EmptyToken))
        );
    }

    #[test]
    fn matching() {
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(!matches("a.*", "a"));
        assert!(matches("a.>", "a.b"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "x.y"));
        assert!(matches("*.b.*", "a.b.c"));
        assert!(!matches("*.b.*", "a.c.c"));
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.bb"));
    }
}

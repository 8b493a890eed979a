//! What a tag may be: checked by the client before anything is sent, and by the tag engine on
//! what it receives.

/// A tag that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid tag {tag:?}: {why}")]
pub struct InvalidTag {
    /// The tag as given.
    pub tag: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 1_024;

/// Checks that `tag` is non-empty text without control characters (newlines, tabs, NUL) and
/// at most [`MAX_TAG_BYTES`] long.
pub fn validate_tag(tag: &str) -> Result<(), InvalidTag> {
    let why = if tag.is_empty() {
        "a tag must not be empty"
    } else if tag.chars().any(char::is_control) {
        "a tag must not contain control characters (newlines, tabs, NUL)"
    } else if tag.len() > MAX_TAG_BYTES {
        "a tag must be at most 1024 bytes"
    } else {
        return Ok(());
    };
    Err(InvalidTag {
        tag: tag.to_string(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_non_empty_printable_and_bounded() {
        assert!(validate_tag("customer:42").is_ok());
        assert!(validate_tag("größe ✓").is_ok());
        for bad in ["", "a\nb", "tab\there", "nul\0", &"x".repeat(MAX_TAG_BYTES + 1)] {
            assert!(validate_tag(bad).is_err(), "{bad:?} must be rejected");
        }
        let error = validate_tag("").expect_err("empty");
        assert!(error.to_string().contains("must not be empty"), "{error}");
    }
}

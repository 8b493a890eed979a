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

/// Most tags one instance can have. Every tag is an index set its instance is written to on
/// each save, so the bound keeps one save's work in Redis small.
pub const MAX_TAGS_PER_INSTANCE: usize = 100;

/// Most bytes the tags of one instance can take together.
pub const MAX_TAGS_TOTAL_BYTES: usize = 16 * 1_024;

/// Tags that one instance cannot have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTags {
    /// One of them is not a valid tag.
    #[error(transparent)]
    Tag(#[from] InvalidTag),
    /// There are too many.
    #[error("an instance can have at most {MAX_TAGS_PER_INSTANCE} tags, not {0}")]
    TooMany(usize),
    /// They are too long together.
    #[error("an instance's tags can take at most {MAX_TAGS_TOTAL_BYTES} bytes together, not {0}")]
    TooLarge(usize),
}

/// Checks the tags of one instance: each one ([`validate_tag`]), at most
/// [`MAX_TAGS_PER_INSTANCE`] of them, of at most [`MAX_TAGS_TOTAL_BYTES`] together.
pub fn validate_tags<T: AsRef<str>>(tags: &[T]) -> Result<(), InvalidTags> {
    if tags.len() > MAX_TAGS_PER_INSTANCE {
        return Err(InvalidTags::TooMany(tags.len()));
    }
    let bytes: usize = tags.iter().map(|t| t.as_ref().len()).sum();
    if bytes > MAX_TAGS_TOTAL_BYTES {
        return Err(InvalidTags::TooLarge(bytes));
    }
    tags.iter().try_for_each(|t| validate_tag(t.as_ref()))?;
    Ok(())
}

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

    #[test]
    fn an_instance_has_a_bounded_number_and_size_of_tags() {
        let most: Vec<String> = (0..MAX_TAGS_PER_INSTANCE).map(|i| format!("t{i}")).collect();
        assert_eq!(validate_tags(&most), Ok(()));
        let one_more: Vec<String> = (0..=MAX_TAGS_PER_INSTANCE).map(|i| format!("t{i}")).collect();
        assert_eq!(
            validate_tags(&one_more),
            Err(InvalidTags::TooMany(MAX_TAGS_PER_INSTANCE + 1))
        );
        let long = "x".repeat(MAX_TAG_BYTES);
        let large = vec![long.as_str(); MAX_TAGS_TOTAL_BYTES / MAX_TAG_BYTES + 1];
        let error = validate_tags(&large).expect_err("too large");
        assert!(error.to_string().contains("bytes together"), "{error}");
        assert!(matches!(validate_tags(&["ok", "bad\n"]), Err(InvalidTags::Tag(_))));
        assert_eq!(validate_tags::<&str>(&[]), Ok(()));
    }
}

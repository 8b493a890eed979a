//! The wire codec. Bytes are `[codec id][bincode 2 body]`; the codec id lets the encoding be
//! replaced later without a flag day. Decoding untrusted bytes never panics and never allocates
//! more than [`MAX_MESSAGE_BYTES`].

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Codec id of bincode 2 (standard configuration, varint integers).
pub const CODEC_BINCODE2: u8 = 1;

/// Largest message (and largest single allocation while decoding) accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

/// Bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The input was empty.
    #[error("empty message")]
    Empty,
    /// The first byte names a codec this build does not know.
    #[error("unknown codec id {0}")]
    UnknownCodec(u8),
    /// The body is not a valid encoding of the expected type.
    #[error("malformed {type_name}: {reason}")]
    Malformed {
        /// The type that was expected.
        type_name: &'static str,
        /// What the decoder reported.
        reason: String,
    },
    /// Bytes were left after a complete value.
    #[error("{extra} trailing bytes after {type_name}")]
    TrailingBytes {
        /// The type that was decoded.
        type_name: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// The value could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Encodes a value for the wire.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![CODEC_BINCODE2];
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a value from the wire, rejecting unknown codecs, malformed and trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let type_name = std::any::type_name::<T>();
    let (&codec, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if codec != CODEC_BINCODE2 {
        return Err(CodecError::UnknownCodec(codec));
    }
    let (value, read) = bincode::serde::decode_from_slice(body, config()).map_err(|e| CodecError::Malformed {
        type_name,
        reason: e.to_string(),
    })?;
    if read != body.len() {
        return Err(CodecError::TrailingBytes {
            type_name,
            extra: body.len() - read,
        });
    }
    Ok(value)
}

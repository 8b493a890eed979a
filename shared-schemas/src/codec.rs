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
    /// The envelope was written by a newer build whose layouts this one may misread.
    #[error("written by schema version {written}, this reader knows ≤ {known}")]
    NewerSchema {
        /// The version the writer put in the envelope.
        written: u16,
        /// The newest version this build reads.
        known: u16,
    },
}

/// Encodes a value for the wire.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![CODEC_BINCODE2];
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a value from the wire, rejecting unknown codecs, malformed and trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read, body) = decode_start::<T>(bytes)?;
    if read != body.len() {
        let type_name = std::any::type_name::<T>();
        return Err(CodecError::TrailingBytes {
            type_name,
            extra: body.len() - read,
        });
    }
    Ok(value)
}

/// Decodes the value the wire bytes start with, ignoring what follows it (the first fields of
/// a message, read before deciding how to read the rest).
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_start::<T>(bytes).map(|(value, _, _)| value)
}

/// The value at the start of the body, how many body bytes it took, and the body.
fn decode_start<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize, &[u8]), CodecError> {
    let (&codec, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if codec != CODEC_BINCODE2 {
        return Err(CodecError::UnknownCodec(codec));
    }
    let (value, read) = bincode::serde::decode_from_slice(body, config()).map_err(|e| CodecError::Malformed {
        type_name: std::any::type_name::<T>(),
        reason: e.to_string(),
    })?;
    Ok((value, read, body))
}

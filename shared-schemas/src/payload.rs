//! User data on the wire: arguments, results, errors and signal values travel as a
//! [`Payload`] so that tools can read them without the user's Rust types.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How a payload's bytes are encoded. Append-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PayloadCodec {
    /// UTF-8 JSON (the default).
    Json,
}

/// Encoded user data.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Encoding of `bytes`.
    pub codec: PayloadCodec,
    /// The encoded value.
    pub bytes: Vec<u8>,
}

/// A payload could not be encoded or decoded into the requested type.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The value could not be encoded as JSON.
    #[error("cannot encode value as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// The bytes are not a valid JSON form of the requested type.
    #[error("cannot decode JSON payload into {type_name}: {source}")]
    Decode {
        /// The Rust type that was requested.
        type_name: &'static str,
        /// Why decoding failed.
        #[source]
        source: serde_json::Error,
    },
}

impl Payload {
    /// Encodes a value as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        serde_json::to_vec(value)
            .map(|bytes| Self {
                codec: PayloadCodec::Json,
                bytes,
            })
            .map_err(PayloadError::Encode)
    }

    /// The JSON `null` payload (unit results).
    pub fn null() -> Self {
        Self {
            codec: PayloadCodec::Json,
            bytes: b"null".to_vec(),
        }
    }

    /// Decodes the payload into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        match self.codec {
            PayloadCodec::Json => serde_json::from_slice(&self.bytes).map_err(|source| PayloadError::Decode {
                type_name: std::any::type_name::<T>(),
                source,
            }),
        }
    }

    /// A short human-readable rendering (for logs, status output and error messages).
    pub fn preview(&self, max: usize) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        if text.chars().count() <= max {
            text.into_owned()
        } else {
            let cut: String = text.chars().take(max).collect();
            format!("{cut}…")
        }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({:?}, {})", self.codec, self.preview(120))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_type_errors() {
        let p = Payload::json(&(1u32, "two")).expect("encodes");
        let back: (u32, String) = p.decode().expect("decodes");
        assert_eq!(back, (1, "two".to_string()));
        let err = p.decode::<bool>().expect_err("wrong type");
        assert!(err.to_string().contains("bool"), "{err}");
    }
}

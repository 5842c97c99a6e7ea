//! The one error type of the core: small, `Copy`, and free of secret values.

use core::fmt;

/// Everything that can go wrong in the core. Errors never carry share values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A caller buffer (or the scratch) is too small; `required` is the size needed, in the
    /// buffer's own unit (words for `u64` buffers).
    BufferTooSmall {
        /// Size that would have been enough.
        required: usize,
    },
    /// Buffer lengths do not agree with each other or with the stated shape.
    ShapeMismatch,
    /// A parameter is out of its documented range (a shift ≥ 64, an unknown party id, ...).
    InvalidArgument,
    /// A peer sent bytes that do not parse, or a message of the wrong length.
    Malformed,
    /// The peer closed the connection.
    PeerClosed,
    /// A read or write took longer than the configured timeout.
    Timeout,
    /// Any other transport failure.
    Io,
    /// The protocol was driven in a way it does not support (for example asking the
    /// dealer of 2PC-Dealer to open a value).
    Protocol,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BufferTooSmall { required } => write!(f, "buffer too small: {required} needed"),
            Error::ShapeMismatch => f.write_str("buffer lengths do not match the shape"),
            Error::InvalidArgument => f.write_str("argument out of range"),
            Error::Malformed => f.write_str("malformed message from peer"),
            Error::PeerClosed => f.write_str("peer closed the connection"),
            Error::Timeout => f.write_str("timed out waiting for peer"),
            Error::Io => f.write_str("transport error"),
            Error::Protocol => f.write_str("operation not supported by this party or protocol"),
        }
    }
}

impl core::error::Error for Error {}

/// Result alias used throughout the core.
pub type Result<T> = core::result::Result<T, Error>;

/// `Ok(())` if `cond`, else [`Error::ShapeMismatch`].
#[inline]
pub fn ensure_shape(cond: bool) -> Result<()> {
    if cond { Ok(()) } else { Err(Error::ShapeMismatch) }
}

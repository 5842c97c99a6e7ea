//! Errors of the std layer: the core's error, or an IO failure with its context.

use marill_core::Error as CoreError;

/// Errors of marill-std.
#[derive(Debug, thiserror::Error)]
pub enum StdError {
    /// An error from the core (protocol, shape, transport as seen by the core).
    #[error("{0}")]
    Core(#[from] CoreError),
    /// An IO error while setting up a transport.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A peer's handshake did not match this party's expectations.
    #[error("handshake: {0}")]
    Handshake(String),
    /// A split-model file was refused.
    #[error("{0}")]
    Format(#[from] marill_core::format::FormatError),
    /// A model could not be written or its metadata decoded.
    #[error("model file: {0}")]
    Model(String),
    /// A model file's architecture metadata has a value the runtime cannot run: the field
    /// and why (checked when the file is opened, before any party computes).
    #[error("model file: metadata {field}: {reason}")]
    Arch {
        /// The metadata field (`ModelMeta`'s name for it).
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A tensor the architecture needs is not in the file.
    #[error("model file: missing tensor {name}")]
    MissingTensor {
        /// The tensor's name.
        name: String,
    },
    /// A tensor's shape is not what the architecture says.
    #[error("model file: tensor {name}: shape {got:?}, expected {want:?}")]
    TensorShape {
        /// The tensor's name.
        name: String,
        /// Its dimensions in the file.
        got: Vec<u64>,
        /// What the architecture needs.
        want: Vec<u64>,
    },
    /// A token id at or beyond the vocabulary (a prompt's, or one fed back).
    #[error("token {token} outside the vocabulary of {vocab}")]
    TokenOutsideVocab {
        /// The id.
        token: u64,
        /// The vocabulary's size.
        vocab: usize,
    },
    /// A session's request the model cannot serve: `prompt` tokens and `new` to generate
    /// against the longest sequence allowed (`max_seq`), or an empty prompt.
    #[error("request of {prompt} + {new} tokens outside 1..={max_seq}")]
    RequestLength {
        /// Prompt tokens.
        prompt: usize,
        /// Tokens to generate.
        new: usize,
        /// The longest sequence this party serves.
        max_seq: usize,
    },
    /// A `tokenizer.json` (or a GGUF's vocabulary) that cannot be read, or text it cannot
    /// encode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A postcard section (metadata, recipe) that does not encode or decode.
    #[error("model file: {what}: {reason}")]
    Codec {
        /// `encode` or `decode`.
        what: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// A split-model file the writer refuses to build (a name, a rank, a duplicate).
    #[error("model file writer: {0}")]
    Writer(String),
    /// A command line that cannot run: a flag unknown to the command, a missing flag or a
    /// bad value (the `marill` binary exits with 2).
    #[error("{0}")]
    Usage(String),
    /// An error at one party of an in-process session, with the stage it happened in.
    #[error("party {party} in {stage}: {source}")]
    AtParty {
        /// The party.
        party: usize,
        /// What it was doing (`set-up`, `the prefill`, …).
        stage: &'static str,
        /// The error.
        source: Box<StdError>,
    },
    /// A party thread panicked (a bug; reported instead of propagating the panic).
    #[error("party {0} panicked")]
    Panicked(usize),
}

impl StdError {
    /// An IO error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StdError::Io { context: context.into(), source }
    }
}

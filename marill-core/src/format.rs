//! Zero-copy parsing of the split-model file (`format-spec/SPEC.md` is normative; this
//! module implements it, and the writer in `marill-std` uses these same types).
//!
//! [`ModelFile::parse`] validates the whole container — header, section table, every tensor
//! index — with checked arithmetic and returns views that borrow the input: tensor data is
//! never copied. It never panics and never allocates; every rejection is a typed
//! [`FormatError`].

use core::fmt;

use sha2::{Digest, Sha256};
use zerocopy::little_endian::{U32, U64};

/// Little-endian `u16` as stored in the file.
pub type U16Le = zerocopy::little_endian::U16;
/// Little-endian `u32` as stored in the file.
pub type U32Le = U32;
/// Little-endian `u64` as stored in the file.
pub type U64Le = U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The file's first eight bytes.
pub const MAGIC: [u8; 8] = *b"MARILLSM";
/// The major version this reader understands; other majors are refused.
pub const VERSION_MAJOR: u16 = 1;
/// The minor version this writer produces; readers accept any minor of their major.
pub const VERSION_MINOR: u16 = 0;
/// Size of the header.
pub const HEADER_LEN: usize = 96;
/// Largest `header_len` a reader accepts (room for later minors to grow the header).
pub const MAX_HEADER_LEN: usize = 4096;
/// Size of one section table entry.
pub const SECTION_ENTRY_LEN: usize = 48;
/// Most sections a file may have.
pub const MAX_SECTIONS: usize = 256;
/// Size of one tensor index entry.
pub const TENSOR_ENTRY_LEN: usize = 128;
/// Alignment of tensor data sections and of every tensor within them.
pub const DATA_ALIGN: u64 = 64;
/// Longest tensor name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Most dimensions of a tensor.
pub const MAX_RANK: usize = 4;
/// Domain separation of the public digest.
pub const DIGEST_DOMAIN: &[u8] = b"marill split-model public part v1\0";

/// Section flag: the section is private (server only).
pub const FLAG_PRIVATE: u32 = 1;
/// Section flag: a reader that does not know the kind must refuse the file.
pub const FLAG_REQUIRED: u32 = 2;

/// Section kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// Model metadata, postcard-encoded (see the spec).
    Metadata,
    /// The tokenizer, as Hugging Face `tokenizer.json` bytes.
    Tokenizer,
    /// An array of tensor index entries describing tensors in a linked data section.
    TensorIndex,
    /// Raw tensor bytes, 64-byte aligned.
    TensorData,
    /// The fine-tuning recipe, postcard-encoded.
    Recipe,
    /// A kind this reader does not know (ignored unless flagged required).
    Unknown(u32),
}

impl SectionKind {
    /// The kind from its code.
    pub fn from_code(c: u32) -> Self {
        match c {
            1 => Self::Metadata,
            2 => Self::Tokenizer,
            3 => Self::TensorIndex,
            4 => Self::TensorData,
            5 => Self::Recipe,
            other => Self::Unknown(other),
        }
    }
    /// The kind's code.
    pub fn code(self) -> u32 {
        match self {
            Self::Metadata => 1,
            Self::Tokenizer => 2,
            Self::TensorIndex => 3,
            Self::TensorData => 4,
            Self::Recipe => 5,
            Self::Unknown(c) => c,
        }
    }
    /// A short name for tools.
    pub fn name(self) -> &'static str {
        match self {
            Self::Metadata => "metadata",
            Self::Tokenizer => "tokenizer",
            Self::TensorIndex => "tensor-index",
            Self::TensorData => "tensor-data",
            Self::Recipe => "recipe",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// Element types of tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    Bf16,
    /// Ring elements (two's complement, little-endian `u64`), e.g. fixed-point weights.
    U64,
}

impl DType {
    /// The dtype from its code.
    pub fn from_code(c: u32) -> Option<Self> {
        match c {
            0 => Some(Self::F32),
            1 => Some(Self::F16),
            2 => Some(Self::Bf16),
            3 => Some(Self::U64),
            _ => None,
        }
    }
    /// The dtype's code.
    pub fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Bf16 => 2,
            Self::U64 => 3,
        }
    }
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
            Self::U64 => 8,
        }
    }
    /// A short name for tools.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::U64 => "u64",
        }
    }
}

/// Why a file was refused. `index` fields name the section (or tensor) at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// Shorter than a header, or than `header_len`.
    TooShort,
    /// Not a split-model file.
    BadMagic,
    /// A major version this reader does not implement.
    UnsupportedVersion {
        /// The file's major version.
        major: u16,
    },
    /// `header_len` below 96 or above 4096.
    BadHeaderLen,
    /// `file_len` in the header differs from the input's length.
    LengthMismatch,
    /// The section table does not lie inside the file after the header, or is misaligned.
    BadSectionTable,
    /// More than 256 sections.
    TooManySections,
    /// A section extends past the end of the file or into the header or the table.
    SectionOutOfBounds {
        /// Section number.
        index: u32,
    },
    /// Two sections share bytes.
    SectionsOverlap {
        /// The first section.
        a: u32,
        /// The second section.
        b: u32,
    },
    /// A tensor data section that does not start on a 64-byte boundary.
    Misaligned {
        /// Section number.
        index: u32,
    },
    /// A section of unknown kind flagged as required.
    UnknownRequiredSection {
        /// Section number.
        index: u32,
    },
    /// Reserved bytes or unknown flags that are not zero.
    NonZeroReserved,
    /// A tensor index whose length is not a multiple of 128, or whose link is not a
    /// tensor data section of the same visibility.
    BadTensorIndex {
        /// Section number.
        index: u32,
    },
    /// A tensor entry is malformed: unknown dtype, rank above 4, non-zero unused
    /// dimensions, or a name that is empty, not UTF-8, or not NUL-padded.
    BadTensor {
        /// Tensor number within its index.
        tensor: u32,
    },
    /// dtype size × number of elements ≠ byte length (or overflows).
    SizeMismatch {
        /// Tensor number within its index.
        tensor: u32,
    },
    /// A tensor lies outside its data section or is not 64-byte aligned.
    TensorOutOfBounds {
        /// Tensor number within its index.
        tensor: u32,
    },
    /// Tensor names in an index are not strictly ascending (so not unique either).
    NamesNotSorted {
        /// Tensor number within its index.
        tensor: u32,
    },
    /// Two tensors of one data section share bytes.
    TensorsOverlap {
        /// Tensor number within its index.
        tensor: u32,
    },
    /// The public digest in the header does not match the public sections.
    DigestMismatch,
}

impl FormatError {
    /// A stable name for the error (used by the test vectors).
    pub fn name(&self) -> &'static str {
        match self {
            Self::TooShort => "TooShort",
            Self::BadMagic => "BadMagic",
            Self::UnsupportedVersion { .. } => "UnsupportedVersion",
            Self::BadHeaderLen => "BadHeaderLen",
            Self::LengthMismatch => "LengthMismatch",
            Self::BadSectionTable => "BadSectionTable",
            Self::TooManySections => "TooManySections",
            Self::SectionOutOfBounds { .. } => "SectionOutOfBounds",
            Self::SectionsOverlap { .. } => "SectionsOverlap",
            Self::Misaligned { .. } => "Misaligned",
            Self::UnknownRequiredSection { .. } => "UnknownRequiredSection",
            Self::NonZeroReserved => "NonZeroReserved",
            Self::BadTensorIndex { .. } => "BadTensorIndex",
            Self::BadTensor { .. } => "BadTensor",
            Self::SizeMismatch { .. } => "SizeMismatch",
            Self::TensorOutOfBounds { .. } => "TensorOutOfBounds",
            Self::NamesNotSorted { .. } => "NamesNotSorted",
            Self::TensorsOverlap { .. } => "TensorsOverlap",
            Self::DigestMismatch => "DigestMismatch",
        }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid split-model file: {self:?}")
    }
}

impl core::error::Error for FormatError {}

/// The header, as it lies in the file (all integers little-endian).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// Major version.
    pub version_major: zerocopy::little_endian::U16,
    /// Minor version.
    pub version_minor: zerocopy::little_endian::U16,
    /// Bytes of header, ≥ 96.
    pub header_len: U32,
    /// Entries in the section table.
    pub section_count: U32,
    /// Reserved, zero.
    pub flags: U32,
    /// Offset of the section table.
    pub section_table_offset: U64,
    /// Length of the whole file.
    pub file_len: U64,
    /// SHA-256 of the public part (see [`public_digest`]).
    pub public_digest: [u8; 32],
    /// Reserved, zero.
    pub reserved: [u8; 24],
}

/// One section table entry.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawSection {
    /// [`SectionKind`] code.
    pub kind: U32,
    /// [`FLAG_PRIVATE`], [`FLAG_REQUIRED`].
    pub flags: U32,
    /// Start of the section in the file.
    pub offset: U64,
    /// Length in bytes.
    pub length: U64,
    /// For a tensor index: the number of its data section; otherwise `u32::MAX`.
    pub link: U32,
    /// Reserved, zero.
    pub reserved: U32,
    /// A label, NUL-padded UTF-8 (informational).
    pub name: [u8; 16],
}

/// One tensor index entry.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawTensor {
    /// NUL-padded UTF-8 name.
    pub name: [u8; 64],
    /// [`DType`] code.
    pub dtype: U32,
    /// Number of dimensions, 0..=4.
    pub rank: U32,
    /// Dimensions; unused ones are zero.
    pub shape: [U64; 4],
    /// Offset within the linked data section, a multiple of 64.
    pub offset: U64,
    /// Length in bytes.
    pub length: U64,
    /// Reserved, zero.
    pub reserved: [u8; 8],
}

const _: () = assert!(core::mem::size_of::<RawHeader>() == HEADER_LEN);
const _: () = assert!(core::mem::size_of::<RawSection>() == SECTION_ENTRY_LEN);
const _: () = assert!(core::mem::size_of::<RawTensor>() == TENSOR_ENTRY_LEN);

/// A validated section.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    /// Its number in the table.
    pub index: u32,
    /// Its kind.
    pub kind: SectionKind,
    /// Whether it is private.
    pub private: bool,
    /// Its label.
    pub name: &'a str,
    /// Its bytes (borrowed from the file).
    pub bytes: &'a [u8],
    /// Offset in the file.
    pub offset: u64,
    /// For a tensor index, its data section.
    pub link: Option<u32>,
    /// The raw entry.
    pub raw: &'a RawSection,
}

/// A validated tensor: a view into the file.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its dtype.
    pub dtype: DType,
    /// Its dimensions (`rank` of them are used).
    pub shape: [u64; MAX_RANK],
    /// Number of dimensions.
    pub rank: usize,
    /// Whether it lies in a private section.
    pub private: bool,
    /// Its bytes, borrowed from the file (64-byte aligned relative to the file start).
    pub bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The used dimensions.
    pub fn dims(&self) -> &[u64] {
        &self.shape[..self.rank]
    }
    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.dims().iter().product()
    }
    /// The data as `f32`, without copying (`None` for another dtype, or if the bytes are
    /// not 4-byte aligned in memory — they are whenever the file starts page-aligned, as a
    /// memory map does).
    pub fn as_f32(&self) -> Option<&'a [f32]> {
        (self.dtype == DType::F32).then(|| bytemuck::try_cast_slice(self.bytes).ok()).flatten()
    }
    /// The data as `f16`, without copying.
    pub fn as_f16(&self) -> Option<&'a [half::f16]> {
        (self.dtype == DType::F16).then(|| bytemuck::try_cast_slice(self.bytes).ok()).flatten()
    }
    /// The data as `bf16`, without copying.
    pub fn as_bf16(&self) -> Option<&'a [half::bf16]> {
        (self.dtype == DType::Bf16).then(|| bytemuck::try_cast_slice(self.bytes).ok()).flatten()
    }
    /// The data as ring elements, without copying.
    pub fn as_u64(&self) -> Option<&'a [u64]> {
        (self.dtype == DType::U64).then(|| bytemuck::try_cast_slice(self.bytes).ok()).flatten()
    }
    /// Element `i` converted to `f32` (any float dtype; `None` out of range or for `u64`).
    pub fn get_f32(&self, i: usize) -> Option<f32> {
        let sz = self.dtype.size() as usize;
        let b = self.bytes.get(i.checked_mul(sz)?..i.checked_mul(sz)?.checked_add(sz)?)?;
        match self.dtype {
            DType::F32 => Some(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            DType::F16 => Some(half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            DType::Bf16 => Some(half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            DType::U64 => None,
        }
    }
}

/// A validated split-model file, borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct ModelFile<'a> {
    bytes: &'a [u8],
    header: &'a RawHeader,
    table: &'a [RawSection],
}

fn str_field(b: &[u8]) -> Option<&str> {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    if b[end..].iter().any(|c| *c != 0) {
        return None;
    }
    core::str::from_utf8(&b[..end]).ok()
}

fn range(off: u64, len: u64, total: usize) -> Option<core::ops::Range<usize>> {
    let end = off.checked_add(len)?;
    if end > total as u64 {
        return None;
    }
    Some(usize::try_from(off).ok()?..usize::try_from(end).ok()?)
}

impl<'a> ModelFile<'a> {
    /// Validate `bytes` as a split-model file (everything but the digest; see
    /// [`verify_digest`](Self::verify_digest)).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let (header, _) = RawHeader::ref_from_prefix(bytes).map_err(|_| FormatError::TooShort)?;
        if header.magic != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let major = header.version_major.get();
        if major != VERSION_MAJOR {
            return Err(FormatError::UnsupportedVersion { major });
        }
        let header_len = header.header_len.get() as usize;
        if !(HEADER_LEN..=MAX_HEADER_LEN).contains(&header_len) {
            return Err(FormatError::BadHeaderLen);
        }
        if bytes.len() < header_len {
            return Err(FormatError::TooShort);
        }
        if header.file_len.get() != bytes.len() as u64 {
            return Err(FormatError::LengthMismatch);
        }
        if header.flags.get() != 0 || header.reserved.iter().any(|b| *b != 0) {
            return Err(FormatError::NonZeroReserved);
        }
        let count = header.section_count.get() as usize;
        if count > MAX_SECTIONS {
            return Err(FormatError::TooManySections);
        }
        let table_off = header.section_table_offset.get();
        let table_len = (count * SECTION_ENTRY_LEN) as u64;
        let table_range = range(table_off, table_len, bytes.len()).ok_or(FormatError::BadSectionTable)?;
        if table_off < header_len as u64 || !table_off.is_multiple_of(8) {
            return Err(FormatError::BadSectionTable);
        }
        let table =
            <[RawSection]>::ref_from_bytes(&bytes[table_range.clone()]).map_err(|_| FormatError::BadSectionTable)?;
        let file = Self { bytes, header, table };
        // Sections: bounds, alignment, kinds, pairwise overlap (≤ 256 sections).
        for (i, s) in table.iter().enumerate() {
            let index = i as u32;
            let r =
                range(s.offset.get(), s.length.get(), bytes.len()).ok_or(FormatError::SectionOutOfBounds { index })?;
            let overlaps_meta =
                r.start < header_len || (r.start < table_range.end && table_range.start < r.end && !r.is_empty());
            if overlaps_meta {
                return Err(FormatError::SectionOutOfBounds { index });
            }
            if s.reserved.get() != 0
                || s.flags.get() & !(FLAG_PRIVATE | FLAG_REQUIRED) != 0
                || str_field(&s.name).is_none()
            {
                return Err(FormatError::NonZeroReserved);
            }
            let kind = SectionKind::from_code(s.kind.get());
            if matches!(kind, SectionKind::Unknown(_)) && s.flags.get() & FLAG_REQUIRED != 0 {
                return Err(FormatError::UnknownRequiredSection { index });
            }
            if kind == SectionKind::TensorData && !s.offset.get().is_multiple_of(DATA_ALIGN) {
                return Err(FormatError::Misaligned { index });
            }
            for (j, t) in table.iter().enumerate().take(i) {
                let (a0, a1) = (s.offset.get(), s.offset.get() + s.length.get());
                let (b0, b1) = (t.offset.get(), t.offset.get() + t.length.get());
                if a0 < b1 && b0 < a1 {
                    return Err(FormatError::SectionsOverlap { a: j as u32, b: index });
                }
            }
        }
        // Tensor indexes.
        for s in file.sections() {
            if s.kind == SectionKind::TensorIndex {
                file.check_index(&s)?;
            }
        }
        Ok(file)
    }

    fn check_index(&self, s: &Section<'a>) -> Result<(), FormatError> {
        let bad = FormatError::BadTensorIndex { index: s.index };
        if !s.bytes.len().is_multiple_of(TENSOR_ENTRY_LEN) {
            return Err(bad);
        }
        let data = s.link.and_then(|l| self.section(l)).ok_or(bad)?;
        if data.kind != SectionKind::TensorData || data.private != s.private {
            return Err(bad);
        }
        let entries = <[RawTensor]>::ref_from_bytes(s.bytes).map_err(|_| bad)?;
        let mut prev: Option<&str> = None;
        let mut prev_end = 0u64;
        for (k, t) in entries.iter().enumerate() {
            let tensor = k as u32;
            let v = Self::tensor_view(t, data.bytes, s.private).map_err(|e| match e {
                Some(FormatError::SizeMismatch { .. }) => FormatError::SizeMismatch { tensor },
                Some(FormatError::TensorOutOfBounds { .. }) => FormatError::TensorOutOfBounds { tensor },
                Some(other) => other,
                None => FormatError::BadTensor { tensor },
            })?;
            let name = v.name;
            if prev.is_some_and(|p| p >= name) {
                return Err(FormatError::NamesNotSorted { tensor });
            }
            prev = Some(name);
            // Overlap: writers lay tensors out in name order; require increasing offsets.
            let off = t.offset.get();
            if k > 0 && off < prev_end {
                return Err(FormatError::TensorsOverlap { tensor });
            }
            prev_end = off + t.length.get();
        }
        Ok(())
    }

    /// Decode one entry; `Err(None)` is a malformed entry whose number the caller knows.
    fn tensor_view(t: &'a RawTensor, data: &'a [u8], private: bool) -> Result<TensorView<'a>, Option<FormatError>> {
        let name = str_field(&t.name).filter(|n| !n.is_empty()).ok_or(None)?;
        let dtype = DType::from_code(t.dtype.get()).ok_or(None)?;
        let rank = t.rank.get() as usize;
        if rank > MAX_RANK || t.reserved.iter().any(|b| *b != 0) {
            return Err(None);
        }
        let mut shape = [0u64; MAX_RANK];
        for (d, s) in shape.iter_mut().zip(&t.shape) {
            *d = s.get();
        }
        if shape[rank..].iter().any(|d| *d != 0) {
            return Err(None);
        }
        let numel = shape[..rank].iter().try_fold(1u64, |a, d| a.checked_mul(*d));
        let want = numel.and_then(|n| n.checked_mul(dtype.size()));
        if want != Some(t.length.get()) {
            return Err(Some(FormatError::SizeMismatch { tensor: u32::MAX }));
        }
        if !t.offset.get().is_multiple_of(DATA_ALIGN) {
            return Err(Some(FormatError::TensorOutOfBounds { tensor: u32::MAX }));
        }
        let r = range(t.offset.get(), t.length.get(), data.len())
            .ok_or(Some(FormatError::TensorOutOfBounds { tensor: u32::MAX }))?;
        Ok(TensorView { name, dtype, shape, rank, private, bytes: &data[r] })
    }

    /// The header.
    pub fn header(&self) -> &'a RawHeader {
        self.header
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Number of sections.
    pub fn section_count(&self) -> usize {
        self.table.len()
    }

    /// Section `i` (bounds were validated by `parse`).
    pub fn section(&self, i: u32) -> Option<Section<'a>> {
        let s = self.table.get(i as usize)?;
        let r = range(s.offset.get(), s.length.get(), self.bytes.len())?;
        let link = s.link.get();
        Some(Section {
            index: i,
            kind: SectionKind::from_code(s.kind.get()),
            private: s.flags.get() & FLAG_PRIVATE != 0,
            name: str_field(&s.name).unwrap_or(""),
            bytes: &self.bytes[r],
            offset: s.offset.get(),
            link: (link != u32::MAX).then_some(link),
            raw: s,
        })
    }

    /// All sections in table order.
    pub fn sections(&self) -> impl Iterator<Item = Section<'a>> + '_ {
        (0..self.table.len() as u32).filter_map(|i| self.section(i))
    }

    /// The first section of `kind` with the given visibility.
    pub fn find_section(&self, kind: SectionKind, private: bool) -> Option<Section<'a>> {
        self.sections().find(|s| s.kind == kind && s.private == private)
    }

    /// Every tensor of every index, in table then name order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'a>> + '_ {
        self.sections().filter(|s| s.kind == SectionKind::TensorIndex).flat_map(move |s| {
            let data = s.link.and_then(|l| self.section(l)).map(|d| d.bytes).unwrap_or(&[]);
            let entries = <[RawTensor]>::ref_from_bytes(s.bytes).unwrap_or(&[]);
            entries.iter().filter_map(move |t| Self::tensor_view(t, data, s.private).ok())
        })
    }

    /// The tensor called `name` (binary search in each index: names are sorted).
    pub fn tensor(&self, name: &str) -> Option<TensorView<'a>> {
        for s in self.sections().filter(|s| s.kind == SectionKind::TensorIndex) {
            let data = s.link.and_then(|l| self.section(l)).map(|d| d.bytes).unwrap_or(&[]);
            let entries = <[RawTensor]>::ref_from_bytes(s.bytes).unwrap_or(&[]);
            if let Ok(k) = entries.binary_search_by(|t| str_field(&t.name).unwrap_or("").cmp(name)) {
                return Self::tensor_view(&entries[k], data, s.private).ok();
            }
        }
        None
    }

    /// Whether the file holds private sections (a server file) or not (a client file).
    pub fn has_private(&self) -> bool {
        self.sections().any(|s| s.private)
    }

    /// The digest stored in the header.
    pub fn stored_digest(&self) -> [u8; 32] {
        self.header.public_digest
    }

    /// Recompute the public digest and compare it with the header's.
    pub fn verify_digest(&self) -> Result<[u8; 32], FormatError> {
        let d = public_digest(self.sections().filter(|s| !s.private).map(|s| (s.kind.code(), &s.raw.name, s.bytes)));
        if d == self.header.public_digest { Ok(d) } else { Err(FormatError::DigestMismatch) }
    }
}

/// SHA-256 over the public part: the domain string, then for each public section in table
/// order its kind (u32 LE), name (16 bytes), length (u64 LE) and bytes. Section offsets are
/// not hashed, so a client file extracted from a server file has the same digest.
pub fn public_digest<'b>(sections: impl Iterator<Item = (u32, &'b [u8; 16], &'b [u8])>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DIGEST_DOMAIN);
    for (kind, name, bytes) in sections {
        h.update(kind.to_le_bytes());
        h.update(name);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().into()
}

//! CUDA fatbinary containers: the device code an nvcc-built program hands to
//! `__cudaRegisterFatBinary`.
//!
//! Pure parsing over bytes the caller already copied out of the program's memory; no `unsafe`,
//! no I/O, and no panic on any input (malformed containers give a [`FatbinError`]).
//!
//! # Quick start
//! ```no_run
//! use remora_interpose::fatbin::{self, FatbinWrapper};
//! # let wrapper_bytes = [0u8; 24];
//! # let memory = vec![0u8; 64];
//! // `__cudaRegisterFatBinary(wrapper)`: read the 24-byte wrapper, then the 16-byte container
//! // header at `wrapper.data`, then the whole container.
//! let w = FatbinWrapper::parse(&wrapper_bytes)?;
//! let len = fatbin::fatbin_len(&memory[..fatbin::HEADER_LEN])?;
//! let fb = fatbin::parse(&memory[..len])?;
//! if let Some(cubin) = fb.best_cubin(90) {
//!     let layouts = remora_interpose::nvinfo::kernel_params(&cubin.image);
//! }
//! # Ok::<(), fatbin::FatbinError>(())
//! ```
//!
//! # Layout (measured with nvcc 13.0.88; all fields little-endian)
//! A container is a 16-byte header ([`HEADER_LEN`]) followed by entries, each an entry header
//! (64 bytes or longer) immediately followed by its payload; the next entry starts right after
//! the payload (padded to 8 bytes). There is no terminator: the entries end at `header_size +
//! fat_size`.
//!
//! Container header:
//!
//! | off | type | field |
//! |----:|------|-------|
//! | 0 | u32 | magic `0xBA55ED50` |
//! | 4 | u16 | version (1) |
//! | 6 | u16 | header size (16): offset of the first entry |
//! | 8 | u64 | fat size: bytes of entries after the header |
//!
//! Entry header:
//!
//! | off | type | field |
//! |----:|------|-------|
//! | 0 | u16 | kind: 1 PTX, 2 ELF cubin |
//! | 2 | u16 | entry format version (`0x0101`) |
//! | 4 | u32 | entry header size: 64; 80 for PTX (options descriptor), 96/136 with options or `-G` file name, 112 for sm_100+ cubins (compatibility data) |
//! | 8 | u64 | payload size, padded to 8 (the next entry follows it) |
//! | 16 | u32 | compressed size (0 when uncompressed) |
//! | 20 | u32 | offset, inside this header, of an {u32 offset, u32 len} descriptor of the ptxas options (PTX) or compatibility data (sm_100+ cubins); 0 if none |
//! | 24 | u16 | minor version: PTX ISA minor (CUDA 13: 0), or cubin code version minor (8) |
//! | 26 | u16 | major version: PTX ISA major (CUDA 13: 9), or cubin code version major (1) |
//! | 28 | u32 | sm: 90 for sm_90 / compute_90 / sm_90a |
//! | 32 | u32 | offset, inside this header, of the source file name (`-G` only), else 0 |
//! | 36 | u32 | length of that name |
//! | 40 | u64 | flags, see [`flags`] |
//! | 48 | u64 | 0 |
//! | 56 | u64 | uncompressed size (0 when uncompressed) |
//!
//! Compressed payloads (`flags::LZ4`: one raw LZ4 block; `flags::ZSTD`: one zstd frame) occupy
//! the first `compressed size` bytes of the payload and decompress to exactly `uncompressed
//! size` bytes. What nvcc 13 compresses: by default PTX (zstd) but not cubins; `-G` and `-rdc`
//! also the cubin; `-Xfatbin=-compress-all` everything; `--compress-mode=speed` uses LZ4. A
//! decompressed PTX image ends with its NUL terminator.
#![forbid(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

/// Magic of a fatbin container (`data` of the registration wrapper points at one).
pub const FATBIN_MAGIC: u32 = 0xBA55_ED50;
/// Magic of the wrapper `__cudaRegisterFatBinary` receives (`__fatBinC_Wrapper_t`).
pub const WRAPPER_MAGIC: u32 = 0x4662_43B1;
/// Bytes of the container header: what [`fatbin_len`] needs to see.
pub const HEADER_LEN: usize = 16;
/// Bytes of an entry header without its optional trailing data.
pub const ENTRY_HEADER_LEN: usize = 64;
/// Largest image this parser decompresses; a header claiming more is rejected, not allocated.
pub const MAX_IMAGE_LEN: usize = 1 << 30;

/// Entry flag bits (the u64 at entry offset 40). Names for the bits seen in nvcc 13 output;
/// sm_100+ cubins also set `0x100_0000` (meaning unknown; they carry compatibility data).
pub mod flags {
    /// 64-bit device addresses.
    pub const ADDR64: u64 = 0x1;
    /// Built with device debug information (`-G`).
    pub const DEBUG: u64 = 0x2;
    /// Host is Linux.
    pub const HOST_LINUX: u64 = 0x10;
    /// Payload is one raw LZ4 block.
    pub const LZ4: u64 = 0x2000;
    /// Payload is one zstd frame.
    pub const ZSTD: u64 = 0x8000;
    /// Architecture-specific target (`sm_90a`, `compute_90a`).
    pub const ARCH_SPECIFIC: u64 = 0x10_0000;
    /// Family-specific target (`sm_100f`, `compute_100f`).
    pub const FAMILY_SPECIFIC: u64 = 0x20_0000;
}

/// Why a fatbin or its wrapper could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FatbinError {
    /// The buffer ends before the structure it should hold.
    #[error("fatbin truncated: {what} needs {need} bytes, buffer has {have}")]
    Truncated { what: &'static str, need: u64, have: usize },
    /// The container does not start with [`FATBIN_MAGIC`].
    #[error("not a fatbin: magic {0:#010x}, expected {FATBIN_MAGIC:#010x}")]
    BadMagic(u32),
    /// A container version this parser does not know.
    #[error("unsupported fatbin version {0}")]
    UnsupportedVersion(u16),
    /// The container header's size field is below 16 bytes.
    #[error("bad fatbin header size {0}")]
    BadHeaderSize(u16),
    /// The container's size does not fit this machine's address space.
    #[error("fatbin size {0} is too large")]
    TooLarge(u64),
    /// An entry header is inconsistent (sizes, offsets, flags).
    #[error("fatbin entry at offset {offset:#x}: {what}")]
    BadEntry { offset: usize, what: &'static str },
    /// An entry claims a decompressed size above [`MAX_IMAGE_LEN`].
    #[error("fatbin entry at offset {offset:#x}: uncompressed size {size} exceeds the limit")]
    ImageTooLarge { offset: usize, size: u64 },
    /// A compressed payload failed to decompress to its declared size.
    #[error("fatbin entry at offset {offset:#x}: {codec} decompression failed: {reason}")]
    Decompress { offset: usize, codec: &'static str, reason: String },
    /// The registration wrapper does not start with [`WRAPPER_MAGIC`].
    #[error("not a fatbin wrapper: magic {0:#010x}, expected {WRAPPER_MAGIC:#010x}")]
    BadWrapperMagic(u32),
    /// A wrapper version other than 1 (plain) or 2 (`-rdc`, linked).
    #[error("unsupported fatbin wrapper version {0}")]
    UnsupportedWrapperVersion(u32),
}

/// `__fatBinC_Wrapper_t`, the argument of `__cudaRegisterFatBinary`, as read from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatbinWrapper {
    /// [`WRAPPER_MAGIC`].
    pub magic: u32,
    /// 1, or 2 for relocatable device code (`-rdc`).
    pub version: u32,
    /// Address of the fatbin container in the calling process.
    pub data: u64,
    /// Version 1: address of an offline file name (usually 0); version 2: address of an array
    /// of prelinked fatbins.
    pub filename_or_fatbins: u64,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawWrapper {
    magic: U32,
    version: U32,
    data: U64,
    filename_or_fatbins: U64,
}

impl FatbinWrapper {
    /// Bytes of the wrapper in memory (x86-64 / aarch64 layout).
    pub const LEN: usize = 24;

    /// Parse the first [`Self::LEN`] bytes of `bytes`; checks magic and version.
    pub fn parse(bytes: &[u8]) -> Result<Self, FatbinError> {
        let (raw, _) = RawWrapper::ref_from_prefix(bytes).map_err(|_| FatbinError::Truncated {
            what: "wrapper",
            need: Self::LEN as u64,
            have: bytes.len(),
        })?;
        let w = FatbinWrapper {
            magic: raw.magic.get(),
            version: raw.version.get(),
            data: raw.data.get(),
            filename_or_fatbins: raw.filename_or_fatbins.get(),
        };
        if w.magic != WRAPPER_MAGIC {
            return Err(FatbinError::BadWrapperMagic(w.magic));
        }
        if !matches!(w.version, 1 | 2) {
            return Err(FatbinError::UnsupportedWrapperVersion(w.version));
        }
        Ok(w)
    }
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawHeader {
    magic: U32,
    version: U16,
    header_size: U16,
    fat_size: U64,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawEntry {
    kind: U16,
    format: U16,
    header_size: U32,
    payload_size: U64,
    compressed_size: U32,
    options_desc: U32,
    minor: U16,
    major: U16,
    arch: U32,
    name_offset: U32,
    name_len: U32,
    flags: U64,
    reserved: U64,
    uncompressed_size: U64,
}

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryKind {
    /// PTX text (NUL-terminated), JIT-compiled by the driver.
    Ptx,
    /// An ELF cubin for one sm.
    Cubin,
    /// A kind this parser does not interpret; its image is still extracted.
    Other(u16),
}

/// How an entry's payload was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    /// One raw LZ4 block ([`flags::LZ4`]).
    Lz4,
    /// One zstd frame ([`flags::ZSTD`]).
    Zstd,
}

/// One entry of a fatbin, its image decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// The sm (or compute capability of the PTX): 90 for sm_90, compute_90 and sm_90a.
    pub arch: u32,
    /// PTX ISA version (9.0 with CUDA 13) or cubin code version (1.8).
    pub version_major: u16,
    pub version_minor: u16,
    /// Raw flag bits, see [`flags`].
    pub flags: u64,
    pub compression: Compression,
    /// Offset of the entry header inside the container.
    pub offset: usize,
    /// The decompressed image. An uncompressed entry's image is its whole padded payload, so
    /// it may end with up to 7 zero bytes.
    pub image: Vec<u8>,
}

impl Entry {
    /// The PTX source without its NUL terminator, for a PTX entry that is valid UTF-8.
    pub fn ptx_text(&self) -> Option<&str> {
        if self.kind != EntryKind::Ptx {
            return None;
        }
        let end = self.image.iter().position(|&b| b == 0).unwrap_or(self.image.len());
        std::str::from_utf8(&self.image[..end]).ok()
    }

    /// Built for exactly one architecture or family (`sm_90a`, `sm_100f`): not portable to
    /// later sms.
    pub fn is_specific(&self) -> bool {
        self.flags & (flags::ARCH_SPECIFIC | flags::FAMILY_SPECIFIC) != 0
    }
}

/// A parsed fatbin container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatbin {
    /// Container version (1, the only one accepted).
    pub version: u16,
    /// Bytes the container occupies (header + entries); the input may have been longer.
    pub len: usize,
    pub entries: Vec<Entry>,
}

impl Fatbin {
    /// Parse the container at the start of `bytes`; trailing bytes beyond its length are
    /// ignored. Every entry is decompressed.
    pub fn parse(bytes: &[u8]) -> Result<Self, FatbinError> {
        let (first_entry, len) = header(bytes)?;
        let container = bytes.get(..len).ok_or(FatbinError::Truncated {
            what: "container",
            need: len as u64,
            have: bytes.len(),
        })?;
        let mut entries = Vec::new();
        let mut off = first_entry;
        while off < len {
            let (entry, next) = parse_entry(container, off)?;
            entries.push(entry);
            off = next;
        }
        Ok(Fatbin { version: 1, len, entries })
    }

    /// The cubin built for exactly `sm` (e.g. 90), if any.
    pub fn best_cubin(&self, sm: u32) -> Option<&Entry> {
        self.cubins().find(|e| e.arch == sm)
    }

    /// The PTX the driver can JIT for `sm`: the one for the highest compute capability not
    /// above `sm` (arch- or family-specific PTX only for its exact sm), the newest PTX ISA
    /// winning a tie.
    pub fn ptx(&self, sm: u32) -> Option<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::Ptx)
            .filter(|e| if e.is_specific() { e.arch == sm } else { e.arch <= sm })
            .max_by_key(|e| (e.arch, e.version_major, e.version_minor))
    }

    /// All cubin entries, in container order.
    pub fn cubins(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.kind == EntryKind::Cubin)
    }
}

/// Parse the container at the start of `bytes` (see [`Fatbin::parse`]).
pub fn parse(bytes: &[u8]) -> Result<Fatbin, FatbinError> {
    Fatbin::parse(bytes)
}

/// Total bytes of the container whose header starts `bytes`: header size + fat size. Needs only
/// the first [`HEADER_LEN`] bytes, so a caller can learn how much memory to copy.
pub fn fatbin_len(bytes: &[u8]) -> Result<usize, FatbinError> {
    header(bytes).map(|(_, len)| len)
}

fn read_header(bytes: &[u8]) -> Result<&RawHeader, FatbinError> {
    let (h, _) = RawHeader::ref_from_prefix(bytes).map_err(|_| FatbinError::Truncated {
        what: "container header",
        need: HEADER_LEN as u64,
        have: bytes.len(),
    })?;
    Ok(h)
}

/// Checks the container header (magic, version 1, header size); returns (offset of the first
/// entry, total length).
fn header(bytes: &[u8]) -> Result<(usize, usize), FatbinError> {
    let h = read_header(bytes)?;
    if h.magic.get() != FATBIN_MAGIC {
        return Err(FatbinError::BadMagic(h.magic.get()));
    }
    if h.version.get() != 1 {
        return Err(FatbinError::UnsupportedVersion(h.version.get()));
    }
    let header_size = h.header_size.get();
    if usize::from(header_size) < HEADER_LEN {
        return Err(FatbinError::BadHeaderSize(header_size));
    }
    let fat_size = h.fat_size.get();
    let total = fat_size.checked_add(u64::from(header_size)).ok_or(FatbinError::TooLarge(fat_size))?;
    let len = usize::try_from(total).map_err(|_| FatbinError::TooLarge(total))?;
    Ok((usize::from(header_size), len))
}

/// Parses the entry at `off` of `container` (exactly the container's bytes); returns it and
/// the offset of the next entry.
fn parse_entry(container: &[u8], off: usize) -> Result<(Entry, usize), FatbinError> {
    let bad = |what| FatbinError::BadEntry { offset: off, what };
    let rest = &container[off..];
    let (raw, _) = RawEntry::ref_from_prefix(rest).map_err(|_| bad("entry header runs past the container"))?;
    let header_size = usize::try_from(raw.header_size.get()).map_err(|_| bad("entry header size overflows"))?;
    if header_size < ENTRY_HEADER_LEN {
        return Err(bad("entry header size below 64"));
    }
    let payload_size = usize::try_from(raw.payload_size.get()).map_err(|_| bad("payload size overflows"))?;
    let payload_end = header_size.checked_add(payload_size).ok_or(bad("payload size overflows"))?;
    let payload = rest.get(header_size..payload_end).ok_or(bad("payload runs past the container"))?;
    let next = off.checked_add(payload_end).ok_or(bad("payload size overflows"))?;

    let flags = raw.flags.get();
    let compression = match (flags & flags::LZ4 != 0, flags & flags::ZSTD != 0) {
        (false, false) => Compression::None,
        (true, false) => Compression::Lz4,
        (false, true) => Compression::Zstd,
        (true, true) => return Err(bad("both LZ4 and zstd flags set")),
    };
    let image = match compression {
        Compression::None => payload.to_vec(),
        Compression::Lz4 | Compression::Zstd => {
            let csize = usize::try_from(raw.compressed_size.get()).map_err(|_| bad("compressed size overflows"))?;
            let input = payload.get(..csize).ok_or(bad("compressed size exceeds the payload"))?;
            if csize == 0 {
                return Err(bad("compressed entry with compressed size 0"));
            }
            let usize_raw = raw.uncompressed_size.get();
            let ulen = usize::try_from(usize_raw)
                .ok()
                .filter(|&n| n <= MAX_IMAGE_LEN)
                .ok_or(FatbinError::ImageTooLarge { offset: off, size: usize_raw })?;
            if ulen == 0 {
                return Err(bad("compressed entry with uncompressed size 0"));
            }
            decompress(compression, input, ulen).map_err(|(codec, reason)| FatbinError::Decompress {
                offset: off,
                codec,
                reason,
            })?
        }
    };
    let kind = match raw.kind.get() {
        1 => EntryKind::Ptx,
        2 => EntryKind::Cubin,
        k => EntryKind::Other(k),
    };
    let entry = Entry {
        kind,
        arch: raw.arch.get(),
        version_major: raw.major.get(),
        version_minor: raw.minor.get(),
        flags,
        compression,
        offset: off,
        image,
    };
    Ok((entry, next))
}

/// Decompresses `input` to exactly `len` bytes. The decoders are fed untrusted bytes, so a
/// panic inside one is caught and reported like any other failure.
fn decompress(c: Compression, input: &[u8], len: usize) -> Result<Vec<u8>, (&'static str, String)> {
    let codec = if c == Compression::Lz4 { "LZ4" } else { "zstd" };
    let mut out = vec![0u8; len];
    let written = catch_unwind(AssertUnwindSafe(|| match c {
        Compression::Lz4 => lz4_flex::block::decompress_into(input, &mut out).map_err(|e| e.to_string()),
        _ => ruzstd::decoding::FrameDecoder::new().decode_all(input, &mut out).map_err(|e| e.to_string()),
    }))
    .map_err(|_| (codec, "decoder panicked".to_string()))?
    .map_err(|e| (codec, e))?;
    if written != len {
        return Err((codec, format!("decompressed {written} bytes, header says {len}")));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A committed fixture from `tests/fixtures/` (see its README); a missing one fails the test.
    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("fixture {path} is missing ({e}); it is committed, see README.md"))
    }

    /// Every fatbin fixture.
    pub(crate) const FIXTURES: [&str; 8] = [
        "default.fatbin",
        "multi.fatbin",
        "compress_all.fatbin",
        "speed.fatbin",
        "speed_all.fatbin",
        "debug.fatbin",
        "rdc.fatbin",
        "sm120_all.fatbin",
    ];

    type Shape = (EntryKind, u32, Compression);

    fn shape(fb: &Fatbin) -> Vec<Shape> {
        fb.entries.iter().map(|e| (e.kind, e.arch, e.compression)).collect()
    }

    use Compression::{Lz4, Zstd};
    use EntryKind::{Cubin, Ptx};

    #[test]
    fn entries_of_every_variant() {
        let expect: [(&str, &[Shape]); 8] = [
            ("default.fatbin", &[(Cubin, 90, Compression::None), (Ptx, 90, Zstd)]),
            ("multi.fatbin", &[(Cubin, 80, Compression::None), (Cubin, 90, Compression::None), (Ptx, 90, Zstd)]),
            ("compress_all.fatbin", &[(Cubin, 90, Zstd), (Ptx, 90, Zstd)]),
            ("speed.fatbin", &[(Cubin, 90, Compression::None), (Ptx, 90, Lz4)]),
            ("speed_all.fatbin", &[(Cubin, 90, Lz4), (Ptx, 90, Lz4)]),
            ("debug.fatbin", &[(Cubin, 90, Zstd), (Ptx, 90, Zstd)]),
            ("rdc.fatbin", &[(Cubin, 90, Zstd), (Ptx, 90, Zstd)]),
            ("sm120_all.fatbin", &[(Cubin, 120, Zstd), (Ptx, 120, Zstd)]),
        ];
        for (name, want) in expect {
            let bytes = fixture(name);
            let fb = parse(&bytes).unwrap();
            assert_eq!(fb.len, bytes.len(), "{name}");
            assert_eq!(fb.version, 1);
            assert_eq!(shape(&fb), want, "{name}");
            for e in &fb.entries {
                assert_eq!(e.flags & (flags::ADDR64 | flags::HOST_LINUX), flags::ADDR64 | flags::HOST_LINUX, "{name}");
                assert_eq!(e.flags & flags::DEBUG != 0, name == "debug.fatbin", "{name}");
                match e.kind {
                    Cubin => {
                        assert_eq!(&e.image[..4], b"\x7fELF", "{name}");
                        assert_eq!((e.version_major, e.version_minor), (1, 8), "{name}");
                    }
                    _ => {
                        assert_eq!((e.version_major, e.version_minor), (9, 0), "{name}");
                        let text = e.ptx_text().unwrap();
                        assert!(text.contains(".entry mixed("), "{name}");
                        assert!(text.contains(".entry _Z5scaleIdEvPT_S0_i("), "{name}");
                        assert!(text.contains(&format!(".target sm_{}", e.arch)), "{name}");
                    }
                }
            }
        }
    }

    #[test]
    fn compression_does_not_change_images() {
        let plain = parse(&fixture("default.fatbin")).unwrap();
        let cubin = &plain.best_cubin(90).unwrap().image;
        let ptx = plain.ptx(90).unwrap();
        // A compressed PTX image is the text plus its NUL terminator.
        assert_eq!(ptx.image.last(), Some(&0));
        assert_eq!(ptx.ptx_text().unwrap().len() + 1, ptx.image.len());
        for name in ["compress_all.fatbin", "speed.fatbin", "speed_all.fatbin"] {
            let fb = parse(&fixture(name)).unwrap();
            assert_eq!(&fb.best_cubin(90).unwrap().image, cubin, "{name}");
            assert_eq!(fb.ptx(90).unwrap().image, ptx.image, "{name}");
        }
    }

    #[test]
    fn picks_cubin_and_ptx_by_sm() {
        let fb = parse(&fixture("multi.fatbin")).unwrap();
        assert_eq!(fb.best_cubin(80).unwrap().arch, 80);
        assert_eq!(fb.best_cubin(90).unwrap().arch, 90);
        assert!(fb.best_cubin(86).is_none());
        assert!(fb.best_cubin(100).is_none());
        assert_eq!(fb.cubins().count(), 2);
        assert!(fb.ptx(80).is_none(), "compute_90 PTX cannot run on sm_80");
        assert!(fb.ptx(86).is_none());
        assert_eq!(fb.ptx(90).unwrap().arch, 90);
        assert_eq!(fb.ptx(120).unwrap().arch, 90);

        let mut two = fb.clone();
        let mut newer = two.ptx(90).unwrap().clone();
        newer.arch = 100;
        two.entries.push(newer.clone());
        assert_eq!(two.ptx(90).unwrap().arch, 90);
        assert_eq!(two.ptx(120).unwrap().arch, 100);
        newer.arch = 103;
        newer.flags |= flags::ARCH_SPECIFIC;
        two.entries.push(newer);
        assert_eq!(two.ptx(120).unwrap().arch, 100, "arch-specific PTX only for its own sm");
        assert_eq!(two.ptx(103).unwrap().arch, 103);
    }

    #[test]
    fn length_from_header_and_trailing_bytes() {
        let bytes = fixture("compress_all.fatbin");
        assert_eq!(fatbin_len(&bytes[..HEADER_LEN]).unwrap(), bytes.len());
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xee; 100]);
        let fb = parse(&longer).unwrap();
        assert_eq!(fb.len, bytes.len());
        assert_eq!(fb, parse(&bytes).unwrap());
    }

    fn set(bytes: &mut [u8], at: usize, v: &[u8]) {
        bytes[at..at + v.len()].copy_from_slice(v);
    }

    #[test]
    fn bad_container_headers() {
        let good = fixture("compress_all.fatbin");
        assert!(matches!(fatbin_len(&[]), Err(FatbinError::Truncated { need: 16, have: 0, .. })));
        assert!(matches!(parse(&good[..15]), Err(FatbinError::Truncated { .. })));
        assert!(matches!(parse(&[0u8; 64]), Err(FatbinError::BadMagic(0))));
        let mut b = good.clone();
        set(&mut b, 4, &2u16.to_le_bytes());
        assert_eq!(parse(&b), Err(FatbinError::UnsupportedVersion(2)));
        let mut b = good.clone();
        set(&mut b, 6, &8u16.to_le_bytes());
        assert_eq!(parse(&b), Err(FatbinError::BadHeaderSize(8)));
        let mut b = good.clone();
        set(&mut b, 8, &u64::MAX.to_le_bytes());
        assert_eq!(fatbin_len(&b), Err(FatbinError::TooLarge(u64::MAX)));
        let mut b = good.clone();
        set(&mut b, 8, &(u64::MAX - 16).to_le_bytes());
        assert!(matches!(parse(&b), Err(FatbinError::TooLarge(_) | FatbinError::Truncated { .. })));
        // Every proper prefix fails cleanly.
        for n in 0..good.len() {
            assert!(parse(&good[..n]).is_err(), "prefix of {n} bytes parsed");
        }
        // A fat size that cuts an entry short.
        for cut in [1u64, 8, 63, 64, 100] {
            let mut b = good[..good.len() - usize::try_from(cut).unwrap()].to_vec();
            let fat = (b.len() - 16) as u64;
            set(&mut b, 8, &fat.to_le_bytes());
            assert!(matches!(parse(&b), Err(FatbinError::BadEntry { .. })), "cut {cut}");
        }
    }

    #[test]
    fn bad_entries() {
        let good = fixture("compress_all.fatbin");
        let e = 16; // first entry: the zstd cubin
        let entry_err = |b: &[u8]| match parse(b) {
            Err(FatbinError::BadEntry { offset, what }) => (offset, what),
            other => panic!("expected BadEntry, got {other:?}"),
        };
        let mut b = good.clone();
        set(&mut b, e + 4, &32u32.to_le_bytes());
        assert_eq!(entry_err(&b), (16, "entry header size below 64"));
        let mut b = good.clone();
        set(&mut b, e + 4, &u32::MAX.to_le_bytes());
        assert_eq!(entry_err(&b).0, 16);
        let mut b = good.clone();
        set(&mut b, e + 8, &u64::MAX.to_le_bytes());
        assert_eq!(entry_err(&b).0, 16);
        let mut b = good.clone();
        set(&mut b, e + 40, &(0x11u64 | flags::LZ4 | flags::ZSTD).to_le_bytes());
        assert_eq!(entry_err(&b), (16, "both LZ4 and zstd flags set"));
        let mut b = good.clone();
        set(&mut b, e + 16, &0x10000u32.to_le_bytes());
        assert_eq!(entry_err(&b), (16, "compressed size exceeds the payload"));
        let mut b = good.clone();
        set(&mut b, e + 16, &0u32.to_le_bytes());
        assert_eq!(entry_err(&b).1, "compressed entry with compressed size 0");
        let mut b = good.clone();
        set(&mut b, e + 56, &0u64.to_le_bytes());
        assert_eq!(entry_err(&b).1, "compressed entry with uncompressed size 0");
        let mut b = good.clone();
        set(&mut b, e + 56, &u64::MAX.to_le_bytes());
        assert_eq!(parse(&b), Err(FatbinError::ImageTooLarge { offset: 16, size: u64::MAX }));
        // Declared uncompressed size off by one either way.
        for delta in [-1i64, 1] {
            let mut b = good.clone();
            let usz = u64::from_le_bytes(b[e + 56..e + 64].try_into().unwrap()).checked_add_signed(delta).unwrap();
            set(&mut b, e + 56, &usz.to_le_bytes());
            assert!(matches!(parse(&b), Err(FatbinError::Decompress { offset: 16, codec: "zstd", .. })), "{delta}");
        }
        // Corrupt compressed data, zstd and LZ4.
        let mut b = good.clone();
        for i in 0..32 {
            b[e + 64 + 8 + i] ^= 0xa5;
        }
        assert!(matches!(parse(&b), Err(FatbinError::Decompress { codec: "zstd", .. })));
        let lz = fixture("speed_all.fatbin");
        let mut b = lz.clone();
        set(&mut b, e + 56, &(u64::from_le_bytes(lz[e + 56..e + 64].try_into().unwrap()) + 1).to_le_bytes());
        assert!(matches!(parse(&b), Err(FatbinError::Decompress { codec: "LZ4", .. })));
        let mut b = lz.clone();
        set(&mut b, e + 64, &[0xff; 16]);
        assert!(matches!(parse(&b), Err(FatbinError::Decompress { codec: "LZ4", .. })));
    }

    /// Random single- and multi-byte corruptions of every fixture: errors or success, never a
    /// panic (a failing decoder is caught, but a panic in the parser itself fails here).
    #[test]
    fn mutations_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for name in FIXTURES {
            let good = fixture(name);
            for _ in 0..200 {
                let mut b = good.clone();
                for _ in 0..1 + next() % 4 {
                    // Half of the hits in the first 200 bytes, where the sizes live.
                    let range = if next() % 2 == 0 { b.len().min(200) } else { b.len() };
                    let at = usize::try_from(next()).unwrap() % range;
                    b[at] = next().to_le_bytes()[0];
                }
                let _ = parse(&b);
            }
        }
    }

    #[test]
    fn wrapper() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&WRAPPER_MAGIC.to_le_bytes());
        raw.extend_from_slice(&1u32.to_le_bytes());
        raw.extend_from_slice(&0x5555_0000_1000u64.to_le_bytes());
        raw.extend_from_slice(&0u64.to_le_bytes());
        let w = FatbinWrapper::parse(&raw).unwrap();
        assert_eq!(w, FatbinWrapper { magic: 0x4662_43b1, version: 1, data: 0x5555_0000_1000, filename_or_fatbins: 0 });
        raw[4] = 2;
        assert_eq!(FatbinWrapper::parse(&raw).unwrap().version, 2);
        raw[4] = 3;
        assert_eq!(FatbinWrapper::parse(&raw), Err(FatbinError::UnsupportedWrapperVersion(3)));
        raw[0] = 0;
        assert_eq!(FatbinWrapper::parse(&raw), Err(FatbinError::BadWrapperMagic(0x4662_4300)));
        assert!(matches!(FatbinWrapper::parse(&raw[..23]), Err(FatbinError::Truncated { need: 24, have: 23, .. })));
    }
}

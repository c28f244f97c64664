//! Kernel parameter layouts from a cubin's `.nv.info.<kernel>` sections.
//!
//! `__cudaLaunchKernel` receives `void **args`, one pointer per parameter, but not the sizes:
//! the client reads each kernel's layout (ordinal, offset and size of every parameter) from the
//! cubin the program registered, then packs the arguments into the parameter buffer.
//!
//! # Quick start
//! ```no_run
//! # let cubin: Vec<u8> = vec![];
//! let layouts = remora_interpose::nvinfo::kernel_params(&cubin)?;
//! for p in &layouts["mixed"] {
//!     println!("param {} at {} ({} bytes)", p.ordinal, p.offset, p.size);
//! }
//! # Ok::<(), remora_interpose::nvinfo::NvInfoError>(())
//! ```
//!
//! # Format (measured with nvcc 13.0.88, sm_80/sm_90/sm_120; little-endian)
//! A cubin is an ELF64 file with `e_machine` = `EM_CUDA` (190). A kernel is a `STT_FUNC`
//! symbol whose `st_other` has bit `0x10` (`STO_CUDA_ENTRY`); device functions (which get
//! `.text`/`.nv.info` sections too with `-rdc`) lack it. Each function's `.nv.info.<name>`
//! section is a sequence of records:
//!
//! | off | type | field |
//! |----:|------|-------|
//! | 0 | u8 | format: 1 `NVAL`, 2 `BVAL`, 3 `HVAL` (a u16 value at offset 2), 4 `SVAL` |
//! | 1 | u8 | attribute (`EIATTR_*`, see [`eiattr`]) |
//! | 2 | u16 | `SVAL`: size of the value that follows; other formats: the value itself |
//! | 4 | .. | `SVAL` only: the value (records are not padded) |
//!
//! Parameter records, one per parameter (unused ones included), in descending ordinal order:
//! - `0x17` `EIATTR_KPARAM_INFO`, `SVAL` of 12 bytes: u32 index (0) at 0, u16 ordinal at 4,
//!   u16 offset at 6, u32 at 8 holding `size << 18` in its top 14 bits (the low bits are the
//!   pointee's log-alignment, space and constant bank `0x1f`; sm_120 sets space `5` for
//!   pointers).
//! - `0x45` `EIATTR_KPARAM_INFO_V2`, same 12-byte header but a plain u16 size at 8 and a u16 at
//!   10 (0 on sm_90; `0x0500` for pointers on sm_120, so the size is not a u32). nvcc 13 uses
//!   it for every parameter of a kernel once the parameters total more than about 4.3 KB
//!   (4208 bytes still got `0x17`, 4408 got `0x45`), up to the 32764-byte limit.
//! - `0x19` `EIATTR_CBANK_PARAM_SIZE`, `HVAL`: total parameter bytes, the end of the last
//!   parameter (not rounded up); checked against the records. Absent without parameters.
//!
//! A kernel without parameters has none of these records.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};

/// `.nv.info` record formats (the first byte of a record).
pub mod eifmt {
    /// No value (the u16 at offset 2 is unused).
    pub const NVAL: u8 = 1;
    /// A byte value in the u16 at offset 2.
    pub const BVAL: u8 = 2;
    /// A u16 value at offset 2.
    pub const HVAL: u8 = 3;
    /// A u16 size at offset 2, then that many bytes of value.
    pub const SVAL: u8 = 4;
}

/// `.nv.info` attributes this module reads (the second byte of a record).
pub mod eiattr {
    /// `EIATTR_PARAM_CBANK`: constant-bank symbol, offset and size of the parameters.
    pub const PARAM_CBANK: u8 = 0x0a;
    /// `EIATTR_KPARAM_INFO`: one parameter, size packed in 14 bits.
    pub const KPARAM_INFO: u8 = 0x17;
    /// `EIATTR_CBANK_PARAM_SIZE`: total parameter bytes.
    pub const CBANK_PARAM_SIZE: u8 = 0x19;
    /// `EIATTR_KPARAM_INFO_V2`: one parameter, size in a plain u16 (large parameter lists).
    pub const KPARAM_INFO_V2: u8 = 0x45;
}

/// `st_other` bit of a kernel (entry function) symbol.
pub const STO_CUDA_ENTRY: u8 = 0x10;

/// One kernel parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Param {
    /// Position in the parameter list, from 0.
    pub ordinal: u16,
    /// Byte offset in the parameter buffer.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// One `.nv.info` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Offset of the record in its section.
    pub offset: usize,
    /// See [`eifmt`].
    pub format: u8,
    /// See [`eiattr`].
    pub attr: u8,
    /// The value: `SVAL` records' bytes after the size, otherwise the 2 bytes at offset 2.
    pub value: &'a [u8],
}

/// Why a cubin's parameter layouts could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NvInfoError {
    /// The bytes are not a readable ELF64 file.
    #[error("not an ELF64 cubin: {0}")]
    Elf(String),
    /// An ELF file for another machine.
    #[error("not a CUDA cubin: e_machine {0}, expected 190 (EM_CUDA)")]
    NotCuda(u16),
    /// A `.nv.info` section that does not split into records.
    #[error("{section}: record at offset {offset:#x}: {what}")]
    BadRecord { section: String, offset: usize, what: &'static str },
    /// Parameter records that contradict each other.
    #[error("kernel {kernel}: {what}")]
    BadParams { kernel: String, what: String },
}

fn elf_err(e: object::read::Error) -> NvInfoError {
    NvInfoError::Elf(e.to_string())
}

/// Split a `.nv.info` section's bytes into records. `section` names it in errors.
pub fn records<'a>(section: &str, data: &'a [u8]) -> Result<Vec<Record<'a>>, NvInfoError> {
    let bad = |offset, what| NvInfoError::BadRecord { section: section.to_string(), offset, what };
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let start = off;
        let head = data.get(off..off + 4).ok_or(bad(off, "record header truncated"))?;
        let (format, attr, half) = (head[0], head[1], [head[2], head[3]]);
        let value = match format {
            eifmt::NVAL | eifmt::BVAL | eifmt::HVAL => {
                off += 4;
                &data[off - 2..off]
            }
            eifmt::SVAL => {
                let len = usize::from(u16::from_le_bytes(half));
                let value = data.get(off + 4..off + 4 + len).ok_or(bad(off, "value runs past the section"))?;
                off += 4 + len;
                value
            }
            _ => return Err(bad(off, "unknown record format")),
        };
        out.push(Record { offset: start, format, attr, value });
    }
    Ok(out)
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decode a parameter record (`KPARAM_INFO` or `KPARAM_INFO_V2`); `None` for other records.
fn param(section: &str, r: &Record<'_>) -> Result<Option<Param>, NvInfoError> {
    if r.attr != eiattr::KPARAM_INFO && r.attr != eiattr::KPARAM_INFO_V2 {
        return Ok(None);
    }
    if r.format != eifmt::SVAL || r.value.len() < 12 {
        return Err(NvInfoError::BadRecord {
            section: section.to_string(),
            offset: r.offset,
            what: "parameter record is not a 12-byte SVAL",
        });
    }
    let v = r.value;
    let size = if r.attr == eiattr::KPARAM_INFO { (le_u32(v, 8) >> 18) & 0x3fff } else { u32::from(le_u16(v, 8)) };
    Ok(Some(Param { ordinal: le_u16(v, 4), offset: u32::from(le_u16(v, 6)), size }))
}

/// Parameters of one function from its `.nv.info.<name>` section, sorted by ordinal and
/// checked: ordinals 0..n each once, and the end of the last parameter equal to the
/// `CBANK_PARAM_SIZE` record where there is one.
fn function_params(kernel: &str, section: &str, data: &[u8]) -> Result<Vec<Param>, NvInfoError> {
    let bad = |what: String| NvInfoError::BadParams { kernel: kernel.to_string(), what };
    let mut params = Vec::new();
    let mut total = None;
    for r in records(section, data)? {
        if let Some(p) = param(section, &r)? {
            params.push(p);
        } else if r.attr == eiattr::CBANK_PARAM_SIZE && r.format == eifmt::HVAL {
            total = Some(u32::from(le_u16(r.value, 0)));
        }
    }
    params.sort_by_key(|p| p.ordinal);
    for (i, p) in params.iter().enumerate() {
        if usize::from(p.ordinal) != i {
            return Err(bad(format!(
                "parameter ordinals are not 0..{}: found {} at position {i}",
                params.len(),
                p.ordinal
            )));
        }
    }
    let end = params.iter().map(|p| u64::from(p.offset) + u64::from(p.size)).max();
    if let (Some(end), Some(total)) = (end, total) {
        if end != u64::from(total) {
            return Err(bad(format!("parameters end at byte {end}, CBANK_PARAM_SIZE says {total}")));
        }
    }
    Ok(params)
}

/// Every kernel of `cubin` with its parameters, sorted by ordinal (an empty list for a kernel
/// without parameters).
///
/// Kernels are the symbols marked [`STO_CUDA_ENTRY`], plus any function whose `.nv.info`
/// section carries parameter records; device functions are left out.
pub fn kernel_params(cubin: &[u8]) -> Result<HashMap<String, Vec<Param>>, NvInfoError> {
    let header = elf::FileHeader64::<object::Endianness>::parse(cubin).map_err(elf_err)?;
    let endian = header.endian().map_err(elf_err)?;
    let machine = header.e_machine(endian);
    if machine != elf::EM_CUDA {
        return Err(NvInfoError::NotCuda(machine.0));
    }
    let sections = header.sections(endian, cubin).map_err(elf_err)?;
    let symbols = sections.symbols(endian, cubin, elf::SHT_SYMTAB).map_err(elf_err)?;

    let mut kernels = HashMap::new();
    for sym in symbols.iter() {
        if sym.st_type() == elf::STT_FUNC && sym.st_other().0 & STO_CUDA_ENTRY != 0 && !sym.is_undefined(endian) {
            let name = symbols.symbol_name(endian, sym).map_err(elf_err)?;
            kernels.insert(String::from_utf8_lossy(name).into_owned(), Vec::new());
        }
    }
    for section in sections.iter() {
        let name = sections.section_name(endian, section).map_err(elf_err)?;
        let Some(func) = name.strip_prefix(b".nv.info.") else { continue };
        let section_name = String::from_utf8_lossy(name);
        let func = String::from_utf8_lossy(func).into_owned();
        let data = section.data(endian, cubin).map_err(elf_err)?;
        let params = function_params(&func, &section_name, data)?;
        if !params.is_empty() || kernels.contains_key(&func) {
            kernels.insert(func, params);
        }
    }
    Ok(kernels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fatbin::tests::{fixture, FIXTURES};
    use crate::fatbin::{self, EntryKind};

    fn p(ordinal: u16, offset: u32, size: u32) -> Param {
        Param { ordinal, offset, size }
    }

    /// The layouts the C ABI gives `tests/fixtures/kernels.cu`.
    fn expected() -> HashMap<String, Vec<Param>> {
        let k: [(&str, Vec<Param>); 7] = [
            ("no_params", vec![]),
            ("mixed", vec![p(0, 0, 1), p(1, 8, 8), p(2, 16, 2), p(3, 24, 8), p(4, 32, 4), p(5, 40, 8)]),
            ("by_struct", vec![p(0, 0, 4), p(1, 8, 16), p(2, 24, 1)]),
            ("big_param", vec![p(0, 0, 4), p(1, 4, 5000), p(2, 5008, 8)]),
            ("vec_aligned", vec![p(0, 0, 1), p(1, 16, 16), p(2, 32, 16), p(3, 48, 8)]),
            ("_Z5scaleIfEvPT_S0_i", vec![p(0, 0, 8), p(1, 8, 4), p(2, 12, 4)]),
            ("_Z5scaleIdEvPT_S0_i", vec![p(0, 0, 8), p(1, 8, 8), p(2, 16, 4)]),
        ];
        k.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
    }

    /// (fixture, sm, cubin image) for every cubin of every fixture.
    fn cubins() -> Vec<(&'static str, u32, Vec<u8>)> {
        let mut out = Vec::new();
        for name in FIXTURES {
            let fb = fatbin::parse(&fixture(name)).unwrap();
            for e in fb.entries.into_iter().filter(|e| e.kind == EntryKind::Cubin) {
                out.push((name, e.arch, e.image));
            }
        }
        assert_eq!(out.len(), 9);
        out
    }

    /// The bytes of section `name` of an ELF cubin.
    fn section<'a>(cubin: &'a [u8], name: &str) -> &'a [u8] {
        let h = elf::FileHeader64::<object::Endianness>::parse(cubin).unwrap();
        let endian = h.endian().unwrap();
        let sections = h.sections(endian, cubin).unwrap();
        let (_, s) = sections.section_by_name(endian, name.as_bytes()).unwrap();
        s.data(endian, cubin).unwrap()
    }

    #[test]
    fn every_variant_gives_the_c_abi_layouts() {
        let want = expected();
        for (name, sm, cubin) in cubins() {
            let got = kernel_params(&cubin).unwrap_or_else(|e| panic!("{name} sm_{sm}: {e}"));
            assert_eq!(got, want, "{name} sm_{sm}");
        }
    }

    #[test]
    fn record_formats_and_attributes() {
        let fb = fatbin::parse(&fixture("default.fatbin")).unwrap();
        let cubin = &fb.best_cubin(90).unwrap().image;
        let attrs = |kernel: &str| -> Vec<(u8, u8)> {
            let name = format!(".nv.info.{kernel}");
            records(&name, section(cubin, &name)).unwrap().iter().map(|r| (r.format, r.attr)).collect()
        };
        let mixed = attrs("mixed");
        assert_eq!(mixed.iter().filter(|&&a| a == (eifmt::SVAL, eiattr::KPARAM_INFO)).count(), 6);
        assert!(mixed.contains(&(eifmt::HVAL, eiattr::CBANK_PARAM_SIZE)));
        // More than ~4.3 KB of parameters: every parameter in a V2 record.
        let big = attrs("big_param");
        assert_eq!(big.iter().filter(|&&a| a == (eifmt::SVAL, eiattr::KPARAM_INFO_V2)).count(), 3);
        assert!(!big.iter().any(|&(_, a)| a == eiattr::KPARAM_INFO));
        // No parameters: no parameter records, no total.
        let none = attrs("no_params");
        assert!(!none.is_empty());
        assert!(!none
            .iter()
            .any(|&(_, a)| matches!(a, eiattr::KPARAM_INFO | eiattr::KPARAM_INFO_V2 | eiattr::CBANK_PARAM_SIZE)));
        // by_struct's total is the end of the last parameter, not rounded up.
        let name = ".nv.info.by_struct";
        let recs = records(name, section(cubin, name)).unwrap();
        let total = recs.iter().find(|r| r.attr == eiattr::CBANK_PARAM_SIZE).unwrap();
        assert_eq!(total.value, 25u16.to_le_bytes());
    }

    /// sm_120 marks pointer parameters in the upper half of the V2 size word, so the size is a
    /// u16, not a u32.
    #[test]
    fn v2_size_is_a_u16_on_sm120() {
        let fb = fatbin::parse(&fixture("sm120_all.fatbin")).unwrap();
        let cubin = &fb.best_cubin(120).unwrap().image;
        let name = ".nv.info.big_param";
        let recs = records(name, section(cubin, name)).unwrap();
        let out_ptr = recs.iter().find(|r| r.attr == eiattr::KPARAM_INFO_V2 && r.value[4] == 2).unwrap();
        assert_eq!(&out_ptr.value[8..12], &[8, 0, 0, 5]);
        assert_eq!(kernel_params(cubin).unwrap()["big_param"][2], p(2, 5008, 8));
    }

    #[test]
    fn device_functions_are_not_kernels() {
        let fb = fatbin::parse(&fixture("rdc.fatbin")).unwrap();
        let cubin = &fb.best_cubin(90).unwrap().image;
        assert!(!section(cubin, ".nv.info._Z6helperiPKi").is_empty(), "rdc keeps the device function");
        let got = kernel_params(cubin).unwrap();
        assert!(!got.contains_key("_Z6helperiPKi"));
        assert_eq!(got.len(), 7);
    }

    #[test]
    fn not_a_cubin() {
        assert!(matches!(kernel_params(&[]), Err(NvInfoError::Elf(_))));
        assert!(matches!(kernel_params(b"\x7fELF garbage garbage garbage"), Err(NvInfoError::Elf(_))));
        assert!(matches!(kernel_params(&[0xab; 4096]), Err(NvInfoError::Elf(_))));
        let host = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(matches!(kernel_params(&host), Err(NvInfoError::NotCuda(m)) if m != 190));
        let fb = fatbin::parse(&fixture("default.fatbin")).unwrap();
        let cubin = &fb.best_cubin(90).unwrap().image;
        for n in [16, 64, 1000, cubin.len() / 2] {
            assert!(kernel_params(&cubin[..n]).is_err(), "prefix {n}");
        }
    }

    fn sval(attr: u8, value: &[u8]) -> Vec<u8> {
        let mut r = vec![eifmt::SVAL, attr];
        r.extend_from_slice(&u16::try_from(value.len()).unwrap().to_le_bytes());
        r.extend_from_slice(value);
        r
    }

    fn kparam(ordinal: u16, offset: u16, size: u32) -> Vec<u8> {
        let mut v = 0u32.to_le_bytes().to_vec();
        v.extend_from_slice(&ordinal.to_le_bytes());
        v.extend_from_slice(&offset.to_le_bytes());
        v.extend_from_slice(&(size << 18 | 0x1f000).to_le_bytes());
        sval(eiattr::KPARAM_INFO, &v)
    }

    #[test]
    fn record_splitting_errors() {
        let ok = [kparam(1, 8, 8), vec![eifmt::HVAL, eiattr::CBANK_PARAM_SIZE, 16, 0], kparam(0, 0, 4)].concat();
        let recs = records("s", &ok).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!((recs[1].offset, recs[1].value), (16, &[16u8, 0][..]));
        assert_eq!(function_params("k", "s", &ok).unwrap(), vec![p(0, 0, 4), p(1, 8, 8)]);

        let err = |data: &[u8]| match records("s", data) {
            Err(NvInfoError::BadRecord { offset, what, .. }) => (offset, what),
            other => panic!("expected BadRecord, got {other:?}"),
        };
        assert_eq!(err(&ok[..ok.len() - 1]), (20, "value runs past the section"));
        assert_eq!(err(&ok[..18]), (16, "record header truncated"));
        assert_eq!(err(&[9, 0x17, 0, 0]), (0, "unknown record format"));
        let short = sval(eiattr::KPARAM_INFO, &[0; 8]);
        assert!(matches!(function_params("k", "s", &short), Err(NvInfoError::BadRecord { offset: 0, .. })));
    }

    #[test]
    fn inconsistent_parameters() {
        let bad = |data: &[u8]| matches!(function_params("k", "s", data), Err(NvInfoError::BadParams { .. }));
        assert!(bad(&[kparam(0, 0, 4), kparam(0, 8, 8)].concat()), "duplicate ordinal");
        assert!(bad(&[kparam(0, 0, 4), kparam(2, 8, 8)].concat()), "missing ordinal");
        assert!(bad(&[kparam(0, 0, 4), vec![eifmt::HVAL, eiattr::CBANK_PARAM_SIZE, 8, 0]].concat()), "total");
        assert!(!bad(&[kparam(0, 0, 4), vec![eifmt::HVAL, eiattr::CBANK_PARAM_SIZE, 4, 0]].concat()));
    }

    /// Corrupting the `.nv.info` sections and random bytes gives errors or layouts, never a panic.
    #[test]
    fn mutations_never_panic() {
        let fb = fatbin::parse(&fixture("default.fatbin")).unwrap();
        let cubin = fb.best_cubin(90).unwrap().image.clone();
        let start = cubin.windows(4).position(|w| w == [4, 0x17, 12, 0]).unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..2000 {
            let mut b = cubin.clone();
            let (base, range) = if i % 2 == 0 { (start - 64, 0x300) } else { (0, b.len()) };
            for _ in 0..1 + next() % 3 {
                b[base + usize::try_from(next()).unwrap() % range] = next().to_le_bytes()[0];
            }
            let _ = kernel_params(&b);
        }
    }
}

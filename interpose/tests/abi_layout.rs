//! `cudart::types` against NVIDIA's CUDA 13.0 headers and against a real `cudaGetDeviceProperties`.
//!
//! - `layout_matches_cuda_headers` (ignored unless asked for: it needs the headers and gcc)
//!   compiles `tests/abi/offsets.c` against `$REMORA_CUDA_INCLUDE` and compares every struct's
//!   size and alignment, every field's offset and size and every constant with the Rust
//!   definitions; it also checks that the C field lists leave no room for a field nobody listed
//!   and that no enumerator of the enums `types` copies in full is missing. CI runs it:
//!
//!   ```text
//!   pip install nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88
//!   REMORA_CUDA_INCLUDE=<site-packages>/nvidia/cu13/include \
//!       cargo test -p remora-interpose --test abi_layout -- --include-ignored
//!   ```
//!
//! - `device_prop_matches_recorded_libcudart` needs nothing: it rebuilds each recorded
//!   `cudaDeviceProp` in `tests/abi/device-prop-*.txt` from the driver attributes recorded with
//!   it, through `device_prop_from_attributes`, and compares every field's bytes.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use core::mem::{align_of, align_of_val, offset_of, size_of, size_of_val};

use remora_interpose::cudart::types::*;
use zerocopy::{FromZeros, IntoBytes};

/// One field as Rust lays it out.
struct RustField {
    strukt: &'static str,
    field: &'static str,
    offset: usize,
    size: usize,
    align: usize,
}

/// `(C struct name, size, align)` and every field of every struct `types` defines.
fn rust_layout() -> (Vec<(&'static str, usize, usize)>, Vec<RustField>) {
    let mut structs = Vec::new();
    let mut fields = Vec::new();
    macro_rules! layout {
        ($($c:literal => $t:ty { $($f:ident),* $(,)? }),* $(,)?) => {$(
            structs.push(($c, size_of::<$t>(), align_of::<$t>()));
            let z = <$t>::new_zeroed();
            $(fields.push(RustField {
                strukt: $c,
                // `type_` is C's `type`.
                field: stringify!($f).trim_end_matches('_'),
                offset: offset_of!($t, $f),
                size: size_of_val(&z.$f),
                align: align_of_val(&z.$f),
            });)*
        )*};
    }
    layout! {
        "dim3" => Dim3 { x, y, z },
        "cudaDeviceProp" => CudaDeviceProp {
            name, uuid, luid, luidDeviceNodeMask, totalGlobalMem, sharedMemPerBlock, regsPerBlock, warpSize, memPitch,
            maxThreadsPerBlock, maxThreadsDim, maxGridSize, totalConstMem, major, minor, textureAlignment,
            texturePitchAlignment, multiProcessorCount, integrated, canMapHostMemory, maxTexture1D, maxTexture1DMipmap,
            maxTexture2D, maxTexture2DMipmap, maxTexture2DLinear, maxTexture2DGather, maxTexture3D, maxTexture3DAlt,
            maxTextureCubemap, maxTexture1DLayered, maxTexture2DLayered, maxTextureCubemapLayered, maxSurface1D,
            maxSurface2D, maxSurface3D, maxSurface1DLayered, maxSurface2DLayered, maxSurfaceCubemap,
            maxSurfaceCubemapLayered, surfaceAlignment, concurrentKernels, ECCEnabled, pciBusID, pciDeviceID,
            pciDomainID, tccDriver, asyncEngineCount, unifiedAddressing, memoryBusWidth, l2CacheSize,
            persistingL2CacheMaxSize, maxThreadsPerMultiProcessor, streamPrioritiesSupported, globalL1CacheSupported,
            localL1CacheSupported, sharedMemPerMultiprocessor, regsPerMultiprocessor, managedMemory, isMultiGpuBoard,
            multiGpuBoardGroupID, hostNativeAtomicSupported, pageableMemoryAccess, concurrentManagedAccess,
            computePreemptionSupported, canUseHostPointerForRegisteredMem, cooperativeLaunch, sharedMemPerBlockOptin,
            pageableMemoryAccessUsesHostPageTables, directManagedMemAccessFromHost, maxBlocksPerMultiProcessor,
            accessPolicyMaxWindowSize, reservedSharedMemPerBlock, hostRegisterSupported, sparseCudaArraySupported,
            hostRegisterReadOnlySupported, timelineSemaphoreInteropSupported, memoryPoolsSupported,
            gpuDirectRDMASupported, gpuDirectRDMAFlushWritesOptions, gpuDirectRDMAWritesOrdering,
            memoryPoolSupportedHandleTypes, deferredMappingCudaArraySupported, ipcEventSupported, clusterLaunch,
            unifiedFunctionPointers, deviceNumaConfig, deviceNumaId, mpsEnabled, hostNumaId, gpuPciDeviceID,
            gpuPciSubsystemID, hostNumaMultinodeIpcSupported, reserved,
        },
        "cudaPointerAttributes" => CudaPointerAttributes { type_, device, devicePointer, hostPointer, reserved },
        "cudaFuncAttributes" => CudaFuncAttributes {
            sharedSizeBytes, constSizeBytes, localSizeBytes, maxThreadsPerBlock, numRegs, ptxVersion, binaryVersion,
            cacheModeCA, maxDynamicSharedSizeBytes, preferredShmemCarveout, clusterDimMustBeSet, requiredClusterWidth,
            requiredClusterHeight, requiredClusterDepth, clusterSchedulingPolicyPreference,
            nonPortableClusterSizeAllowed, reserved,
        },
        "cudaChannelFormatDesc" => CudaChannelFormatDesc { x, y, z, w, f },
        "cudaResourceDesc" => CudaResourceDesc { resType, res, flags },
        "cudaTextureDesc" => CudaTextureDesc {
            addressMode, filterMode, readMode, sRGB, borderColor, normalizedCoords, maxAnisotropy, mipmapFilterMode,
            mipmapLevelBias, minMipmapLevelClamp, maxMipmapLevelClamp, disableTrilinearOptimization, seamlessCubemap,
        },
        "cudaResourceViewDesc" => CudaResourceViewDesc {
            format, width, height, depth, firstMipmapLevel, lastMipmapLevel, firstLayer, lastLayer, reserved,
        },
        "cudaPitchedPtr" => CudaPitchedPtr { ptr, pitch, xsize, ysize },
        "cudaExtent" => CudaExtent { width, height, depth },
        "cudaPos" => CudaPos { x, y, z },
        "cudaMemcpy3DParms" => CudaMemcpy3DParms {
            srcArray, srcPos, srcPtr, dstArray, dstPos, dstPtr, extent, kind,
        },
        "cudaKernelNodeParams" => CudaKernelNodeParams {
            func, gridDim, blockDim, sharedMemBytes, kernelParams, extra,
        },
        "cudaMemsetParams" => CudaMemsetParams { dst, pitch, value, elementSize, width, height },
        "cudaHostNodeParams" => CudaHostNodeParams { fn_, userData },
        "cudaMemLocation" => CudaMemLocation { type_, id },
        "cudaMemAccessDesc" => CudaMemAccessDesc { location, flags },
        "cudaMemPoolProps" => CudaMemPoolProps {
            allocType, handleTypes, location, win32SecurityAttributes, maxSize, usage, reserved,
        },
        "cudaMemAllocNodeParams" => CudaMemAllocNodeParams {
            poolProps, accessDescs, accessDescCount, bytesize, dptr,
        },
        "cudaGraphExecUpdateResultInfo_st" => CudaGraphExecUpdateResultInfo { result, errorNode, errorFromNode },
    }
    (structs, fields)
}

/// What `offsets.c` printed.
#[derive(Default)]
struct CView {
    structs: BTreeMap<String, (usize, usize)>,
    /// `struct.field` → (offset, size), in print order per struct.
    fields: BTreeMap<String, Vec<(String, usize, usize)>>,
    consts: BTreeMap<String, i64>,
}

fn abi_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/abi")
}

fn c_view(include: &Path) -> CView {
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("remora-abi-offsets");
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(include)
        .arg("-o")
        .arg(&exe)
        .arg(abi_dir().join("offsets.c"))
        .output()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    assert!(out.status.success(), "{cc} failed on offsets.c:\n{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(&exe).output().expect("running offsets");
    assert!(out.status.success(), "offsets failed");
    let mut v = CView::default();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.as_slice() {
            ["struct", name, size, align] => {
                v.structs.insert(name.to_string(), (size.parse().unwrap(), align.parse().unwrap()));
            }
            ["field", sf, off, size] => {
                let (s, f) = sf.split_once('.').unwrap();
                v.fields.entry(s.to_string()).or_default().push((
                    f.to_string(),
                    off.parse().unwrap(),
                    size.parse().unwrap(),
                ));
            }
            ["const", name, value] => {
                v.consts.insert(name.to_string(), value.parse().unwrap());
            }
            _ => panic!("unexpected line from offsets: {line:?}"),
        }
    }
    v
}

/// The enumerator names of `enum __device_builtin__ <name> { ... }` in a header.
fn header_enum(header: &str, name: &str) -> Vec<String> {
    let mut at = None;
    for (i, _) in header.match_indices("enum") {
        let rest = &header[i + 4..];
        let mut words = rest.split_whitespace();
        if words.next() == Some("__device_builtin__") && words.next().map(|w| w.trim_end_matches('{')) == Some(name) {
            at = Some(i);
            break;
        }
    }
    let at = at.unwrap_or_else(|| panic!("enum {name} not found in the header"));
    let body = &header[at..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    // Strip /* */ and // comments.
    let mut clean = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("/*") {
        clean.push_str(&rest[..i]);
        rest = &rest[i + rest[i..].find("*/").unwrap() + 2..];
    }
    clean.push_str(rest);
    let clean: String = clean.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n");
    clean.split(',').map(|item| item.split('=').next().unwrap().trim().to_string()).filter(|n| !n.is_empty()).collect()
}

/// The names of `#define cuda...` lines in a header.
fn header_defines(header: &str) -> Vec<String> {
    header
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("cuda"))
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs NVIDIA's CUDA 13.0 headers and gcc: REMORA_CUDA_INCLUDE=<dir> cargo test -p remora-interpose --test abi_layout -- --include-ignored"]
fn layout_matches_cuda_headers() {
    let Some(include) = std::env::var_os("REMORA_CUDA_INCLUDE") else {
        panic!(
            "REMORA_CUDA_INCLUDE is not set: point it at the include directory of NVIDIA's CUDA 13.0 headers \
             (pip install nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88; <site-packages>/nvidia/cu13/include)"
        )
    };
    let include = PathBuf::from(include);
    let c = c_view(&include);
    let (structs, fields) = rust_layout();
    let mut errors = Vec::new();

    // Structs: size and alignment.
    for &(name, size, align) in &structs {
        match c.structs.get(name) {
            Some(&(cs, ca)) if (cs, ca) == (size, align) => {}
            Some(&(cs, ca)) => {
                errors.push(format!("struct {name}: C size {cs} align {ca}, Rust size {size} align {align}"))
            }
            None => errors.push(format!("struct {name}: offsets.c does not print it")),
        }
    }
    for name in c.structs.keys() {
        if !structs.iter().any(|s| s.0 == name) {
            errors.push(format!("struct {name}: printed by offsets.c but not checked on the Rust side"));
        }
    }

    // Fields: offset and size, both ways.
    for f in &fields {
        let found = c.fields.get(f.strukt).and_then(|v| v.iter().find(|(n, _, _)| n == f.field));
        match found {
            Some(&(_, off, size)) if (off, size) == (f.offset, f.size) => {}
            Some(&(_, off, size)) => errors.push(format!(
                "{}.{}: C offset {off} size {size}, Rust offset {} size {}",
                f.strukt, f.field, f.offset, f.size
            )),
            None => errors.push(format!("{}.{}: offsets.c does not print it", f.strukt, f.field)),
        }
    }
    for (s, cf) in &c.fields {
        for (n, _, _) in cf {
            if !fields.iter().any(|f| f.strukt == s && f.field == n) {
                errors.push(format!("{s}.{n}: in C, not in Rust"));
            }
        }
    }

    // No room for a field that nobody listed: with C's layout rule, each field starts at the
    // first offset its alignment allows after the previous one, and the struct ends at the first
    // multiple of its alignment after the last.
    for (s, cf) in &c.fields {
        let mut sorted = cf.clone();
        sorted.sort_by_key(|f| f.1);
        let mut end: usize = 0;
        for (n, off, size) in &sorted {
            let align = fields.iter().find(|f| f.strukt == s && f.field == n).map_or(1, |f| f.align);
            if *off != end.next_multiple_of(align) {
                errors.push(format!("{s}: {} unlisted bytes before {n} (offset {off}, previous end {end})", off - end));
            }
            end = off + size;
        }
        if let Some(&(size, align)) = c.structs.get(s) {
            if size != end.next_multiple_of(align) {
                errors.push(format!(
                    "{s}: {} unlisted bytes at the end (size {size}, last field ends at {end})",
                    size - end
                ));
            }
        }
    }

    // Constants, both ways.
    let rust_consts: BTreeMap<&str, i64> = ALL_CONSTANTS.iter().flat_map(|t| t.iter().copied()).collect();
    for (&name, &value) in &rust_consts {
        match c.consts.get(name) {
            Some(&cv) if cv == value => {}
            Some(&cv) => errors.push(format!("{name}: C {cv}, Rust {value}")),
            None => errors.push(format!("{name}: offsets.c does not print it")),
        }
    }
    for name in c.consts.keys() {
        if !rust_consts.contains_key(name.as_str()) {
            errors.push(format!("{name}: printed by offsets.c, not in types::ALL_CONSTANTS"));
        }
    }

    // Completeness against the header text: the enums `types` copies in full, and the flag
    // `#define`s of driver_types.h.
    let driver_types = std::fs::read_to_string(include.join("driver_types.h")).expect("driver_types.h");
    for e in [
        "cudaDeviceAttr",
        "cudaMemcpyKind",
        "cudaLimit",
        "cudaFuncAttribute",
        "cudaFuncCache",
        "cudaSharedCarveout",
        "cudaMemoryType",
        "cudaComputeMode",
        "cudaStreamCaptureMode",
        "cudaStreamCaptureStatus",
        "cudaChannelFormatKind",
    ] {
        let names = header_enum(&driver_types, e);
        assert!(names.len() >= 3, "parsed too little of enum {e}: {names:?}");
        for n in names {
            if !rust_consts.contains_key(n.as_str()) {
                errors.push(format!("enum {e}: {n} is missing from types"));
            }
        }
    }
    let flag_prefixes = [
        "cudaHostAlloc",
        "cudaHostRegister",
        "cudaPeerAccess",
        "cudaStreamDefault",
        "cudaStreamNonBlocking",
        "cudaStreamLegacy",
        "cudaStreamPerThread",
        "cudaEvent",
        "cudaDevice",
        "cudaArrayDefault",
        "cudaArrayLayered",
        "cudaArraySurfaceLoadStore",
        "cudaArrayCubemap",
        "cudaArrayTextureGather",
        "cudaArrayColorAttachment",
        "cudaArraySparse",
        "cudaArrayDeferredMapping",
        "cudaIpcMem",
        "cudaMemAttach",
        "cudaOccupancy",
        "cudaCpuDeviceId",
        "cudaInvalidDeviceId",
        "cudaInitDeviceFlagsAreValid",
    ];
    for n in header_defines(&driver_types) {
        if n == "cudaArraySparsePropertiesSingleMipTail" {
            continue; // a cudaArraySparseProperties flag, not an allocation flag
        }
        if flag_prefixes.iter().any(|p| n.starts_with(p)) && !rust_consts.contains_key(n.as_str()) {
            errors.push(format!("#define {n} is missing from types"));
        }
    }

    assert!(errors.is_empty(), "{} ABI differences:\n  {}", errors.len(), errors.join("\n  "));
    eprintln!(
        "checked {} structs, {} fields, {} constants against {}",
        structs.len(),
        fields.len(),
        rust_consts.len(),
        include.display()
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Every field of a `CudaDeviceProp` by name, as bytes.
fn prop_fields(p: &CudaDeviceProp) -> Vec<(&'static str, Vec<u8>)> {
    macro_rules! bytes {
        ($($f:ident),* $(,)?) => { vec![$((stringify!($f), p.$f.as_bytes().to_vec())),*] };
    }
    bytes! {
        name, uuid, luid, luidDeviceNodeMask, totalGlobalMem, sharedMemPerBlock, regsPerBlock, warpSize, memPitch,
        maxThreadsPerBlock, maxThreadsDim, maxGridSize, totalConstMem, major, minor, textureAlignment,
        texturePitchAlignment, multiProcessorCount, integrated, canMapHostMemory, maxTexture1D, maxTexture1DMipmap,
        maxTexture2D, maxTexture2DMipmap, maxTexture2DLinear, maxTexture2DGather, maxTexture3D, maxTexture3DAlt,
        maxTextureCubemap, maxTexture1DLayered, maxTexture2DLayered, maxTextureCubemapLayered, maxSurface1D,
        maxSurface2D, maxSurface3D, maxSurface1DLayered, maxSurface2DLayered, maxSurfaceCubemap,
        maxSurfaceCubemapLayered, surfaceAlignment, concurrentKernels, ECCEnabled, pciBusID, pciDeviceID, pciDomainID,
        tccDriver, asyncEngineCount, unifiedAddressing, memoryBusWidth, l2CacheSize, persistingL2CacheMaxSize,
        maxThreadsPerMultiProcessor, streamPrioritiesSupported, globalL1CacheSupported, localL1CacheSupported,
        sharedMemPerMultiprocessor, regsPerMultiprocessor, managedMemory, isMultiGpuBoard, multiGpuBoardGroupID,
        hostNativeAtomicSupported, pageableMemoryAccess, concurrentManagedAccess, computePreemptionSupported,
        canUseHostPointerForRegisteredMem, cooperativeLaunch, sharedMemPerBlockOptin,
        pageableMemoryAccessUsesHostPageTables, directManagedMemAccessFromHost, maxBlocksPerMultiProcessor,
        accessPolicyMaxWindowSize, reservedSharedMemPerBlock, hostRegisterSupported, sparseCudaArraySupported,
        hostRegisterReadOnlySupported, timelineSemaphoreInteropSupported, memoryPoolsSupported, gpuDirectRDMASupported,
        gpuDirectRDMAFlushWritesOptions, gpuDirectRDMAWritesOrdering, memoryPoolSupportedHandleTypes,
        deferredMappingCudaArraySupported, ipcEventSupported, clusterLaunch, unifiedFunctionPointers, deviceNumaConfig,
        deviceNumaId, mpsEnabled, hostNumaId, gpuPciDeviceID, gpuPciSubsystemID, hostNumaMultinodeIpcSupported,
        reserved,
    }
}

#[test]
fn device_prop_matches_recorded_libcudart() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(abi_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("device-prop-") && n.ends_with(".txt")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no tests/abi/device-prop-*.txt recordings");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let (mut name, mut uuid, mut total) = (String::new(), [0u8; 16], 0u64);
        let mut attrs = HashMap::new();
        let mut rattrs = HashMap::new();
        let mut recorded = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
            let num = |s: &str| -> i64 { s.parse().unwrap() };
            match tag {
                "version" => {}
                "name" => name = rest.to_string(),
                "uuid" => uuid = unhex(rest).try_into().unwrap(),
                "total_mem" => total = rest.parse().unwrap(),
                "attr" | "rattr" => {
                    let (n, v) = rest.split_once(' ').unwrap();
                    let map = if tag == "attr" { &mut attrs } else { &mut rattrs };
                    map.insert(u32::try_from(num(n)).unwrap(), i32::try_from(num(v)).unwrap());
                }
                "field" => {
                    let (f, h) = rest.split_once(' ').unwrap();
                    recorded.push((f.to_string(), unhex(h)));
                }
                "padding" => assert!(rest.ends_with(" 00"), "{}: libcudart left padding byte {rest}", file.display()),
                _ => panic!("{}: unexpected line {line:?}", file.display()),
            }
        }
        // The runtime's attribute numbers are the driver's: cudaDeviceGetAttribute(n) equalled
        // cuDeviceGetAttribute(n) for every n either answered.
        assert_eq!(attrs, rattrs, "{}: runtime and driver attributes differ", file.display());
        let used: BTreeSet<u32> = CU_DEVICE_ATTRIBUTES.iter().map(|&(_, v)| u32::try_from(v).unwrap()).collect();
        let ours = device_prop_from_attributes(&name, uuid, total, |n| {
            assert!(used.contains(&n), "device_prop_from_attributes read attribute {n}, not in CU_DEVICE_ATTRIBUTES");
            *attrs.get(&n).unwrap_or_else(|| panic!("{}: attribute {n} was not recorded", file.display()))
        });
        let ours = prop_fields(&ours);
        assert_eq!(ours.len(), recorded.len(), "{}: field count", file.display());
        let mut diffs = Vec::new();
        for ((f, mine), (rf, theirs)) in ours.iter().zip(&recorded) {
            assert_eq!(f, rf, "{}: field order", file.display());
            if *f == "reserved" {
                // prop_dump.c fills the struct with 0xab first: libcudart leaves `reserved` as
                // the caller had it (and zeroes the padding); we return zeroes there.
                assert!(theirs.iter().all(|&b| b == 0xab), "{}: libcudart wrote `reserved`", file.display());
                assert!(mine.iter().all(|&b| b == 0), "reserved not zero");
                continue;
            }
            if mine != theirs {
                diffs.push(format!("{f}: libcudart {} ours {}", hex(theirs), hex(mine)));
            }
        }
        assert!(diffs.is_empty(), "{}:\n  {}", file.display(), diffs.join("\n  "));
    }
}

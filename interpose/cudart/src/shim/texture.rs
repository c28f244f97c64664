//! Texture and surface objects. Their values are the driver's own (kernels receive them in their
//! arguments); the client keeps the descriptors the application gave, for the
//! `cudaGet*Object*Desc` queries.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::LazyLock;

use parking_lot::Mutex;
use remora_interpose::cudart::types::{CudaResourceDesc, CudaResourceViewDesc, CudaTextureDesc};
use remora_wire::ops;

use super::array::{array_info, format_of};
use crate::ffi;
use crate::state::{cuda, guard, rt, CudaError, INVALID_VALUE, NOT_SUPPORTED};

/// `cudaResourceType*`.
const RESOURCE_ARRAY: c_int = 0;
const RESOURCE_LINEAR: c_int = 2;
const RESOURCE_PITCH2D: c_int = 3;
/// `cudaReadModeElementType`.
const READ_MODE_ELEMENT_TYPE: c_int = 0;
/// `CU_TRSF_*`.
const TRSF_READ_AS_INTEGER: u32 = 0x01;
const TRSF_NORMALIZED_COORDINATES: u32 = 0x02;
const TRSF_SRGB: u32 = 0x10;
const TRSF_DISABLE_TRILINEAR_OPTIMIZATION: u32 = 0x20;
const TRSF_SEAMLESS_CUBEMAP: u32 = 0x40;

/// A texture object's descriptors, as the application gave them.
#[derive(Debug, Clone, Copy)]
struct TextureInfo {
    res: CudaResourceDesc,
    tex: CudaTextureDesc,
    view: Option<CudaResourceViewDesc>,
}

static TEXTURES: LazyLock<Mutex<HashMap<u64, TextureInfo>>> = LazyLock::new(Default::default);
static SURFACES: LazyLock<Mutex<HashMap<u64, CudaResourceDesc>>> = LazyLock::new(Default::default);

/// The wire request of `cudaCreateTextureObject`.
fn texture_request(
    res: &CudaResourceDesc,
    tex: &CudaTextureDesc,
    view: Option<&CudaResourceViewDesc>,
) -> Result<ops::TexObjectCreate, CudaError> {
    use remora_wire::ops::F32;
    use remora_wire::{U32, U64};
    let mut o: ops::TexObjectCreate = zerocopy::FromZeros::new_zeroed();
    let integer_format = |f: u32| !matches!(f, 0x10 | 0x20);
    let format;
    match res.resType {
        RESOURCE_ARRAY => {
            let a = array_info(res.array() as *mut c_void)?;
            format = format_of(&a.desc)?.0;
            o.res_type = U32::new(ops::RES_ARRAY);
            o.array = U64::new(res.array());
        }
        RESOURCE_LINEAR => {
            let l = res.linear();
            let (f, channels) = format_of(&l.desc)?;
            format = f;
            o.res_type = U32::new(ops::RES_LINEAR);
            o.ptr = U64::new(l.devPtr);
            o.format = U32::new(f);
            o.channels = U32::new(channels);
            o.width = U64::new(l.sizeInBytes);
        }
        RESOURCE_PITCH2D => {
            let p = res.pitch2D();
            let (f, channels) = format_of(&p.desc)?;
            format = f;
            o.res_type = U32::new(ops::RES_PITCH2D);
            o.ptr = U64::new(p.devPtr);
            o.format = U32::new(f);
            o.channels = U32::new(channels);
            o.width = U64::new(p.width);
            o.height = U64::new(p.height);
            o.pitch = U64::new(p.pitchInBytes);
        }
        // Mipmapped arrays are not supported yet.
        1 => return Err(NOT_SUPPORTED),
        _ => return Err(INVALID_VALUE),
    }
    let mut flags = 0;
    if tex.readMode == READ_MODE_ELEMENT_TYPE && integer_format(format) {
        flags |= TRSF_READ_AS_INTEGER;
    }
    if tex.normalizedCoords != 0 {
        flags |= TRSF_NORMALIZED_COORDINATES;
    }
    if tex.sRGB != 0 {
        flags |= TRSF_SRGB;
    }
    if tex.disableTrilinearOptimization != 0 {
        flags |= TRSF_DISABLE_TRILINEAR_OPTIMIZATION;
    }
    if tex.seamlessCubemap != 0 {
        flags |= TRSF_SEAMLESS_CUBEMAP;
    }
    let as_u32 = |v: c_int| u32::try_from(v).map_err(|_| INVALID_VALUE);
    for (d, &m) in o.address_mode.iter_mut().zip(&tex.addressMode) {
        *d = U32::new(as_u32(m)?);
    }
    o.filter_mode = U32::new(as_u32(tex.filterMode)?);
    o.flags = U32::new(flags);
    o.max_anisotropy = U32::new(tex.maxAnisotropy);
    o.mipmap_filter_mode = U32::new(as_u32(tex.mipmapFilterMode)?);
    o.mipmap_level_bias = F32::new(tex.mipmapLevelBias);
    o.min_mipmap_level_clamp = F32::new(tex.minMipmapLevelClamp);
    o.max_mipmap_level_clamp = F32::new(tex.maxMipmapLevelClamp);
    o.border_color = tex.borderColor.map(F32::new);
    if let Some(v) = view {
        o.has_view = U32::new(1);
        o.view_format = U32::new(as_u32(v.format)?);
        o.view_width = U64::new(v.width as u64);
        o.view_height = U64::new(v.height as u64);
        o.view_depth = U64::new(v.depth as u64);
        o.view_first_mip = U32::new(v.firstMipmapLevel);
        o.view_last_mip = U32::new(v.lastMipmapLevel);
        o.view_first_layer = U32::new(v.firstLayer);
        o.view_last_layer = U32::new(v.lastLayer);
    }
    Ok(o)
}

#[no_mangle]
pub unsafe extern "C" fn cudaCreateTextureObject(
    tex_object: *mut u64,
    res_desc: *const CudaResourceDesc,
    tex_desc: *const CudaTextureDesc,
    view_desc: *const CudaResourceViewDesc,
) -> CudaError {
    guard("cudaCreateTextureObject", || {
        if tex_object.is_null() {
            return Err(INVALID_VALUE);
        }
        // SAFETY: the caller's descriptors (the view is optional).
        let res = unsafe { ffi::get(res_desc) }?;
        // SAFETY: as above.
        let tex = unsafe { ffi::get(tex_desc) }?;
        // SAFETY: as above.
        let view = if view_desc.is_null() { None } else { Some(unsafe { ffi::get(view_desc) }?) };
        let req = texture_request(&res, &tex, view.as_ref())?;
        let t = rt()?.client.tex_object_create(&req).map_err(cuda)?;
        TEXTURES.lock().insert(t, TextureInfo { res, tex, view });
        // SAFETY: the caller's out-parameter (checked non-null).
        unsafe { ffi::put(tex_object, t) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDestroyTextureObject(tex_object: u64) -> CudaError {
    guard("cudaDestroyTextureObject", || {
        if tex_object == 0 {
            return Ok(());
        }
        rt()?.client.tex_object_destroy(tex_object).map_err(cuda)?;
        TEXTURES.lock().remove(&tex_object);
        Ok(())
    })
}

fn texture_info(tex_object: u64) -> Result<TextureInfo, CudaError> {
    TEXTURES.lock().get(&tex_object).copied().ok_or(INVALID_VALUE)
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetTextureObjectResourceDesc(
    res_desc: *mut CudaResourceDesc,
    tex_object: u64,
) -> CudaError {
    guard("cudaGetTextureObjectResourceDesc", || {
        let t = texture_info(tex_object)?;
        // SAFETY: the caller's out-parameter.
        unsafe { ffi::put(res_desc, t.res) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetTextureObjectTextureDesc(tex_desc: *mut CudaTextureDesc, tex_object: u64) -> CudaError {
    guard("cudaGetTextureObjectTextureDesc", || {
        let t = texture_info(tex_object)?;
        // SAFETY: the caller's out-parameter.
        unsafe { ffi::put(tex_desc, t.tex) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetTextureObjectResourceViewDesc(
    view_desc: *mut CudaResourceViewDesc,
    tex_object: u64,
) -> CudaError {
    guard("cudaGetTextureObjectResourceViewDesc", || {
        let t = texture_info(tex_object)?;
        let v = t.view.unwrap_or_else(zerocopy::FromZeros::new_zeroed);
        // SAFETY: the caller's out-parameter.
        unsafe { ffi::put(view_desc, v) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaCreateSurfaceObject(
    surf_object: *mut u64,
    res_desc: *const CudaResourceDesc,
) -> CudaError {
    guard("cudaCreateSurfaceObject", || {
        if surf_object.is_null() {
            return Err(INVALID_VALUE);
        }
        // SAFETY: the caller's resource descriptor.
        let res = unsafe { ffi::get(res_desc) }?;
        if res.resType != RESOURCE_ARRAY {
            return Err(INVALID_VALUE);
        }
        array_info(res.array() as *mut c_void)?;
        let s = rt()?.client.surf_object_create(res.array()).map_err(cuda)?;
        SURFACES.lock().insert(s, res);
        // SAFETY: the caller's out-parameter (checked non-null).
        unsafe { ffi::put(surf_object, s) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaDestroySurfaceObject(surf_object: u64) -> CudaError {
    guard("cudaDestroySurfaceObject", || {
        if surf_object == 0 {
            return Ok(());
        }
        rt()?.client.surf_object_destroy(surf_object).map_err(cuda)?;
        SURFACES.lock().remove(&surf_object);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetSurfaceObjectResourceDesc(
    res_desc: *mut CudaResourceDesc,
    surf_object: u64,
) -> CudaError {
    guard("cudaGetSurfaceObjectResourceDesc", || {
        let r = SURFACES.lock().get(&surf_object).copied().ok_or(INVALID_VALUE)?;
        // SAFETY: the caller's out-parameter.
        unsafe { ffi::put(res_desc, r) }
    })
}

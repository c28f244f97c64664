//! Registration: what nvcc's generated constructors call before `main`, and the teardown at exit.
//! Nothing here connects to the server: modules load lazily at first use.

use std::ffi::{c_char, c_int, c_void};

use crate::ffi;
use crate::registry;

/// `__cudaRegisterFatBinary`'s argument: `{ magic, version, data, filename_or_fatbins }`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Wrapper {
    magic: u32,
    version: u32,
    data: *const u8,
    filename_or_fatbins: *const c_void,
}

const WRAPPER_MAGIC: u32 = 0x466243b1;
const FATBIN_MAGIC: u32 = 0xBA55ED50;

/// The fatbinary handle: a leaked box holding the registry index, so `void**` stays stable.
fn handle_index(handle: *mut *mut c_void) -> Option<usize> {
    if handle.is_null() {
        return None;
    }
    // SAFETY: handles are only made by __cudaRegisterFatBinary below: a leaked, live Box<usize>.
    Some(unsafe { *(handle as *const usize) })
}

#[no_mangle]
pub unsafe extern "C" fn __cudaRegisterFatBinary(fat_cubin: *mut c_void) -> *mut *mut c_void {
    let result = std::panic::catch_unwind(|| {
        // SAFETY: nvcc passes the address of its static __fatDeviceText wrapper.
        let w = unsafe { ffi::get(fat_cubin as *const Wrapper) }.ok()?;
        if w.magic != WRAPPER_MAGIC || w.data.is_null() {
            eprintln!(
                "remora: __cudaRegisterFatBinary: unknown wrapper (magic {:#x}); kernels of this module will fail",
                w.magic
            );
            return None;
        }
        // SAFETY: `data` points to the fatbinary container the compiler embedded; its 16-byte
        // header states the length of what follows.
        let head = unsafe { ffi::bytes(w.data, 16) }.ok()?;
        let magic = u32::from_le_bytes(head[0..4].try_into().ok()?);
        if magic != FATBIN_MAGIC {
            eprintln!("remora: __cudaRegisterFatBinary: data is not a fatbinary (magic {magic:#x})");
            return None;
        }
        let header_size = u16::from_le_bytes(head[6..8].try_into().ok()?) as usize;
        let fat_size = usize::try_from(u64::from_le_bytes(head[8..16].try_into().ok()?)).ok()?;
        let total = header_size.checked_add(fat_size)?;
        // SAFETY: the container is `header_size + fat_size` bytes long, as its header says.
        let image = unsafe { ffi::bytes(w.data, total) }.ok()?.to_vec();
        Some(registry::add_fatbin(image))
    });
    let index = result.ok().flatten().unwrap_or(usize::MAX);
    Box::into_raw(Box::new(index)) as *mut *mut c_void
}

#[no_mangle]
pub unsafe extern "C" fn __cudaRegisterFatBinaryEnd(_handle: *mut *mut c_void) {}

#[no_mangle]
pub unsafe extern "C" fn __cudaUnregisterFatBinary(handle: *mut *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        if let Some(i) = handle_index(handle) {
            registry::remove_fatbin(i);
        }
    });
}

#[no_mangle]
pub unsafe extern "C" fn __cudaRegisterFunction(
    handle: *mut *mut c_void,
    host_fun: *const c_char,
    device_fun: *mut c_char,
    _device_name: *const c_char,
    _thread_limit: c_int,
    _tid: *mut c_void,
    _bid: *mut c_void,
    _b_dim: *mut c_void,
    _g_dim: *mut c_void,
    _w_size: *mut c_int,
) {
    let _ = std::panic::catch_unwind(|| {
        let Some(index) = handle_index(handle) else { return };
        // SAFETY: nvcc passes the kernel's mangled name as a NUL-terminated string.
        let Some(name) = (unsafe { ffi::string(device_fun) }) else { return };
        registry::add_kernel(index, host_fun as usize, name);
    });
}

/// A variable registration: the fatbinary's index and the variable's (mangled) name, to `add`;
/// a bad handle or name registers nothing, and nothing unwinds into the program.
fn register_var(handle: *mut *mut c_void, device_address: *mut c_char, add: impl FnOnce(usize, String)) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(index) = handle_index(handle) else { return };
        // SAFETY: nvcc passes the variable's (mangled) name as a NUL-terminated string.
        let Some(name) = (unsafe { ffi::string(device_address) }) else { return };
        add(index, name);
    }));
}

#[no_mangle]
pub unsafe extern "C" fn __cudaRegisterVar(
    handle: *mut *mut c_void,
    host_var: *mut c_char,
    device_address: *mut c_char,
    _device_name: *const c_char,
    _ext: c_int,
    _size: usize,
    _constant: c_int,
    _global: c_int,
) {
    register_var(handle, device_address, |index, name| registry::add_var(index, host_var as usize, name));
}

#[no_mangle]
pub unsafe extern "C" fn __cudaRegisterManagedVar(
    handle: *mut *mut c_void,
    host_var_ptr_address: *mut *mut c_void,
    device_address: *mut c_char,
    _device_name: *const c_char,
    _ext: c_int,
    _size: usize,
    _constant: c_int,
    _global: c_int,
) {
    register_var(handle, device_address, |index, name| {
        registry::add_managed_var(index, host_var_ptr_address as usize, name);
    });
}

/// Called by nvcc's generated code before the host first touches a `__managed__` variable: the
/// module is loaded (connecting if needed) and the variables' host pointers set. Returns 1 on
/// success; on failure the reason is printed, and 0 makes the program's next access retry.
#[no_mangle]
pub unsafe extern "C" fn __cudaInitModule(handle: *mut *mut c_void) -> c_char {
    let r = std::panic::catch_unwind(|| match handle_index(handle) {
        Some(index) if index != usize::MAX => registry::init_module(index),
        _ => Ok(()),
    });
    match r {
        Ok(Ok(())) => 1,
        Ok(Err(e)) => {
            eprintln!("remora: __cudaInitModule: cannot load the module of __managed__ variables (cudaError {e})");
            0
        }
        Err(_) => 0,
    }
}

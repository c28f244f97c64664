//! Errors, answered locally.

use std::ffi::c_char;

use remora_interpose::cudart::errors;

use crate::state::{peek_last_error, take_last_error, CudaError};

#[no_mangle]
pub unsafe extern "C" fn cudaGetLastError() -> CudaError {
    take_last_error()
}

#[no_mangle]
pub unsafe extern "C" fn cudaPeekAtLastError() -> CudaError {
    peek_last_error()
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetErrorName(error: CudaError) -> *const c_char {
    errors::error_name(error).as_ptr()
}

#[no_mangle]
pub unsafe extern "C" fn cudaGetErrorString(error: CudaError) -> *const c_char {
    errors::error_string(error).as_ptr()
}

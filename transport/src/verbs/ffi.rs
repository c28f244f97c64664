//! libibverbs and librdmacm, loaded at run time.
//!
//! The client library is loaded into unmodified CUDA applications on machines that may have no
//! rdma-core at all, so neither library is a link-time dependency: they are opened with
//! `dlopen` the first time an `rdma://` endpoint is used (or `remora doctor` asks), and a
//! missing library is an ordinary error ("rdma-core is not installed"), not a loader failure
//! of the application. Types and the `static inline` data-path calls (`ibv_post_send`,
//! `ibv_post_recv`, `ibv_poll_cq`, `ibv_req_notify_cq`, which go through the provider's function
//! table in `ibv_context`) come from `rdma-sys`; the exported functions are resolved here.
//! `rdma-sys` asks the linker for both libraries, but no symbol of theirs is referenced, so
//! with `--as-needed` (rustc's default) the binaries do not depend on them
//! (`readelf -d target/debug/libcudart.so` lists neither).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::OnceLock;

use libc::sockaddr;
use libloading::Library;
use rdma_sys::*;

macro_rules! table {
    ($( $lib:ident { $( $name:ident : fn($($arg:ty),*) $(-> $ret:ty)? ;)* } )*) => {
        /// The resolved entry points. The libraries stay open for the life of the process.
        #[allow(missing_docs)]
        pub(crate) struct Verbs {
            $($( pub(crate) $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*)*
            _libs: Vec<Library>,
        }

        fn load() -> Result<Verbs, String> {
            $(
                let $lib = open(stringify!($lib))?;
            )*
            Ok(Verbs {
                $($(
                    // SAFETY: the symbol is looked up by its C name and given the prototype
                    // rdma-sys generated from rdma-core's headers for that name.
                    $name: unsafe {
                        *$lib.get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                            concat!(stringify!($name), "\0").as_bytes(),
                        )
                        .map_err(|e| format!("{}: {e}", stringify!($name)))?
                    },
                )*)*
                _libs: vec![$($lib),*],
            })
        }
    };
}

table! {
    ibverbs {
        ibv_get_device_list: fn(*mut c_int) -> *mut *mut ibv_device;
        ibv_free_device_list: fn(*mut *mut ibv_device);
        ibv_get_device_name: fn(*mut ibv_device) -> *const c_char;
        ibv_open_device: fn(*mut ibv_device) -> *mut ibv_context;
        ibv_close_device: fn(*mut ibv_context) -> c_int;
        ibv_query_port: fn(*mut ibv_context, u8, *mut ibv_port_attr) -> c_int;
        ibv_alloc_pd: fn(*mut ibv_context) -> *mut ibv_pd;
        ibv_dealloc_pd: fn(*mut ibv_pd) -> c_int;
        ibv_reg_mr: fn(*mut ibv_pd, *mut c_void, usize, c_int) -> *mut ibv_mr;
        ibv_dereg_mr: fn(*mut ibv_mr) -> c_int;
        ibv_create_comp_channel: fn(*mut ibv_context) -> *mut ibv_comp_channel;
        ibv_destroy_comp_channel: fn(*mut ibv_comp_channel) -> c_int;
        ibv_create_cq: fn(*mut ibv_context, c_int, *mut c_void, *mut ibv_comp_channel, c_int) -> *mut ibv_cq;
        ibv_destroy_cq: fn(*mut ibv_cq) -> c_int;
        ibv_get_cq_event: fn(*mut ibv_comp_channel, *mut *mut ibv_cq, *mut *mut c_void) -> c_int;
        ibv_ack_cq_events: fn(*mut ibv_cq, c_uint);
        ibv_wc_status_str: fn(ibv_wc_status::Type) -> *const c_char;
    }
    rdmacm {
        rdma_create_event_channel: fn() -> *mut rdma_event_channel;
        rdma_destroy_event_channel: fn(*mut rdma_event_channel);
        rdma_create_id: fn(*mut rdma_event_channel, *mut *mut rdma_cm_id, *mut c_void, rdma_port_space::Type) -> c_int;
        rdma_destroy_id: fn(*mut rdma_cm_id) -> c_int;
        rdma_bind_addr: fn(*mut rdma_cm_id, *mut sockaddr) -> c_int;
        rdma_listen: fn(*mut rdma_cm_id, c_int) -> c_int;
        rdma_resolve_addr: fn(*mut rdma_cm_id, *mut sockaddr, *mut sockaddr, c_int) -> c_int;
        rdma_resolve_route: fn(*mut rdma_cm_id, c_int) -> c_int;
        rdma_create_qp: fn(*mut rdma_cm_id, *mut ibv_pd, *mut ibv_qp_init_attr) -> c_int;
        rdma_destroy_qp: fn(*mut rdma_cm_id);
        rdma_connect: fn(*mut rdma_cm_id, *mut rdma_conn_param) -> c_int;
        rdma_accept: fn(*mut rdma_cm_id, *mut rdma_conn_param) -> c_int;
        rdma_reject: fn(*mut rdma_cm_id, *const c_void, u8) -> c_int;
        rdma_disconnect: fn(*mut rdma_cm_id) -> c_int;
        rdma_get_cm_event: fn(*mut rdma_event_channel, *mut *mut rdma_cm_event) -> c_int;
        rdma_ack_cm_event: fn(*mut rdma_cm_event) -> c_int;
        rdma_get_src_port: fn(*mut rdma_cm_id) -> u16;
        rdma_event_str: fn(rdma_cm_event_type::Type) -> *const c_char;
    }
}

fn open(which: &str) -> Result<Library, String> {
    let name = match which {
        "ibverbs" => "libibverbs.so.1",
        _ => "librdmacm.so.1",
    };
    // SAFETY: loading rdma-core runs its constructors, which only set up provider tables; it
    // is loaded once per process (`verbs()` caches the result).
    unsafe { Library::new(name) }.map_err(|e| {
        format!("cannot load {name} ({e}): rdma-core is not installed (apt install rdma-core ibverbs-providers)")
    })
}

/// The loaded libraries, or why they cannot be loaded (the same answer for the whole process).
pub(crate) fn verbs() -> Result<&'static Verbs, String> {
    static VERBS: OnceLock<Result<Verbs, String>> = OnceLock::new();
    VERBS.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// A C string from the libraries, for messages.
pub(crate) fn text(p: *const c_char) -> String {
    if p.is_null() {
        return "?".into();
    }
    // SAFETY: rdma-core returns pointers to static NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

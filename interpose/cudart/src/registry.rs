//! What the program registered before `main`: fatbinaries, kernels (by host stub address) and
//! device variables, and, per device, the module, functions and globals they became on the
//! server. Modules are loaded lazily, at the first use on a device, so registering never
//! connects.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use remora_wire::ops::ImageKind;

use crate::state::{cuda, rt, CudaError, INVALID_DEVICE_FUNCTION, SYMBOL_NOT_FOUND};

/// A kernel's parameters: (offset, size) each, in order.
pub(crate) type Layout = Arc<Vec<(u32, u32)>>;

/// One registered fatbinary.
struct Fatbin {
    image: Vec<u8>,
    /// Parameter layouts from the cubins' `.nv.info`, by kernel name (empty when unknown).
    layouts: HashMap<String, Layout>,
    modules: HashMap<u32, u64>,
    /// `__managed__` variables: (the program's host pointer slot, name).
    managed: Vec<(usize, String)>,
    unregistered: bool,
}

/// A kernel, by its host stub.
struct Kernel {
    fatbin: usize,
    name: String,
    on_device: HashMap<u32, (u64, Layout)>,
    /// Per device: (max threads per block, max dynamic shared memory), checked at launch.
    limits: HashMap<u32, (i32, i32)>,
}

/// A device variable, by its host shadow.
struct Var {
    fatbin: usize,
    name: String,
    on_device: HashMap<u32, (u64, u64)>,
}

#[derive(Default)]
struct Registry {
    fatbins: Vec<Fatbin>,
    kernels: HashMap<usize, Kernel>,
    vars: HashMap<usize, Var>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut g = REGISTRY.lock();
    f(g.get_or_insert_with(Registry::default))
}

/// Register a fatbinary image; returns its index.
pub(crate) fn add_fatbin(image: Vec<u8>) -> usize {
    let layouts = layouts_of(&image);
    with(|r| {
        r.fatbins.push(Fatbin { image, layouts, modules: HashMap::new(), managed: Vec::new(), unregistered: false });
        r.fatbins.len() - 1
    })
}

/// Parameter layouts from the fatbinary's cubins, where it has any.
fn layouts_of(image: &[u8]) -> HashMap<String, Layout> {
    let mut out = HashMap::new();
    let Ok(fb) = remora_interpose::fatbin::parse(image) else { return out };
    for e in fb.entries.iter().filter(|e| e.kind == remora_interpose::fatbin::EntryKind::Cubin) {
        if let Ok(k) = remora_interpose::nvinfo::kernel_params(&e.image) {
            for (name, params) in k {
                out.entry(name).or_insert_with(|| Arc::new(params.iter().map(|p| (p.offset, p.size)).collect()));
            }
        }
    }
    out
}

/// Register a kernel's host stub.
pub(crate) fn add_kernel(fatbin: usize, host_fun: usize, name: String) {
    with(|r| {
        r.kernels.insert(host_fun, Kernel { fatbin, name, on_device: HashMap::new(), limits: HashMap::new() });
    });
}

/// Register a device variable's host shadow.
pub(crate) fn add_var(fatbin: usize, host_var: usize, name: String) {
    with(|r| {
        r.vars.insert(host_var, Var { fatbin, name, on_device: HashMap::new() });
    });
}

/// Register a `__managed__` variable: `slot` is the program's host pointer to it, which points
/// at the variable's memory once its module is loaded.
pub(crate) fn add_managed_var(fatbin: usize, slot: usize, name: String) {
    with(|r| {
        if let Some(fb) = r.fatbins.get_mut(fatbin) {
            fb.managed.push((slot, name));
        }
    });
}

/// `__cudaInitModule`: load fatbinary `index`'s module on the current device now (so its
/// `__managed__` variables are reachable from the host).
pub(crate) fn init_module(index: usize) -> Result<(), CudaError> {
    module(index, crate::state::current_device()).map(|_| ())
}

/// A module was loaded: give each `__managed__` variable of its fatbinary a host side at its
/// device address (the first device that loads the module owns it) and point the program's slot
/// there.
fn adopt_managed_vars(index: usize, dev: u32, module: u64) -> Result<(), CudaError> {
    let vars = with(|r| r.fatbins.get(index).map(|f| f.managed.clone()).unwrap_or_default());
    if vars.is_empty() {
        return Ok(());
    }
    let rt = rt()?;
    for (slot, name) in vars {
        // SAFETY: `slot` is the address of the program's `static T *var` that nvcc registered.
        if slot == 0 || unsafe { *(slot as *const usize) } != 0 {
            continue;
        }
        let (addr, size) = rt.client.module_get_global(module, &name).map_err(cuda)?;
        let host = crate::mirror::adopt_var(rt, dev, addr, size)?;
        // SAFETY: as above; the program reads the slot only after `__cudaInitModule` returns.
        unsafe { *(slot as *mut usize) = host };
    }
    Ok(())
}

/// The fatbinary is going away (`__cudaUnregisterFatBinary`, at exit): unload its modules if a
/// connection exists; never connect for this.
pub(crate) fn remove_fatbin(index: usize) {
    let modules: Vec<u64> = with(|r| {
        let Some(fb) = r.fatbins.get_mut(index) else { return Vec::new() };
        fb.unregistered = true;
        r.kernels.retain(|_, k| k.fatbin != index);
        r.vars.retain(|_, v| v.fatbin != index);
        fb.modules.drain().map(|(_, m)| m).collect()
    });
    if let Some(rt) = crate::state::rt_if_connected() {
        for m in modules {
            let _ = rt.client.module_unload(m);
        }
    }
}

/// The module of fatbinary `index` on `dev`, loading it on first use.
fn module(index: usize, dev: u32) -> Result<u64, CudaError> {
    if let Some(m) = with(|r| r.fatbins.get(index).and_then(|f| f.modules.get(&dev).copied())) {
        return Ok(m);
    }
    let image = with(|r| r.fatbins.get(index).filter(|f| !f.unregistered).map(|f| f.image.clone()))
        .ok_or(INVALID_DEVICE_FUNCTION)?;
    let rt = rt()?;
    let m = rt.client.module_load(dev, &image, ImageKind::Fatbin).map_err(cuda)?;
    let raced = with(|r| {
        let fb = r.fatbins.get_mut(index)?;
        match fb.modules.get(&dev) {
            Some(&other) => Some(other),
            None => {
                fb.modules.insert(dev, m);
                None
            }
        }
    });
    match raced {
        Some(other) => {
            let _ = rt.client.module_unload(m);
            Ok(other)
        }
        None => {
            adopt_managed_vars(index, dev, m)?;
            Ok(m)
        }
    }
}

/// The server function and parameter layout of the kernel whose host stub is `host_fun`, on `dev`.
pub(crate) fn kernel(host_fun: usize, dev: u32) -> Result<(u64, Layout), CudaError> {
    let (fatbin, name) =
        match with(|r| r.kernels.get(&host_fun).map(|k| (k.on_device.get(&dev).cloned(), k.fatbin, k.name.clone()))) {
            None => return Err(INVALID_DEVICE_FUNCTION),
            Some((Some(hit), _, _)) => return Ok(hit),
            Some((None, fatbin, name)) => (fatbin, name),
        };
    let m = module(fatbin, dev)?;
    let rt = rt()?;
    let f = rt.client.module_get_function(m, &name).map_err(cuda)?;
    let known = with(|r| r.fatbins.get(fatbin).and_then(|fb| fb.layouts.get(&name).cloned()));
    let layout = match known {
        Some(l) => l,
        None => Arc::new(rt.client.func_param_info(f).map_err(cuda)?),
    };
    with(|r| {
        if let Some(k) = r.kernels.get_mut(&host_fun) {
            k.on_device.insert(dev, (f, Arc::clone(&layout)));
        }
    });
    Ok((f, layout))
}

/// The launch limits of a kernel on `dev` (its function `f` there): max threads per block
/// (`__launch_bounds__` included) and max dynamic shared memory, queried once and cached, so an
/// over-large launch fails at once as it does with libcudart.
pub(crate) fn launch_limits(host_fun: usize, dev: u32, f: u64) -> Result<(i32, i32), CudaError> {
    if let Some(l) = with(|r| r.kernels.get(&host_fun).and_then(|k| k.limits.get(&dev).copied())) {
        return Ok(l);
    }
    let rt = rt()?;
    // CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0, MAX_DYNAMIC_SHARED_SIZE_BYTES = 8.
    let l = (rt.client.func_get_attribute(f, 0).map_err(cuda)?, rt.client.func_get_attribute(f, 8).map_err(cuda)?);
    with(|r| {
        if let Some(k) = r.kernels.get_mut(&host_fun) {
            k.limits.insert(dev, l);
        }
    });
    Ok(l)
}

/// `cudaFuncSetAttribute` changed a kernel's attributes on `dev`: query its limits again.
pub(crate) fn forget_limits(host_fun: usize, dev: u32) {
    with(|r| {
        if let Some(k) = r.kernels.get_mut(&host_fun) {
            k.limits.remove(&dev);
        }
    });
}

/// The device address and size of the variable whose host shadow is `host_var`, on `dev`.
pub(crate) fn var(host_var: usize, dev: u32) -> Result<(u64, u64), CudaError> {
    let (fatbin, name) =
        match with(|r| r.vars.get(&host_var).map(|v| (v.on_device.get(&dev).copied(), v.fatbin, v.name.clone()))) {
            None => return Err(SYMBOL_NOT_FOUND),
            Some((Some(hit), _, _)) => return Ok(hit),
            Some((None, fatbin, name)) => (fatbin, name),
        };
    let m = module(fatbin, dev)?;
    let g = rt()?.client.module_get_global(m, &name).map_err(cuda)?;
    with(|r| {
        if let Some(v) = r.vars.get_mut(&host_var) {
            v.on_device.insert(dev, g);
        }
    });
    Ok(g)
}

/// The server freed everything of this session on `dev` (`cudaDeviceReset`): forget the
/// modules, functions and globals resolved there; they load again at next use.
pub(crate) fn forget_device(dev: u32) {
    with(|r| {
        for fb in &mut r.fatbins {
            fb.modules.remove(&dev);
        }
        for k in r.kernels.values_mut() {
            k.on_device.remove(&dev);
            k.limits.remove(&dev);
        }
        for v in r.vars.values_mut() {
            v.on_device.remove(&dev);
        }
    });
}

/// Whether `host_fun` is a registered kernel.
pub(crate) fn is_kernel(host_fun: usize) -> bool {
    with(|r| r.kernels.contains_key(&host_fun))
}

//! NVIDIA through the CUDA driver API (`cudarc`, loaded at run time: no
//! CUDA library is needed to build or start smelt). PTX modules are
//! JIT-compiled by the driver at load.

use super::artifact::{Launch, ModuleKind, TensorMap};
use super::exec::{DevPtr, Driver, GpuError, Param, TensorMapBytes};
use cudarc::driver::{result, sys};
use std::ffi::{CString, c_void};

fn err(api: &'static str) -> impl FnOnce(result::DriverError) -> GpuError {
    move |e| GpuError::Driver {
        api,
        msg: format!("{e:?}"),
    }
}

pub struct Cuda {
    name: String,
    stream: sys::CUstream,
    functions: Vec<sys::CUfunction>,
    /// Per function, the dynamic shared memory it has been allowed (above
    /// the default 48 KiB a launch must ask for it first).
    shared_allowed: Vec<u32>,
    allocs: Vec<DevPtr>,
    graph: Option<(sys::CUgraph, sys::CUgraphExec)>,
}

impl Cuda {
    /// Device 0 through the driver; `Unavailable` when there is no driver
    /// library (checked before cudarc touches it) or no device.
    pub fn new() -> Result<Self, GpuError> {
        // SAFETY: only tries to open the library.
        if !unsafe { sys::is_culib_present() } {
            return Err(GpuError::Unavailable(
                "no NVIDIA driver: libcuda.so could not be loaded (this machine has no NVIDIA GPU driver installed)"
                    .into(),
            ));
        }
        result::init().map_err(|e| {
            GpuError::Unavailable(format!("the CUDA driver did not initialise: {e:?}"))
        })?;
        let n = result::device::get_count().map_err(err("cuDeviceGetCount"))?;
        if n < 1 {
            return Err(GpuError::Unavailable("no NVIDIA GPU found".into()));
        }
        let dev = result::device::get(0).map_err(err("cuDeviceGet"))?;
        // SAFETY: dev is a valid device from cuDeviceGet.
        let ctx =
            unsafe { result::primary_ctx::retain(dev) }.map_err(err("cuDevicePrimaryCtxRetain"))?;
        // SAFETY: ctx was just retained.
        unsafe { result::ctx::set_current(ctx) }.map_err(err("cuCtxSetCurrent"))?;
        let stream = result::stream::create(result::stream::StreamKind::NonBlocking)
            .map_err(err("cuStreamCreate"))?;
        let name = result::device::get_name(dev).unwrap_or_else(|_| "NVIDIA GPU".into());
        // SAFETY: valid device and attribute enums.
        let cc = unsafe {
            (
                result::device::get_attribute(
                    dev,
                    sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                ),
                result::device::get_attribute(
                    dev,
                    sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                ),
            )
        };
        let name = match cc {
            (Ok(a), Ok(b)) => format!("{name} (sm_{a}{b})"),
            _ => name,
        };
        Ok(Cuda {
            name,
            stream,
            functions: Vec::new(),
            shared_allowed: Vec::new(),
            allocs: Vec::new(),
            graph: None,
        })
    }
}

impl Drop for Cuda {
    fn drop(&mut self) {
        // SAFETY: every handle was created by this driver and is freed once.
        unsafe {
            if let Some((g, e)) = self.graph.take() {
                let _ = result::graph::exec_destroy(e);
                let _ = result::graph::destroy(g);
            }
            for &p in &self.allocs {
                let _ = result::free_sync(p);
            }
            let _ = result::stream::destroy(self.stream);
        }
    }
}

impl Driver for Cuda {
    fn device(&self) -> String {
        self.name.clone()
    }

    fn alloc(&mut self, bytes: usize) -> Result<DevPtr, GpuError> {
        // SAFETY: a plain allocation in the current context.
        let p = unsafe { result::malloc_sync(bytes) }.map_err(err("cuMemAlloc"))?;
        self.allocs.push(p);
        Ok(p)
    }

    fn upload(&mut self, dst: DevPtr, src: &[u8]) -> Result<(), GpuError> {
        if src.is_empty() {
            return Ok(());
        }
        // SAFETY: dst was allocated with at least src.len() bytes (the
        // manifest's sizes were checked when the folder was read).
        unsafe { result::memcpy_htod_sync(dst, src) }.map_err(err("cuMemcpyHtoD"))
    }

    fn download(&mut self, src: DevPtr, dst: &mut [u8]) -> Result<(), GpuError> {
        if dst.is_empty() {
            return Ok(());
        }
        // SAFETY: as for upload; the stream is synchronised first.
        unsafe {
            result::stream::synchronize(self.stream).map_err(err("cuStreamSynchronize"))?;
            result::memcpy_dtoh_sync(dst, src).map_err(err("cuMemcpyDtoH"))
        }
    }

    fn load(
        &mut self,
        kind: ModuleKind,
        _target: &str,
        image: &[u8],
        kernels: &[String],
    ) -> Result<Vec<usize>, GpuError> {
        if kind != ModuleKind::Ptx {
            return Err(GpuError::Driver {
                api: "cuModuleLoadData",
                msg: "an NVIDIA device runs PTX modules; this artifact was compiled for AMD".into(),
            });
        }
        let text = CString::new(image).map_err(|_| GpuError::Driver {
            api: "cuModuleLoadData",
            msg: "PTX module contains a NUL byte".into(),
        })?;
        // SAFETY: a NUL-terminated PTX image.
        let m = unsafe { result::module::load_data(text.as_ptr() as *const c_void) }
            .map_err(err("cuModuleLoadData (PTX JIT)"))?;
        let mut hs = Vec::with_capacity(kernels.len());
        for k in kernels {
            let name = CString::new(k.as_str()).map_err(|_| GpuError::Driver {
                api: "cuModuleGetFunction",
                msg: format!("bad kernel name {k:?}"),
            })?;
            // SAFETY: m is a loaded module.
            let f = unsafe { result::module::get_function(m, name) }
                .map_err(err("cuModuleGetFunction"))?;
            self.functions.push(f);
            self.shared_allowed.push(48 * 1024);
            hs.push(self.functions.len() - 1);
        }
        Ok(hs)
    }

    fn launch(&mut self, f: usize, l: &Launch, args: &[Param]) -> Result<(), GpuError> {
        if l.shared_bytes > self.shared_allowed[f] {
            // SAFETY: f is a loaded function; the attribute takes bytes.
            unsafe {
                result::function::set_function_attribute(
                    self.functions[f],
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    l.shared_bytes as i32,
                )
            }
            .map_err(err("cuFuncSetAttribute (dynamic shared memory)"))?;
            self.shared_allowed[f] = l.shared_bytes;
        }
        // Each parameter's value, addressed as the driver expects: a
        // pointer to the value (8 bytes, or a 128-byte tensor map).
        let mut vals: Vec<Param> = args.to_vec();
        let mut ptrs: Vec<*mut c_void> = vals
            .iter_mut()
            .map(|v| match v {
                Param::U64(x) => x as *mut u64 as *mut c_void,
                Param::Map(m) => m.0.as_mut_ptr() as *mut c_void,
            })
            .collect();
        // SAFETY: f is a loaded function whose parameters are all 8 bytes
        // (device pointers and i64), as the compiler emitted it; `vals`
        // outlives the call (the driver copies parameters at launch).
        unsafe {
            result::launch_kernel(
                self.functions[f],
                (l.grid[0], l.grid[1], l.grid[2]),
                (l.block[0], l.block[1], l.block[2]),
                l.shared_bytes,
                self.stream,
                &mut ptrs,
            )
        }
        .map_err(err("cuLaunchKernel"))
    }

    fn tensor_map(&mut self, addr: DevPtr, t: &TensorMap) -> Result<TensorMapBytes, GpuError> {
        use sys::CUtensorMapDataType as D;
        use sys::CUtensorMapSwizzle as S;
        let dtype = match t.dtype.as_str() {
            "f32" => D::CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
            "f16" => D::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
            "bf16" => D::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
            "f64" => D::CU_TENSOR_MAP_DATA_TYPE_FLOAT64,
            "i32" => D::CU_TENSOR_MAP_DATA_TYPE_INT32,
            "u8" | "i8" => D::CU_TENSOR_MAP_DATA_TYPE_UINT8,
            other => {
                return Err(GpuError::Driver {
                    api: "cuTensorMapEncodeTiled",
                    msg: format!("no tensor maps of {other}"),
                });
            }
        };
        let swizzle = match t.swizzle {
            32 => S::CU_TENSOR_MAP_SWIZZLE_32B,
            64 => S::CU_TENSOR_MAP_SWIZZLE_64B,
            128 => S::CU_TENSOR_MAP_SWIZZLE_128B,
            _ => S::CU_TENSOR_MAP_SWIZZLE_NONE,
        };
        let ones = vec![1u32; t.dims.len()];
        let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
        // SAFETY: the manifest was checked (rank 1..=5, strides and box
        // extents in the ranges the driver accepts, the view inside its
        // buffer); every array has `rank` (strides: rank - 1) entries.
        unsafe {
            sys::cuTensorMapEncodeTiled(
                map.as_mut_ptr(),
                dtype,
                t.dims.len() as u32,
                addr as *mut c_void,
                t.dims.as_ptr(),
                t.strides.as_ptr(),
                t.box_dims.as_ptr(),
                ones.as_ptr(),
                sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                swizzle,
                sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
            .result()
            .map_err(err("cuTensorMapEncodeTiled"))?;
            let map = map.assume_init();
            let mut out = TensorMapBytes([0; 128]);
            std::ptr::copy_nonoverlapping(
                &map as *const sys::CUtensorMap as *const u8,
                out.0.as_mut_ptr(),
                128.min(std::mem::size_of::<sys::CUtensorMap>()),
            );
            Ok(out)
        }
    }

    fn sync(&mut self) -> Result<(), GpuError> {
        // SAFETY: our stream.
        unsafe { result::stream::synchronize(self.stream) }.map_err(err("cuStreamSynchronize"))
    }

    fn begin_capture(&mut self) -> Result<bool, GpuError> {
        // SAFETY: our stream, not capturing yet.
        unsafe {
            result::stream::begin_capture(
                self.stream,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        }
        .map_err(err("cuStreamBeginCapture"))?;
        Ok(true)
    }

    fn end_capture(&mut self) -> Result<(), GpuError> {
        // SAFETY: our stream, capturing.
        unsafe {
            let g = result::stream::end_capture(self.stream).map_err(err("cuStreamEndCapture"))?;
            let e = result::graph::instantiate(g, sys::CUgraphInstantiate_flags(0))
                .map_err(err("cuGraphInstantiate"))?;
            self.graph = Some((g, e));
        }
        Ok(())
    }

    fn replay(&mut self) -> Result<(), GpuError> {
        let Some((_, e)) = self.graph else {
            return Err(GpuError::Driver {
                api: "cuGraphLaunch",
                msg: "no captured graph".into(),
            });
        };
        // SAFETY: an instantiated graph and our stream.
        unsafe { result::graph::launch(e, self.stream) }.map_err(err("cuGraphLaunch"))
    }
}

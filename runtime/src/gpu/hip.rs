//! AMD through the HIP runtime and hiprtc, opened at run time with
//! `libloading` (no ROCm is needed to build or start smelt). HIP modules
//! are C++ source: hiprtc compiles them for the artifact's target
//! (`--offload-arch=gfx942`) when the artifact is loaded.

use super::artifact::{Launch, ModuleKind};
use super::exec::{DevPtr, Driver, GpuError};
use libloading::Library;
use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};

type HipErr = c_int;
type Module = *mut c_void;
type Function = *mut c_void;
type Program = *mut c_void;

const RUNTIME: &[&str] = &["libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"];
const RTC: &[&str] = &["libhiprtc.so", "libhiprtc.so.6", "libhiprtc.so.5"];

fn open(names: &[&str]) -> Option<Library> {
    // SAFETY: opening a shared library runs its initialisers; these are
    // the vendor's runtime libraries.
    names.iter().find_map(|n| unsafe { Library::new(n) }.ok())
}

pub struct Hip {
    rt: Library,
    rtc: Library,
    name: String,
    functions: Vec<Function>,
    allocs: Vec<DevPtr>,
}

macro_rules! sym {
    ($lib:expr, $name:literal, $ty:ty) => {{
        // SAFETY: the symbol has this C signature in the HIP API.
        let f: libloading::Symbol<$ty> = unsafe { $lib.get($name) }.map_err(|e| {
            GpuError::Unavailable(format!(
                "the HIP runtime lacks {}: {e}",
                String::from_utf8_lossy(&$name[..$name.len() - 1])
            ))
        })?;
        f
    }};
}

impl Hip {
    pub fn new() -> Result<Self, GpuError> {
        let rt = open(RUNTIME).ok_or_else(|| {
            GpuError::Unavailable(
                "no AMD GPU runtime: libamdhip64.so could not be loaded (install ROCm's HIP runtime)"
                    .into(),
            )
        })?;
        // Older ROCm keeps hiprtc inside libamdhip64.
        let rtc = open(RTC).or_else(|| open(RUNTIME)).ok_or_else(|| {
            GpuError::Unavailable("hiprtc could not be loaded (install ROCm's hiprtc)".into())
        })?;
        let mut h = Hip {
            rt,
            rtc,
            name: "AMD GPU".into(),
            functions: Vec::new(),
            allocs: Vec::new(),
        };
        let init = sym!(h.rt, b"hipInit\0", unsafe extern "C" fn(c_uint) -> HipErr);
        // SAFETY: plain C calls with valid out-pointers.
        let r = unsafe { init(0) };
        h.check("hipInit", r)
            .map_err(|e| GpuError::Unavailable(format!("no usable AMD GPU: {e}")))?;
        let count = sym!(
            h.rt,
            b"hipGetDeviceCount\0",
            unsafe extern "C" fn(*mut c_int) -> HipErr
        );
        let mut n = 0;
        // SAFETY: as above.
        let r = unsafe { count(&mut n) };
        if r != 0 || n < 1 {
            return Err(GpuError::Unavailable("no AMD GPU found".into()));
        }
        let name = sym!(
            h.rt,
            b"hipDeviceGetName\0",
            unsafe extern "C" fn(*mut c_char, c_int, c_int) -> HipErr
        );
        let mut buf = [0 as c_char; 256];
        // SAFETY: buf holds 256 bytes, as passed.
        if unsafe { name(buf.as_mut_ptr(), buf.len() as c_int, 0) } == 0 {
            // SAFETY: hipDeviceGetName NUL-terminates within the length.
            h.name = unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned();
        }
        Ok(h)
    }

    fn check(&self, api: &'static str, r: HipErr) -> Result<(), GpuError> {
        if r == 0 {
            return Ok(());
        }
        let msg = (|| -> Result<String, GpuError> {
            let f = sym!(
                self.rt,
                b"hipGetErrorString\0",
                unsafe extern "C" fn(HipErr) -> *const c_char
            );
            // SAFETY: returns a static string.
            let p = unsafe { f(r) };
            Ok(if p.is_null() {
                format!("error {r}")
            } else {
                // SAFETY: non-null static C string.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            })
        })()
        .unwrap_or_else(|_| format!("error {r}"));
        Err(GpuError::Driver { api, msg })
    }

    /// HIP C++ -> code object for `target`, with hiprtc.
    fn compile(&self, target: &str, src: &[u8]) -> Result<Vec<u8>, GpuError> {
        let bad = |msg: String| GpuError::Driver { api: "hiprtc", msg };
        let create = sym!(
            self.rtc,
            b"hiprtcCreateProgram\0",
            unsafe extern "C" fn(
                *mut Program,
                *const c_char,
                *const c_char,
                c_int,
                *const *const c_char,
                *const *const c_char,
            ) -> c_int
        );
        let compile = sym!(
            self.rtc,
            b"hiprtcCompileProgram\0",
            unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int
        );
        let log_size = sym!(
            self.rtc,
            b"hiprtcGetProgramLogSize\0",
            unsafe extern "C" fn(Program, *mut usize) -> c_int
        );
        let log = sym!(
            self.rtc,
            b"hiprtcGetProgramLog\0",
            unsafe extern "C" fn(Program, *mut c_char) -> c_int
        );
        let code_size = sym!(
            self.rtc,
            b"hiprtcGetCodeSize\0",
            unsafe extern "C" fn(Program, *mut usize) -> c_int
        );
        let code = sym!(
            self.rtc,
            b"hiprtcGetCode\0",
            unsafe extern "C" fn(Program, *mut c_char) -> c_int
        );
        let destroy = sym!(
            self.rtc,
            b"hiprtcDestroyProgram\0",
            unsafe extern "C" fn(*mut Program) -> c_int
        );
        let src = CString::new(src).map_err(|_| bad("source contains a NUL byte".into()))?;
        // The flags smelt's HIP printer assumes (backends' hip/toolchain.rs
        // COMMON_FLAGS): wrapping signed overflow, wave64, and room for
        // the deep expressions of long fused chains.
        let opts = [
            CString::new(format!("--offload-arch={target}")).map_err(|_| bad("target".into()))?,
            c"-O3".to_owned(),
            c"-fwrapv".to_owned(),
            c"-D__AMDGCN_WAVEFRONT_SIZE=64".to_owned(),
            c"-fbracket-depth=4096".to_owned(),
        ];
        let optp: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Program = std::ptr::null_mut();
        // SAFETY: valid C strings and out-pointers; the program is
        // destroyed on every path below.
        unsafe {
            if create(
                &mut prog,
                src.as_ptr(),
                c"module.hip".as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            ) != 0
            {
                return Err(bad("hiprtcCreateProgram failed".into()));
            }
            let r = compile(prog, optp.len() as c_int, optp.as_ptr());
            let out = if r != 0 {
                let mut n = 0usize;
                log_size(prog, &mut n);
                let mut text = vec![0 as c_char; n.max(1)];
                log(prog, text.as_mut_ptr());
                let msg = CStr::from_ptr(text.as_ptr()).to_string_lossy().into_owned();
                Err(bad(format!("compiling for {target} failed:\n{msg}")))
            } else {
                let mut n = 0usize;
                code_size(prog, &mut n);
                let mut bytes = vec![0u8; n];
                code(prog, bytes.as_mut_ptr() as *mut c_char);
                Ok(bytes)
            };
            destroy(&mut prog);
            out
        }
    }
}

impl Drop for Hip {
    fn drop(&mut self) {
        let free: Result<libloading::Symbol<unsafe extern "C" fn(*mut c_void) -> HipErr>, _> =
            // SAFETY: hipFree's C signature.
            unsafe { self.rt.get(b"hipFree\0") };
        if let Ok(free) = free {
            for &p in &self.allocs {
                // SAFETY: allocated by hipMalloc, freed once.
                unsafe { free(p as *mut c_void) };
            }
        }
    }
}

impl Driver for Hip {
    fn device(&self) -> String {
        self.name.clone()
    }

    fn alloc(&mut self, bytes: usize) -> Result<DevPtr, GpuError> {
        let f = sym!(
            self.rt,
            b"hipMalloc\0",
            unsafe extern "C" fn(*mut *mut c_void, usize) -> HipErr
        );
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        let r = unsafe { f(&mut p, bytes) };
        self.check("hipMalloc", r)?;
        self.allocs.push(p as DevPtr);
        Ok(p as DevPtr)
    }

    fn upload(&mut self, dst: DevPtr, src: &[u8]) -> Result<(), GpuError> {
        if src.is_empty() {
            return Ok(());
        }
        let f = sym!(
            self.rt,
            b"hipMemcpyHtoD\0",
            unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> HipErr
        );
        // SAFETY: dst holds at least src.len() bytes (sizes checked on read).
        let r = unsafe { f(dst as *mut c_void, src.as_ptr() as *const c_void, src.len()) };
        self.check("hipMemcpyHtoD", r)
    }

    fn download(&mut self, src: DevPtr, dst: &mut [u8]) -> Result<(), GpuError> {
        if dst.is_empty() {
            return Ok(());
        }
        self.sync()?;
        let f = sym!(
            self.rt,
            b"hipMemcpyDtoH\0",
            unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> HipErr
        );
        // SAFETY: as for upload.
        let r = unsafe {
            f(
                dst.as_mut_ptr() as *mut c_void,
                src as *mut c_void,
                dst.len(),
            )
        };
        self.check("hipMemcpyDtoH", r)
    }

    fn load(
        &mut self,
        kind: ModuleKind,
        target: &str,
        image: &[u8],
        kernels: &[String],
    ) -> Result<Vec<usize>, GpuError> {
        if kind != ModuleKind::Hip {
            return Err(GpuError::Driver {
                api: "hipModuleLoadData",
                msg: "an AMD device runs HIP modules; this artifact was compiled for NVIDIA".into(),
            });
        }
        let co = self.compile(target, image)?;
        let load = sym!(
            self.rt,
            b"hipModuleLoadData\0",
            unsafe extern "C" fn(*mut Module, *const c_void) -> HipErr
        );
        let get = sym!(
            self.rt,
            b"hipModuleGetFunction\0",
            unsafe extern "C" fn(*mut Function, Module, *const c_char) -> HipErr
        );
        let mut m: Module = std::ptr::null_mut();
        // SAFETY: co is a code object from hiprtc; kept alive across the call.
        let r = unsafe { load(&mut m, co.as_ptr() as *const c_void) };
        self.check("hipModuleLoadData", r)?;
        let mut hs = Vec::with_capacity(kernels.len());
        for k in kernels {
            let name = CString::new(k.as_str()).map_err(|_| GpuError::Driver {
                api: "hipModuleGetFunction",
                msg: format!("bad kernel name {k:?}"),
            })?;
            let mut f: Function = std::ptr::null_mut();
            // SAFETY: m is loaded; valid C string.
            let r = unsafe { get(&mut f, m, name.as_ptr()) };
            self.check("hipModuleGetFunction", r)?;
            self.functions.push(f);
            hs.push(self.functions.len() - 1);
        }
        Ok(hs)
    }

    fn launch(&mut self, f: usize, l: &Launch, args: &[u64]) -> Result<(), GpuError> {
        let launch = sym!(
            self.rt,
            b"hipModuleLaunchKernel\0",
            unsafe extern "C" fn(
                Function,
                c_uint,
                c_uint,
                c_uint,
                c_uint,
                c_uint,
                c_uint,
                c_uint,
                *mut c_void,
                *mut *mut c_void,
                *mut *mut c_void,
            ) -> HipErr
        );
        let mut vals: Vec<u64> = args.to_vec();
        let mut ptrs: Vec<*mut c_void> = vals
            .iter_mut()
            .map(|v| v as *mut u64 as *mut c_void)
            .collect();
        // SAFETY: every parameter of smelt's kernels is 8 bytes; `vals`
        // outlives the call (parameters are copied at launch).
        let r = unsafe {
            launch(
                self.functions[f],
                l.grid[0],
                l.grid[1],
                l.grid[2],
                l.block[0],
                l.block[1],
                l.block[2],
                l.shared_bytes,
                std::ptr::null_mut(),
                ptrs.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        self.check("hipModuleLaunchKernel", r)
    }

    fn sync(&mut self) -> Result<(), GpuError> {
        let f = sym!(
            self.rt,
            b"hipDeviceSynchronize\0",
            unsafe extern "C" fn() -> HipErr
        );
        // SAFETY: no arguments.
        let r = unsafe { f() };
        self.check("hipDeviceSynchronize", r)
    }
}

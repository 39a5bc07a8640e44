//! Runs a GPU artifact folder on a device: one allocation for the arena
//! (offsets planned at compile time), one for the weights (uploaded once),
//! one per graph input; launches in stream order. The device API is the
//! `Driver` trait, implemented by `cuda.rs` and `hip.rs`.

use super::artifact::{Arg, Folder, Launch, ModuleKind, Step, TensorMap};
use crate::cpu::Place;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No driver library or no device: the message says what is missing.
    #[error("{0}")]
    Unavailable(String),
    #[error("{api}: {msg}")]
    Driver { api: &'static str, msg: String },
    #[error("{0}")]
    Input(String),
}

/// Device address.
pub type DevPtr = u64;

/// An encoded tensor map, aligned as the CUDA driver requires.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorMapBytes(pub [u8; 128]);

/// A kernel parameter's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Param {
    /// A device pointer or a 64-bit integer.
    U64(u64),
    /// A tensor map, passed by value.
    Map(Box<TensorMapBytes>),
}

/// What the executor needs from a GPU API. Kernel arguments are all
/// 8 bytes (device pointers or 64-bit integers).
pub trait Driver {
    /// The device, for messages (`NVIDIA H200 (sm_90)`).
    fn device(&self) -> String;
    fn alloc(&mut self, bytes: usize) -> Result<DevPtr, GpuError>;
    fn upload(&mut self, dst: DevPtr, src: &[u8]) -> Result<(), GpuError>;
    fn download(&mut self, src: DevPtr, dst: &mut [u8]) -> Result<(), GpuError>;
    /// Loads a module (PTX text, HIP source compiled for `target`) and
    /// returns handles of `kernels`, in order.
    fn load(
        &mut self,
        kind: ModuleKind,
        target: &str,
        image: &[u8],
        kernels: &[String],
    ) -> Result<Vec<usize>, GpuError>;
    fn launch(&mut self, f: usize, launch: &Launch, args: &[Param]) -> Result<(), GpuError>;
    fn sync(&mut self) -> Result<(), GpuError>;
    /// Encodes `map` over the buffer at device address `addr`.
    fn tensor_map(&mut self, _addr: DevPtr, _map: &TensorMap) -> Result<TensorMapBytes, GpuError> {
        Err(GpuError::Driver {
            api: "tensor map",
            msg: "this device has no tensor maps (TMA is NVIDIA sm_90 and newer)".into(),
        })
    }
    /// Records the launches made until `end_capture` into a graph that
    /// `replay` runs again; false where the API has no graphs.
    fn begin_capture(&mut self) -> Result<bool, GpuError> {
        Ok(false)
    }
    fn end_capture(&mut self) -> Result<(), GpuError> {
        Ok(())
    }
    fn replay(&mut self) -> Result<(), GpuError> {
        Err(GpuError::Driver {
            api: "graph",
            msg: "no captured graph".into(),
        })
    }
}

struct Launchable {
    f: usize,
    launch: Launch,
    args: Vec<Param>,
}

pub struct Executor<D: Driver> {
    driver: D,
    folder: Folder,
    inputs: Vec<DevPtr>,
    arena: DevPtr,
    weights: DevPtr,
    steps: Vec<Launchable>,
    captured: bool,
}

impl<D: Driver> Executor<D> {
    pub fn new(mut driver: D, folder: Folder) -> Result<Self, GpuError> {
        let m = &folder.manifest;
        let mut handles = Vec::with_capacity(m.modules.len());
        for (md, image) in m.modules.iter().zip(&folder.modules) {
            let hs = driver.load(md.kind, &m.target, image, &md.kernels)?;
            handles.push(hs);
        }
        let arena = driver.alloc(m.arena_bytes.max(1) as usize)?;
        let weights = driver.alloc(folder.weights.len().max(1))?;
        driver.upload(weights, &folder.weights)?;
        let mut inputs = vec![0; m.inputs.len()];
        for io in &m.inputs {
            let b = &m.buffers[io.buffer];
            if let Place::Input { index } = b.place {
                inputs[index] = driver.alloc((b.bytes as usize).max(1))?;
            }
        }
        let addr = |buf: usize| -> DevPtr {
            match m.buffers[buf].place {
                Place::Arena { offset } => arena + offset,
                Place::Weight { offset } => weights + offset,
                Place::Input { index } => inputs[index],
            }
        };
        let mut steps = Vec::with_capacity(m.steps.len());
        for st in &m.steps {
            let Step::Launch {
                module,
                kernel,
                args,
                launch,
            } = st;
            let md = &m.modules[*module];
            let k = md.kernels.iter().position(|x| x == kernel).unwrap_or(0);
            let mut params = Vec::with_capacity(args.len());
            for a in args {
                params.push(match a {
                    Arg::Buffer(b) => Param::U64(addr(*b)),
                    Arg::I64(v) => Param::U64(*v as u64),
                    Arg::TensorMap(t) => {
                        Param::Map(Box::new(driver.tensor_map(addr(t.buffer), t)?))
                    }
                });
            }
            steps.push(Launchable {
                f: handles[*module][k],
                launch: *launch,
                args: params,
            });
        }
        Ok(Executor {
            driver,
            folder,
            inputs,
            arena,
            weights,
            steps,
            captured: false,
        })
    }

    pub fn device(&self) -> String {
        self.driver.device()
    }

    pub fn folder(&self) -> &Folder {
        &self.folder
    }

    /// Records every launch into a device graph, replayed by each later
    /// `run` (CUDA graphs); false where the driver has none.
    pub fn capture(&mut self) -> Result<bool, GpuError> {
        if !self.driver.begin_capture()? {
            return Ok(false);
        }
        for s in &self.steps {
            self.driver.launch(s.f, &s.launch, &s.args)?;
        }
        self.driver.end_capture()?;
        self.captured = true;
        Ok(true)
    }

    /// Runs on raw input bytes (graph-input order); returns the outputs'
    /// bytes.
    pub fn run(&mut self, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, GpuError> {
        let m = &self.folder.manifest;
        if inputs.len() != m.inputs.len() {
            return Err(GpuError::Input(format!(
                "the model takes {} inputs, {} given",
                m.inputs.len(),
                inputs.len()
            )));
        }
        for (i, (io, x)) in m.inputs.iter().zip(inputs).enumerate() {
            let b = &m.buffers[io.buffer];
            if x.len() as u64 != b.bytes {
                return Err(GpuError::Input(format!(
                    "input \"{}\": {} bytes given, {}{:?} is {} bytes",
                    io.name,
                    x.len(),
                    b.dtype,
                    b.shape,
                    b.bytes
                )));
            }
            if let Some(g) = m.guards.iter().find(|g| g.input == i)
                && g.bytes != *x
            {
                return Err(GpuError::Input(format!(
                    "input \"{}\": the artifact was compiled for one value of it (its shapes depend on it); compile again for this one",
                    io.name
                )));
            }
            self.driver.upload(self.inputs[i], x)?;
        }
        self.launch()?;
        self.outputs()
    }

    /// Runs the program on the inputs already on the device and waits for
    /// it, without copying anything (what a benchmark times).
    pub fn launch(&mut self) -> Result<(), GpuError> {
        if self.captured {
            self.driver.replay()?;
        } else {
            for s in &self.steps {
                self.driver.launch(s.f, &s.launch, &s.args)?;
            }
        }
        self.driver.sync()
    }

    fn addr(&self, buf: usize) -> DevPtr {
        match self.folder.manifest.buffers[buf].place {
            Place::Arena { offset } => self.arena + offset,
            Place::Weight { offset } => self.weights + offset,
            Place::Input { index } => self.inputs[index],
        }
    }

    fn outputs(&mut self) -> Result<Vec<Vec<u8>>, GpuError> {
        let m = &self.folder.manifest;
        let bufs: Vec<(usize, usize)> = m
            .outputs
            .iter()
            .map(|io| (io.buffer, m.buffers[io.buffer].bytes as usize))
            .collect();
        let mut outs = Vec::with_capacity(bufs.len());
        for (buf, n) in bufs {
            let mut bytes = vec![0u8; n];
            let src = self.addr(buf);
            self.driver.download(src, &mut bytes)?;
            outs.push(bytes);
        }
        Ok(outs)
    }
}

impl Driver for Box<dyn Driver> {
    fn device(&self) -> String {
        (**self).device()
    }
    fn alloc(&mut self, bytes: usize) -> Result<DevPtr, GpuError> {
        (**self).alloc(bytes)
    }
    fn upload(&mut self, dst: DevPtr, src: &[u8]) -> Result<(), GpuError> {
        (**self).upload(dst, src)
    }
    fn download(&mut self, src: DevPtr, dst: &mut [u8]) -> Result<(), GpuError> {
        (**self).download(src, dst)
    }
    fn load(
        &mut self,
        kind: ModuleKind,
        target: &str,
        image: &[u8],
        kernels: &[String],
    ) -> Result<Vec<usize>, GpuError> {
        (**self).load(kind, target, image, kernels)
    }
    fn launch(&mut self, f: usize, launch: &Launch, args: &[Param]) -> Result<(), GpuError> {
        (**self).launch(f, launch, args)
    }
    fn tensor_map(&mut self, addr: DevPtr, map: &TensorMap) -> Result<TensorMapBytes, GpuError> {
        (**self).tensor_map(addr, map)
    }
    fn sync(&mut self) -> Result<(), GpuError> {
        (**self).sync()
    }
    fn begin_capture(&mut self) -> Result<bool, GpuError> {
        (**self).begin_capture()
    }
    fn end_capture(&mut self) -> Result<(), GpuError> {
        (**self).end_capture()
    }
    fn replay(&mut self) -> Result<(), GpuError> {
        (**self).replay()
    }
}

/// The driver for an artifact's target: CUDA for `sm_*`, HIP for `gfx*`.
pub fn driver_for(target: &str) -> Result<Box<dyn Driver>, GpuError> {
    if target.starts_with("sm_") {
        Ok(Box::new(super::cuda::Cuda::new()?))
    } else if target.starts_with("gfx") {
        Ok(Box::new(super::hip::Hip::new()?))
    } else {
        Err(GpuError::Input(format!("unknown GPU target {target:?}")))
    }
}

/// Reads an artifact folder and loads it on the device its target needs.
pub fn load(dir: &std::path::Path) -> Result<Executor<Box<dyn Driver>>, LoadError> {
    let folder = super::artifact::read(dir)?;
    let d = driver_for(&folder.manifest.target)?;
    Ok(Executor::new(d, folder)?)
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Artifact(#[from] super::artifact::GpuArtifactError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

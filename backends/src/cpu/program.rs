//! Graph -> cpu program: buffers, steps (kernels, GEMMs, host ops) and the
//! scheduled kernels, deduplicated so that identical layers share code.

use super::CpuError;
use super::plan::{self, Live};
use crate::lower::{self, BufId, Emitted, Lower, LowerError, Sink, T, kernel_ty};
use smelt_ir::data::Payload;
use smelt_ir::{DType, Graph, Node, TensorType, ValueId};
use smelt_kernel::schedule::{self, CpuSchedule};
use smelt_kernel::{Access, Kernel, Scheduled, Stmt};
use smelt_runtime::cpu::{self as rt, Artifact, Manifest, Place, Step};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Input(usize),
    Weight(Vec<u8>),
    Arena,
    /// A view of another buffer (Reshape and friends).
    Alias(BufId),
}

#[derive(Clone, Debug)]
struct Buf {
    dtype: DType,
    dims: Vec<u64>,
    kind: Kind,
}

/// What compilation did, for `--report` and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub nodes: usize,
    pub kernels: usize,
    pub kernel_launches: usize,
    pub gemms: usize,
    /// Nodes run by the reference implementation: (op, reason).
    pub host_ops: Vec<(String, String)>,
    pub arena_bytes: u64,
    pub weight_bytes: u64,
}

pub struct Program {
    pub kernels: Vec<Scheduled>,
    pub report: Report,
    manifest: Manifest,
    weights: Vec<u8>,
}

impl Program {
    /// Lowers `g` to kernels and steps (no code generation yet).
    pub fn build(g: &Graph) -> Result<Program, CpuError> {
        build_with(g, |k| schedule::cpu(k, CpuSchedule::default()), false)
    }

    /// Lowers `g` with another target's schedule (the GPU targets use
    /// `schedule::flat`); everything else is the cpu program's.
    pub fn build_with(g: &Graph, sched: fn(&Kernel) -> Scheduled) -> Result<Program, CpuError> {
        build_with(g, sched, false)
    }

    /// The GPU targets' program: the flat schedule, and f16/bf16 matrix
    /// products as GEMM steps (see `Sink::low_precision_gemm`).
    pub fn build_gpu(g: &Graph) -> Result<Program, CpuError> {
        build_with(g, schedule::flat, true)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn weights(&self) -> &[u8] {
        &self.weights
    }

    pub fn artifact(self, bitcode: Vec<u8>) -> Artifact {
        Artifact {
            manifest: self.manifest,
            bitcode,
            weights: self.weights,
        }
    }
}

/// A step while the program is being built: kernels stay in compute form
/// until fusion has run.
enum PStep {
    K(Kernel, Vec<BufId>),
    S(Step),
}

struct Builder {
    low_precision_gemm: bool,
    bufs: Vec<Buf>,
    steps: Vec<PStep>,
    kernels: Vec<Scheduled>,
    kernel_index: HashMap<String, usize>,
    report: Report,
}

impl Sink for Builder {
    fn temp(&mut self, dtype: DType, dims: &[u64]) -> BufId {
        self.bufs.push(Buf {
            dtype,
            dims: dims.to_vec(),
            kind: Kind::Arena,
        });
        self.bufs.len() - 1
    }

    fn emit(&mut self, e: Emitted) {
        match e {
            Emitted::Kernel { kernel, args } => self.steps.push(PStep::K(kernel, args)),
            Emitted::Gemm(g) => {
                self.steps.push(PStep::S(Step::Gemm(g)));
                self.report.gemms += 1;
            }
        }
    }

    fn alias(&mut self, out: BufId, input: BufId) {
        self.bufs[out].kind = Kind::Alias(input);
    }

    fn low_precision_gemm(&self) -> bool {
        self.low_precision_gemm
    }
}

impl Builder {
    /// Identical kernels (same body, same sizes) are compiled once.
    fn intern(&mut self, mut sk: Scheduled) -> usize {
        let base = std::mem::take(&mut sk.kernel.name);
        let key = serde_json::to_string(&sk).unwrap_or_default();
        if let Some(&i) = self.kernel_index.get(&key) {
            return i;
        }
        let i = self.kernels.len();
        sk.kernel.name = format!("k{i}_{base}");
        self.kernels.push(sk);
        self.kernel_index.insert(key, i);
        i
    }

    fn root(&self, mut b: BufId) -> BufId {
        while let Kind::Alias(x) = self.bufs[b].kind {
            b = x;
        }
        b
    }
}

fn static_dims(g: &Graph, v: ValueId) -> Result<Vec<u64>, CpuError> {
    let val = g.value(v);
    val.ty
        .shape
        .as_static()
        .map(|d| d.iter().map(|&x| x as u64).collect())
        .ok_or_else(|| {
            CpuError::Compile(format!(
                "value \"{}\" has type {}: the cpu target needs static shapes (give the model fixed input shapes)",
                val.name, val.ty
            ))
        })
}

fn raw_bytes(d: &smelt_ir::TensorData) -> Option<Vec<u8>> {
    match &d.payload {
        Payload::Raw(b) => Some(b.as_ref().to_vec()),
        Payload::Strings(_) => None,
    }
}

/// The node as a one-node graph in IR text, for a host step.
fn host_text(g: &Graph, n: &Node) -> String {
    let mut h = Graph::new("host");
    let mut map = HashMap::new();
    for x in n.inputs.iter().flatten() {
        if let std::collections::hash_map::Entry::Vacant(e) = map.entry(*x) {
            let v = g.value(*x);
            let id = h.add_value(format!("v{}", x.0), v.ty.clone());
            h.inputs.push(id);
            e.insert(id);
        }
    }
    let mut outs = Vec::new();
    for o in &n.outputs {
        outs.push(o.map(|o| {
            let v = g.value(o);
            let id = h.add_value(format!("v{}", o.0), TensorType::clone(&v.ty));
            h.outputs.push(id);
            id
        }));
    }
    h.add_node(Node {
        op: n.op,
        name: String::new(),
        inputs: n.inputs.iter().map(|x| x.map(|x| map[&x])).collect(),
        outputs: outs,
        attrs: n.attrs.clone(),
    });
    smelt_ir::text::print(&h)
}

fn build_with(
    g: &Graph,
    sched: fn(&Kernel) -> Scheduled,
    low_precision_gemm: bool,
) -> Result<Program, CpuError> {
    let mut b = Builder {
        low_precision_gemm,
        bufs: Vec::new(),
        steps: Vec::new(),
        kernels: Vec::new(),
        kernel_index: HashMap::new(),
        report: Report {
            nodes: g.nodes.len(),
            ..Default::default()
        },
    };
    let mut of_value: BTreeMap<ValueId, BufId> = BTreeMap::new();
    let new_buf = |b: &mut Builder, v: ValueId, kind: Kind| -> Result<BufId, CpuError> {
        let val = g.value(v);
        if val.ty.dtype == DType::String {
            return Err(CpuError::Compile(format!(
                "value \"{}\": string tensors are not supported by the cpu target",
                val.name
            )));
        }
        b.bufs.push(Buf {
            dtype: val.ty.dtype,
            dims: static_dims(g, v)?,
            kind,
        });
        Ok(b.bufs.len() - 1)
    };
    for (i, &v) in g.inputs.iter().enumerate() {
        let id = new_buf(&mut b, v, Kind::Input(i))?;
        of_value.insert(v, id);
    }
    for (&v, d) in &g.consts {
        let bytes = raw_bytes(d).ok_or_else(|| {
            CpuError::Compile(format!(
                "constant \"{}\": string tensors are not supported by the cpu target",
                g.value(v).name
            ))
        })?;
        let id = new_buf(&mut b, v, Kind::Weight(bytes))?;
        of_value.insert(v, id);
    }
    for n in &g.nodes {
        let mut ins = Vec::new();
        let mut consts = Vec::new();
        let mut all_typed = true;
        for x in &n.inputs {
            match x {
                None => {
                    ins.push(None);
                    consts.push(None);
                }
                Some(v) => {
                    let buf = *of_value.get(v).ok_or_else(|| {
                        CpuError::Compile(format!(
                            "{}: input \"{}\" is used before it is computed",
                            n.describe(),
                            g.value(*v).name
                        ))
                    })?;
                    let dtype = g.value(*v).ty.dtype;
                    let ty = kernel_ty(dtype);
                    all_typed &= ty.is_some();
                    ins.push(ty.map(|ty| T {
                        buf,
                        dims: b.bufs[buf].dims.clone(),
                        dtype,
                        ty,
                    }));
                    consts.push(g.consts.get(v));
                }
            }
        }
        let mut outs = Vec::new();
        for o in &n.outputs {
            match o {
                None => outs.push(None),
                Some(v) => {
                    let buf = new_buf(&mut b, *v, Kind::Arena)?;
                    of_value.insert(*v, buf);
                    let dtype = g.value(*v).ty.dtype;
                    let ty = kernel_ty(dtype);
                    all_typed &= ty.is_some();
                    outs.push(ty.map(|ty| T {
                        buf,
                        dims: b.bufs[buf].dims.clone(),
                        dtype,
                        ty,
                    }));
                }
            }
        }
        let result = if all_typed {
            let mut l = Lower::new(n, ins, outs, consts, &mut b);
            match lower::lower(&mut l) {
                Ok(()) => {
                    l.finish();
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            Err(LowerError::Unsupported(
                "a dtype kernels cannot hold".into(),
            ))
        };
        if let Err(e) = result {
            b.report
                .host_ops
                .push((n.op.name().to_string(), e.to_string()));
            let buf_of = |x: &Option<ValueId>| x.and_then(|v| of_value.get(&v).copied());
            b.steps.push(PStep::S(Step::Host {
                op: host_text(g, n),
                inputs: n.inputs.iter().map(buf_of).collect(),
                outputs: n.outputs.iter().map(buf_of).collect(),
            }));
        }
    }
    // Graph outputs get buffers of their own in the arena: copy those that
    // are inputs, weights, or shared with another output.
    let mut out_bufs = Vec::new();
    for &o in &g.outputs {
        let buf = *of_value.get(&o).ok_or_else(|| {
            CpuError::Compile(format!("output \"{}\" is never computed", g.value(o).name))
        })?;
        let root = b.root(buf);
        let shared = out_bufs.iter().any(|&x| b.root(x) == root);
        let needs_copy = shared || !matches!(b.bufs[root].kind, Kind::Arena);
        if needs_copy {
            let dtype = b.bufs[buf].dtype;
            let ty = kernel_ty(dtype).ok_or_else(|| {
                CpuError::Compile(format!("output \"{}\": dtype {dtype}", g.value(o).name))
            })?;
            let dims = b.bufs[buf].dims.clone();
            let src = T {
                buf,
                dims: dims.clone(),
                dtype,
                ty,
            };
            let dst_id = b.temp(dtype, &dims);
            let dst = T {
                buf: dst_id,
                dims,
                dtype,
                ty,
            };
            let mut k = Kernel::new("copy", vec![src.numel()]);
            let s = lower::param(&mut k, "x", &src, Access::Read);
            let d = lower::param(&mut k, "y", &dst, Access::Write);
            let i = k.index(0);
            k.body.push(Stmt::Store {
                buf: d,
                index: i.clone(),
                value: smelt_kernel::ir::build::load(s, i),
            });
            b.emit(Emitted::Kernel {
                kernel: k,
                args: vec![src.buf, dst.buf],
            });
            out_bufs.push(dst_id);
        } else {
            out_bufs.push(buf);
        }
    }
    finish(g, b, out_bufs, sched)
}

/// Buffers each step reads and writes (kernel parameters by access).
fn step_io(b: &Builder, st: &PStep) -> (Vec<BufId>, Vec<BufId>) {
    match st {
        PStep::K(k, args) => {
            let mut r = Vec::new();
            let mut w = Vec::new();
            for (p, &a) in k.params.iter().zip(args) {
                if p.access == Access::Read {
                    r.push(b.root(a));
                } else {
                    w.push(b.root(a));
                }
            }
            (r, w)
        }
        PStep::S(Step::Gemm(g)) => {
            let mut r = vec![b.root(g.a), b.root(g.b)];
            if g.beta != 0.0 {
                r.push(b.root(g.c));
            }
            (r, vec![b.root(g.c)])
        }
        PStep::S(Step::Host {
            inputs, outputs, ..
        }) => (
            inputs.iter().flatten().map(|&x| b.root(x)).collect(),
            outputs.iter().flatten().map(|&x| b.root(x)).collect(),
        ),
        PStep::S(Step::Kernel { .. }) => (Vec::new(), Vec::new()),
    }
}

/// Vertical fusion of elementwise producers into their only consumer
/// (kernel::fuse), on buffers that are written once, read by one step and
/// are not graph outputs or views.
fn fuse_steps(b: &mut Builder, out_bufs: &[BufId]) {
    let n = b.bufs.len();
    let mut aliased = vec![false; n];
    for i in 0..n {
        if let Kind::Alias(_) = b.bufs[i].kind {
            aliased[b.root(i)] = true;
        }
    }
    let mut keep: Vec<bool> = vec![true; n];
    for &o in out_bufs {
        keep[b.root(o)] = false;
    }
    loop {
        let mut writers: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (s, st) in b.steps.iter().enumerate() {
            let (r, w) = step_io(b, st);
            for x in r {
                readers[x].push(s);
            }
            for x in w {
                writers[x].push(s);
            }
        }
        let mut done = None;
        'search: for j in 0..b.steps.len() {
            let PStep::K(ck, cargs) = &b.steps[j] else {
                continue;
            };
            for (pi, p) in ck.params.iter().enumerate() {
                let x = cargs[pi];
                if p.access != Access::Read
                    || x != b.root(x)
                    || aliased[x]
                    || !keep[x]
                    || b.bufs[x].kind != Kind::Arena
                    || writers[x].len() != 1
                    || readers[x] != [j]
                    || cargs.iter().filter(|&&a| a == x).count() != 1
                    // Rounding to a 16-bit float happens at the store; keep it.
                    || p.ty.compute() != p.ty
                {
                    continue;
                }
                let i = writers[x][0];
                let PStep::K(pk, pargs) = &b.steps[i] else {
                    continue;
                };
                if i >= j {
                    continue;
                }
                // The producer's inputs must be final when it runs (each
                // written once, before it), so computing them later is the same.
                let (pr, _) = step_io(b, &b.steps[i]);
                if pr.iter().any(|&y| writers[y].len() > 1) {
                    continue;
                }
                let Some(po) = pargs.iter().position(|&a| a == x) else {
                    continue;
                };
                // A collapsed (1-D) map fuses with an n-D kernel of the same
                // size once lifted to its domain.
                let (pk, ck) = match (pk.domain.len(), ck.domain.len()) {
                    _ if pk.domain == ck.domain => (pk.clone(), ck.clone()),
                    (1, _) => match smelt_kernel::fuse::lift(pk, &ck.domain) {
                        Some(l) => (l, ck.clone()),
                        None => continue,
                    },
                    (_, 1) => match smelt_kernel::fuse::lift(ck, &pk.domain) {
                        Some(l) => (pk.clone(), l),
                        None => continue,
                    },
                    _ => continue,
                };
                if let Some((k, origin)) = smelt_kernel::fuse::fuse(&pk, po, &ck, pi) {
                    let args = origin
                        .iter()
                        .map(|&(from_producer, i)| if from_producer { pargs[i] } else { cargs[i] })
                        .collect();
                    done = Some((i, j, k, args));
                    break 'search;
                }
            }
        }
        let Some((i, j, k, args)) = done else { break };
        b.steps[j] = PStep::K(k, args);
        b.steps.remove(i);
    }
}

fn finish(
    g: &Graph,
    mut b: Builder,
    out_bufs: Vec<BufId>,
    sched: fn(&Kernel) -> Scheduled,
) -> Result<Program, CpuError> {
    fuse_steps(&mut b, &out_bufs);
    let pending = std::mem::take(&mut b.steps);
    let mut steps = Vec::with_capacity(pending.len());
    for st in pending {
        steps.push(match st {
            PStep::S(s) => s,
            PStep::K(kernel, args) => {
                let sk = sched(&kernel);
                let (parallel_extent, points_per_iter) = (sk.parallel_extent, sk.points_per_iter);
                b.report.kernel_launches += 1;
                Step::Kernel {
                    kernel: b.intern(sk),
                    args,
                    parallel_extent,
                    points_per_iter,
                }
            }
        });
    }
    let nsteps = steps.len();
    // Liveness of arena roots.
    let mut first = vec![usize::MAX; b.bufs.len()];
    let mut last = vec![0usize; b.bufs.len()];
    for (s, step) in steps.iter().enumerate() {
        let ids: Vec<BufId> = match step {
            Step::Kernel { args, .. } => args.clone(),
            Step::Gemm(gm) => vec![gm.a, gm.b, gm.c],
            Step::Host {
                inputs, outputs, ..
            } => inputs.iter().chain(outputs).flatten().copied().collect(),
        };
        for id in ids {
            let r = b.root(id);
            first[r] = first[r].min(s);
            last[r] = last[r].max(s);
        }
    }
    for &o in &out_bufs {
        let r = b.root(o);
        last[r] = nsteps;
        if first[r] == usize::MAX {
            first[r] = 0;
        }
    }
    let arena_ids: Vec<BufId> = (0..b.bufs.len())
        .filter(|&i| b.bufs[i].kind == Kind::Arena && first[i] != usize::MAX)
        .collect();
    let lives: Vec<Live> = arena_ids
        .iter()
        .map(|&i| Live {
            bytes: bytes_of(&b.bufs[i]),
            first: first[i],
            last: last[i],
        })
        .collect();
    let (offsets, arena_bytes) = plan::plan(&lives);
    let mut arena_off: HashMap<BufId, u64> = HashMap::new();
    for (k, &i) in arena_ids.iter().enumerate() {
        arena_off.insert(i, offsets[k]);
    }
    // Weights: only those some step reads, 64-byte aligned.
    let mut weights = Vec::new();
    let mut weight_off: HashMap<BufId, u64> = HashMap::new();
    for (i, buf) in b.bufs.iter().enumerate() {
        if let Kind::Weight(bytes) = &buf.kind
            && first[i] != usize::MAX
        {
            while weights.len() % plan::ALIGN as usize != 0 {
                weights.push(0);
            }
            weight_off.insert(i, weights.len() as u64);
            weights.extend_from_slice(bytes);
        }
    }
    let mut buffers = Vec::with_capacity(b.bufs.len());
    for i in 0..b.bufs.len() {
        let r = b.root(i);
        let place = match &b.bufs[r].kind {
            Kind::Input(k) => Place::Input { index: *k },
            Kind::Weight(_) => Place::Weight {
                offset: weight_off.get(&r).copied().unwrap_or(0),
            },
            // Never-used temporaries get offset 0 and are never touched.
            _ => Place::Arena {
                offset: arena_off.get(&r).copied().unwrap_or(0),
            },
        };
        let buf = &b.bufs[i];
        let bytes = match (&b.bufs[r].kind, &place) {
            (Kind::Weight(_), _) if !weight_off.contains_key(&r) => 0,
            (Kind::Arena, _) if !arena_off.contains_key(&r) => 0,
            _ => bytes_of(buf),
        };
        buffers.push(rt::Buffer {
            dtype: buf.dtype.name().to_string(),
            shape: buf.dims.clone(),
            bytes,
            place,
        });
    }
    b.report.kernels = b.kernels.len();
    b.report.arena_bytes = arena_bytes;
    b.report.weight_bytes = weights.len() as u64;
    let manifest = Manifest {
        name: g.name.clone(),
        producer: format!("smelt {}", env!("CARGO_PKG_VERSION")),
        inputs: g
            .inputs
            .iter()
            .enumerate()
            .map(|(i, &v)| rt::Io {
                name: g.value(v).name.clone(),
                buffer: buffers
                    .iter()
                    .position(|x| x.place == Place::Input { index: i })
                    .unwrap_or(0),
            })
            .collect(),
        outputs: g
            .outputs
            .iter()
            .zip(&out_bufs)
            .map(|(&v, &buf)| rt::Io {
                name: g.value(v).name.clone(),
                buffer: buf,
            })
            .collect(),
        buffers,
        arena_bytes,
        kernels: b.kernels.iter().map(|k| k.kernel.name.clone()).collect(),
        steps,
        guards: Vec::new(),
    };
    Ok(Program {
        kernels: b.kernels,
        report: b.report,
        manifest,
        weights,
    })
}

fn bytes_of(b: &Buf) -> u64 {
    let n: u64 = b.dims.iter().product();
    b.dtype.storage_bytes(n as usize).unwrap_or(0) as u64
}

//! The program under construction: HBM buffers (placed at the end, by
//! liveness), phases of commands (one graph op or one step of a lowered op
//! each, separated by a barrier of every queue the program uses), and the
//! queues and semaphores of the chip.
//!
//! Commands name HBM by (buffer, offset within it); `finish` places the
//! buffers and patches every HBM address. Phases are the unit of liveness:
//! two arena buffers share bytes when no phase touches both lifetimes.

use super::Error;
use smelt_runtime::maia::{
    Artifact, Command, Dt, Engine, HwConfig, Io, Loc, Op, Queue, Region, RegionKind, SRed, Sem,
    Space,
};
use std::collections::BTreeSet;

/// An HBM buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Buf(pub usize);

#[derive(Clone, Debug)]
pub enum Home {
    /// Initial contents from the compiler (weights, folded constants).
    Weight(Vec<u8>),
    Input,
    Output,
    /// Placed in the activation arena by liveness.
    Arena,
}

#[derive(Clone, Debug)]
pub struct BufInfo {
    pub name: String,
    pub bytes: u64,
    pub home: Home,
    /// Region dtype and shape (inputs/outputs/weights), for the artifact.
    pub dt: Dt,
    pub shape: Vec<u64>,
    /// First and last phase that touch it.
    life: Option<(usize, usize)>,
}

/// A memory operand of a DMA: HBM buffer + byte offset, or tile SRAM.
#[derive(Clone, Copy, Debug)]
pub enum Mem {
    Hbm(Buf, u64),
    /// A cluster's L2 (operands several tiles of the cluster read).
    L2(u16, u64),
    Sram(u16, u64),
}

/// Which DMA lane of a tile a command goes to: loads and stores get
/// separate lanes where the tile has two engines, so they overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Load,
    Store,
}

pub struct Program {
    pub hw: HwConfig,
    pub bufs: Vec<BufInfo>,
    phases: Vec<Vec<Command>>,
    /// (phase, index in phase, which location (0 source, 1 destination,
    /// 2 indices), buffer).
    patches: Vec<(usize, usize, u8, Buf)>,
    /// Commands emitted so far (limit checks).
    count: usize,
    pub io: Io,
    /// Whether the DMAs emitted convert to fp8/e8m0 saturating (the
    /// default) or not (a Cast with `saturate=0` clears it around its copy).
    pub saturate: bool,
}

/// Alignment of every HBM buffer: keeps DMA bursts aligned whatever the
/// dtype (the widest element is 8 bytes; MX blocks are placed by row).
const ALIGN: u64 = 64;

impl Program {
    pub fn new(hw: HwConfig) -> Program {
        Program {
            hw,
            bufs: Vec::new(),
            phases: Vec::new(),
            patches: Vec::new(),
            count: 0,
            io: Io::default(),
            saturate: true,
        }
    }

    pub fn tiles(&self) -> u16 {
        self.hw.tiles() as u16
    }

    pub fn buffer(&mut self, name: &str, bytes: u64, home: Home, dt: Dt, shape: Vec<u64>) -> Buf {
        self.bufs.push(BufInfo {
            name: name.to_string(),
            bytes,
            home,
            dt,
            shape,
            life: None,
        });
        Buf(self.bufs.len() - 1)
    }

    /// A scratch buffer living in the arena.
    pub fn temp(&mut self, name: &str, bytes: u64) -> Buf {
        self.buffer(name, bytes, Home::Arena, Dt::I8, vec![])
    }

    /// Starts a phase: everything emitted until the next one runs after
    /// every earlier phase has finished.
    pub fn phase(&mut self) {
        if self.phases.last().is_none_or(|p| !p.is_empty()) {
            self.phases.push(Vec::new());
        }
    }

    fn cur(&self) -> usize {
        self.phases.len().saturating_sub(1)
    }

    pub fn touch(&mut self, b: Buf) {
        let p = self.cur();
        let l = &mut self.bufs[b.0].life;
        *l = Some(match *l {
            None => (p, p),
            Some((a, z)) => (a.min(p), z.max(p)),
        });
    }

    pub fn push(&mut self, queue: Queue, op: Op) {
        if self.phases.is_empty() {
            self.phases.push(Vec::new());
        }
        self.count += 1;
        self.phases
            .last_mut()
            .expect("one phase exists")
            .push(Command { queue, op });
    }

    pub fn q(&self, engine: Engine, tile: u16) -> Queue {
        Queue {
            engine,
            unit: tile,
            lane: 0,
        }
    }

    pub fn dma_q(&self, tile: u16, lane: Lane) -> Queue {
        let lanes = self.hw.tile.dma.engines.max(1) as u8;
        Queue {
            engine: Engine::Dma,
            unit: tile,
            lane: match lane {
                Lane::Load => 0,
                Lane::Store => 1.min(lanes - 1),
            },
        }
    }

    /// The cluster DMA engine of `cluster` (lane 0).
    pub fn cdma_q(&self, cluster: u16) -> Queue {
        Queue {
            engine: Engine::ClusterDma,
            unit: cluster,
            lane: 0,
        }
    }

    /// A 2-D strided DMA on `queue`. Strides are in elements of each side's dtype.
    #[allow(clippy::too_many_arguments)]
    pub fn dma(
        &mut self,
        queue: Queue,
        src: Mem,
        dst: Mem,
        sdt: Dt,
        ddt: Dt,
        rows: u64,
        cols: u64,
        sstride: u64,
        dstride: u64,
    ) -> Result<(), Error> {
        let fits = |x: u64| u32::try_from(x).is_ok();
        if !(fits(rows) && fits(cols) && fits(sstride) && fits(dstride)) {
            return Err(Error::TooLarge(format!(
                "a copy of {rows}x{cols} elements (strides {sstride}, {dstride}) exceeds the DMA command's 32-bit fields"
            )));
        }
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        if self.phases.is_empty() {
            self.phases.push(Vec::new());
        }
        let src = self.loc(src, 0);
        let dst = self.loc(dst, 1);
        self.push(
            queue,
            Op::Dma {
                src,
                dst,
                src_dt: sdt,
                dst_dt: ddt,
                rows: rows as u32,
                cols: cols as u32,
                src_stride: sstride as u32,
                dst_stride: dstride as u32,
                saturate: self.saturate,
            },
        );
        Ok(())
    }

    /// The location of `m` for the next command, patched at `finish`
    /// when it is in HBM (`slot`: 0 source, 1 destination, 2 indices).
    fn loc(&mut self, m: Mem, slot: u8) -> Loc {
        match m {
            Mem::Hbm(b, off) => {
                self.touch(b);
                let p = self.cur();
                let idx = self.phases.get(p).map_or(0, |v| v.len());
                self.patches.push((p, idx, slot, b));
                Loc {
                    space: Space::Hbm,
                    offset: off,
                }
            }
            Mem::L2(c, off) => Loc {
                space: Space::L2(c),
                offset: off,
            },
            Mem::Sram(t, off) => Loc {
                space: Space::Sram(t),
                offset: off,
            },
        }
    }

    /// What `dma.gather` and `dma.scatter` share: the 32-bit field checks
    /// and the three locations, in order (src, dst, idx) with the sizes as
    /// the command stores them; `None` when there is nothing to move.
    #[allow(clippy::too_many_arguments)]
    fn indexed(
        &mut self,
        what: &str,
        src: Mem,
        dst: Mem,
        idx: Mem,
        rows: u64,
        cols: u64,
        strides: [u64; 3],
        bound: u64,
    ) -> Result<Option<Indexed>, Error> {
        let [sstride, dstride, istride] = strides;
        let field = |x: u64| u32::try_from(x).ok();
        let (Some(rows32), Some(cols32), Some(s), Some(d), Some(i), Some(b)) = (
            field(rows),
            field(cols),
            field(sstride),
            field(dstride),
            field(istride),
            field(bound),
        ) else {
            return Err(Error::TooLarge(format!(
                "a {what} of {rows}x{cols} elements exceeds the DMA command's 32-bit fields"
            )));
        };
        if rows == 0 || cols == 0 {
            return Ok(None);
        }
        if self.phases.is_empty() {
            self.phases.push(Vec::new());
        }
        Ok(Some(Indexed {
            src: self.loc(src, 0),
            dst: self.loc(dst, 1),
            idx: self.loc(idx, 2),
            rows: rows32,
            cols: cols32,
            strides: [s, d, i],
            bound: b,
        }))
    }

    /// An indirect copy: row r of `dst` is row idx[r] of `src` (strides in
    /// elements of `dt`, the index stride in elements of `idt`).
    #[allow(clippy::too_many_arguments)]
    pub fn dma_gather(
        &mut self,
        queue: Queue,
        src: Mem,
        dst: Mem,
        idx: Mem,
        dt: Dt,
        idt: Dt,
        rows: u64,
        cols: u64,
        strides: [u64; 3],
        bound: u64,
    ) -> Result<(), Error> {
        let Some(x) = self.indexed("gather", src, dst, idx, rows, cols, strides, bound)? else {
            return Ok(());
        };
        let [src_stride, dst_stride, idx_stride] = x.strides;
        self.push(
            queue,
            Op::DmaGather {
                src: x.src,
                dst: x.dst,
                idx: x.idx,
                dt,
                idx_dt: idt,
                rows: x.rows,
                cols: x.cols,
                src_stride,
                dst_stride,
                idx_stride,
                bound: x.bound,
            },
        );
        Ok(())
    }

    /// One `dma.scatter`: `rows` rows of `cols` elements from src (row
    /// stride `strides[0]`) to the dst rows idx names (row stride
    /// `strides[1]`; idx stride `strides[2]`), combined by `red`.
    #[allow(clippy::too_many_arguments)]
    pub fn dma_scatter(
        &mut self,
        queue: Queue,
        src: Mem,
        dst: Mem,
        idx: Mem,
        dt: Dt,
        idt: Dt,
        red: SRed,
        rows: u64,
        cols: u64,
        strides: [u64; 3],
        bound: u64,
    ) -> Result<(), Error> {
        let Some(x) = self.indexed("scatter", src, dst, idx, rows, cols, strides, bound)? else {
            return Ok(());
        };
        let [src_stride, dst_stride, idx_stride] = x.strides;
        self.push(
            queue,
            Op::DmaScatter {
                src: x.src,
                dst: x.dst,
                idx: x.idx,
                dt,
                idx_dt: idt,
                red,
                rows: x.rows,
                cols: x.cols,
                src_stride,
                dst_stride,
                idx_stride,
                bound: x.bound,
            },
        );
        Ok(())
    }

    pub fn signal(&mut self, queue: Queue, idx: u16) {
        let sem = Sem {
            tile: queue.unit,
            idx,
        };
        self.push(queue, Op::Signal { sem, n: 1 });
    }

    /// Signals semaphore `idx` of another tile (a cluster engine telling
    /// the tiles that read what it loaded).
    pub fn signal_to(&mut self, queue: Queue, tile: u16, idx: u16) {
        let sem = Sem { tile, idx };
        self.push(queue, Op::Signal { sem, n: 1 });
    }

    /// Waits on semaphore `idx` of the queue's own tile.
    pub fn wait(&mut self, queue: Queue, idx: u16) {
        let sem = Sem {
            tile: queue.unit,
            idx,
        };
        self.push(queue, Op::Wait { sem, n: 1 });
    }

    /// Places every buffer, patches HBM addresses, joins phases with
    /// barriers and returns the artifact.
    pub fn finish(mut self) -> Result<Artifact, Error> {
        // Fixed regions first (weights, inputs, outputs), then the arena.
        let mut base = vec![0u64; self.bufs.len()];
        let mut at = 0u64;
        let mut regions = Vec::new();
        for home_kind in [RegionKind::Weight, RegionKind::Input, RegionKind::Output] {
            for (i, b) in self.bufs.iter_mut().enumerate() {
                let kind = match b.home {
                    Home::Weight(_) => RegionKind::Weight,
                    Home::Input => RegionKind::Input,
                    Home::Output => RegionKind::Output,
                    Home::Arena => continue,
                };
                if kind != home_kind {
                    continue;
                }
                base[i] = at;
                let data = match &mut b.home {
                    Home::Weight(d) => Some(std::mem::take(d)),
                    _ => None,
                };
                regions.push(Region {
                    name: b.name.clone(),
                    kind,
                    offset: at,
                    bytes: b.bytes,
                    dtype: b.dt.name().to_string(),
                    shape: b.shape.clone(),
                    init: data.is_some(),
                    data,
                });
                at = (at + b.bytes).next_multiple_of(ALIGN);
            }
        }
        let arena_base = at;
        let arena = self.plan_arena(&mut base, arena_base);
        if arena > 0 {
            regions.push(Region {
                name: "activations".into(),
                kind: RegionKind::Activation,
                offset: arena_base,
                bytes: arena,
                dtype: "i8".into(),
                shape: vec![arena],
                init: false,
                data: None,
            });
        }
        let total = arena_base + arena;
        if total > self.hw.hbm.bytes {
            return Err(Error::TooLarge(format!(
                "the program needs {total} bytes of HBM, the chip has {}",
                self.hw.hbm.bytes
            )));
        }
        for &(p, i, slot, b) in &self.patches {
            let l = match (&mut self.phases[p][i].op, slot) {
                (
                    Op::Dma { src, .. } | Op::DmaGather { src, .. } | Op::DmaScatter { src, .. },
                    0,
                ) => src,
                (
                    Op::Dma { dst, .. } | Op::DmaGather { dst, .. } | Op::DmaScatter { dst, .. },
                    1,
                ) => dst,
                (Op::DmaGather { idx, .. } | Op::DmaScatter { idx, .. }, _) => idx,
                _ => continue,
            };
            l.offset += base[b.0];
        }
        let used: BTreeSet<Queue> = self.phases.iter().flatten().map(|c| c.queue).collect();
        let count = u16::try_from(used.len())
            .map_err(|_| Error::TooLarge("more queues than a barrier can count".into()))?;
        let mut commands = Vec::with_capacity(self.count + self.phases.len() * used.len());
        let n = self.phases.len();
        for (p, cmds) in self.phases.into_iter().enumerate() {
            commands.extend(cmds);
            if p + 1 < n {
                // Barrier ids alternate: a queue cannot reach barrier p+2
                // before every queue has left barrier p.
                let id = (p % 2) as u16;
                for &queue in &used {
                    commands.push(Command {
                        queue,
                        op: Op::Barrier { id, count },
                    });
                }
            }
        }
        Ok(Artifact {
            devices: 1,
            hw: self.hw,
            regions,
            commands,
            io: self.io,
        })
    }

    /// First-fit placement of arena buffers, largest first, sharing bytes
    /// between buffers whose lifetimes (in phases) do not overlap. Returns
    /// the arena's size.
    fn plan_arena(&self, base: &mut [u64], arena_base: u64) -> u64 {
        let mut order: Vec<usize> = (0..self.bufs.len())
            .filter(|&i| matches!(self.bufs[i].home, Home::Arena) && self.bufs[i].life.is_some())
            .collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(self.bufs[i].bytes), i));
        // (start, end, first phase, last phase) of placed buffers.
        let mut placed: Vec<(u64, u64, usize, usize)> = Vec::new();
        let mut size = 0u64;
        for i in order {
            let (a, z) = self.bufs[i].life.unwrap_or((0, 0));
            let len = self.bufs[i].bytes.next_multiple_of(ALIGN);
            let mut busy: Vec<(u64, u64)> = placed
                .iter()
                .filter(|p| !(p.3 < a || z < p.2))
                .map(|p| (p.0, p.1))
                .collect();
            busy.sort();
            let mut off = 0u64;
            for (s, e) in busy {
                if off + len <= s {
                    break;
                }
                off = off.max(e);
            }
            placed.push((off, off + len, a, z));
            base[i] = arena_base + off;
            size = size.max(off + len);
        }
        size
    }
}

/// The checked operands of an indirect DMA (see `Program::indexed`).
struct Indexed {
    src: Loc,
    dst: Loc,
    idx: Loc,
    rows: u32,
    cols: u32,
    strides: [u32; 3],
    bound: u32,
}

//! Double-buffered per-tile pipelines: DMA loads of step i+1 run while an
//! engine computes step i and the store DMA writes step i-1 back, ordered
//! by the tile's semaphores. Callers lay out SRAM in two slots (step i uses
//! slot i % 2) and give resolved commands; this module only adds the
//! synchronization, and keeps every semaphore balanced so the next phase
//! starts from zero.

use super::Error;
use super::program::{Lane, Mem, Program};
use smelt_runtime::maia::{Dt, Engine, Op, SRed};

/// One DMA transfer (see `Program::dma`).
#[derive(Clone, Copy, Debug)]
pub struct Xfer {
    pub src: Mem,
    pub dst: Mem,
    pub sdt: Dt,
    pub ddt: Dt,
    pub rows: u64,
    pub cols: u64,
    pub sstride: u64,
    pub dstride: u64,
}

impl Xfer {
    /// A contiguous run of n elements.
    pub fn flat(src: Mem, dst: Mem, sdt: Dt, ddt: Dt, n: u64) -> Xfer {
        Xfer {
            src,
            dst,
            sdt,
            ddt,
            rows: 1,
            cols: n,
            sstride: n,
            dstride: n,
        }
    }
}

impl Xfer {
    /// Rows r0..r1 of this transfer.
    fn rows_of(&self, r0: u64, r1: u64) -> Xfer {
        let shift = |m: Mem, b: u64| match m {
            Mem::Hbm(buf, o) => Mem::Hbm(buf, o + b),
            Mem::L2(c, o) => Mem::L2(c, o + b),
            Mem::Sram(t, o) => Mem::Sram(t, o + b),
        };
        Xfer {
            src: shift(self.src, self.sdt.bytes(r0 * self.sstride)),
            dst: shift(self.dst, self.ddt.bytes(r0 * self.dstride)),
            rows: r1 - r0,
            ..*self
        }
    }
}

fn emit(p: &mut Program, tile: u16, lane: Lane, x: &Xfer) -> Result<(), Error> {
    let q = p.dma_q(tile, lane);
    p.dma(
        q, x.src, x.dst, x.sdt, x.ddt, x.rows, x.cols, x.sstride, x.dstride,
    )
}

/// Semaphores a pipeline needs on each tile.
pub const VECTOR_SEMS: u32 = 6;
pub const MATMUL_SEMS: u32 = 14;

pub fn check_sems(p: &Program, need: u32) -> Result<(), Error> {
    if p.hw.tile.semaphores < need {
        return Err(Error::Target(format!(
            "tile.semaphores = {} but a double-buffered pipeline needs {need}",
            p.hw.tile.semaphores
        )));
    }
    Ok(())
}

/// A vector step: load inputs into its slot, run vector commands, store.
pub struct Step {
    pub loads: Vec<Xfer>,
    pub ops: Vec<Op>,
    pub stores: Vec<Xfer>,
}

/// Runs `steps` on one tile: loads on the load lane, vector commands on the
/// vector queue, stores on the store lane, two slots in flight.
pub fn vector(p: &mut Program, tile: u16, steps: &[Step]) -> Result<(), Error> {
    check_sems(p, VECTOR_SEMS)?;
    const LOADED: u16 = 0;
    const FREE: u16 = 2;
    const DONE: u16 = 4;
    let n = steps.len();
    let lq = p.dma_q(tile, Lane::Load);
    let sq = p.dma_q(tile, Lane::Store);
    let vq = p.q(Engine::Vector, tile);
    let load = |p: &mut Program, i: usize| -> Result<(), Error> {
        let s = (i % 2) as u16;
        if i >= 2 {
            p.wait(lq, FREE + s);
        }
        for x in &steps[i].loads {
            emit(p, tile, Lane::Load, x)?;
        }
        p.signal(lq, LOADED + s);
        Ok(())
    };
    if n > 0 {
        load(p, 0)?;
    }
    for (i, step) in steps.iter().enumerate() {
        let s = (i % 2) as u16;
        if i + 1 < n {
            load(p, i + 1)?;
        }
        p.wait(vq, LOADED + s);
        for op in &step.ops {
            p.push(vq, op.clone());
        }
        p.signal(vq, DONE + s);
        p.wait(sq, DONE + s);
        for x in &step.stores {
            emit(p, tile, Lane::Store, x)?;
        }
        if i + 2 < n {
            p.signal(sq, FREE + s);
        }
    }
    Ok(())
}

/// The semaphore a cluster engine signals on each reading tile once a
/// chunk of a shared operand is in L2 (one signal per chunk per tile).
pub const SHARED: u16 = MATMUL_SEMS as u16;

/// The semaphore the first part of a split-K block signals on the tiles
/// holding its other parts once its store is done.
pub const SPLIT: u16 = SHARED + 1;

/// A chunk of an operand that a cluster's DMA engine copies into its L2,
/// and the tiles that read it.
pub struct Fill {
    pub xfers: Vec<Xfer>,
    pub readers: Vec<u16>,
}

/// Runs `fills` in order on the cluster's DMA engine, telling the readers
/// after each. No slot is reused within a phase, so it never waits.
pub fn fill_l2(p: &mut Program, cluster: u16, fills: &[Fill]) -> Result<(), Error> {
    let q = p.cdma_q(cluster);
    for f in fills {
        for x in &f.xfers {
            p.dma(
                q, x.src, x.dst, x.sdt, x.ddt, x.rows, x.cols, x.sstride, x.dstride,
            )?;
        }
        for &t in &f.readers {
            p.signal_to(q, t, SHARED);
        }
    }
    Ok(())
}

/// One k-chunk of an output tile: load A and B parts, run the matmuls
/// (accumulating into the tile's accumulator).
pub struct KStep {
    /// Loads on the load lane (A) and on the store lane (B), so a tile
    /// with two DMA engines streams both operands at once.
    pub loads: Vec<Xfer>,
    pub loads_b: Vec<Xfer>,
    pub matmuls: Vec<Op>,
    /// `loads` read L2 that a cluster engine fills: wait for its signal.
    pub shared: bool,
}

/// One output tile: k-steps on the tensor unit, then the epilogue on the
/// vector unit (its operands loaded by the store lane), then the store.
pub struct MmTile {
    pub ksteps: Vec<KStep>,
    pub epi_loads: Vec<Xfer>,
    pub epi_ops: Vec<Op>,
    pub stores: Vec<Xfer>,
    /// A later part of a split-K block: wait for the first part's store,
    /// then add the stores into HBM (a `dma.scatter` by the given row
    /// indices and destination row count).
    pub add: Option<(Mem, u64)>,
    /// The first part of a split-K block: the tiles to tell once stored.
    pub notify: Vec<u16>,
}

/// Runs output tiles on one tile. Input slots alternate per k-step
/// (global count), accumulator/epilogue/output slots per output tile.
pub fn matmul(p: &mut Program, tile: u16, tiles: &[MmTile]) -> Result<(), Error> {
    let shared = tiles.iter().flat_map(|t| &t.ksteps).any(|k| k.shared);
    let split = tiles
        .iter()
        .any(|t| t.add.is_some() || !t.notify.is_empty());
    check_sems(
        p,
        MATMUL_SEMS
            + if split {
                2
            } else if shared {
                1
            } else {
                0
            },
    )?;
    const LOADED: u16 = 0;
    const INFREE: u16 = 2;
    const CREADY: u16 = 4;
    const ACCFREE: u16 = 6;
    const EPI: u16 = 8;
    const DONE: u16 = 10;
    const INFREE_B: u16 = 12;
    let lq = p.dma_q(tile, Lane::Load);
    let sq = p.dma_q(tile, Lane::Store);
    let tq = p.q(Engine::Tensor, tile);
    let vq = p.q(Engine::Vector, tile);
    let total: usize = tiles.iter().map(|t| t.ksteps.len()).sum();
    let nt = tiles.len();
    let epi = |p: &mut Program, t: usize| -> Result<(), Error> {
        for x in &tiles[t].epi_loads {
            emit(p, tile, Lane::Store, x)?;
        }
        p.signal(sq, EPI + (t % 2) as u16);
        Ok(())
    };
    let store = |p: &mut Program, t: usize| -> Result<(), Error> {
        p.wait(sq, DONE + (t % 2) as u16);
        let mt = &tiles[t];
        if let Some((idx, bound)) = mt.add {
            p.wait(sq, SPLIT);
            for x in &mt.stores {
                p.dma_scatter(
                    sq,
                    x.src,
                    x.dst,
                    idx,
                    x.ddt,
                    Dt::I32,
                    SRed::Add,
                    x.rows,
                    x.cols,
                    [x.sstride, x.dstride, 1],
                    bound,
                )?;
            }
        } else {
            for x in &mt.stores {
                emit(p, tile, Lane::Store, x)?;
            }
        }
        for &other in &mt.notify {
            p.signal_to(sq, other, SPLIT);
        }
        Ok(())
    };
    // The last store has nothing left to overlap with: its rows are split
    // over both lanes (the load lane is idle by then).
    let last = tiles.last();
    let tail = lq != sq
        && last.is_some_and(|mt| {
            mt.add.is_none() && mt.notify.is_empty() && mt.stores.iter().all(|x| x.rows >= 2)
        });
    let mut g = 0usize;
    for (t, mt) in tiles.iter().enumerate() {
        let o = (t % 2) as u16;
        epi(p, t)?;
        for (j, ks) in mt.ksteps.iter().enumerate() {
            let s = (g % 2) as u16;
            if g >= 2 {
                p.wait(lq, INFREE + s);
                p.wait(sq, INFREE_B + s);
            }
            if ks.shared {
                p.wait(lq, SHARED);
            }
            for x in &ks.loads {
                emit(p, tile, Lane::Load, x)?;
            }
            p.signal(lq, LOADED + s);
            for x in &ks.loads_b {
                emit(p, tile, Lane::Store, x)?;
            }
            p.signal(sq, LOADED + s);
            p.wait(tq, LOADED + s);
            p.wait(tq, LOADED + s);
            if j == 0 && t >= 2 {
                p.wait(tq, ACCFREE + o);
            }
            for op in &ks.matmuls {
                p.push(tq, op.clone());
            }
            if g + 2 < total {
                p.signal(tq, INFREE + s);
                p.signal(tq, INFREE_B + s);
            }
            g += 1;
        }
        p.signal(tq, CREADY + o);
        p.wait(vq, CREADY + o);
        p.wait(vq, EPI + o);
        for op in &mt.epi_ops {
            p.push(vq, op.clone());
        }
        if t + 2 < nt {
            p.signal(vq, ACCFREE + o);
        }
        p.signal(vq, DONE + o);
        if tail && t + 1 == nt {
            p.signal(vq, DONE + o);
        }
        if t >= 1 {
            store(p, t - 1)?;
        }
    }
    if let (true, Some(mt)) = (tail, last) {
        let o = ((nt - 1) % 2) as u16;
        p.wait(sq, DONE + o);
        p.wait(lq, DONE + o);
        for x in &mt.stores {
            let h = x.rows / 2;
            emit(p, tile, Lane::Store, &x.rows_of(0, h))?;
            emit(p, tile, Lane::Load, &x.rows_of(h, x.rows))?;
        }
    } else if nt > 0 {
        store(p, nt - 1)?;
    }
    Ok(())
}

//! Matmul tile sizes from the accelerator description: the candidates are
//! multiples of the tensor unit's step shape; each is checked against tile
//! SRAM (two input slots, two accumulators, two output and epilogue
//! buffers) and scored by a small model of the chip (compute per tile,
//! DMA per tile, HBM shared by all tiles, work dealt round-robin). Tiles
//! of a cluster may share one block of A through the cluster's L2 (loaded
//! once by the cluster DMA engine) when that moves fewer HBM bytes than
//! each tile reading it: the L2 port's bandwidth and size bound it.

use super::Error;
use smelt_runtime::maia::HwConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulTiling {
    pub tm: u64,
    pub tn: u64,
    pub tk: u64,
    /// Tiles of one cluster that read the same A block from the cluster's
    /// L2 (1: every tile reads A from HBM itself).
    pub share: u64,
    /// Length of the K range one item accumulates (`k` unless split: the
    /// partial products of a short-M matmul then go to more tiles, the first
    /// stores its block with the epilogue and the others add theirs to it).
    pub kc: u64,
}

/// What a matmul phase holds in SRAM besides its operands.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    /// Independent products (batch).
    pub batch: u64,
    /// Bytes of one operand element in the tensor unit's dtype (SRAM).
    pub elem: u64,
    /// Bytes of one element of A and of B as read from HBM (an f32
    /// activation is converted by the load DMA).
    pub a_bytes: u64,
    pub b_bytes: u64,
    /// Parts per operand (1, or 2 for the hi/lo f32 split).
    pub parts: u64,
    /// A full-tile residual is loaded for the epilogue.
    pub residual: bool,
    /// Partial products may be added in HBM (f32 output, linear epilogue).
    pub splittable: bool,
    /// Outputs of `n` columns each computed from the same A (sibling
    /// products in one phase); a column block never spans two.
    pub segs: u64,
}

impl MatmulTiling {
    /// SRAM bytes these tiles need.
    pub fn sram_bytes(&self, s: &Shape) -> u64 {
        let MatmulTiling { tm, tn, tk, .. } = *self;
        let inputs = 2 * (tm + tn) * tk * s.elem * s.parts;
        let acc_out = 2 * 2 * tm * tn * 4;
        let epi = 2 * (4 * (tm + tn) + if s.residual { 4 * tm * tn } else { 0 });
        let tmp = 4 * tm * tn;
        inputs + acc_out + epi + tmp
    }
}

fn candidates(step: u64, full: u64) -> Vec<u64> {
    let top = full.max(1).next_multiple_of(step);
    let mut v = Vec::new();
    let mut x = step;
    while x < top {
        v.push(x);
        x *= 2;
    }
    v.push(top);
    v
}

/// Semaphores a tile needs for a matmul phase whose A comes through L2.
pub const SHARED_SEMS: u32 = super::pipeline::MATMUL_SEMS + 1;

/// Whether tiles of a cluster can share A through the cluster's L2: the
/// chip has a cluster DMA engine to fill it and spare semaphores to say
/// when a chunk is there.
fn can_share(hw: &HwConfig) -> bool {
    hw.tiles_per_cluster > 1
        && hw.cluster.dma.engines >= 1
        && hw.cluster.dma.bandwidth > 0.0
        && hw.cluster.l2_bytes > 0
        && hw.tile.semaphores >= SHARED_SEMS
}

/// Semaphores a tile needs for a split-K matmul phase.
pub const SPLIT_SEMS: u32 = SHARED_SEMS + 1;

/// Bytes of L2 one shared A block takes (A in its HBM dtype).
pub fn l2_block_bytes(s: &Shape, tm: u64, kc: u64) -> u64 {
    tm * kc * s.a_bytes * s.parts
}

/// K ranges to try: all of K, or 2, 4, 8.. parts of whole tensor steps.
fn k_ranges(hw: &HwConfig, s: &Shape, tk: u64) -> Vec<u64> {
    let mut v = vec![s.k];
    if !s.splittable || hw.tile.semaphores < SPLIT_SEMS {
        return v;
    }
    let mut parts = 2;
    while parts <= hw.tiles() as u64 {
        let kc = s.k.div_ceil(parts).next_multiple_of(tk);
        if kc < s.k && !v.contains(&kc) {
            v.push(kc);
        }
        parts *= 2;
    }
    v
}

/// The tiling with the lowest modelled time that fits tile SRAM.
pub fn choose_matmul_tiling(hw: &HwConfig, s: &Shape, rate: f64) -> Result<MatmulTiling, Error> {
    let [sm, sn, sk] = hw.tile.tensor.shape.map(|x| x as u64);
    let tiles = hw.tiles() as f64;
    let clusters = hw.clusters as f64;
    let clock = hw.clock_hz;
    let lanes = hw.tile.dma.engines.min(2);
    let l2_port = hw.cluster.dma.bandwidth * hw.cluster.dma.engines as f64;
    let shares: Vec<u64> = if can_share(hw) {
        // Fewer readers than the cluster's tiles: the L2 port carries the
        // fill plus one read per reader, and a layer with few column
        // blocks then spreads over more clusters.
        (1..=hw.tiles_per_cluster as u64).collect()
    } else {
        vec![1]
    };
    let mut best: Option<(f64, MatmulTiling)> = None;
    for &share in &shares {
        for &tm in &candidates(sm, s.m) {
            for &tn in &candidates(sn, s.n) {
                for &tk in &candidates(sk, s.k) {
                    for kc in k_ranges(hw, s, tk) {
                        let t = MatmulTiling {
                            tm,
                            tn,
                            tk,
                            share,
                            kc,
                        };
                        // Partial clusters only without split K: the model
                        // misses the split-K adds queueing behind the slower
                        // shared reads (measured slower on BERT's FFN down).
                        if t.sram_bytes(s) > hw.tile.sram_bytes
                            || (share > 1 && share < hw.tiles_per_cluster as u64 && kc < s.k)
                        {
                            continue;
                        }
                        let ks = s.k.div_ceil(kc);
                        let nb = s.n.div_ceil(tn) * s.segs.max(1);
                        let items = s.m.div_ceil(tm) * nb * s.batch * ks;
                        // Shared: groups of `share` column blocks of one row
                        // block go to one cluster, a tile takes one item of a
                        // group; else items are dealt round-robin.
                        let groups = s.m.div_ceil(tm) * nb.div_ceil(share) * s.batch * ks;
                        let rounds = if share > 1 {
                            (groups as f64 / clusters).ceil()
                        } else {
                            (items as f64 / tiles).ceil()
                        };
                        // A split item waits for its block's first store: one
                        // item per tile keeps that wait free of cycles.
                        if ks > 1 && rounds > 1.0 {
                            continue;
                        }
                        let a = (tm * kc * s.a_bytes * s.parts) as f64;
                        let b = (tn * kc * s.b_bytes * s.parts) as f64;
                        let l2 = if share > 1 {
                            if rounds as u64 * l2_block_bytes(s, tm, kc) > hw.cluster.l2_bytes {
                                continue;
                            }
                            // The port carries the fill and every tile's read.
                            rounds * a * (1 + share) as f64 / l2_port
                        } else {
                            0.0
                        };
                        let kp = kc.div_ceil(tk) * tk;
                        let flops = 2.0 * (tm * tn * kp) as f64 * s.parts as f64;
                        let compute = flops / rate;
                        let store = (4 * tm * tn) as f64;
                        // An added partial reads the block, then writes it
                        // (3x the bytes on the engine), after the first store.
                        let tail = if ks > 1 { 4.0 * store } else { store };
                        // A streams on the load lane; B, the epilogue operands
                        // and the store on the other one (one lane: all of it).
                        // A read from L2 shares the cluster's port with the
                        // fill and the other readers.
                        let bw = hw.tile.dma.bandwidth;
                        let a_bw = if share > 1 {
                            bw.min(l2_port / (1 + share) as f64)
                        } else {
                            bw
                        };
                        let dma = if lanes >= 2 {
                            (a / a_bw).max((b + tail) / bw)
                        } else {
                            a / a_bw + (b + tail) / bw
                        };
                        let issue = (kc.div_ceil(tk) * 4) as f64 * hw.tile.issue_cycles / clock;
                        // Pipeline fill and drain: a transfer-bound tile still
                        // computes its last k-chunk after the last load, a
                        // compute-bound one waits for its first chunk; both store
                        // the last output tile at the end. Large chunks start
                        // late, and a shared A chunk is in L2 before tiles read it.
                        let chunks = kc.div_ceil(tk) as f64;
                        let first = if share > 1 {
                            (tm * tk * s.a_bytes * s.parts) as f64 / hw.cluster.dma.bandwidth
                        } else {
                            0.0
                        };
                        let fill = if dma > compute {
                            compute / chunks
                        } else {
                            dma / chunks
                        } + tail / hw.tile.dma.bandwidth
                            + first;
                        let per_tile = rounds * (compute.max(dma) + issue) + fill;
                        let a_reads = if share > 1 { groups } else { items };
                        let added = (items - items / ks) as f64 * store;
                        let hbm = (items as f64 * (b + store) + added + a_reads as f64 * a)
                            / hw.hbm.bandwidth;
                        let cost = per_tile.max(hbm).max(l2);
                        let better = match best {
                            None => true,
                            Some((c, b)) => {
                                cost < c * (1.0 - 1e-9)
                                    || (cost <= c
                                        && b.share == share
                                        && b.kc == kc
                                        && tk * tm * tn > b.tk * b.tm * b.tn)
                            }
                        };
                        if better {
                            best = Some((cost, t));
                        }
                    }
                }
            }
        }
    }
    best.map(|b| b.1).ok_or_else(|| {
        Error::Target(format!(
            "tile.sram_bytes = {} cannot hold one double-buffered matmul step",
            hw.tile.sram_bytes
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(m: u64, n: u64, k: u64) -> Shape {
        Shape {
            m,
            n,
            k,
            batch: 1,
            elem: 2,
            a_bytes: 2,
            b_bytes: 2,
            parts: 1,
            residual: false,
            splittable: false,
            segs: 1,
        }
    }

    #[test]
    fn tiles_are_steps_of_the_unit_and_fit_sram() {
        let hw = HwConfig::tiny();
        let s = shape(1024, 1024, 1024);
        let t = choose_matmul_tiling(&hw, &s, hw.tile.tensor.rate["bf16"]).unwrap();
        let [sm, sn, sk] = hw.tile.tensor.shape.map(|x| x as u64);
        assert!(
            t.tm.is_multiple_of(sm) && t.tn.is_multiple_of(sn) && t.tk.is_multiple_of(sk),
            "{t:?}"
        );
        assert!(t.sram_bytes(&s) <= hw.tile.sram_bytes, "{t:?}");
        // Half the SRAM: the chosen tiles still fit it, so they shrink.
        let mut half = hw.clone();
        half.tile.sram_bytes /= 2;
        let h = choose_matmul_tiling(&half, &s, half.tile.tensor.rate["bf16"]).unwrap();
        assert!(h.sram_bytes(&s) <= half.tile.sram_bytes, "{h:?}");
        assert!(
            t.sram_bytes(&s) > half.tile.sram_bytes,
            "{t:?} would fit half"
        );
    }

    #[test]
    fn sharing_and_split_k_need_the_hardware_and_a_linear_epilogue() {
        let mut hw = HwConfig::tiny();
        let rate = hw.tile.tensor.rate["bf16"];
        // A non-distributive epilogue (an activation) never splits K.
        let s = shape(16, 1024, 1024);
        let t = choose_matmul_tiling(&hw, &s, rate).unwrap();
        assert_eq!(t.kc, s.k, "{t:?}");
        // Without a cluster engine or spare semaphores, every tile reads A
        // itself and accumulates all of K.
        let split = Shape {
            splittable: true,
            ..s
        };
        hw.cluster.dma.engines = 0;
        hw.tile.semaphores = super::super::pipeline::MATMUL_SEMS;
        let t = choose_matmul_tiling(&hw, &split, rate).unwrap();
        assert_eq!((t.share, t.kc), (1, s.k), "{t:?}");
    }

    #[test]
    fn sram_too_small_for_one_step_is_an_error() {
        let mut hw = HwConfig::tiny();
        hw.tile.sram_bytes = 1024;
        let e = choose_matmul_tiling(&hw, &shape(64, 64, 64), 1e11).unwrap_err();
        assert!(e.to_string().contains("tile.sram_bytes"), "{e}");
    }
}

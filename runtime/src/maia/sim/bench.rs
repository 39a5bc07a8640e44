//! A synthetic command stream for timing the simulator itself.

use crate::maia::artifact::Artifact;
use crate::maia::dtype::Dt;
use crate::maia::isa::*;

/// A synthetic program of about `n` commands for measuring the simulator's
/// own speed: on every tile, DMA loads and signals, the tensor unit waits
/// and multiplies, the vector unit waits and adds, in rounds.
pub fn bench_program(hw: &crate::maia::hw::HwConfig, n: usize) -> Artifact {
    let tiles = hw.tiles() as u16;
    let [m, nn, k] = hw.tile.tensor.shape;
    let dt = ["bf16", "f32"]
        .into_iter()
        .chain(hw.tile.tensor.rate.keys().map(|s| s.as_str()))
        .find_map(|d| {
            hw.tile
                .tensor
                .rate
                .contains_key(d)
                .then(|| Dt::from_name(d))
                .flatten()
        });
    let dt = dt.unwrap_or(Dt::F32);
    let q = |engine, unit| Queue {
        engine,
        unit,
        lane: 0,
    };
    let mut commands = Vec::with_capacity(n + 8);
    while commands.len() < n {
        for t in 0..tiles {
            let s0 = Sem { tile: t, idx: 0 };
            let s1 = Sem { tile: t, idx: 1 };
            let dma = Op::Dma {
                src: Loc {
                    space: Space::Hbm,
                    offset: 0,
                },
                dst: Loc {
                    space: Space::Sram(t),
                    offset: 0,
                },
                src_dt: dt,
                dst_dt: dt,
                rows: m,
                cols: k,
                src_stride: k,
                dst_stride: k,
                saturate: true,
            };
            let mm = Op::Matmul {
                dt,
                m,
                n: nn,
                k,
                a: 0,
                b: 0,
                c: 0,
                acc: true,
            };
            let v = Op::Vector {
                op: VOp::Add,
                dt: Dt::F32,
                rows: 1,
                cols: m,
                dst: 0,
                a: 0,
                b: VSrc::Imm(1.0),
            };
            for (e, op) in [
                (Engine::Dma, dma),
                (Engine::Dma, Op::Signal { sem: s0, n: 1 }),
                (Engine::Tensor, Op::Wait { sem: s0, n: 1 }),
                (Engine::Tensor, mm),
                (Engine::Tensor, Op::Signal { sem: s1, n: 1 }),
                (Engine::Vector, Op::Wait { sem: s1, n: 1 }),
                (Engine::Vector, v),
            ] {
                commands.push(Command { queue: q(e, t), op });
            }
        }
    }
    let bytes = dt.bytes(m as u64 * k as u64);
    let region = crate::maia::artifact::Region {
        name: "src".into(),
        kind: crate::maia::artifact::RegionKind::Input,
        offset: 0,
        bytes,
        dtype: dt.name().into(),
        shape: vec![m as u64, k as u64],
        init: false,
        data: None,
    };
    Artifact {
        devices: 1,
        hw: hw.clone(),
        regions: vec![region],
        commands,
        io: Default::default(),
    }
}

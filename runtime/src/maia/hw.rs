//! The hardware a `.smx` program was compiled for, embedded in the artifact.
//! Field names match `smelt_ir::accel::Accelerator` one for one, so the
//! backend fills it by serializing that description (the runtime must not
//! depend on the IR). Rates are per second; the simulator converts them to
//! per cycle with `clock_hz`.

use super::dtype::Dt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HwConfig {
    pub clock_hz: f64,
    pub clusters: u32,
    pub tiles_per_cluster: u32,
    pub tile: TileCfg,
    pub cluster: ClusterCfg,
    pub hbm: HbmCfg,
    pub links: LinkCfg,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TileCfg {
    pub sram_bytes: u64,
    pub semaphores: u32,
    pub issue_cycles: f64,
    pub tensor: TensorCfg,
    pub vector: VectorCfg,
    pub dma: DmaCfg,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorCfg {
    pub shape: [u32; 3],
    pub rate: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VectorCfg {
    pub width: u32,
    pub dtypes: Vec<String>,
    pub rate: f64,
    pub transcendental_cycles: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DmaCfg {
    pub engines: u32,
    pub bandwidth: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterCfg {
    pub l2_bytes: u64,
    pub dma: DmaCfg,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HbmCfg {
    pub bytes: u64,
    pub bandwidth: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkCfg {
    pub count: u32,
    pub bandwidth: f64,
    pub latency: f64,
}

impl HwConfig {
    pub fn tiles(&self) -> u32 {
        self.clusters * self.tiles_per_cluster
    }

    /// Tensor-unit FLOP per cycle of one tile in `dt`, or None if the unit
    /// does not accept it.
    pub fn tensor_flops_per_cycle(&self, dt: Dt) -> Option<f64> {
        self.tile
            .tensor
            .rate
            .get(dt.name())
            .map(|r| r / self.clock_hz)
    }

    /// Vector elements per cycle in `dt`, or None if unsupported.
    pub fn vector_elems_per_cycle(&self, dt: Dt) -> Option<f64> {
        let v = &self.tile.vector;
        v.dtypes.iter().any(|d| d == dt.name()).then(|| {
            // Narrow dtypes pack whole elements into a 32-bit lane; a
            // 64-bit one takes two lanes.
            let per_lane = match dt.bits() {
                b if b > 32 => 32.0 / b as f64,
                b => (32 / b.max(1)) as f64,
            };
            v.width as f64 * v.rate * per_lane
        })
    }

    /// A small, fixed chip for tests: the same numbers as targets/tiny-npu.toml.
    pub fn tiny() -> HwConfig {
        let rate = [
            ("f32", 1.0e11),
            ("bf16", 4.0e11),
            ("f8e4m3fn", 8.0e11),
            ("mxfp8e4m3", 8.0e11),
            ("mxfp4", 1.6e12),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        HwConfig {
            clock_hz: 1.0e9,
            clusters: 2,
            tiles_per_cluster: 2,
            tile: TileCfg {
                sram_bytes: 262144,
                semaphores: 16,
                issue_cycles: 2.0,
                tensor: TensorCfg {
                    shape: [16, 16, 16],
                    rate,
                },
                vector: VectorCfg {
                    width: 16,
                    dtypes: vec!["f32".into(), "bf16".into(), "i32".into(), "i64".into()],
                    rate: 1.0,
                    transcendental_cycles: 4.0,
                },
                dma: DmaCfg {
                    engines: 2,
                    bandwidth: 3.2e10,
                },
            },
            cluster: ClusterCfg {
                l2_bytes: 4194304,
                dma: DmaCfg {
                    engines: 1,
                    bandwidth: 6.4e10,
                },
            },
            hbm: HbmCfg {
                bytes: 1 << 30,
                bandwidth: 1.0e11,
            },
            links: LinkCfg {
                count: 2,
                bandwidth: 2.5e10,
                latency: 1.0e-6,
            },
        }
    }
}

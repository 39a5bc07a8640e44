//! Accelerator hardware description: the `[accelerator]` table of a target
//! file. It says what a Maia-style chip is made of (clusters of tiles, each
//! tile with a tensor unit, a vector unit, DMA engines, SRAM and semaphores;
//! L2 per cluster; HBM; links between devices) so that the backend tiles and
//! schedules from data and an architect can change the chip by editing TOML.
//!
//! The field names match `smelt_runtime::maia::HwConfig` one for one: the
//! backend hands this description to the runtime by serializing it, since
//! the runtime must not depend on the IR.

use crate::DType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Accelerator {
    /// Core clock in Hz; every cycle count in the simulator is in these cycles.
    pub clock_hz: f64,
    pub clusters: u32,
    pub tiles_per_cluster: u32,
    pub tile: Tile,
    pub cluster: Cluster,
    pub hbm: Hbm,
    pub links: Links,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    pub sram_bytes: u64,
    /// Hardware semaphores per tile.
    pub semaphores: u32,
    /// Cycles a queue spends issuing any command before it starts.
    pub issue_cycles: f64,
    pub tensor: TensorUnit,
    pub vector: VectorUnit,
    pub dma: Dma,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorUnit {
    /// The shape `[m, n, k]` of one hardware matmul step; larger products
    /// are padded up to multiples of it.
    pub shape: [u32; 3],
    /// Dense FLOP/s of one tile's tensor unit, by dtype name. The keys are
    /// the dtypes the unit accepts.
    pub rate: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VectorUnit {
    /// 32-bit lanes.
    pub width: u32,
    /// Dtypes the vector unit computes in.
    pub dtypes: Vec<String>,
    /// Simple operations per lane per cycle; a dtype narrower than 32 bits
    /// packs 32/bits elements per lane.
    pub rate: f64,
    /// Cycle multiplier for exp, tanh, sqrt, rsqrt, reciprocal and divide.
    pub transcendental_cycles: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dma {
    pub engines: u32,
    /// Bytes per second of one engine.
    pub bandwidth: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub l2_bytes: u64,
    pub dma: Dma,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hbm {
    pub bytes: u64,
    /// Bytes per second, shared by every engine of the chip.
    pub bandwidth: f64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Links {
    /// Links per device; 0 for a chip that never talks to another.
    pub count: u32,
    /// Bytes per second of one link, one direction.
    pub bandwidth: f64,
    /// Seconds from send to arrival of a message's first byte.
    pub latency: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccelError {
    #[error("target description: {0}")]
    Parse(String),
    #[error("target description has no [accelerator] table")]
    Missing,
    #[error("accelerator.{field}: {why}")]
    Invalid { field: String, why: String },
}

/// The whole target file as far as this module cares: the `[accelerator]`
/// table is checked strictly, the rest belongs to `target::Target`.
#[derive(Deserialize)]
struct File {
    accelerator: Option<Accelerator>,
    #[serde(flatten)]
    _rest: BTreeMap<String, toml::Value>,
}

fn invalid(field: &str, why: impl Into<String>) -> AccelError {
    AccelError::Invalid {
        field: field.to_string(),
        why: why.into(),
    }
}

fn positive(field: &str, x: f64) -> Result<(), AccelError> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be a positive number, got {x}"),
        ))
    }
}

fn nonzero(field: &str, x: u64) -> Result<(), AccelError> {
    if x > 0 {
        Ok(())
    } else {
        Err(invalid(field, "must be at least 1"))
    }
}

fn dtype(field: &str, name: &str) -> Result<DType, AccelError> {
    name.parse::<DType>()
        .map_err(|_| invalid(field, format!("unknown dtype `{name}`")))
}

impl Accelerator {
    /// Reads the `[accelerator]` table of a target file and validates it.
    pub fn from_toml(text: &str) -> Result<Accelerator, AccelError> {
        let f: File = toml::from_str(text).map_err(|e| AccelError::Parse(e.to_string()))?;
        let a = f.accelerator.ok_or(AccelError::Missing)?;
        a.validate()?;
        Ok(a)
    }

    pub fn tiles(&self) -> u64 {
        self.clusters as u64 * self.tiles_per_cluster as u64
    }

    /// Bytes one tensor-unit step needs in SRAM: A (m×k) and B (k×n) in the
    /// narrowest dtype the unit accepts, plus the f32 accumulator (m×n).
    /// A tile whose SRAM cannot hold this can run no matmul at all.
    pub fn smallest_tile_bytes(&self) -> Result<u64, AccelError> {
        let [m, n, k] = self.tile.tensor.shape.map(|x| x as usize);
        let mut best: Option<usize> = None;
        for name in self.tile.tensor.rate.keys() {
            let d = dtype("tile.tensor.rate", name)?;
            let ab = d
                .storage_bytes(m * k)
                .zip(d.storage_bytes(k * n))
                .map(|(a, b)| a + b)
                .ok_or_else(|| {
                    invalid(
                        "tile.tensor.rate",
                        format!("dtype `{name}` has no fixed width"),
                    )
                })?;
            best = Some(best.map_or(ab, |b| b.min(ab)));
        }
        let ab = best.ok_or_else(|| invalid("tile.tensor.rate", "lists no dtype"))?;
        Ok((ab + m * n * 4) as u64)
    }

    pub fn validate(&self) -> Result<(), AccelError> {
        positive("clock_hz", self.clock_hz)?;
        nonzero("clusters", self.clusters as u64)?;
        nonzero("tiles_per_cluster", self.tiles_per_cluster as u64)?;
        let t = &self.tile;
        nonzero("tile.semaphores", t.semaphores as u64)?;
        if !(t.issue_cycles.is_finite() && t.issue_cycles >= 0.0) {
            return Err(invalid(
                "tile.issue_cycles",
                "must be a non-negative number",
            ));
        }
        for (i, &s) in t.tensor.shape.iter().enumerate() {
            nonzero(&format!("tile.tensor.shape[{i}]"), s as u64)?;
        }
        for (name, &r) in &t.tensor.rate {
            dtype("tile.tensor.rate", name)?;
            positive(&format!("tile.tensor.rate.{name}"), r)?;
        }
        nonzero("tile.vector.width", t.vector.width as u64)?;
        if t.vector.dtypes.is_empty() {
            return Err(invalid("tile.vector.dtypes", "lists no dtype"));
        }
        for name in &t.vector.dtypes {
            dtype("tile.vector.dtypes", name)?;
        }
        positive("tile.vector.rate", t.vector.rate)?;
        positive(
            "tile.vector.transcendental_cycles",
            t.vector.transcendental_cycles,
        )?;
        nonzero("tile.dma.engines", t.dma.engines as u64)?;
        positive("tile.dma.bandwidth", t.dma.bandwidth)?;
        nonzero("cluster.l2_bytes", self.cluster.l2_bytes)?;
        nonzero("cluster.dma.engines", self.cluster.dma.engines as u64)?;
        positive("cluster.dma.bandwidth", self.cluster.dma.bandwidth)?;
        nonzero("hbm.bytes", self.hbm.bytes)?;
        positive("hbm.bandwidth", self.hbm.bandwidth)?;
        if self.links.count > 0 {
            positive("links.bandwidth", self.links.bandwidth)?;
        }
        if !(self.links.latency.is_finite() && self.links.latency >= 0.0) {
            return Err(invalid("links.latency", "must be a non-negative number"));
        }
        let need = self.smallest_tile_bytes()?;
        if t.sram_bytes < need {
            let [m, n, k] = t.tensor.shape;
            return Err(invalid(
                "tile.sram_bytes",
                format!(
                    "{} bytes cannot hold the smallest legal tile ({m}x{n}x{k} operands plus f32 accumulator = {need} bytes)",
                    t.sram_bytes
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = include_str!("../../targets/tiny-npu.toml");
    const MAIA: &str = include_str!("../../targets/maia100-hw.toml");

    fn err(text: &str) -> String {
        Accelerator::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn shipped_files_parse() {
        let t = Accelerator::from_toml(TINY).unwrap();
        assert_eq!(t.tiles(), 4);
        let m = Accelerator::from_toml(MAIA).unwrap();
        assert_eq!(m.tiles(), 64);
        // Hot Chips 2024: 1.8 TB/s HBM2E, 12 x 400 GbE.
        assert_eq!(m.hbm.bandwidth, 1.8e12);
        assert_eq!(m.links.count, 12);
        // Chip-wide BF16 = 0.8 POPS = 64 tiles x per-tile rate.
        let chip_bf16 = m.tile.tensor.rate["bf16"] * 64.0;
        assert!((chip_bf16 - 0.8e15).abs() < 1e9, "{chip_bf16}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err(&TINY.replace("semaphores = ", "semafores = 1\nsemaphores = "));
        assert!(e.contains("unknown field `semafores`"), "{e}");
        let e = err(&TINY.replace("[accelerator.hbm]", "[accelerator.hbm]\nchannels = 8"));
        assert!(e.contains("unknown field `channels`"), "{e}");
    }

    #[test]
    fn zero_bandwidth_rejected() {
        let e = err(&TINY.replace("bandwidth = 1.0e11 # hbm", "bandwidth = 0.0 # hbm"));
        assert_eq!(
            e,
            "accelerator.hbm.bandwidth: must be a positive number, got 0"
        );
        let e = err(&TINY.replace("bandwidth = 3.2e10 # tile dma", "bandwidth = 0.0"));
        assert!(e.starts_with("accelerator.tile.dma.bandwidth:"), "{e}");
    }

    #[test]
    fn sram_smaller_than_smallest_tile_rejected() {
        // tiny-npu: shape 16x16x16, narrowest dtype mxfp4 (4 bits):
        // 128 + 128 operand bytes + 256*4 accumulator bytes = 1280.
        let e = err(&TINY.replace("sram_bytes = 262144", "sram_bytes = 1279"));
        assert!(
            e.contains("tile.sram_bytes") && e.contains("1280 bytes"),
            "{e}"
        );
        let ok = TINY.replace("sram_bytes = 262144", "sram_bytes = 1280");
        assert!(Accelerator::from_toml(&ok).is_ok());
    }

    #[test]
    fn other_errors() {
        assert_eq!(
            err("name = 'x'"),
            "target description has no [accelerator] table"
        );
        let e = err(&TINY.replace("bf16 = 4.0e11", "bf17 = 4.0e11"));
        assert!(e.contains("unknown dtype `bf17`"), "{e}");
        let e = err(&TINY.replace("clusters = 2", "clusters = 0"));
        assert!(
            e.contains("accelerator.clusters: must be at least 1"),
            "{e}"
        );
    }
}

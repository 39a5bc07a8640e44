//! Target descriptions: pure data that the cost model reads. Each target is
//! a TOML file under `targets/` (peak FLOP/s per element type, memory
//! bandwidth, per-kernel launch cost); the built-in ones are embedded so the
//! binary needs no data files, and `Target::from_toml` reads a user's own.

use crate::DType;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Bytes per second between memory and compute.
    pub memory_bandwidth: f64,
    /// Seconds of fixed overhead per kernel.
    pub launch_cost: f64,
    /// FLOP/s by dtype name (`f32`, `bf16`, ...); `default` covers the rest.
    pub peak_flops: BTreeMap<String, f64>,
    /// The hardware of a Maia-style accelerator (`[accelerator]`), read and
    /// validated by `crate::accel::Accelerator::from_toml`; the cost model
    /// does not look inside it.
    #[serde(default)]
    pub accelerator: Option<toml::Table>,
    /// Activation layout the target's convolution kernels run fastest in:
    /// "nchw" (channels first, ONNX's) or "nhwc" (channels last). The
    /// layout rules rewrite Conv to channels-last only where this is "nhwc".
    #[serde(default = "default_layout")]
    pub preferred_layout: String,
    /// Whether matmul kernels want the weight stored transposed ([N, K],
    /// K contiguous); the layout rules then pre-transpose constant weights.
    #[serde(default)]
    pub prefers_transposed_weights: bool,
}

fn default_layout() -> String {
    "nchw".into()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("unknown target `{name}`; built-in targets: {known}")]
    Unknown { name: String, known: String },
    #[error("target description: {0}")]
    Parse(String),
}

/// Built-in targets: name and TOML text.
pub const BUILTIN: &[(&str, &str)] = &[
    ("cpu", include_str!("../../targets/cpu.toml")),
    ("sm_90a", include_str!("../../targets/sm_90a.toml")),
    ("sm_80", include_str!("../../targets/sm_80.toml")),
    ("gfx942", include_str!("../../targets/gfx942.toml")),
    ("gfx90a", include_str!("../../targets/gfx90a.toml")),
    ("maia100", include_str!("../../targets/maia100.toml")),
];

impl Target {
    pub fn from_toml(text: &str) -> Result<Target, TargetError> {
        let t: Target = toml::from_str(text).map_err(|e| TargetError::Parse(e.to_string()))?;
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(t.memory_bandwidth) {
            return Err(TargetError::Parse(format!(
                "{}: memory_bandwidth must be a positive number",
                t.name
            )));
        }
        if !(t.launch_cost.is_finite() && t.launch_cost >= 0.0) {
            return Err(TargetError::Parse(format!(
                "{}: launch_cost must be a non-negative number",
                t.name
            )));
        }
        if let Some((k, _)) = t.peak_flops.iter().find(|(_, v)| !positive(**v)) {
            return Err(TargetError::Parse(format!(
                "{}: peak_flops.{k} must be a positive number",
                t.name
            )));
        }
        if !matches!(t.preferred_layout.as_str(), "nchw" | "nhwc") {
            return Err(TargetError::Parse(format!(
                "{}: preferred_layout must be \"nchw\" or \"nhwc\"",
                t.name
            )));
        }
        if !t.peak_flops.contains_key("default") {
            return Err(TargetError::Parse(format!(
                "{}: peak_flops needs a `default` entry",
                t.name
            )));
        }
        Ok(t)
    }

    /// A built-in target by name. `interp` (the reference interpreter) has
    /// no performance model of its own and uses `cpu`'s.
    pub fn builtin(name: &str) -> Result<Target, TargetError> {
        let key = if name == "interp" { "cpu" } else { name };
        match BUILTIN.iter().find(|(n, _)| *n == key) {
            Some((_, text)) => Target::from_toml(text),
            None => Err(TargetError::Unknown {
                name: name.to_string(),
                known: BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Peak FLOP/s for arithmetic in `dtype`.
    pub fn rate(&self, dtype: DType) -> f64 {
        self.peak_flops
            .get(dtype.name())
            .or_else(|| self.peak_flops.get("default"))
            .copied()
            .unwrap_or(1e12)
    }

    /// Roofline time of one kernel: the slower of compute and memory
    /// traffic, plus the fixed launch cost.
    pub fn kernel_time(&self, flops: f64, dtype: DType, bytes: f64) -> f64 {
        (flops / self.rate(dtype)).max(bytes / self.memory_bandwidth) + self.launch_cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse() {
        for (name, _) in BUILTIN {
            let t = Target::builtin(name).unwrap();
            assert_eq!(&t.name, name);
        }
        assert_eq!(Target::builtin("interp").unwrap().name, "cpu");
    }

    #[test]
    fn unknown_target_lists_known_ones() {
        let e = Target::builtin("tpu9").unwrap_err().to_string();
        assert!(e.contains("tpu9") && e.contains("sm_90a"), "{e}");
    }

    #[test]
    fn roofline() {
        let t = Target::from_toml(
            "name='t'\nmemory_bandwidth=100.0\nlaunch_cost=1.0\n[peak_flops]\ndefault=10.0\nf16=1000.0\n",
        )
        .unwrap();
        // Compute bound: 100 FLOP at 10 FLOP/s = 10 s, plus 1 s launch.
        assert_eq!(t.kernel_time(100.0, DType::F32, 100.0), 11.0);
        // Memory bound: 1000 B at 100 B/s = 10 s beats 100 FLOP at 1000 FLOP/s.
        assert_eq!(t.kernel_time(100.0, DType::F16, 1000.0), 11.0);
    }

    #[test]
    fn layout_preferences() {
        assert_eq!(Target::builtin("cpu").unwrap().preferred_layout, "nchw");
        assert_eq!(Target::builtin("sm_90a").unwrap().preferred_layout, "nhwc");
        assert!(
            Target::builtin("maia100")
                .unwrap()
                .prefers_transposed_weights
        );
        assert!(!Target::builtin("cpu").unwrap().prefers_transposed_weights);
        let e = Target::from_toml(
            "name='t'\nmemory_bandwidth=1.0\nlaunch_cost=1.0\npreferred_layout='nwhc'\n[peak_flops]\ndefault=1.0\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("preferred_layout"), "{e}");
    }

    #[test]
    fn rejects_bad_numbers() {
        let e = Target::from_toml(
            "name='t'\nmemory_bandwidth=-1.0\nlaunch_cost=1.0\n[peak_flops]\ndefault=1.0\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("memory_bandwidth"));
    }
}

pub mod bench;
pub mod compile;
pub mod conformance;
pub mod cpu;
pub mod disasm;
pub mod explain;
pub mod gpu;
pub mod import;
pub mod maia;
pub mod run;
pub mod simulate;

/// Targets that can execute a graph today.
pub const RUN_TARGETS: &[&str] = &["interp", "cpu"];

pub fn check_target(t: &str) -> anyhow::Result<()> {
    if RUN_TARGETS.contains(&t) {
        Ok(())
    } else {
        anyhow::bail!(
            "target `{t}` is not available; available targets: {}",
            RUN_TARGETS.join(", ")
        )
    }
}

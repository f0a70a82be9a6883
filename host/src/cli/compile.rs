//! `stratus compile-component`: one compile, in a process of its own, so
//! that `serve` can stop it at its time limit (see `runtime::compile`).

use std::io::Read as _;
use std::path::PathBuf;

use crate::runtime::compile::{EngineSettings, compile_to_file};

/// Compile the component on standard input into a code-cache artifact.
#[derive(Debug, Clone, clap::Args)]
pub struct CompileComponent {
    /// Where the artifact goes (written whole, or not at all).
    #[arg(long)]
    out: PathBuf,
    /// The serving engine's `--pool-slots`.
    #[arg(long)]
    pool_slots: u32,
    /// The serving engine's `--max-memory-mb`.
    #[arg(long)]
    max_memory_mb: u32,
    /// The serving engine's `--async-stack-zeroing`.
    #[arg(long, action = clap::ArgAction::Set)]
    async_stack_zeroing: bool,
}

impl CompileComponent {
    /// Reads the component, compiles it, writes the artifact.
    pub fn execute(self) -> anyhow::Result<()> {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        let settings = EngineSettings {
            pool_slots: self.pool_slots,
            max_memory_mb: self.max_memory_mb,
            async_stack_zeroing: self.async_stack_zeroing,
        };
        compile_to_file(&settings, &bytes, &self.out)
    }
}

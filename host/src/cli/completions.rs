//! `stratus completions bash|zsh|fish`: shell completions for the CLI.

/// Print a completion script for a shell.
#[derive(Debug, clap::Args)]
pub struct Completions {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

impl Completions {
    /// Writes the script to stdout, e.g. `stratus completions bash > /etc/bash_completion.d/stratus`.
    /// `command` is the CLI's own definition, which the caller holds.
    pub fn execute(self, mut command: clap::Command) {
        clap_complete::generate(self.shell, &mut command, "stratus", &mut std::io::stdout());
    }
}

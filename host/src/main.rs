//! The `stratus` command: parse, dispatch, report.

fn main() -> std::process::ExitCode {
    stratus::cli::main()
}

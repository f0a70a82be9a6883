//! The `stratus` command: parse, dispatch, report.

// Each call allocates and frees many small objects across worker threads
// (request, response, store tables); glibc's malloc measured about a tenth of
// the host's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stratus::cli::main()
}

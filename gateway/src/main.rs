//! The `p8fs` command.

/// mimalloc for the whole process (see the workspace manifest for why): the gateway, the edge
/// and the command-line tools all run in this binary. RocksDB's C++ allocations keep glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    p8fs_gateway::cli::main()
}

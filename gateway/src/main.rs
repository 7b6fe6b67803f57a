//! The `p8fs` command.

fn main() -> std::process::ExitCode {
    p8fs_gateway::cli::main()
}

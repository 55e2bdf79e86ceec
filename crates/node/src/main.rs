//! The `raftq` binary: parses the command line and runs it (see `raftq_node::cli`).

fn main() -> std::process::ExitCode {
    raftq_node::cli::main()
}

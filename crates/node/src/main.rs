//! The `raftq` binary: parses the command line and runs it (see [`cli`]; the command line is
//! the binary's, the server library `raftq_node` has no clap in it).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

//! The `raftq` binary: parses the command line and runs it (see [`cli`]; the command line is
//! the binary's, the server library `raftq_node` has no clap in it).

mod cli;

fn main() -> std::process::ExitCode {
    quiet_on_closed_pipe(std::env::args().nth(1).as_deref());
    cli::main()
}

/// Output into a closed pipe (`raftq status --details | head -1`) ends a command quietly, as
/// it ends other Unix tools: SIGPIPE is given back its default action, which Rust's runtime
/// sets to "ignore" (every `println!` would then panic on the broken pipe). Not for the
/// long-running commands, which own child processes and pipes of their own (`node`, `up`,
/// `runner`, `bench`); sockets are unaffected either way (Rust sends with MSG_NOSIGNAL).
fn quiet_on_closed_pipe(command: Option<&str>) {
    if matches!(command, Some("node" | "up" | "runner" | "bench")) {
        return;
    }
    // SAFETY: called first thing in main, before any other thread exists; it only sets the
    // disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

//! `raftq token`: rotating the cluster token without downtime. A token file holds one token
//! per line; the first is the one sent, every one is accepted (`raftq_client::auth`). Nodes
//! re-read their file every second, and clients with a token file (runners) re-read it when
//! their token is refused, so no process needs a restart. `runner TOKEN` lines are runner
//! tokens (`raftq token runner`): reserve, report and read only.

use clap::Subcommand;
use raftq_client::auth;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum TokenCmd {
    /// Put a new random token first in the token file, keeping the old ones after it (still
    /// accepted); then copy the file to every node, then to clients and runner hosts.
    Rotate {
        /// The token file (or RAFTQ_TOKEN_FILE).
        #[arg(long, env = "RAFTQ_TOKEN_FILE")]
        token_file: PathBuf,
    },
    /// Add a runner token to the token file and write it alone to --out, for runner hosts:
    /// it reserves jobs, reports on them and reads the queue, nothing else. Revoke it by
    /// deleting its `runner ...` line from the token file (and copying the file to the
    /// nodes).
    Runner {
        /// The cluster's token file (or RAFTQ_TOKEN_FILE).
        #[arg(long, env = "RAFTQ_TOKEN_FILE")]
        token_file: PathBuf,
        /// The runner hosts' token file to write (0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Keep only the token file's first token (and runner tokens): the old ones are no longer accepted once the
    /// file is on every node. Run it when every client sends the new token.
    Retire {
        /// The token file (or RAFTQ_TOKEN_FILE).
        #[arg(long, env = "RAFTQ_TOKEN_FILE")]
        token_file: PathBuf,
    },
}

pub(super) fn run(c: TokenCmd) -> anyhow::Result<()> {
    match c {
        TokenCmd::Rotate { token_file } => {
            auth::rotate_token_file(&token_file)?;
            let n = auth::read_tokens(&token_file)?.len();
            println!(
                "{}: a new token is first (sent from now on), {} other(s) kept after it \
                 (still accepted)",
                token_file.display(),
                n - 1
            );
            println!(
                "next: copy the file to every node (they take it up within a second), then to \
                 clients and runner hosts; when all send the new token: raftq token retire"
            );
        }
        TokenCmd::Runner { token_file, out } => {
            let token = auth::add_runner_token(&token_file)?;
            auth::write_token_file(&out, &token)?;
            println!(
                "{}: a runner token added; {} holds it for runner hosts (--token-file there); \
                 copy {} to every node",
                token_file.display(),
                out.display(),
                token_file.display()
            );
        }
        TokenCmd::Retire { token_file } => {
            let dropped = auth::retire_old_tokens(&token_file)?;
            println!(
                "{}: {dropped} old token(s) retired; copy the file to every node (and clients)",
                token_file.display()
            );
        }
    }
    Ok(())
}

//! `raftq token`: rotating the cluster token without downtime. A token file holds one token
//! per line; the first is the one sent, every one is accepted (`raftq_client::auth`). Nodes
//! re-read their file every second, and clients with a token file (runners) re-read it when
//! their token is refused, so no process needs a restart.

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
    /// Keep only the token file's first token: the old ones are no longer accepted once the
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
            let n = auth::read_token_set(&token_file)?.len();
            println!(
                "{}: a new token is first (sent from now on), {} old one(s) kept after it \
                 (still accepted)",
                token_file.display(),
                n - 1
            );
            println!(
                "next: copy the file to every node (they take it up within a second), then to \
                 clients and runner hosts; when all send the new token: raftq token retire"
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

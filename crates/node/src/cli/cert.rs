//! `raftq cert`: a cluster CA (`cert ca`) and the certificate of each node (`cert node`),
//! made by `raftq_node::tls`; this file is only their command line.

use clap::Subcommand;
use raftq_node::tls::{self, NodeCert};
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum CertCmd {
    /// Make a cluster CA: DIR/ca.pem (give it to clients, runners and every node) and
    /// DIR/ca-key.pem (keep it where node certificates are issued; nodes do not need it).
    Ca {
        /// Directory of the cluster's certificates (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = tls::DEFAULT_CA_DAYS)]
        days: u32,
        /// Replace an existing CA (the certificates it signed are then no longer trusted).
        #[arg(long)]
        force: bool,
    },
    /// Issue node ID's certificate, signed by the CA in DIR: DIR/node-ID.pem and
    /// DIR/node-ID-key.pem (replaced if present: renewing is issuing again).
    Node {
        /// Directory holding the CA (`raftq cert ca`); the node's files go there too.
        #[arg(long)]
        dir: PathBuf,
        /// The node's id, as its `raftq node --id`.
        #[arg(long)]
        id: u64,
        /// A host name or IP address the node is reached at (repeat for each); clients and
        /// peers check the address they dial against these.
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = tls::DEFAULT_NODE_DAYS)]
        days: u32,
    },
}

pub(super) fn run(c: CertCmd) -> anyhow::Result<()> {
    match c {
        CertCmd::Ca { dir, days, force } => {
            let files = tls::make_ca(&dir, days, force)?;
            println!(
                "cluster CA: {} (for clients, runners and nodes: --ca-file)",
                files.cert.display()
            );
            println!(
                "CA key: {} (keep it private; it signs node certificates)",
                files.key.display()
            );
        }
        CertCmd::Node {
            dir,
            id,
            hosts,
            days,
        } => {
            let files = tls::make_node_cert(&dir, &NodeCert { id, hosts, days })?;
            println!(
                "node {id}: --tls-cert-file {} --tls-key-file {} --tls-ca-file {}",
                files.cert.display(),
                files.key.display(),
                tls::ca_files(&dir).cert.display()
            );
        }
    }
    Ok(())
}

//! `raftq backup FILE` (an online backup through any node, checked before it is kept) and
//! `raftq restore FILE --data-dir DIR` (checks a backup and seeds a new cluster's first node
//! with it).

use super::ClusterArg;
use anyhow::{bail, Context};
use clap::Args;
use raft_store::backup::{check_backup, SEED_FILE};
use raft_store::SnapshotData;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BackupArgs {
    /// Where to write the backup: a new file (FILE.partial while it streams, renamed once it
    /// is whole and its checksum checked).
    file: PathBuf,
    #[command(flatten)]
    cluster: ClusterArg,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The backup file (from `raftq backup`).
    file: PathBuf,
    /// The data directory of the new cluster's first node: new or empty.
    #[arg(long)]
    data_dir: PathBuf,
}

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

pub async fn run_backup(a: BackupArgs) -> anyhow::Result<()> {
    if a.file.exists() {
        bail!(
            "{} exists: give the backup a new file name, or remove the old one",
            a.file.display()
        );
    }
    let client = a.cluster.client()?;
    let mut failures = Vec::new();
    for (i, addr) in client.nodes().iter().enumerate() {
        match client.backup_of(i).await {
            Ok(stream) => return receive(stream, &a.file, addr).await,
            Err(e) => {
                eprintln!("backup: {addr}: {}", e.message());
                failures.push(format!("{addr}: {}", e.message()));
            }
        }
    }
    bail!("no node gave a backup ({})", failures.join("; "))
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".partial");
    PathBuf::from(name)
}

async fn receive(
    mut stream: tonic::Streaming<raftq_proto::pb::BackupChunk>,
    file: &Path,
    addr: &str,
) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let partial = partial_path(file);
    let mut out = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let (mut total, mut applied, mut got) = (0u64, 0u64, 0u64);
    let mut last = Instant::now();
    let started = last;
    let result: anyhow::Result<()> =
        async {
            while let Some(piece) = stream.message().await.map_err(|s| {
                anyhow::anyhow!("{addr} stopped sending the backup: {}", s.message())
            })? {
                if got == 0 {
                    total = piece.total_bytes;
                    applied = piece.applied_index;
                    eprintln!("backup: {addr}, applied index {applied}, {total} bytes");
                }
                out.write_all(&piece.data)
                    .await
                    .with_context(|| format!("writing {}", partial.display()))?;
                got += piece.data.len() as u64;
                if last.elapsed() >= PROGRESS_EVERY {
                    last = Instant::now();
                    eprintln!(
                        "backup: {} of {} MB ({:.0}%)",
                        got >> 20,
                        total >> 20,
                        100.0 * got as f64 / total.max(1) as f64
                    );
                }
            }
            out.sync_all()
                .await
                .with_context(|| format!("syncing {}", partial.display()))?;
            if got != total {
                bail!("{addr} sent {got} of the backup's {total} bytes");
            }
            Ok(())
        }
        .await;
    drop(out);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("backup not written to {}", file.display())));
    }
    let checked = {
        let partial = partial.clone();
        tokio::task::spawn_blocking(move || check_backup(&SnapshotData::open(&partial)?)).await?
    };
    let (summary, digest) = match checked {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            bail!("the backup received from {addr} does not check ({e}); nothing was kept, take it again");
        }
    };
    raft_store::durable::install_file(&partial, file)
        .with_context(|| format!("cannot move {} to {}", partial.display(), file.display()))?;
    eprintln!("backup: done in {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "backup of {addr} at applied index {applied}: {} entries, {} bytes, queue digest {digest}, in {}",
        summary.entries,
        summary.bytes,
        file.display()
    );
    Ok(())
}

pub async fn run_restore(a: RestoreArgs) -> anyhow::Result<()> {
    let file = a.file.clone();
    let (summary, digest) = tokio::task::spawn_blocking(move || {
        let data = SnapshotData::open(&file)?;
        check_backup(&data)
    })
    .await?
    .map_err(|e| {
        anyhow::anyhow!(
            "backup refused, nothing restored: {e}. Use another copy of the backup, or take a new one with `raftq backup`"
        )
    })?;
    let dir = &a.data_dir;
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "--data-dir {} is not empty: a restore seeds a new node; give a new or empty directory",
                    dir.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("--data-dir {}: {e}", dir.display()),
    }
    let seed = dir.join(SEED_FILE);
    let seed_dir = seed.parent().expect("SEED_FILE has a directory");
    raft_store::durable::create_dir_all(seed_dir)
        .with_context(|| format!("cannot create {}", seed_dir.display()))?;
    let staged = seed.with_extension("tmp");
    std::fs::copy(&a.file, &staged)
        .with_context(|| format!("cannot copy {} to {}", a.file.display(), staged.display()))?;
    raft_store::durable::install_file(&staged, &seed)
        .with_context(|| format!("cannot write {}", seed.display()))?;
    let applied = summary.meta.last_log_id.map_or(0, |l| l.index);
    println!(
        "restored {} (applied index {applied} of the old cluster, {} entries, queue digest {digest}) into {}",
        a.file.display(),
        summary.entries,
        dir.display()
    );
    println!(
        "start the new cluster's first node on it; its membership comes from --peers:\n  raftq node --id 1 --data-dir {} --listen ADDR1 --peers 1=ADDR1,2=ADDR2,3=ADDR3",
        dir.display()
    );
    Ok(())
}

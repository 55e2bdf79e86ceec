//! The manager node's configuration: defaults for a busy 2-core host, a TOML file, `RAFTQ_*`
//! environment variables and flags (later ones win), and `validate()`.

use queue_fsm::FsmConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What is wrong with a configuration; the message starts with the field (or the source).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field's value, or a relation between fields, is out of bounds.
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// The state machine settings (`[fsm]`).
    #[error("fsm.{0}")]
    Fsm(String),
    /// openraft refused the Raft settings these make.
    #[error("raft settings: {0}")]
    Raft(String),
    /// A `RAFTQ_*` variable that does not parse as its field.
    #[error("{var}: {value:?} is not a valid {field}")]
    Env {
        var: String,
        value: String,
        field: String,
    },
    /// The settings with the environment applied do not form a configuration.
    #[error("environment: {0}")]
    Environment(String),
    #[error("config file: {0}")]
    File(String),
}

fn invalid(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id (1, 2, 3, ...), unique in the cluster.
    pub id: u64,
    /// host:port for gRPC (clients, runners and the other managers).
    pub listen: String,
    /// host:port for the web UI, the REST API and /metrics (HTTPS with the node's certificate
    /// when TLS is on); None: no HTTP port.
    pub http: Option<String>,
    /// Where the log, the state machine and snapshots live.
    pub data_dir: PathBuf,
    /// The cluster token, the same file content on every node (mode 0600). Default
    /// `DATA_DIR/token`, created with a new random token if missing: for a cluster on several
    /// machines, create it once and copy it to every node and client.
    pub token_file: Option<PathBuf>,
    /// TLS on the gRPC port (clients, runners and peers), with all three set: this node's
    /// certificate (PEM; `raftq cert node` makes one naming the node id and its hosts), its
    /// private key, and the cluster CA that signed every node's certificate (peers must
    /// present one; clients are checked against it when they present one). None of them:
    /// none of them: refused unless `plaintext` is set.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    /// Serve plaintext (no TLS files): for tests and local experiments only. Clients',
    /// runners' and peers' traffic and the token then travel in the clear and peers are not
    /// authenticated; the node warns at start.
    pub plaintext: bool,
    /// The nodes of a new cluster, id → host:port, the same on every node. Ignored once the
    /// node has state (membership is then what the log says).
    pub peers: BTreeMap<u64, String>,
    /// Leader heartbeat period.
    pub heartbeat_ms: u64,
    /// A follower that hears no leader for a random time in [min, max] stands for election.
    /// The defaults (50 ms heartbeat, 200-400 ms) give failover in under a second; on a host
    /// so loaded that a node can stall for 200 ms, raise all three (e.g. 100 / 500-1000) to
    /// avoid needless elections. A follower refuses votes for `election_timeout_max_ms` after
    /// it last heard the leader, so failover takes about that plus one timeout.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Time allowed to send a whole snapshot to a lagging follower.
    pub install_snapshot_timeout_ms: u64,
    /// A snapshot is taken after this many log entries since the last one.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot, for followers that are only a little behind.
    pub logs_kept_after_snapshot: u64,
    /// Commands merged into one log entry at most.
    pub max_batch_commands: usize,
    /// Log entries in flight (proposed, not yet committed) at most.
    pub max_inflight_entries: usize,
    /// Test only: added to this node's clock, to test skew.
    pub clock_offset_ms: i64,
    /// Test only (Jepsen): open both RocksDB databases so that a SIGKILL loses every write
    /// that was not synced, as a power loss would, and a missing fsync shows up as lost data.
    /// How it works and its exact limits (un-synced data already handed to the OS survives,
    /// plain files such as the snapshot are not covered, the 256 MiB buffer bound, a clean
    /// stop writes everything out) are on [`queue_fsm::RocksOptions::power_loss_sim`].
    pub power_loss_sim: bool,
    /// Decisions of the queue state machine (the same on every node; stored in the state).
    pub fsm: FsmConfig,
    /// Starting runners for ready jobs on this host while this node leads.
    pub scheduler: crate::scheduler::SchedulerConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: 1,
            listen: "127.0.0.1:7700".into(),
            http: None,
            data_dir: PathBuf::from("raftq-data"),
            token_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            plaintext: false,
            peers: BTreeMap::new(),
            heartbeat_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            install_snapshot_timeout_ms: 60_000,
            snapshot_every_entries: 100_000,
            logs_kept_after_snapshot: 1_000,
            max_batch_commands: 4_096,
            max_inflight_entries: 8,
            clock_offset_ms: 0,
            power_loss_sim: false,
            fsm: FsmConfig::default(),
            scheduler: Default::default(),
        }
    }
}

impl NodeConfig {
    /// Checks each field and the relations between them; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(invalid("id", "must be 1 or more"));
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "listen",
                format!("{:?} is not host:port (e.g. 127.0.0.1:7700)", self.listen),
            ));
        }
        if !self.peers.is_empty() && !self.peers.contains_key(&self.id) {
            return Err(invalid(
                "peers",
                format!("does not list this node's id {}", self.id),
            ));
        }
        for (id, addr) in &self.peers {
            if *id == 0 {
                return Err(invalid("peers", "node ids must be 1 or more"));
            }
            if !addr.contains(':') {
                return Err(invalid(
                    "peers",
                    format!("address of node {id} ({addr:?}) is not host:port"),
                ));
            }
        }
        match (
            &self.tls_cert_file,
            &self.tls_key_file,
            &self.tls_ca_file,
            self.plaintext,
        ) {
            (None, None, None, true) | (Some(_), Some(_), Some(_), false) => {}
            (None, None, None, false) => {
                return Err(invalid(
                    "tls_cert_file, tls_key_file, tls_ca_file",
                    "TLS is on by default and needs all three (`raftq cert ca` and `raftq \
                     cert node` make them); for tests and local experiments only, \
                     --plaintext (plaintext = true) serves without TLS",
                ))
            }
            (_, _, _, true) => {
                return Err(invalid(
                    "plaintext",
                    "set together with TLS files: drop --plaintext to serve TLS, or the \
                     tls_* files to serve plaintext",
                ))
            }
            _ => {
                return Err(invalid(
                    "tls_cert_file, tls_key_file, tls_ca_file",
                    "give all three for TLS (or none of them, with --plaintext)",
                ))
            }
        }
        if !(10..=60_000).contains(&self.heartbeat_ms) {
            return Err(invalid("heartbeat_ms", "must be 10 to 60000"));
        }
        if self.election_timeout_max_ms > 600_000 {
            return Err(invalid("election_timeout_max_ms", "must be at most 600000"));
        }
        if self.install_snapshot_timeout_ms == 0 || self.install_snapshot_timeout_ms > 86_400_000 {
            return Err(invalid(
                "install_snapshot_timeout_ms",
                "must be 1 to 86400000 (a day)",
            ));
        }
        if self.clock_offset_ms.unsigned_abs() > 86_400_000 {
            return Err(invalid(
                "clock_offset_ms",
                "must be within ±86400000 (a day); it is for clock-skew tests",
            ));
        }
        if self.election_timeout_min_ms < 3 * self.heartbeat_ms {
            return Err(invalid(
                "election_timeout_min_ms",
                "must be at least 3 × heartbeat_ms",
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(invalid(
                "election_timeout_max_ms",
                "must be more than election_timeout_min_ms",
            ));
        }
        if self.max_batch_commands == 0 || self.max_inflight_entries == 0 {
            return Err(invalid(
                "max_batch_commands, max_inflight_entries",
                "must be at least 1",
            ));
        }
        if self.snapshot_every_entries < 100 {
            return Err(invalid("snapshot_every_entries", "must be at least 100"));
        }
        if self.max_batch_commands > 1_000_000 || self.max_inflight_entries > 1_024 {
            return Err(invalid(
                "max_batch_commands, max_inflight_entries",
                "must be at most 1000000 and 1024",
            ));
        }
        self.scheduler.validate()?;
        self.fsm
            .validate()
            .map_err(|e| ConfigError::Fsm(e.to_string()))
    }

    /// The token file in force.
    pub fn token_path(&self) -> PathBuf {
        self.token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("token"))
    }

    /// The certificate, key and CA files when TLS is on.
    pub fn tls_files(&self) -> Option<(&PathBuf, &PathBuf, &PathBuf)> {
        match (&self.tls_cert_file, &self.tls_key_file, &self.tls_ca_file) {
            (Some(c), Some(k), Some(a)) => Some((c, k, a)),
            _ => None,
        }
    }

    /// How the node's RocksDB databases are opened.
    pub fn rocks_options(&self) -> queue_fsm::RocksOptions {
        queue_fsm::RocksOptions {
            power_loss_sim: self.power_loss_sim,
        }
    }

    /// The openraft configuration these settings make.
    pub fn raft_config(&self) -> Result<openraft::Config, ConfigError> {
        let c = openraft::Config {
            cluster_name: "raftq".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.install_snapshot_timeout_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            max_payload_entries: 64,
            purge_batch_size: 256,
            ..Default::default()
        };
        c.validate().map_err(|e| ConfigError::Raft(e.to_string()))
    }

    /// Parses `1=host:port,2=host:port`.
    pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
        let mut out = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part
                .split_once('=')
                .ok_or_else(|| invalid("peers", format!("{part:?} is not ID=HOST:PORT")))?;
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| invalid("peers", format!("{id:?} is not a node id")))?;
            if out.insert(id, addr.trim().to_string()).is_some() {
                return Err(invalid("peers", format!("node {id} is listed twice")));
            }
        }
        Ok(out)
    }

    /// Applies `RAFTQ_<FIELD>` environment variables (e.g. `RAFTQ_HEARTBEAT_MS=150`) to the
    /// top-level fields; `vars` is the environment to read.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let mut table = match toml::Value::try_from(&*self) {
            Ok(toml::Value::Table(t)) => t,
            _ => return Err(invalid("config", "cannot represent settings")),
        };
        let mut changed = false;
        for (k, v) in vars {
            let Some(field) = k.strip_prefix("RAFTQ_").map(str::to_lowercase) else {
                continue;
            };
            // RAFTQ_HTTP is the clients' list of web addresses (raftq.env), not this field
            // (whose variable is RAFTQ_HTTP_LISTEN, read by the command line)
            if field == "http" {
                continue;
            }
            let Some(current) = table.get(&field) else {
                continue;
            };
            let parsed = match current {
                toml::Value::Integer(_) => v.trim().parse::<i64>().map(toml::Value::Integer).ok(),
                toml::Value::String(_) => Some(toml::Value::String(v.clone())),
                toml::Value::Boolean(_) => v.trim().parse::<bool>().map(toml::Value::Boolean).ok(),
                _ => None,
            };
            match parsed {
                Some(p) => {
                    table.insert(field, p);
                    changed = true;
                }
                None if matches!(current, toml::Value::Table(_) | toml::Value::Array(_)) => {}
                None => {
                    return Err(ConfigError::Env {
                        var: k,
                        value: v,
                        field,
                    })
                }
            }
        }
        if changed {
            *self = toml::Value::Table(table)
                .try_into()
                .map_err(|e| ConfigError::Environment(e.to_string()))?;
        }
        Ok(())
    }

    /// Reads a TOML file of these fields.
    pub fn from_toml(text: &str) -> Result<NodeConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::File(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults with plaintext asked for: valid, so each test can break one field.
    fn plain() -> NodeConfig {
        NodeConfig {
            plaintext: true,
            ..NodeConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid_with_tls_files_or_plaintext_asked_for() {
        let e = NodeConfig::default().validate().unwrap_err().to_string();
        assert!(
            e.starts_with("tls_cert_file, tls_key_file, tls_ca_file: TLS is on by default"),
            "{e}"
        );
        assert!(e.contains("--plaintext"), "{e}");
        let c = plain();
        c.validate().unwrap();
        c.raft_config().unwrap();
        let c = NodeConfig::from_toml(
            "tls_cert_file = \"n.pem\"\ntls_key_file = \"k.pem\"\ntls_ca_file = \"ca.pem\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        let both = NodeConfig {
            plaintext: true,
            ..c
        };
        let e = both.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("plaintext: set together with TLS files"),
            "{e}"
        );
    }

    #[test]
    fn validation_names_the_field() {
        let c = NodeConfig {
            election_timeout_min_ms: 100,
            ..plain()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("election_timeout_min_ms"));
        let c = NodeConfig {
            listen: "nope".into(),
            ..plain()
        };
        assert!(c.validate().unwrap_err().to_string().starts_with("listen"));
        let c = NodeConfig {
            tls_cert_file: Some("node-1.pem".into()),
            ..NodeConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("tls_cert_file, tls_key_file, tls_ca_file"));
        let c = NodeConfig::from_toml(
            "tls_cert_file = \"n.pem\"\ntls_key_file = \"k.pem\"\ntls_ca_file = \"ca.pem\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.tls_files().unwrap().2, &PathBuf::from("ca.pem"));
        let c = NodeConfig {
            id: 4,
            peers: NodeConfig::parse_peers("1=a:1,2=b:2").unwrap(),
            ..plain()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("does not list this node's id 4"));
    }

    #[test]
    fn every_number_has_bounds_named_by_its_field() {
        let cases: [(NodeConfig, &str); 6] = [
            (
                NodeConfig {
                    heartbeat_ms: u64::MAX,
                    ..plain()
                },
                "heartbeat_ms",
            ),
            (
                NodeConfig {
                    election_timeout_max_ms: u64::MAX,
                    ..plain()
                },
                "election_timeout_max_ms",
            ),
            (
                NodeConfig {
                    clock_offset_ms: i64::MIN,
                    ..plain()
                },
                "clock_offset_ms",
            ),
            (
                NodeConfig {
                    max_inflight_entries: usize::MAX,
                    ..plain()
                },
                "max_batch_commands, max_inflight_entries",
            ),
            (
                NodeConfig {
                    scheduler: crate::scheduler::SchedulerConfig {
                        max_cores: Some(0),
                        ..Default::default()
                    },
                    ..plain()
                },
                "scheduler.max_cores",
            ),
            (
                NodeConfig {
                    scheduler: crate::scheduler::SchedulerConfig {
                        ttr_s: 0,
                        ..Default::default()
                    },
                    ..plain()
                },
                "scheduler.ttr_s",
            ),
        ];
        for (c, field) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.starts_with(&format!("{field}:")), "{field}: {e}");
        }
    }

    #[test]
    fn peers_and_toml_parse() {
        let p = NodeConfig::parse_peers("1=127.0.0.1:1, 2=127.0.0.1:2").unwrap();
        assert_eq!(p[&2], "127.0.0.1:2");
        assert!(NodeConfig::parse_peers("1=a:1,1=b:2").is_err());
        assert!(NodeConfig::parse_peers("x").is_err());
        let c =
            NodeConfig::from_toml("id = 3\nheartbeat_ms = 50\n[fsm]\nlearn_window = 7\n").unwrap();
        assert_eq!(c.id, 3);
        assert_eq!(c.fsm.learn_window, 7);
        assert_eq!(
            c.fsm.release_delay_ms,
            FsmConfig::default().release_delay_ms
        );
        assert!(NodeConfig::from_toml("bogus = 1")
            .unwrap_err()
            .to_string()
            .contains("bogus"));
    }

    #[test]
    fn environment_overrides_fields() {
        let mut c = NodeConfig::default();
        c.apply_env([
            ("RAFTQ_HEARTBEAT_MS".to_string(), "150".to_string()),
            ("RAFTQ_LISTEN".to_string(), "127.0.0.1:9".to_string()),
            ("HOME".to_string(), "/root".to_string()),
            ("RAFTQ_UNKNOWN".to_string(), "x".to_string()),
        ])
        .unwrap();
        assert_eq!(c.heartbeat_ms, 150);
        assert_eq!(c.listen, "127.0.0.1:9");
        assert!(!c.power_loss_sim);
        c.apply_env([("RAFTQ_POWER_LOSS_SIM".to_string(), "true".to_string())])
            .unwrap();
        assert!(c.power_loss_sim && c.rocks_options().power_loss_sim);
        assert!(
            NodeConfig::from_toml("power_loss_sim = true\n")
                .unwrap()
                .power_loss_sim
        );
        let e = c
            .apply_env([("RAFTQ_HEARTBEAT_MS".to_string(), "fast".to_string())])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("RAFTQ_HEARTBEAT_MS"), "{e}");
    }
}

//! The node's TOML configuration: parsing and validation never panic, and a configuration
//! that validates gives an openraft configuration (every duration and count in range).

#![no_main]

use libfuzzer_sys::fuzz_target;
use raftq_node::config::NodeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = NodeConfig::from_toml(text) {
        if config.validate().is_ok() {
            config
                .raft_config()
                .expect("a validated configuration makes an openraft configuration");
        }
    }
});

//! Test hosts in network namespaces: one namespace per manager, each with its own address on
//! a bridge this harness creates, and iptables rules inside each namespace for partitions.
//! Everything created is removed on drop, also after a failure. Needs root.

use std::process::Command;

/// A namespace host.
#[derive(Clone, Debug)]
pub struct Host {
    pub netns: String,
    pub ip: String,
}

/// Namespaces joined by a bridge; the host side of the bridge is `.1` of the subnet.
pub struct Net {
    pub bridge: String,
    pub hosts: Vec<Host>,
    forward_rule: Vec<String>,
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this process runs as root (namespaces and iptables need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

impl Net {
    /// Creates `n` namespaces on a new bridge, in a /24 chosen from `tag` (so that concurrent
    /// runs do not collide). On an error, what was made so far is removed again (by `Drop`).
    pub fn create(n: usize, tag: u32) -> Result<Net, String> {
        if !is_root() {
            return Err("network namespaces and iptables need root; run as root".into());
        }
        let third = 100 + tag % 150;
        let bridge = format!("rqbr{}", tag % 100_000);
        let mut net = Net {
            bridge: bridge.clone(),
            hosts: Vec::new(),
            forward_rule: Vec::new(),
        };
        net.add_bridge(third)?;
        net.allow_forwarding()?;
        for i in 0..n {
            net.add_host(tag, third, i)?;
        }
        Ok(net)
    }

    /// The bridge, at 10.77.`third`.1/24, with its owner's pid recorded.
    fn add_bridge(&mut self, third: u32) -> Result<(), String> {
        let bridge = self.bridge.as_str();
        run("ip", &["link", "add", bridge, "type", "bridge"])?;
        // who owns the bridge: `clean` leaves the runs whose owner is alive alone
        let _ = std::fs::create_dir_all(OWNER_DIR);
        let _ = std::fs::write(owner_file(bridge), std::process::id().to_string());
        run(
            "ip",
            &["addr", "add", &format!("10.77.{third}.1/24"), "dev", bridge],
        )?;
        run("ip", &["link", "set", bridge, "up"])
    }

    /// Docker sets the FORWARD policy to DROP, and bridged traffic passes FORWARD when
    /// br_netfilter is loaded: let traffic between our namespaces through.
    fn allow_forwarding(&mut self) -> Result<(), String> {
        let bridge = self.bridge.as_str();
        let rule: Vec<String> = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // -w: wait for the host-wide xtables lock (Docker or another run may hold it)
        let mut insert = vec!["-w".to_string(), "-I".to_string()];
        insert.extend(rule.iter().cloned());
        let insert_ref: Vec<&str> = insert.iter().map(String::as_str).collect();
        run("iptables", &insert_ref)?;
        self.forward_rule = rule;
        Ok(())
    }

    /// Host `i`: a namespace with a veth pair to the bridge, at 10.77.`third`.(11 + i).
    fn add_host(&mut self, tag: u32, third: u32, i: usize) -> Result<(), String> {
        let netns = format!("rq{}n{}", tag % 100_000, i + 1);
        let ip = format!("10.77.{third}.{}", 11 + i);
        let outside = format!("rq{}v{}", tag % 100_000, i + 1);
        run("ip", &["netns", "add", &netns])?;
        self.hosts.push(Host {
            netns: netns.clone(),
            ip: ip.clone(),
        });
        run(
            "ip",
            &[
                "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
        )?;
        run("ip", &["link", "set", &outside, "master", &self.bridge])?;
        run("ip", &["link", "set", &outside, "up"])?;
        run(
            "ip",
            &[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ],
        )?;
        run("ip", &["-n", &netns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", &netns, "link", "set", "lo", "up"])
    }

    /// The program and arguments that run a program (given after them) inside host `i`'s
    /// namespace; `ip netns exec` execs it, so the child's pid is the program's.
    pub fn wrapper(&self, i: usize) -> Vec<std::ffi::OsString> {
        ["ip", "netns", "exec", &self.hosts[i].netns]
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// Drops packets from host `from` arriving at host `to` (one way), all of them or, with
    /// `probability`, that share of them at random (iptables' statistic match: this kernel has
    /// no netem).
    pub fn drop_from(
        &self,
        from: usize,
        to: usize,
        probability: Option<f64>,
    ) -> Result<(), String> {
        let ns = &self.hosts[to].netns;
        let src = &self.hosts[from].ip;
        let mut args = vec![
            "netns", "exec", ns, "iptables", "-w", "-A", "INPUT", "-s", src,
        ];
        let p;
        if let Some(prob) = probability {
            p = format!("{prob:.3}");
            args.extend(["-m", "statistic", "--mode", "random", "--probability", &p]);
        }
        args.extend(["-j", "DROP"]);
        run("ip", &args)
    }

    /// Cuts host `a` off from host `b`, both ways.
    pub fn partition(&self, a: usize, b: usize) -> Result<(), String> {
        self.drop_from(a, b, None)?;
        self.drop_from(b, a, None)
    }

    /// Removes every partition.
    pub fn heal(&self) -> Result<(), String> {
        for h in &self.hosts {
            run(
                "ip",
                &["netns", "exec", &h.netns, "iptables", "-w", "-F", "INPUT"],
            )?;
        }
        Ok(())
    }
}

/// Where each run notes its process id, per bridge.
const OWNER_DIR: &str = "/run/raftq-jepsen";

fn owner_file(bridge: &str) -> std::path::PathBuf {
    std::path::Path::new(OWNER_DIR).join(format!("{bridge}.pid"))
}

/// Whether the run that made `bridge` is still alive.
fn owner_alive(bridge: &str) -> bool {
    std::fs::read_to_string(owner_file(bridge))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
}

fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn is_ours(name: &str, prefix: &str, infix: Option<char>) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    match infix {
        None => !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()),
        Some(sep) => rest.split_once(sep).is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.chars().all(|c| c.is_ascii_digit())
                && b.chars().all(|c| c.is_ascii_digit())
        }),
    }
}

/// Removes what runs that were killed before they could clean up left behind: namespaces
/// `rq<tag>n<i>` (and the node processes in them), bridges `rqbr<tag>` and their FORWARD
/// rules. A run whose harness process is alive (it notes its pid in /run/raftq-jepsen) is left
/// alone, unless `force`. Returns what was removed and what was kept.
pub fn clean_all(force: bool) -> (Vec<String>, Vec<String>) {
    let mut kept = Vec::new();
    let mut removed = Vec::new();
    let mut kept_tags = Vec::new();
    for line in output("ip", &["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if !is_ours(name, "rq", Some('n')) {
            continue;
        }
        let tag = name[2..].split('n').next().unwrap_or("").to_string();
        if !force && owner_alive(&format!("rqbr{tag}")) {
            kept.push(format!("namespace {name} (its run is in progress)"));
            kept_tags.push(tag);
            continue;
        }
        let pids = output("ip", &["netns", "pids", name]);
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) on a pid listed in a namespace of a run that is gone.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if run("ip", &["netns", "del", name]).is_err() {
            kept.push(format!("namespace {name} (could not delete it)"));
            kept_tags.push(tag);
        } else {
            removed.push(format!("namespace {name}"));
        }
    }
    let mut bridges = Vec::new();
    for line in output("ip", &["-o", "link", "show", "type", "bridge"]).lines() {
        let name = line
            .split(':')
            .nth(1)
            .map(str::trim)
            .unwrap_or("")
            .split('@')
            .next()
            .unwrap_or("")
            .to_string();
        if is_ours(&name, "rqbr", None) {
            if kept_tags.iter().any(|t| *t == name[4..]) {
                bridges.push(name);
            } else if run("ip", &["link", "del", &name]).is_ok() {
                let _ = std::fs::remove_file(owner_file(&name));
                removed.push(format!("bridge {name}"));
            } else {
                bridges.push(name);
            }
        }
    }
    for line in output("iptables", &["-w", "-S", "FORWARD"]).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let stale = words.windows(2).any(|w| {
            w[0] == "-i" && is_ours(w[1], "rqbr", None) && !bridges.iter().any(|b| b == w[1])
        });
        if words.first() == Some(&"-A") && stale {
            let mut del = vec!["-w", "-D"];
            del.extend(&words[1..]);
            if run("iptables", &del).is_ok() {
                removed.push(format!("iptables rule {line}"));
            }
        }
    }
    (removed, kept)
}

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = run("ip", &["netns", "del", &h.netns]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
        let _ = std::fs::remove_file(owner_file(&self.bridge));
        if !self.forward_rule.is_empty() {
            let mut del = vec!["-w".to_string(), "-D".to_string()];
            del.extend(self.forward_rule.iter().cloned());
            let del_ref: Vec<&str> = del.iter().map(String::as_str).collect();
            let _ = run("iptables", &del_ref);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_our_names_are_cleaned() {
        use super::is_ours;
        assert!(is_ours("rq123n1", "rq", Some('n')));
        assert!(!is_ours("rqbr123", "rq", Some('n')));
        assert!(!is_ours("rq123n", "rq", Some('n')));
        assert!(!is_ours("docker0", "rq", Some('n')));
        assert!(is_ours("rqbr42", "rqbr", None));
        assert!(!is_ours("rqbr", "rqbr", None));
        assert!(!is_ours("rqbrx", "rqbr", None));
    }
}

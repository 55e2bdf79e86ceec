//! The cluster token, as a node uses it: incoming calls must carry one of the tokens of the
//! node's token file ([`CheckToken`]; the server re-reads the file while it runs, so a rotated
//! token is accepted without a restart). The token file (reading it, and making it on first
//! start) is `raftq_client::auth`'s, the one writer every process shares; it is re-exported
//! here.
//!
//! The peer (Raft) service asks more ([`CheckPeer`]): with TLS on, the connection must have
//! presented a node certificate (rustls has checked it against the cluster CA) whose node id
//! is a current member; the token alone opens nothing there.

use raftq_client::auth::{bearer, AUTH_HEADER};
pub use raftq_client::auth::{ensure_token_file, new_token, read_tokens, Role, Token, TokenError};
use std::sync::{Arc, RwLock};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Checks incoming calls against the accepted tokens, in constant time, and marks each
/// admitted request with its token's [`Role`] (a request extension, read by [`full_only`]).
/// Clones share the tokens: [`CheckToken::set`] changes them for every service.
#[derive(Clone)]
pub struct CheckToken {
    expected: Arc<RwLock<Accepted>>,
}

/// The header each accepted token makes, and its role.
type Accepted = Vec<(Vec<u8>, Role)>;

fn headers_of(tokens: &[Token]) -> Accepted {
    tokens
        .iter()
        .map(|t| (bearer(&t.secret).into_bytes(), t.role))
        .collect()
}

impl CheckToken {
    /// Accepts each of `tokens` (a token file's, the current one first).
    pub fn new(tokens: &[Token]) -> CheckToken {
        CheckToken {
            expected: Arc::new(RwLock::new(headers_of(tokens))),
        }
    }

    /// Accepts `tokens` from now on; returns whether they differ from before.
    pub fn set(&self, tokens: &[Token]) -> bool {
        let new = headers_of(tokens);
        let mut e = self.expected.write().unwrap_or_else(|p| p.into_inner());
        let changed = *e != new;
        *e = new;
        changed
    }

    /// The role of the accepted token whose header `header` is; every one is compared in
    /// full, so the time taken tells nothing of which matched or how far.
    fn role_of(&self, header: &[u8]) -> Option<Role> {
        let e = self.expected.read().unwrap_or_else(|p| p.into_inner());
        e.iter().fold(None, |found, (t, role)| {
            let hit = same(header, t);
            if hit && found.is_none() {
                Some(*role)
            } else {
                found
            }
        })
    }

    /// The role of the token `header` (an `Authorization` value, `Bearer TOKEN`) carries, if
    /// it is accepted: the HTTP port's check, in the same constant time as the gRPC one.
    pub fn role_of_header(&self, header: &[u8]) -> Option<Role> {
        self.role_of(header)
    }

    /// The role of `token` (bare, as the web page's login form or cookie holds it), if it is
    /// accepted.
    pub fn role_of_token(&self, token: &str) -> Option<Role> {
        self.role_of(bearer(token).as_bytes())
    }
}

/// PERMISSION_DENIED unless the request came with a full token (not a runner token): for
/// every call that adds, changes or removes jobs, or changes the cluster.
pub fn full_only<T>(req: &Request<T>, what: &str) -> Result<(), Status> {
    match req.extensions().get::<Role>() {
        Some(Role::Runner) => Err(Status::permission_denied(format!(
            "{what}: a runner token may only reserve jobs, report on them and read the queue; \
             use the cluster token"
        ))),
        _ => Ok(()),
    }
}

/// Equality that takes as long for every pair of equal-length inputs, so that the time a
/// refusal takes does not tell how much of a guessed token was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for CheckToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match req.metadata().get(AUTH_HEADER) {
            Some(v) => match self.role_of(v.as_bytes()) {
                Some(role) => {
                    let mut req = req;
                    req.extensions_mut().insert(role);
                    Ok(req)
                }
                None => Err(Status::unauthenticated(
                    "wrong token: use the cluster's token file (--token-file or RAFTQ_TOKEN_FILE)",
                )),
            },
            None => Err(Status::unauthenticated(
                "no token: give the cluster's token file (--token-file or RAFTQ_TOKEN_FILE)",
            )),
        }
    }
}

/// What this node knows of its cluster's membership, as the peer check asks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// This node has no membership yet (a new node waiting to be initialised or added): any
    /// node the cluster CA certified may reach it, or it could never join.
    None,
    /// Node `id` is a voter or learner of the current membership.
    Member,
    NotMember,
}

/// Asks the current membership about a node id.
pub type MembershipOf = Arc<dyn Fn(u64) -> Membership + Send + Sync>;

/// Admits calls to the peer (Raft) service: with TLS on, a client certificate (verified
/// against the cluster CA during the handshake) naming a member, which is a stronger proof
/// than the token and does not break while a rotated token file is being copied to the nodes
/// (a node with the new file sends the new token to one with the old); without TLS, the
/// token.
#[derive(Clone)]
pub struct CheckPeer {
    token: CheckToken,
    /// None: TLS is off, the token is all there is to check.
    members: Option<MembershipOf>,
}

impl CheckPeer {
    pub fn new(token: CheckToken, members: Option<MembershipOf>) -> CheckPeer {
        CheckPeer { token, members }
    }

    /// The node id the connection's certificate names, if it may make peer calls.
    fn admit(members: &MembershipOf, certs: Option<&[impl AsRef<[u8]>]>) -> Result<u64, Status> {
        let Some(leaf) = certs.and_then(|c| c.first()) else {
            return Err(Status::permission_denied(
                "the peer service is for managers only: connect with a node certificate signed \
                 by the cluster CA (mutual TLS); a client token alone is not enough",
            ));
        };
        let id = crate::tls::node_id_of(leaf.as_ref())
            .map_err(|e| Status::permission_denied(format!("peer certificate: {e}")))?;
        match members(id) {
            Membership::Member | Membership::None => Ok(id),
            Membership::NotMember => Err(Status::permission_denied(format!(
                "node {id} is not a member of this cluster (removed, or not added yet): \
                 peer calls refused"
            ))),
        }
    }
}

impl Interceptor for CheckPeer {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(members) = &self.members else {
            return self.token.call(req);
        };
        let certs = req.peer_certs();
        CheckPeer::admit(members, certs.as_deref().map(Vec::as_slice))?;
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftq_client::Auth;

    #[test]
    fn interceptors_agree() {
        let mut out = Auth::new(Some("abc")).unwrap();
        let mut check = CheckToken::new(&[full("abc")]);
        let req = out.call(Request::new(())).unwrap();
        assert!(check.call(req).is_ok());
        let req = Auth::new(Some("abd"))
            .unwrap()
            .call(Request::new(()))
            .unwrap();
        assert_eq!(
            check.call(req).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let err = check.call(Request::new(())).unwrap_err();
        assert!(err.message().contains("no token"));
        // a rotated set: the new token and the old both accepted, then the old retired
        let both = [full("abd"), full("abc")];
        assert!(check.set(&both) && !check.set(&both));
        let send = |t| Auth::new(Some(t)).unwrap().call(Request::new(())).unwrap();
        assert!(check.call(send("abd")).is_ok() && check.call(send("abc")).is_ok());
        check.set(&both[..1]);
        assert!(check.call(send("abd")).is_ok() && check.call(send("abc")).is_err());
        // a runner token is admitted, marked, and kept out of what only full tokens may do
        let runner = Token {
            secret: "run".into(),
            role: Role::Runner,
        };
        check.set(&[full("abd"), runner]);
        let req = check.call(send("run")).unwrap();
        let e = full_only(&req, "Kill").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().starts_with("Kill: a runner token"), "{e:?}");
        assert!(full_only(&check.call(send("abd")).unwrap(), "Kill").is_ok());
    }

    fn full(secret: &str) -> Token {
        Token {
            secret: secret.into(),
            role: Role::Full,
        }
    }

    #[test]
    fn peers_are_admitted_by_a_member_certificate_only() {
        let dir = tempfile::tempdir().unwrap();
        crate::tls::make_ca(dir.path(), 30, false).unwrap();
        let want = |id| crate::tls::NodeCert {
            id,
            hosts: vec!["127.0.0.1".into()],
            days: 30,
        };
        let der = |id| {
            let f = crate::tls::make_node_cert(dir.path(), &want(id)).unwrap();
            crate::tls::first_der(&std::fs::read(f.cert).unwrap()).unwrap()
        };
        let members: MembershipOf = Arc::new(|id| {
            if id <= 3 {
                Membership::Member
            } else {
                Membership::NotMember
            }
        });
        let (two, nine) = (der(2), der(9));
        assert_eq!(CheckPeer::admit(&members, Some(&[&two[..]])).unwrap(), 2);
        let e = CheckPeer::admit(&members, Some(&[&nine[..]])).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("node 9 is not a member"), "{e:?}");
        let none: Option<&[&[u8]]> = None;
        let e = CheckPeer::admit(&members, none).unwrap_err();
        assert!(e.message().contains("token alone"), "{e:?}");
        let e = CheckPeer::admit(&members, Some(&[&b"junk"[..]])).unwrap_err();
        assert!(e.message().starts_with("peer certificate"), "{e:?}");
        // a node with no membership yet admits any certified node (or it could never join)
        let fresh: MembershipOf = Arc::new(|_| Membership::None);
        assert_eq!(CheckPeer::admit(&fresh, Some(&[&nine[..]])).unwrap(), 9);
        // without TLS the token is the check
        let mut plain = CheckPeer::new(CheckToken::new(&[full("abc")]), None);
        let req = Auth::new(Some("abc"))
            .unwrap()
            .call(Request::new(()))
            .unwrap();
        assert!(plain.call(req).is_ok());
        // with TLS, the token alone is refused
        let mut tls = CheckPeer::new(CheckToken::new(&[full("abc")]), Some(members));
        let req = Auth::new(Some("abc"))
            .unwrap()
            .call(Request::new(()))
            .unwrap();
        assert_eq!(
            tls.call(req).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }
}

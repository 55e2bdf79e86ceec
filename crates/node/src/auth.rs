//! The cluster token, as a node uses it: incoming calls must carry it ([`CheckToken`]). The
//! token file (reading it, and making it on first start) is `raftq_client::auth`'s, the one
//! writer every process shares; it is re-exported here.

use raftq_client::auth::{bearer, AUTH_HEADER};
pub use raftq_client::auth::{ensure_token_file, new_token, TokenError};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Checks incoming calls against the cluster token, in constant time.
#[derive(Clone)]
pub struct CheckToken {
    expected: Vec<u8>,
}

impl CheckToken {
    pub fn new(token: &str) -> CheckToken {
        CheckToken {
            expected: bearer(token).into_bytes(),
        }
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
            Some(v) if same(v.as_bytes(), &self.expected) => Ok(req),
            Some(_) => Err(Status::unauthenticated(
                "wrong token: use the cluster's token file (--token-file or RAFTQ_TOKEN_FILE)",
            )),
            None => Err(Status::unauthenticated(
                "no token: give the cluster's token file (--token-file or RAFTQ_TOKEN_FILE)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftq_client::Auth;

    #[test]
    fn interceptors_agree() {
        let mut out = Auth::new(Some("abc")).unwrap();
        let mut check = CheckToken::new("abc");
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
    }
}

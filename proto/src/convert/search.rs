//! The Search request, as a [`SearchQuery`] in queue-fsm's terms (Search is a read, not a
//! command).

use super::scalars::{bad_enum, state_name};
use super::ConvertError;
use crate::pb;
use queue_fsm::limits::MAX_QUERY_JOBS;
use queue_fsm::{Match, Page, StateName};

/// A Search request's parameters in queue-fsm's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    /// Empty with `incomplete_only`: all incomplete jobs.
    pub rep_grp: String,
    pub how: Match,
    pub state: Option<StateName>,
    /// Keep this many per (state, fail reason, exit code); 0 keeps all.
    pub limit: usize,
    pub incomplete_only: bool,
    pub stale: bool,
    /// Paging: `Some` returns at most `count` jobs after skipping `offset` (no similar
    /// grouping: `limit` must be 0).
    pub page: Option<Page>,
}

/// Search. Errors name `match` or `state`.
pub fn search_query(r: pb::SearchRequest) -> Result<SearchQuery, ConvertError> {
    let how = pb::search_request::Match::try_from(r.r#match)
        .map(Match::from)
        .map_err(|_| bad_enum("match", r.r#match))?;
    let page = match r.page_size {
        0 => None,
        n if n as usize > MAX_QUERY_JOBS => {
            return Err(ConvertError::new(
                "page_size",
                format!("{n} is more than {MAX_QUERY_JOBS}"),
            ))
        }
        _ if r.limit > 0 => {
            return Err(ConvertError::new(
                "page_size",
                "pages are of single jobs: give limit 0 with page_size",
            ))
        }
        n => Some(Page {
            offset: r.offset as usize,
            count: n as usize,
        }),
    };
    Ok(SearchQuery {
        page,
        rep_grp: r.rep_grp,
        how,
        state: r.state.map(state_name).transpose()?,
        limit: usize::try_from(r.limit).unwrap_or(usize::MAX),
        incomplete_only: r.incomplete_only,
        stale: r.stale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::testkit::field_of;

    #[test]
    fn validation_names_the_field() {
        assert_eq!(
            field_of(search_query(pb::SearchRequest {
                r#match: 3,
                ..Default::default()
            })),
            "match"
        );
        assert_eq!(
            field_of(search_query(pb::SearchRequest {
                state: Some(8),
                ..Default::default()
            })),
            "state"
        );
        assert_eq!(
            field_of(search_query(pb::SearchRequest {
                limit: 1,
                page_size: 10,
                ..Default::default()
            })),
            "page_size"
        );
    }
}

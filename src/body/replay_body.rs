//! The request body made by [`BufferBodyLayer`](super::BufferBodyLayer).

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;

use crate::BoxError;

/// A request body that was either read whole into memory, and can then be sent again, or
/// was too large for that and is passed through: the part already read, then the rest of
/// the original stream.
///
/// Made by [`BufferBody`](super::BufferBody); the [`OAuth`](crate::OAuth) service copies a
/// buffered one to send a request again after a 401. Data frames are [`Bytes`]; errors are
/// the original body's, boxed.
pub struct ReplayBody {
    kind: Kind,
}

enum Kind {
    /// Read whole: what is left to send.
    Buffered {
        data: Bytes,
        trailers: Option<HeaderMap>,
    },
    /// Too large: the chunks already read, then the rest of the stream.
    Chained {
        prefix: VecDeque<Bytes>,
        prefix_len: u64,
        rest: UnsyncBoxBody<Bytes, BoxError>,
    },
}

impl ReplayBody {
    /// An empty body.
    pub fn empty() -> ReplayBody {
        ReplayBody::buffered(Bytes::new(), None)
    }

    pub(crate) fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> ReplayBody {
        ReplayBody {
            kind: Kind::Buffered { data, trailers },
        }
    }

    pub(crate) fn chained(prefix: VecDeque<Bytes>, rest: UnsyncBoxBody<Bytes, BoxError>) -> Self {
        let prefix_len = prefix.iter().map(|b| b.len() as u64).sum();
        ReplayBody {
            kind: Kind::Chained {
                prefix,
                prefix_len,
                rest,
            },
        }
    }

    /// True if the body was read whole and can be sent again.
    pub fn is_buffered(&self) -> bool {
        matches!(self.kind, Kind::Buffered { .. })
    }

    /// A copy of a buffered body (a reference count on its bytes, and a copy of its
    /// trailers if it has any); `None` for a body that was passed through.
    pub fn try_clone(&self) -> Option<ReplayBody> {
        match &self.kind {
            Kind::Buffered { data, trailers } => {
                Some(ReplayBody::buffered(data.clone(), trailers.clone()))
            }
            Kind::Chained { .. } => None,
        }
    }
}

impl Default for ReplayBody {
    fn default() -> Self {
        ReplayBody::empty()
    }
}

impl From<Bytes> for ReplayBody {
    fn from(data: Bytes) -> Self {
        ReplayBody::buffered(data, None)
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Buffered { data, trailers } => {
                if !data.is_empty() {
                    return Poll::Ready(Some(Ok(Frame::data(std::mem::take(data)))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            Kind::Chained {
                prefix,
                prefix_len,
                rest,
            } => {
                if let Some(chunk) = prefix.pop_front() {
                    *prefix_len -= chunk.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                Pin::new(rest).poll_frame(cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered { data, trailers } => data.is_empty() && trailers.is_none(),
            Kind::Chained { prefix, rest, .. } => prefix.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, .. } => SizeHint::with_exact(data.len() as u64),
            Kind::Chained {
                prefix_len, rest, ..
            } => {
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(*prefix_len));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(*prefix_len));
                }
                hint
            }
        }
    }
}

impl fmt::Debug for ReplayBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Buffered { data, trailers } => f
                .debug_struct("ReplayBody::Buffered")
                .field("len", &data.len())
                .field("trailers", &trailers.is_some())
                .finish(),
            Kind::Chained { prefix_len, .. } => f
                .debug_struct("ReplayBody::Chained")
                .field("prefix_len", prefix_len)
                .finish_non_exhaustive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn a_buffered_body_is_copied_a_chained_one_is_not() {
        let body = ReplayBody::from(Bytes::from_static(b"abc"));
        assert!(body.is_buffered());
        assert_eq!(body.size_hint().exact(), Some(3));
        let copy = body.try_clone().expect("buffered");
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "abc");
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");

        let rest = Full::new(Bytes::from_static(b"def"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let prefix = VecDeque::from([Bytes::from_static(b"a"), Bytes::from_static(b"bc")]);
        let chained = ReplayBody::chained(prefix, rest);
        assert!(!chained.is_buffered());
        assert!(chained.try_clone().is_none());
        assert_eq!(chained.size_hint().exact(), Some(6));
        assert!(!chained.is_end_stream());
        assert_eq!(chained.collect().await.unwrap().to_bytes(), "abcdef");

        assert!(ReplayBody::empty().is_end_stream());
    }
}

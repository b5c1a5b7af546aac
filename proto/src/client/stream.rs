//! The `ScanImageStream` call's events ([`ScanStream`], [`ScanEvent`]), checked against the
//! stream contract and bounded by the per-call deadline over the whole stream.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;

use super::error::{ClientError, deadline_status, normalize};
use crate::v1::{
    Progress, ScanImageStreamResponse, ScanResponse, scan_image_stream_response::Event,
};

/// One event of [`ScanStream`].
#[derive(Clone, Debug, PartialEq)]
pub enum ScanEvent {
    /// Work in progress.
    Progress(Progress),
    /// The final response (the same `ScanImage` would return).
    Result(Box<ScanResponse>),
}

/// The events of a `ScanImageStream` call, checked against the contract: zero or more progress
/// events, then exactly one result, then the end of the stream. A violation is a
/// [`ClientError::Protocol`]; the per-call deadline covers the whole stream. After the first
/// error the stream ends.
pub struct ScanStream {
    inner: tonic::Streaming<ScanImageStreamResponse>,
    deadline: Option<Pin<Box<Sleep>>>,
    deadline_at: Option<Instant>,
    timeout: Option<Duration>,
    got_result: bool,
    done: bool,
}

impl fmt::Debug for ScanStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScanStream")
            .field("timeout", &self.timeout)
            .field("got_result", &self.got_result)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ScanStream {
    /// The stream of an accepted call whose per-call deadline (if any) is `deadline`, `timeout`
    /// after the call started.
    pub(super) fn new(
        inner: tonic::Streaming<ScanImageStreamResponse>,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> Self {
        ScanStream {
            inner,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            deadline_at: deadline,
            timeout,
            got_result: false,
            done: false,
        }
    }

    /// Reads the stream to its end, calling `on_progress` for each progress event, and returns
    /// the result.
    pub async fn result(
        mut self,
        mut on_progress: impl FnMut(&Progress),
    ) -> Result<ScanResponse, ClientError> {
        use tokio_stream::StreamExt;
        let mut result = None;
        while let Some(event) = self.next().await {
            match event? {
                ScanEvent::Progress(progress) => on_progress(&progress),
                ScanEvent::Result(response) => result = Some(*response),
            }
        }
        // The stream only ends cleanly after exactly one result.
        result.ok_or_else(|| ClientError::Protocol("stream ended without a result".into()))
    }
}

impl Stream for ScanStream {
    type Item = Result<ScanEvent, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let fail = |this: &mut ScanStream, err: ClientError| {
            this.done = true;
            Poll::Ready(Some(Err(err)))
        };
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(message))) => match message.event {
                Some(Event::Progress(_)) | Some(Event::Result(_)) if this.got_result => fail(
                    this,
                    ClientError::Protocol("an event was sent after the result".into()),
                ),
                Some(Event::Progress(progress)) => {
                    Poll::Ready(Some(Ok(ScanEvent::Progress(progress))))
                }
                Some(Event::Result(response)) => {
                    this.got_result = true;
                    Poll::Ready(Some(Ok(ScanEvent::Result(Box::new(response)))))
                }
                None => fail(
                    this,
                    ClientError::Protocol("an event with neither progress nor result".into()),
                ),
            },
            Poll::Ready(Some(Err(status))) => {
                let status = normalize(status, this.deadline_at, this.timeout);
                fail(this, ClientError::Status(status))
            }
            Poll::Ready(None) => {
                this.done = true;
                if this.got_result {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(ClientError::Protocol(
                        "stream ended without a result".into(),
                    ))))
                }
            }
            Poll::Pending => {
                if let Some(sleep) = this.deadline.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    let status = deadline_status(this.timeout);
                    return fail(this, ClientError::Status(status));
                }
                Poll::Pending
            }
        }
    }
}

//! `PluginClient`'s retries against a fault-injecting Scan server on 127.0.0.1: each call takes
//! the next scripted status (with or without `grpc-retry-pushback-ms`) until the script runs out,
//! then answers OK with a report.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sidescan_proto::{
    client::{ClientOptions, PUSHBACK_HEADER, PluginClient, RetryPolicy},
    v1::{
        GetMetadataRequest, GetMetadataResponse, ScanImageStreamResponse, ScanReport, ScanRequest,
        ScanResponse, Summary,
        scan_image_stream_response::Event,
        scan_server::{Scan, ScanServer},
    },
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status, transport::Server};

/// A scripted failure: the code and the pushback metadata value, if any.
type Fault = (Code, Option<&'static str>);

/// When a call arrived, and the grpc-timeout it carried.
type Call = (Instant, Option<String>);

#[derive(Clone, Default)]
struct FaultyPlugin {
    script: Arc<Mutex<VecDeque<Fault>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl FaultyPlugin {
    fn next<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.calls.lock().unwrap().push((Instant::now(), timeout));
        match self.script.lock().unwrap().pop_front() {
            None => Ok(()),
            Some((code, pushback)) => {
                let mut status = Status::new(code, "scripted failure");
                if let Some(value) = pushback {
                    status
                        .metadata_mut()
                        .insert(PUSHBACK_HEADER, value.parse().unwrap());
                }
                Err(status)
            }
        }
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn gaps(&self) -> Vec<Duration> {
        let calls = self.calls.lock().unwrap();
        calls.windows(2).map(|w| w[1].0 - w[0].0).collect()
    }
}

fn clean_response() -> ScanResponse {
    ScanResponse {
        report: Some(ScanReport {
            summary: Some(Summary::default()),
            ..Default::default()
        }),
        reports: vec![],
    }
}

type EventStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<ScanImageStreamResponse, Status>> + Send>,
>;

#[tonic::async_trait]
impl Scan for FaultyPlugin {
    async fn get_metadata(
        &self,
        request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        self.next(&request)?;
        Ok(Response::new(GetMetadataResponse::default()))
    }

    async fn scan_image(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<ScanResponse>, Status> {
        self.next(&request)?;
        Ok(Response::new(clean_response()))
    }

    type ScanImageStreamStream = EventStream;

    async fn scan_image_stream(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.next(&request)?;
        let last = ScanImageStreamResponse {
            event: Some(Event::Result(clean_response())),
        };
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(last)]))))
    }
}

async fn serve(script: &[Fault]) -> (FaultyPlugin, String) {
    let plugin = FaultyPlugin::default();
    plugin.script.lock().unwrap().extend(script.iter().copied());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let service = ScanServer::new(plugin.clone());
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (plugin, url)
}

/// Fast backoff so the tests stay short; the ceilings still double.
fn fast() -> RetryPolicy {
    RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(40))
}

async fn client(url: &str, retry: RetryPolicy, timeout: Option<Duration>) -> PluginClient {
    let mut options = ClientOptions::default().retry(retry);
    options.timeout = timeout;
    PluginClient::connect(url, options).await.unwrap()
}

const UNAVAILABLE: Fault = (Code::Unavailable, None);

#[tokio::test]
async fn unavailable_is_retried_until_the_answer() {
    let (plugin, url) = serve(&[UNAVAILABLE, UNAVAILABLE]).await;
    let response = client(&url, fast(), None)
        .await
        .scan(ScanRequest::default())
        .await
        .expect("third attempt answers");
    assert!(response.report.is_some());
    assert_eq!(plugin.calls(), 3);
}

#[tokio::test]
async fn attempts_are_bounded_and_the_last_status_is_returned() {
    let (plugin, url) = serve(&[UNAVAILABLE; 10]).await;
    let err = client(&url, fast().max_attempts(4), None)
        .await
        .scan(ScanRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
    assert_eq!(plugin.calls(), 4);
}

#[tokio::test]
async fn disabled_retries_make_one_attempt() {
    let (plugin, url) = serve(&[UNAVAILABLE]).await;
    let err = client(&url, RetryPolicy::disabled(), None)
        .await
        .scan(ScanRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::Unavailable));
    assert_eq!(plugin.calls(), 1);
}

#[tokio::test]
async fn resource_exhausted_is_retried_only_with_a_pushback_and_not_before_it() {
    let (plugin, url) = serve(&[(Code::ResourceExhausted, Some("300"))]).await;
    let response = client(&url, fast(), None)
        .await
        .scan(ScanRequest::default())
        .await;
    assert!(response.is_ok(), "{response:?}");
    assert_eq!(plugin.calls(), 2);
    let gap = plugin.gaps()[0];
    assert!(gap >= Duration::from_millis(300), "retried after {gap:?}");

    // The same refusal without pushback (a limit of the image) is final.
    let (plugin, url) = serve(&[(Code::ResourceExhausted, None)]).await;
    let err = client(&url, fast(), None)
        .await
        .scan(ScanRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::ResourceExhausted));
    assert_eq!(plugin.calls(), 1);
}

/// One `ScanImage` call against a server that fails once with `fault`: the status code the
/// caller got and how many calls the server saw.
async fn failing_once(fault: Fault) -> (Option<Code>, usize) {
    let (plugin, url) = serve(&[fault]).await;
    let result = client(&url, fast(), None)
        .await
        .scan(ScanRequest::default())
        .await;
    (result.err().and_then(|e| e.code()), plugin.calls())
}

#[tokio::test]
async fn a_negative_or_malformed_pushback_means_do_not_retry() {
    for pushback in ["-1", "later", "12.5"] {
        for code in [Code::Unavailable, Code::ResourceExhausted] {
            assert_eq!(
                failing_once((code, Some(pushback))).await,
                (Some(code), 1),
                "{code:?} with pushback {pushback:?}"
            );
        }
    }
}

#[tokio::test]
async fn other_failures_are_never_retried() {
    for code in [
        Code::DataLoss,
        Code::NotFound,
        Code::PermissionDenied,
        Code::Internal,
        Code::FailedPrecondition,
    ] {
        assert_eq!(
            failing_once((code, Some("10"))).await,
            (Some(code), 1),
            "{code:?}"
        );
    }
}

#[tokio::test]
async fn no_wait_runs_past_the_deadline_and_each_attempt_gets_the_time_left() {
    // A pushback longer than the deadline: the refusal comes back at once, not a sleep.
    let (plugin, url) = serve(&[(Code::ResourceExhausted, Some("5000"))]).await;
    let started = Instant::now();
    let err = client(&url, fast(), Some(Duration::from_secs(1)))
        .await
        .scan(ScanRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(plugin.calls(), 1);

    // Pushbacks that fit: retried, and the second attempt is sent a shorter deadline.
    let (plugin, url) = serve(&[(Code::ResourceExhausted, Some("400"))]).await;
    client(&url, fast(), Some(Duration::from_secs(3)))
        .await
        .scan(ScanRequest::default())
        .await
        .expect("retried within the deadline");
    let timeouts: Vec<u64> = plugin
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|(_, t)| {
            let t = t.as_deref().expect("grpc-timeout sent");
            let (digits, unit) = t.split_at(t.len() - 1);
            let value: u64 = digits.parse().unwrap();
            match unit {
                "m" => value,
                "u" => value / 1000,
                "n" => value / 1_000_000,
                "S" => value * 1000,
                other => panic!("unit {other}"),
            }
        })
        .collect();
    assert_eq!(timeouts.len(), 2);
    assert!(timeouts[0] <= 3000 && timeouts[0] > 2500, "{timeouts:?}");
    assert!(timeouts[1] <= timeouts[0] - 400, "{timeouts:?}");
}

#[tokio::test]
async fn metadata_and_the_stream_opening_are_retried_too() {
    let (plugin, url) = serve(&[UNAVAILABLE]).await;
    client(&url, fast(), None).await.metadata().await.unwrap();
    assert_eq!(plugin.calls(), 2);

    let (plugin, url) = serve(&[(Code::ResourceExhausted, Some("20")), UNAVAILABLE]).await;
    let stream = client(&url, fast(), None)
        .await
        .scan_stream(ScanRequest::default())
        .await
        .expect("stream opened on the third attempt");
    let response = stream.result(|_| {}).await.unwrap();
    assert!(response.report.is_some());
    assert_eq!(plugin.calls(), 3);
}

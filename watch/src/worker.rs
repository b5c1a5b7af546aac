//! Workers: take an image from the queue, decide whether it is an image at all, and for each
//! plugin without a current report (same scanner, version and engine version), scan it and
//! attach the report as a referrer.
//!
//! Failures are sorted by cause: the plugin or registry being unavailable (UNAVAILABLE,
//! RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ABORTED, a 5xx, the network) is retried with backoff
//! up to `--attempts`; a refusal (the plugin will not scan this image: INVALID_ARGUMENT,
//! DATA_LOSS, FAILED_PRECONDITION, ...) is logged and counted, and nothing is attached: an
//! image without a report is an unscanned image, never a clean one.

use std::sync::Arc;
use std::time::Duration;

use sidescan_oci::referrers;
use sidescan_oci::registry::Manifest;
use sidescan_oci::report::{self, ReportInfo};
use sidescan_proto::client::ClientError;
use sidescan_proto::v1::{Registry as RegistryMessage, ScanRequest};
use tonic::Code;

use crate::emit::Scanned;
use crate::plugins::{self, Plugin};
use crate::queue::Job;
use crate::watcher::Watcher;

/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why an image could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Worth another attempt later.
    #[error("{0}")]
    Transient(String),
    /// Not worth retrying.
    #[error("{0}")]
    Permanent(String),
}

fn registry_failure(e: sidescan_oci::Error) -> Failure {
    if e.is_transient() {
        Failure::Transient(e.to_string())
    } else {
        Failure::Permanent(e.to_string())
    }
}

fn plugin_failure(url: &str, e: &ClientError) -> Failure {
    let message = format!("plugin {url}: {e}");
    match e.code() {
        Some(
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Aborted,
        ) => Failure::Transient(message),
        _ => Failure::Permanent(message),
    }
}

/// Runs one worker forever.
pub async fn run(watcher: Arc<Watcher>) {
    loop {
        let job = watcher.queue.pop().await;
        watcher.metrics.queue_depth(watcher.queue.len());
        let finished = job.clone();
        handle(&watcher, job).await;
        watcher.queue.done(&finished);
    }
}

async fn handle(watcher: &Arc<Watcher>, job: Job) {
    let repo = job.push.repository.clone();
    let reference = job
        .push
        .digest
        .clone()
        .or_else(|| job.push.tag.clone())
        .unwrap_or_default();
    match process(watcher, &job).await {
        Ok(()) => {}
        Err(Failure::Transient(why)) if job.attempt + 1 < watcher.attempts => {
            let delay =
                (Duration::from_secs(1) * 2u32.saturating_pow(job.attempt)).min(MAX_BACKOFF);
            tracing::warn!(%repo, %reference, attempt = job.attempt + 1, retry_in = ?delay, error = %why, "will retry");
            let watcher = watcher.clone();
            let mut job = job;
            job.attempt += 1;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if watcher.queue.push(job).is_err() {
                    tracing::error!(%repo, %reference, "queue full: retry dropped (the reconcile loop will find the image)");
                }
                watcher.metrics.queue_depth(watcher.queue.len());
            });
        }
        Err(e) => {
            tracing::error!(%repo, %reference, attempts = job.attempt + 1, error = %e, "image not scanned");
        }
    }
}

/// Handles one job: resolve, classify, scan with every plugin that has no current report.
pub async fn process(watcher: &Watcher, job: &Job) -> Result<(), Failure> {
    let repo = job.push.repository.as_str();
    if let Some(why) = &job.push.not_an_image {
        watcher.metrics.skipped("not-an-image");
        tracing::debug!(%repo, why, "not an image");
        return Ok(());
    }
    if job
        .push
        .tag
        .as_deref()
        .is_some_and(referrers::is_fallback_tag)
    {
        watcher.metrics.skipped("not-an-image");
        return Ok(());
    }
    let reference = job
        .push
        .digest
        .as_deref()
        .or(job.push.tag.as_deref())
        .ok_or_else(|| Failure::Permanent("event names neither digest nor tag".into()))?;
    let Some(manifest) = watcher
        .registry
        .manifest(repo, reference)
        .await
        .map_err(registry_failure)?
    else {
        watcher.metrics.skipped("gone");
        tracing::info!(%repo, %reference, "manifest is gone");
        return Ok(());
    };
    if let Some(why) = sidescan_oci::media::not_an_image(&manifest.media_type, &manifest.json) {
        watcher.metrics.skipped("not-an-image");
        tracing::debug!(%repo, %reference, why, "not an image");
        return Ok(());
    }
    let _turn = watcher.image_locks.lock(repo, &manifest.digest).await;
    let existing = referrers::list(&watcher.registry, repo, &manifest.digest)
        .await
        .map_err(registry_failure)?;
    let latest = report::latest(&existing.entries);

    let results = futures::future::join_all(
        watcher
            .plugins
            .iter()
            .map(|plugin| scan_with(watcher, plugin, job, &manifest, &latest)),
    )
    .await;
    let mut reported = false;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(did_report) => reported |= did_report,
            Err(Failure::Transient(e)) => {
                first_error.get_or_insert(Failure::Transient(e));
            }
            Err(Failure::Permanent(e)) => {
                tracing::error!(%repo, digest = %manifest.digest, error = %e, "scan refused");
            }
        }
    }
    if reported {
        watcher
            .metrics
            .latency(job.received.elapsed().as_secs_f64());
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Scans `manifest` with `plugin` unless it has a current report; returns whether a report was
/// attached.
async fn scan_with(
    watcher: &Watcher,
    plugin: &Plugin,
    job: &Job,
    manifest: &Manifest,
    latest: &[ReportInfo],
) -> Result<bool, Failure> {
    let repo = job.push.repository.as_str();
    let metadata = plugin
        .metadata()
        .await
        .map_err(|e| plugin_failure(plugin.url(), &e))?;
    let id = plugins::identity(&metadata, plugin.url());
    let current = latest
        .iter()
        .any(|r| r.artifact_type == report::REPORT_ARTIFACT_TYPE && r.scanner == id);
    if current {
        watcher.metrics.scan(&id.name, "current");
        tracing::info!(%repo, digest = %manifest.digest, scanner = %id.name, engine = %id.engine_version, "already reported");
        return Ok(false);
    }
    let image = match job.push.tag.as_deref() {
        Some(tag) => format!("{repo}:{tag}@{}", manifest.digest),
        None => format!("{repo}@{}", manifest.digest),
    };
    let registry = &watcher.registry;
    let request = ScanRequest {
        image: image.clone(),
        registry: Some(RegistryMessage {
            url: registry.url(),
            authorization: registry.credentials().authorization(),
            insecure: registry.plain_http(),
        }),
        report_types: plugins::report_types(&metadata, &watcher.formats),
        platform: None,
    };
    let response = match plugin.scan(request, watcher.scan_timeout).await {
        Ok(r) => r,
        Err(e) => {
            let failure = plugin_failure(plugin.url(), &e);
            let outcome = match failure {
                Failure::Transient(_) => "failed",
                Failure::Permanent(_) => "refused",
            };
            watcher.metrics.scan(&id.name, outcome);
            return Err(failure);
        }
    };
    let created = report::now_rfc3339();
    let (documents, not_made) = report::attachments(&response, &id, &created, &watcher.formats)
        .map_err(|e| Failure::Permanent(e.to_string()))?;
    for (format, why) in not_made {
        tracing::info!(%repo, scanner = %id.name, ?format, why, "document not attached");
    }
    let subject = manifest.descriptor();
    let mut report_digest = String::new();
    for document in &documents {
        let done = referrers::attach(registry, repo, &subject, document)
            .await
            .map_err(registry_failure)?;
        let via = match done.via {
            referrers::Via::Api => "api",
            referrers::Via::TagSchema => "tag-schema",
        };
        watcher.metrics.attached(document.artifact_type(), via);
        if document.format == report::Format::Sidescan {
            report_digest = done.digest.clone();
        }
        tracing::info!(%repo, digest = %manifest.digest, scanner = %id.name, artifact_type = document.artifact_type(),
            report = %done.digest, via, replaced = done.replaced.len(), "report attached");
    }
    watcher.metrics.scan(&id.name, "reported");
    if let Some(emitter) = &watcher.emitter {
        let reference = job.push.tag.as_deref().unwrap_or(&manifest.digest);
        emitter
            .send(
                &watcher.metrics,
                &Scanned {
                    name: repo,
                    reference,
                    digest: &manifest.digest,
                    media_type: &manifest.descriptor().media_type,
                    scanner: &id,
                    response: &response,
                    report_digest: &report_digest,
                },
            )
            .await;
    }
    Ok(true)
}

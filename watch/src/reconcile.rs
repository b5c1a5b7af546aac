//! The reconcile loop: walk the registry's catalog and queue every tagged image, so that images
//! whose event was lost (zot's NATS publish is fire-and-forget; distribution keeps
//! notifications only in memory) and images reported by an older engine version get scanned.
//! The workers' check for a current report keeps this cheap: a `GET` of each manifest and its
//! referrers, no scan, for images already reported by the current engine.

use std::sync::Arc;
use std::time::Duration;

use sidescan_oci::referrers::is_fallback_tag;

use crate::event::{ImagePushed, Kind};
use crate::queue::{Job, Pushed};
use crate::watcher::Watcher;

/// Runs a pass every `interval`, forever (the first one right away).
pub async fn run(watcher: Arc<Watcher>, interval: Duration) {
    loop {
        match pass(&watcher).await {
            Ok(queued) => tracing::info!(queued, "reconcile pass done"),
            Err(e) => tracing::warn!(error = %e, "reconcile pass failed"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// One walk of the catalog; returns how many images were queued.
pub async fn pass(watcher: &Watcher) -> Result<usize, sidescan_oci::Error> {
    let mut queued = 0;
    for repo in watcher.registry.repositories().await? {
        for tag in watcher.registry.tags(&repo).await? {
            if is_fallback_tag(&tag) {
                continue;
            }
            let push = ImagePushed {
                repository: repo.clone(),
                tag: Some(tag),
                digest: None,
                media_type: None,
                not_an_image: None,
            };
            // Wait for room rather than drop: the loop is the safety net.
            let mut job = Job::new(push, Kind::Reconcile);
            loop {
                match watcher.queue.push(job.clone()) {
                    Ok(Pushed::Queued) => {
                        queued += 1;
                        watcher.metrics.event(Kind::Reconcile.label(), "queued", 1);
                        break;
                    }
                    Ok(Pushed::Duplicate) => {
                        watcher
                            .metrics
                            .event(Kind::Reconcile.label(), "duplicate", 1);
                        break;
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        job.received = std::time::Instant::now();
                    }
                }
            }
            watcher.metrics.queue_depth(watcher.queue.len());
        }
    }
    Ok(queued)
}

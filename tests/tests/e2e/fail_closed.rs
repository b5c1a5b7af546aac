//! The fail-closed attacks ([`hostile::fail_closed`]) end to end, as an operator runs them: a
//! real `docker-registry`, a real clamd with the test signatures and the real `sidescan-clamav`
//! binary over gRPC. Each image hides EICAR from a reader that differs from the container
//! runtime's; the adapter must report EICAR where the runtime extracts it, or refuse the image
//! with the documented code, never answer clean. One plugin scans them all, so its caches are
//! shared (the polyglot's primer is scanned first). The CLI's `--fail-on high` exits 1 on the
//! `../../evil` image.

use std::time::Duration;

use sidescan_proto::v1 as pb;
use sidescan_testkit::clamd::{ClamdProcess, EICAR_SIGNATURE};
use sidescan_testkit::hostile::{self, Expected, HostileCase};
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, workspace_binary};
use sidescan_testkit::registry::Registry;

/// A registry, a clamd and the ClamAV adapter on clamd's Unix socket, stopped on drop.
struct Stack {
    registry: Registry,
    _clamd: ClamdProcess,
    plugin: PluginProcess,
}

impl Stack {
    async fn start() -> Self {
        let registry = Registry::anonymous();
        let clamd = ClamdProcess::start();
        let plugin = PluginProcess::start(
            &workspace_binary("sidescan-clamav"),
            &["--clamd", &clamd.unix_addr()],
        );
        plugin.wait_for_health(ServingStatus::Serving).await;
        Self {
            registry,
            _clamd: clamd,
            plugin,
        }
    }

    /// Pushes `artifact` as `repo:tag` and scans it (60 s deadline, malware report asked for).
    async fn push_and_scan(
        &self,
        artifact: &Artifact,
        repo: &str,
        tag: &str,
    ) -> Result<pb::ScanResponse, tonic::Status> {
        self.registry.push(artifact, repo, tag).await;
        let mut req = pb::ScanRequest {
            image: format!("{repo}:{tag}"),
            registry: Some(pb::Registry {
                url: self.registry.url(),
                ..Default::default()
            }),
            ..Default::default()
        };
        req.report_types.insert(
            sidescan_proto::mime::MALWARE_REPORT.into(),
            pb::ReportParameters::default(),
        );
        let mut req = tonic::Request::new(req);
        req.set_timeout(Duration::from_secs(60));
        self.plugin
            .scan_client()
            .await
            .scan_image(req)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// The image of `artifact` whose layers hold EICAR (the artifact, or its only index entry).
fn image_of(artifact: &Artifact) -> &Artifact {
    if artifact.is_index() {
        &artifact.children[0]
    } else {
        artifact
    }
}

/// Checks one case's answer: the EICAR finding at the case's path in the top layer (as
/// ClamAV names it), or a documented refusal. Returns what was seen.
fn verdict(
    case: &HostileCase,
    result: &Result<pb::ScanResponse, tonic::Status>,
) -> Result<String, String> {
    let Expected::FindsEicar { path, or_fails } = &case.expected else {
        return Err(format!("{} is not a fail-closed case", case.name));
    };
    let response = match result {
        Err(status) if or_fails.contains(&status.code()) => {
            return Ok(format!("refused: {:?} {}", status.code(), status.message()));
        }
        Err(status) => return Err(format!("wanted EICAR at {path}, got {status:?}")),
        Ok(r) => r,
    };
    let report = response.report.as_ref().ok_or("OK without a report")?;
    let layer = &image_of(&case.artifact)
        .layers
        .last()
        .expect("a layer")
        .blob
        .digest;
    let hit = report.vulnerabilities.iter().find(|f| {
        f.kind() == pb::FindingKind::Malware && f.id == EICAR_SIGNATURE && f.path == *path
    });
    match hit {
        Some(f) if f.layer_digest == *layer => Ok(format!("{} at {} in {layer}", f.id, f.path)),
        Some(f) => Err(format!(
            "EICAR at {path} in layer {}, wanted {layer}",
            f.layer_digest
        )),
        None => Err(format!(
            "no EICAR at {path} (clean where a runtime extracts EICAR): findings {:?}, notices {:?}",
            report.vulnerabilities, report.notices
        )),
    }
}

/// Scans the case's primer (if any), then the case, with the stack's one plugin.
async fn run(stack: &Stack, case: &HostileCase) -> Result<String, String> {
    let repo = format!("fail-closed/{}", case.name);
    let mut seen = String::new();
    if let Some(primer) = &case.primer {
        let answer = stack.push_and_scan(primer, &repo, "primer").await;
        // The polyglot's plain-tar reading is harmless: scanned, and cached, as clean.
        let report = answer
            .map_err(|s| format!("primer: {s:?}"))?
            .report
            .ok_or("primer: OK without a report")?;
        if !report.vulnerabilities.is_empty() {
            return Err(format!(
                "primer (plain-tar reading) should be harmless: {:?}",
                report.vulnerabilities
            ));
        }
        seen.push_str("primer clean, then ");
    }
    let result = stack.push_and_scan(&case.artifact, &repo, "1").await;
    seen.push_str(&verdict(case, &result)?);
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fail_closed_image_is_an_eicar_finding_through_clamav() {
    let stack = Stack::start().await;
    let mut failures = Vec::new();
    let cases: Vec<HostileCase> = hostile::fail_closed()
        .into_iter()
        .filter(|c| c.name != "attestation-annotated-entry")
        .collect();
    assert_eq!(cases.len(), 4);
    for case in &cases {
        match run(&stack, case).await {
            Ok(seen) => println!("{}: {seen}", case.name),
            Err(problem) => failures.push(format!("{}: {problem}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nplugin log:\n{}",
        failures.join("\n"),
        stack.plugin.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_annotated_amd64_entry_is_scanned_through_clamav() {
    let stack = Stack::start().await;
    let case = hostile::attestation_annotated_entry();
    let seen = run(&stack, &case)
        .await
        .unwrap_or_else(|p| panic!("{p}\nplugin log:\n{}", stack.plugin.logs()));
    println!("{}: {seen}", case.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_fail_on_high_exits_1_for_eicar_at_a_dotdot_path() {
    let stack = Stack::start().await;
    let case = hostile::eicar_dotdot_path();
    stack
        .registry
        .push(&case.artifact, "fail-closed/dotdot", "1")
        .await;
    let (plugin, registry) = (stack.plugin.url(), stack.registry.url());
    let out = tokio::process::Command::new(workspace_binary("sidescan"))
        .args(["scan", "fail-closed/dotdot:1", "--plugin", &plugin])
        .args(["--registry", &registry, "--fail-on", "high"])
        .env_remove("SIDESCAN_REGISTRY_USERNAME")
        .env_remove("SIDESCAN_REGISTRY_PASSWORD")
        .env_remove("SIDESCAN_REGISTRY_TOKEN")
        .output()
        .await
        .expect("run sidescan");
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "EICAR at /evil must fail --fail-on high: {out:?}\nplugin log:\n{}",
        stack.plugin.logs()
    );
    assert!(
        table.contains("/evil") && table.contains(EICAR_SIGNATURE),
        "the table names the finding:\n{table}"
    );
}

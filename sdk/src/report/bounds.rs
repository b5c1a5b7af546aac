//! Bounds on what one response carries: notices summarised per code, long notice texts clipped,
//! and the encoded `ScanResponse` kept under [`MAX_RESPONSE_BYTES`] by leaving out the least
//! severe findings, always with a notice that says so.

use std::collections::BTreeMap;

use sidescan_proto::v1 as pb;

use crate::error::Error;
use crate::model::{Finding, Notice, ReportDocument, notice_codes};

/// Cap on the encoded `ScanResponse`: 3.5 MiB, below the 4 MiB that gRPC clients (tonic, grpc-go)
/// decode by default, leaving room for the stream's envelope and headers.
pub(crate) const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024 + 512 * 1024;

/// Notices of one code kept with their own path; the rest become one `"<code>: N more"` notice.
pub(super) const NOTICES_PER_CODE: usize = 20;

/// Longest notice message kept, in characters.
const MAX_NOTICE_MESSAGE_CHARS: usize = 1024;

/// Longest notice path or layer digest kept, in characters.
const MAX_NOTICE_PATH_CHARS: usize = 4096;

/// A notice as reported, with how many occurrences it stands for (1 for a single one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CountedNotice {
    /// The notice.
    pub notice: Notice,
    /// Occurrences it stands for.
    pub count: u32,
}

impl CountedNotice {
    fn one(notice: Notice) -> Self {
        Self { notice, count: 1 }
    }
}

/// Cuts `text` to `max` characters on a character boundary, marking the cut with `…`.
fn clip(text: &mut String, max: usize) {
    if let Some((at, _)) = text.char_indices().nth(max) {
        text.truncate(at);
        text.push('…');
    }
}

/// Summarises sorted, deduplicated notices: per code the first [`NOTICES_PER_CODE`] are kept
/// (texts clipped) and the rest become one notice of that code, `"<code>: N more"`, count N.
pub(crate) fn bound_notices(notices: Vec<Notice>) -> Vec<CountedNotice> {
    let mut out: Vec<CountedNotice> = Vec::new();
    // Per code: notices seen, and the index in `out` of its summary notice once there is one.
    let mut per_code: BTreeMap<String, (usize, Option<usize>)> = BTreeMap::new();
    for mut notice in notices {
        let entry = per_code.entry(notice.code.clone()).or_insert((0, None));
        entry.0 += 1;
        if entry.0 <= NOTICES_PER_CODE {
            clip(&mut notice.message, MAX_NOTICE_MESSAGE_CHARS);
            clip(&mut notice.path, MAX_NOTICE_PATH_CHARS);
            clip(&mut notice.layer_digest, MAX_NOTICE_PATH_CHARS);
            out.push(CountedNotice::one(notice));
            continue;
        }
        match entry.1 {
            Some(i) => out[i].count = out[i].count.saturating_add(1),
            None => {
                let mut code = notice.code;
                clip(&mut code, MAX_NOTICE_MESSAGE_CHARS);
                entry.1 = Some(out.len());
                out.push(CountedNotice {
                    notice: Notice::new(code, String::new()),
                    count: 1,
                });
            }
        }
    }
    for i in per_code.values().filter_map(|(_, summary)| *summary) {
        let counted = &mut out[i];
        counted.notice.message = format!("{}: {} more", counted.notice.code, counted.count);
    }
    out
}

/// The notice for `dropped` findings left out, the most severe of them named.
pub(crate) fn findings_truncated(dropped: &[Finding], cap: usize) -> CountedNotice {
    let worst = dropped
        .iter()
        .map(|f| f.severity)
        .max()
        .map_or_else(|| "-".to_owned(), |s| s.to_string());
    CountedNotice {
        notice: Notice::new(
            notice_codes::FINDINGS_TRUNCATED,
            format!(
                "{n} findings (severity {worst} and below) left out: the response would exceed \
                 {cap} bytes; the summary counts only the findings included",
                n = dropped.len()
            ),
        ),
        count: u32::try_from(dropped.len()).unwrap_or(u32::MAX),
    }
}

/// Plugin-rendered documents by requested MIME type.
pub(crate) type Documents = BTreeMap<String, Result<ReportDocument, Error>>;

/// Keeps the response under `cap` bytes. `assemble(keep, truncation, documents)` builds the
/// response from the `keep` most severe of `findings` (sorted most severe first), the extra
/// `truncation` notice, and `documents`.
///
/// When the whole response fits it is returned as is. Otherwise plugin-rendered documents too big
/// to fit even without findings fail with RESOURCE_EXHAUSTED (largest first), then the least
/// severe findings are left out until the response fits, with a `findings-truncated` notice.
pub(crate) fn fit(
    findings: &[Finding],
    mut documents: Documents,
    cap: usize,
    assemble: impl Fn(usize, Option<&CountedNotice>, &Documents) -> pb::ScanResponse,
) -> pb::ScanResponse {
    use prost::Message as _;

    let n = findings.len();
    let full = assemble(n, None, &documents);
    if full.encoded_len() <= cap {
        return full;
    }
    let all_dropped = findings_truncated(findings, cap);
    let all_dropped = (n > 0).then_some(&all_dropped);
    loop {
        let empty = assemble(0, all_dropped, &documents);
        if empty.encoded_len() <= cap {
            break;
        }
        let largest = documents
            .iter()
            .filter_map(|(mime, doc)| doc.as_ref().ok().map(|d| (d.content.len(), mime)))
            .max()
            .map(|(len, mime)| (len, mime.clone()));
        let Some((len, mime)) = largest else {
            // Only the notices themselves are left; nothing more to take out.
            return empty;
        };
        documents.insert(
            mime,
            Err(Error::resource_exhausted(format!(
                "the document ({len} bytes) does not fit the response limit of {cap} bytes"
            ))),
        );
    }
    let full = assemble(n, None, &documents);
    let full_len = full.encoded_len();
    if full_len <= cap {
        return full;
    }
    let base = assemble(0, all_dropped, &documents).encoded_len();
    let per_finding = (full_len.saturating_sub(base) / n.max(1)).max(1);
    let mut keep = (cap.saturating_sub(base) / per_finding).min(n.saturating_sub(1));
    loop {
        let notice = findings_truncated(&findings[keep..], cap);
        let response = assemble(keep, Some(&notice), &documents);
        if keep == 0 || response.encoded_len() <= cap {
            return response;
        }
        keep = keep.saturating_sub((keep / 10).max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_notices_of_one_code_become_bounded() {
        let notices: Vec<Notice> = (0..10_000)
            .map(|i| {
                Notice::new("unsafe-path-skipped", "escapes the root").at_path(format!("/p/{i:05}"))
            })
            .chain([Notice::new("file-too-large", "big").at_path("/big")])
            .collect();
        let mut notices = notices;
        notices.sort();
        let bounded = bound_notices(notices);
        assert_eq!(bounded.len(), NOTICES_PER_CODE + 2, "{bounded:?}");
        let total: u32 = bounded.iter().map(|c| c.count).sum();
        assert_eq!(total, 10_001);
        let summary = bounded
            .iter()
            .find(|c| c.count > 1)
            .expect("a summary notice");
        assert_eq!(summary.notice.code, "unsafe-path-skipped");
        assert_eq!(summary.notice.message, "unsafe-path-skipped: 9980 more");
        assert_eq!(summary.count, 9_980);
        assert!(summary.notice.path.is_empty());
        let with_paths = bounded
            .iter()
            .filter(|c| c.notice.code == "unsafe-path-skipped" && !c.notice.path.is_empty())
            .count();
        assert_eq!(with_paths, NOTICES_PER_CODE);
    }

    #[test]
    fn few_notices_are_kept_as_they_are_and_long_texts_are_clipped() {
        let long = "é".repeat(5000);
        let notices = vec![
            Notice::new("a", "one").at_path("/1"),
            Notice::new("b", long.clone()),
        ];
        let bounded = bound_notices(notices.clone());
        assert_eq!(bounded[0], CountedNotice::one(notices[0].clone()));
        assert_eq!(bounded[1].count, 1);
        assert_eq!(
            bounded[1].notice.message.chars().count(),
            MAX_NOTICE_MESSAGE_CHARS + 1
        );
        assert!(bounded[1].notice.message.ends_with('…'));
    }
}

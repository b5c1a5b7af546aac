//! Parsing clamd's replies: scan verdicts ([`Verdict`]) and `VERSION` ([`VersionInfo`]).

/// Prefix clamd gives every heuristic alert for a scan limit it hit (`AlertExceedsMax yes`).
pub const LIMITS_EXCEEDED_PREFIX: &str = "Heuristics.Limits.Exceeded";

/// Prefix of clamd's alerts for encrypted archives and documents it cannot look into
/// (`AlertEncrypted yes`), e.g. `Heuristics.Encrypted.Zip`.
pub const ENCRYPTED_PREFIX: &str = "Heuristics.Encrypted";

/// clamd's verdict on one stream or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Scanned, nothing found.
    Clean,
    /// Signatures matched (one, unless clamd runs with `AllMatch`), e.g.
    /// `Eicar-Test-Signature.UNOFFICIAL`. Never a `Heuristics.Limits.Exceeded.*` or
    /// `Heuristics.Encrypted.*` name.
    Found(Vec<String>),
    /// clamd stopped scanning at one of its limits (`Heuristics.Limits.Exceeded.MaxFileSize`,
    /// `...MaxScanSize`, `...MaxRecursion`, ...): not scanned in full, not clean.
    LimitExceeded(String),
    /// Encrypted content clamd could not look into (`Heuristics.Encrypted.Zip`, `...PDF`, ...):
    /// not scanned, not clean.
    Encrypted(String),
    /// The stream was longer than clamd's `StreamMaxLength`: not scanned.
    StreamTooLong,
    /// clamd could not scan it (its `... ERROR` message): not scanned.
    Error(String),
}

/// Parses a scan reply (`INSTREAM` or `SCAN`), NUL and newline terminators allowed. Several
/// lines (AllMatch) are merged. `None` when it is not a scan reply.
pub fn parse_scan_reply(reply: &str) -> Option<Verdict> {
    let mut found = Vec::new();
    let mut limit = None;
    let mut encrypted = None;
    let mut error = None;
    let mut clean = false;
    let mut any = false;
    for line in reply
        .split(['\0', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        any = true;
        if let Some(rest) = line.strip_suffix(" FOUND") {
            let sig = rest.rsplit_once(": ").map_or(rest, |(_, sig)| sig).trim();
            if sig.is_empty() {
                return None;
            }
            if sig.starts_with(LIMITS_EXCEEDED_PREFIX) {
                limit.get_or_insert_with(|| sig.to_owned());
            } else if sig.starts_with(ENCRYPTED_PREFIX) {
                encrypted.get_or_insert_with(|| sig.to_owned());
            } else {
                found.push(sig.to_owned());
            }
        } else if let Some(rest) = line.strip_suffix(" ERROR") {
            if rest.contains("size limit exceeded") {
                return Some(Verdict::StreamTooLong);
            }
            let msg = rest.split_once(": ").map_or(rest, |(_, msg)| msg).trim();
            error.get_or_insert_with(|| msg.to_owned());
        } else if line == "OK" || line.ends_with(": OK") {
            clean = true;
        } else {
            return None;
        }
    }
    if !any {
        return None;
    }
    Some(if !found.is_empty() {
        Verdict::Found(found)
    } else if let Some(sig) = limit {
        Verdict::LimitExceeded(sig)
    } else if let Some(sig) = encrypted {
        Verdict::Encrypted(sig)
    } else if let Some(msg) = error {
        Verdict::Error(msg)
    } else if clean {
        Verdict::Clean
    } else {
        return None;
    })
}

/// What `VERSION` says about the engine and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Engine version, e.g. `1.4.6`.
    pub engine: String,
    /// Signature (daily database) version, e.g. `27000`; empty when clamd has no official
    /// database loaded (custom signatures only).
    pub signatures: String,
    /// Date of the signatures as clamd prints it, e.g. `Mon Jan  5 09:25:02 2026`; may be empty.
    pub signature_date: String,
}

impl VersionInfo {
    /// Parses `ClamAV 1.4.6/27000/Mon Jan  5 09:25:02 2026` or `ClamAV 1.4.6`.
    pub fn parse(reply: &str) -> Option<Self> {
        let reply = reply.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        let rest = reply.strip_prefix("ClamAV ")?;
        let mut parts = rest.splitn(3, '/');
        let engine = parts.next()?.trim();
        if engine.is_empty() || !engine.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            engine: engine.to_owned(),
            signatures: parts.next().unwrap_or("").trim().to_owned(),
            signature_date: parts.next().unwrap_or("").trim().to_owned(),
        })
    }

    /// `engine/signatures` (e.g. `1.4.6/27000`), or just the engine without signature version.
    pub fn key(&self) -> String {
        if self.signatures.is_empty() {
            self.engine.clone()
        } else {
            format!("{}/{}", self.engine, self.signatures)
        }
    }
}

/// Parses a `FILDES` reply: `Some(Some(verdict))` for a reply about `fd[N]`, `Some(None)` when
/// clamd refused the command or the descriptor, `None` when it is not a clamd reply.
pub fn parse_fildes_reply(reply: &str) -> Option<Option<Verdict>> {
    let trimmed = reply.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    if trimmed.starts_with("fd[") {
        return parse_scan_reply(reply).map(Some);
    }
    if trimmed == "UNKNOWN COMMAND"
        || (trimmed.starts_with("FILDES") && trimmed.ends_with("ERROR"))
        || trimmed.contains("file descriptor")
    {
        return Some(None);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_replies_parse() {
        use Verdict::*;
        let cases: &[(&str, Option<Verdict>)] = &[
            ("stream: OK\0", Some(Clean)),
            ("/tmp/a b: OK", Some(Clean)),
            (
                "stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0",
                Some(Found(vec!["Eicar-Test-Signature.UNOFFICIAL".into()])),
            ),
            (
                "/x/y: z: Win.Test.EICAR_HDB-1 FOUND",
                Some(Found(vec!["Win.Test.EICAR_HDB-1".into()])),
            ),
            (
                "stream: A FOUND\nstream: B FOUND\n",
                Some(Found(vec!["A".into(), "B".into()])),
            ),
            (
                "stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND",
                Some(LimitExceeded(
                    "Heuristics.Limits.Exceeded.MaxFileSize".into(),
                )),
            ),
            (
                "stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND\0",
                Some(LimitExceeded(
                    "Heuristics.Limits.Exceeded.MaxRecursion".into(),
                )),
            ),
            (
                "stream: Heuristics.Encrypted.Zip FOUND\0",
                Some(Encrypted("Heuristics.Encrypted.Zip".into())),
            ),
            (
                "stream: Heuristics.Encrypted.Zip FOUND\nstream: Win.Trojan.X FOUND\n",
                Some(Found(vec!["Win.Trojan.X".into()])),
            ),
            ("INSTREAM size limit exceeded. ERROR\0", Some(StreamTooLong)),
            (
                "/nonexistent: File path check failure: No such file or directory. ERROR",
                Some(Error(
                    "File path check failure: No such file or directory.".into(),
                )),
            ),
            ("PONG", None),
            ("", None),
            ("\0", None),
            ("stream:  FOUND", None),
            ("UNKNOWN COMMAND", None),
        ];
        for (reply, want) in cases {
            assert_eq!(&parse_scan_reply(reply), want, "{reply:?}");
        }
    }

    #[test]
    fn fildes_replies_parse() {
        assert_eq!(
            parse_fildes_reply("fd[10]: OK\0"),
            Some(Some(Verdict::Clean))
        );
        assert_eq!(
            parse_fildes_reply("fd[10]: Eicar-Test-Signature FOUND\0"),
            Some(Some(Verdict::Found(vec!["Eicar-Test-Signature".into()])))
        );
        assert_eq!(
            parse_fildes_reply("fd[10]: Can't read file ERROR"),
            Some(Some(Verdict::Error("Can't read file".into())))
        );
        assert_eq!(
            parse_fildes_reply("FILDES: didn't receive file descriptor. ERROR\0"),
            Some(None)
        );
        assert_eq!(parse_fildes_reply("UNKNOWN COMMAND\0"), Some(None));
        assert_eq!(parse_fildes_reply("PONG"), None);
        assert_eq!(parse_fildes_reply("fd[1]: huh"), None);
    }

    #[test]
    fn versions_parse() {
        let v = VersionInfo::parse("ClamAV 1.4.6/27000/Mon Jan  5 09:25:02 2026\0").unwrap();
        assert_eq!(v.engine, "1.4.6");
        assert_eq!(v.signatures, "27000");
        assert_eq!(v.signature_date, "Mon Jan  5 09:25:02 2026");
        assert_eq!(v.key(), "1.4.6/27000");
        let bare = VersionInfo::parse("ClamAV 1.4.6\n").unwrap();
        assert_eq!(
            (bare.signatures.as_str(), bare.key().as_str()),
            ("", "1.4.6")
        );
        for bad in ["", "PONG", "ClamAV ", "ClamAV x/1", "clamav 1.0"] {
            assert!(VersionInfo::parse(bad).is_none(), "{bad:?} accepted");
        }
    }
}

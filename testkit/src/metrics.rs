//! A parsed Prometheus / OpenMetrics text scrape, for asserting metric values.

use std::collections::BTreeMap;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Sample name as exposed (e.g. `sidescan_scans_total`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Every sample of a scrape, plus its `# TYPE` and `# HELP` lines by family.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The samples in exposition order.
    pub samples: Vec<Sample>,
    /// `# TYPE` of each family.
    pub types: BTreeMap<String, String>,
    /// `# HELP` of each family.
    pub help: BTreeMap<String, String>,
    /// The text as scraped.
    pub text: String,
}

impl Scrape {
    /// Parses the text format. Panics on a line it cannot read (the exporter's output is the
    /// thing under test).
    pub fn parse(text: &str) -> Self {
        let mut scrape = Self {
            text: text.to_owned(),
            ..Self::default()
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        scrape.types.insert(name.to_owned(), kind.to_owned());
                    }
                    (Some("HELP"), Some(name), Some(help)) => {
                        scrape.help.insert(name.to_owned(), help.to_owned());
                    }
                    _ => {}
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            scrape.samples.push(parse_sample(line));
        }
        scrape
    }

    /// The value of the sample `name` whose labels include every pair of `labels`; panics when
    /// there is none or more than one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        match found.as_slice() {
            [one] => one.value,
            [] => panic!("no sample {name}{labels:?} in:\n{}", self.text),
            _ => panic!("several samples {name}{labels:?}: {found:?}"),
        }
    }

    /// The sum of the samples `name` whose labels include every pair of `labels` (0 if none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The samples `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

fn parse_sample(line: &str) -> Sample {
    read_sample(line).unwrap_or_else(|| panic!("unreadable sample line {line:?}"))
}

fn read_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y \"q\""` → map; `None` when malformed.
fn parse_labels(body: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                other => value.push(other),
            }
        };
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_labels_and_metadata() {
        let scrape = Scrape::parse(
            "# HELP x_total Things.\n# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"z\"} 3\n\
             h_bucket{le=\"+Inf\"} 2\nup 1\n# EOF\n",
        );
        assert_eq!(scrape.types["x"], "counter");
        assert_eq!(scrape.value("x_total", &[("b", "q\"z")]), 3.0);
        assert_eq!(scrape.value("h_bucket", &[("le", "+Inf")]), 2.0);
        assert_eq!(scrape.value("up", &[]), 1.0);
        assert_eq!(scrape.sum("x_total", &[("a", "2")]), 0.0);
    }
}

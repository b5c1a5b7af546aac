//! Name grammars of the OCI distribution spec that hosts, plugins and adapters all check.

/// Whether `c` is one repository path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: ".", "_", "__" or "-"+
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i >= b.len() || !alnum(b[i]) || i == start {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_follow_the_distribution_spec() {
        for ok in ["a", "alpine", "my-app", "a__b", "a.b", "a---b", "0x"] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in [
            "", "A", "-a", "a-", "a___b", "a..b", "a_-b", "a b", "a/b", ".a",
        ] {
            assert!(!is_path_component(bad), "{bad}");
        }
    }
}

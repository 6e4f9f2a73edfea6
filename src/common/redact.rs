//! Credentials in URLs: the one function that makes a URL safe to show (logs, journal
//! messages, labels, errors). Every place that prints a configured URL goes through it.

/// `url` with the password of its user info (`http://user:PASSWORD@host`,
/// `redis://:PASSWORD@host`) replaced by `***`. A lone user info (`scheme://SECRET@host`) is
/// hidden whole: some clients take it as the password. Anything after the authority (path,
/// query, fragment) is left alone, as is text that is not a URL.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => format!("{}***{}", &url[..scheme_end], &rest[at..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        for (url, want) in [
            ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
            ("rediss://user:p@ss:w@h:1", "rediss://user:***@h:1"),
            ("redis://pw@h:1", "redis://***@h:1"),
            ("redis://h:1/0?x=a@b", "redis://h:1/0?x=a@b"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "http://admin:hunter2@10.0.0.1:8080/x?a=b",
                "http://admin:***@10.0.0.1:8080/x?a=b",
            ),
            ("https://u:p%40ss@h/", "https://u:***@h/"),
            ("https://h/path@x", "https://h/path@x"),
            ("http://h:1#frag@x", "http://h:1#frag@x"),
            ("not a url", "not a url"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}

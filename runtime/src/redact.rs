//! Secrets kept out of what is printed: every message, log line and printed configuration
//! that names a URL shows it through [`redact_url`].

/// What messages and printed configurations show in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Query parameters whose value is a secret, by a part of their name (case-insensitive).
const SECRET_PARAMETERS: [&str; 5] = ["pass", "token", "secret", "key", "auth"];

/// `url` with its credentials shown as [`REDACTED`], for printing and logging: the password of
/// its user information (`redis://:s3cret@host` → `redis://:<redacted>@host`, `user:pw@` →
/// `user:<redacted>@`), a user information without a password (often a token), and the value
/// of a query parameter named like a secret (`?password=…`, `?token=…`). Anything else is kept,
/// so the output still says where the URL points.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The last `@` ends the user information: a password may hold an unescaped `@` or `/`, and
    // redacting too much is better than printing part of one.
    let (userinfo, location) = match rest.rsplit_once('@') {
        Some((userinfo, location)) => (Some(userinfo), location),
        None => (None, rest),
    };
    let mut shown = format!("{scheme}://");
    match userinfo.map(|u| u.split_once(':')) {
        Some(Some((user, _password))) if !user.contains(['/', '?', '#']) => {
            shown.push_str(&format!("{user}:{REDACTED}@"));
        }
        Some(_) => shown.push_str(&format!("{REDACTED}@")),
        None => {}
    }
    let (before_fragment, fragment) = match location.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (location, None),
    };
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            let parameters: Vec<String> = query
                .split('&')
                .map(|parameter| match parameter.split_once('=') {
                    Some((name, _value)) if SECRET_PARAMETERS.iter().any(|s| name.to_ascii_lowercase().contains(s)) => {
                        format!("{name}={REDACTED}")
                    }
                    _ => parameter.to_string(),
                })
                .collect();
            shown.push_str(&format!("{path}?{}", parameters.join("&")));
        }
        None => shown.push_str(before_fragment),
    }
    if let Some(fragment) = fragment {
        shown.push_str(&format!("#{fragment}"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_redacted_and_the_rest_is_kept() {
        let cases = [
            ("redis://:s3cret@redis:6379/0", "redis://:<redacted>@redis:6379/0"),
            (
                "rediss://baton:s3cret@redis:6380/2",
                "rediss://baton:<redacted>@redis:6380/2",
            ),
            ("redis://s3cret@redis:6379", "redis://<redacted>@redis:6379"),
            ("redis://:p@ss/w:rd@redis:6379/0", "redis://:<redacted>@redis:6379/0"),
            (
                "http://u:s3cret@collector:4318/v1?token=s3cret&x=1#f",
                "http://u:<redacted>@collector:4318/v1?token=<redacted>&x=1#f",
            ),
            (
                "https://admin:8443/?Password=s3cret",
                "https://admin:8443/?Password=<redacted>",
            ),
            ("pulsar://broker:6650", "pulsar://broker:6650"),
            ("memory://", "memory://"),
            ("not a url", "not a url"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}

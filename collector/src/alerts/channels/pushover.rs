//! Pushover: `POST https://api.pushover.net/1/messages.json` as a form with the application's
//! token, the user (or group) key, a title, the message and a priority.
//!
//! The application token is a secret: it comes from the file `token-file` names, read when
//! the config is validated, so that `--print-config` shows the path only; it is never logged
//! (its `Debug` is `Secret(..)`) and the URL carries none.

use std::fmt;
use std::path::Path;

use super::super::notify::{headline, Request};
use super::super::{AlertEvent, Change, Severity};
use crate::config::ConfigError;

/// A secret that `Debug` does not show.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where and to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushover {
    /// The application's API token.
    pub token: Secret,
    /// The user or group key.
    pub user: String,
}

/// Pushover tokens and keys: 30 characters of `[A-Za-z0-9]`.
fn is_key(s: &str) -> bool {
    s.len() == 30 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `token-file` and `user` of webhook `key`, checked; the token read from its file.
pub fn config(
    key: &str,
    token_file: Option<&Path>,
    user: Option<&str>,
) -> Result<Pushover, ConfigError> {
    let tkey = format!("{key}.token-file");
    let path = token_file.ok_or_else(|| {
        ConfigError::new(
            &tkey,
            "template = \"pushover\" needs the application token: token-file = \"/etc/ember/pushover-token\" (a file holding it)",
        )
    })?;
    let token = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&tkey, format!("cannot read {}: {e}", path.display())))?;
    let token = token.trim();
    if !is_key(token) {
        // The file's content is not shown: it may be a secret put in the wrong file.
        return Err(ConfigError::new(
            &tkey,
            format!(
                "{} must hold the application's API token (30 letters and digits) and nothing else",
                path.display()
            ),
        ));
    }
    let ukey = format!("{key}.user");
    let user = user.ok_or_else(|| {
        ConfigError::new(
            &ukey,
            "template = \"pushover\" needs the user or group key: user = \"uQiRzpo4DXghDmr9QzzfQu27cmVRsG\"",
        )
    })?;
    if !is_key(user) {
        return Err(ConfigError::new(
            &ukey,
            format!("expected a Pushover user or group key (30 letters and digits), got {user:?}"),
        ));
    }
    Ok(Pushover {
        token: Secret(token.to_string()),
        user: user.to_string(),
    })
}

/// The Pushover priority of `e`: critical 1 (high), warning 0, info -1 (quiet) when firing;
/// -1 when resolved. Never 2 (emergency), which needs acknowledging.
pub fn priority(e: &AlertEvent) -> i8 {
    match (e.change, e.alert.severity) {
        (Change::Resolved, _) | (Change::Firing, Severity::Info) => -1,
        (Change::Firing, Severity::Warning) => 0,
        (Change::Firing, Severity::Critical) => 1,
    }
}

/// The form for `e`. `html` is not set, so agent names are shown as plain text.
pub fn render(e: &AlertEvent, p: &Pushover) -> Request {
    let a = &e.alert;
    let status = match e.change {
        Change::Firing => "firing",
        Change::Resolved => "resolved",
    };
    let title = format!("{} on {} {status}", a.rule, a.host);
    let (message, priority) = (headline(e), priority(e).to_string());
    let form = [
        ("token", p.token.0.as_str()),
        ("user", p.user.as_str()),
        ("title", title.as_str()),
        ("message", message.as_str()),
        ("priority", priority.as_str()),
    ];
    Request {
        content_type: "application/x-www-form-urlencoded",
        headers: Vec::new(),
        // Pairs of strings always serialize.
        body: serde_urlencoded::to_string(form).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::*;

    const TOKEN: &str = "azGDORePK8gMaC0QOYAMyEEuzJnyUi";
    const USER: &str = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG";

    fn pushover() -> Pushover {
        Pushover {
            token: Secret(TOKEN.into()),
            user: USER.into(),
        }
    }

    #[test]
    fn a_form_with_token_user_title_message_priority() {
        let r = render(&event(Change::Firing, Severity::Critical), &pushover());
        assert_eq!(r.content_type, "application/x-www-form-urlencoded");
        let form: Vec<(String, String)> = serde_urlencoded::from_str(&r.body).unwrap();
        let want = [
            ("token", TOKEN),
            ("user", USER),
            ("title", "cpu-high on pi4 firing"),
            ("message", "[FIRING] cpu-high on pi4: cpu.busy 0.97 > 0.9"),
            ("priority", "1"),
        ];
        assert_eq!(
            form,
            want.map(|(k, v)| (k.to_string(), v.to_string())).to_vec()
        );
        let p = |c, s| priority(&event(c, s));
        assert_eq!(p(Change::Firing, Severity::Warning), 0);
        assert_eq!(p(Change::Firing, Severity::Info), -1);
        assert_eq!(p(Change::Resolved, Severity::Critical), -1);
    }

    #[test]
    fn the_token_comes_from_its_file_and_is_never_shown() {
        let dir = std::env::temp_dir().join(format!("ember-pushover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
        let p = config("w", Some(&file), Some(USER)).unwrap();
        assert_eq!(p, pushover());
        assert!(!format!("{p:?}").contains(TOKEN), "{p:?}");
        // `--print-config` prints the raw webhook: the path, not the token.
        let raw: crate::alerts::rules::RawWebhook = toml::from_str(&format!(
            "url = \"https://api.pushover.net/1/messages.json\"\ntemplate = \"pushover\"\n\
             token-file = {:?}\nuser = {USER:?}",
            file.display().to_string()
        ))
        .unwrap();
        let printed = toml::to_string(&raw).unwrap();
        assert!(
            printed.contains("token-file") && !printed.contains(TOKEN),
            "{printed}"
        );
        let template = super::super::template("w", &raw).unwrap();
        assert!(!format!("{template:?}").contains(TOKEN), "{template:?}");

        let e = config("w", None, Some(USER)).unwrap_err().to_string();
        assert!(
            e.contains("w.token-file") && e.contains("token-file = "),
            "{e}"
        );
        let missing = dir.join("nope");
        let e = config("w", Some(&missing), Some(USER))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("w.token-file") && e.contains("cannot read"),
            "{e}"
        );
        std::fs::write(&file, "not a token but a password").unwrap();
        let e = config("w", Some(&file), Some(USER))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("30 letters and digits") && !e.contains("password"),
            "{e}"
        );
        std::fs::write(&file, TOKEN).unwrap();
        let e = config("w", Some(&file), None).unwrap_err().to_string();
        assert!(e.contains("w.user") && e.contains("user = "), "{e}");
        let e = config("w", Some(&file), Some("me"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("w.user") && e.contains("\"me\""), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

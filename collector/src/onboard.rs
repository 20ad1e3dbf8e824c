//! Onboarding a board in one step: `ember-collector agent add HOST` creates the CA and the
//! server certificate if they are not there yet, a random password for the host (only its
//! argon2 hash goes into the collector's config), optionally a client certificate, and the
//! folder to copy to the board (`agent.toml`, `password`, `ca.pem`, `client.pem`/`client.key`).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::pki::{self, PkiError};

/// Errors onboarding; each names the file or what to do.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    /// Certificates.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A file.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Something the user should change.
    #[error("{0}")]
    Refused(String),
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> OnboardError + '_ {
    move |source| OnboardError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `text` to `path`, readable only by its owner when `secret` (also when the file was
/// already there with a wider mode: `mode` at creation applies to new files only).
fn write(path: &Path, text: &str, secret: bool) -> Result<(), OnboardError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = options.open(path).map_err(file_err(path))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(file_err(path))?;
    }
    f.write_all(text.as_bytes()).map_err(file_err(path))
}

/// `s` as a TOML string (quoted, with quotes, backslashes and control characters escaped).
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The board's `agent.toml`: every value written by the TOML serializer, so that a broker
/// address or folder with quotes or line breaks stays one value (it cannot add keys).
fn agent_toml(a: &AgentAdd<'_>) -> Result<String, OnboardError> {
    let board = a.board_dir.trim_end_matches('/');
    let mut t = toml::Table::new();
    let mut put = |k: &str, v: String| t.insert(k.to_string(), toml::Value::String(v));
    put("broker", a.broker.to_string());
    put("host-id", a.host.to_string());
    put("password-file", format!("{board}/password"));
    put("tls-ca", format!("{board}/ca.pem"));
    if a.client_cert {
        put("tls-cert", format!("{board}/client.pem"));
        put("tls-key", format!("{board}/client.key"));
    }
    let body = toml::to_string(&t)
        .map_err(|e| OnboardError::Refused(format!("cannot write agent.toml: {e}")))?;
    // A comment ends at a line break: the folder goes in quoted, line breaks escaped.
    Ok(format!(
        "# Ember agent {}: copy this folder's files to {board:?} on the board.\n{body}",
        a.host
    ))
}

/// The files of [`ca_init`], in `dir`.
#[derive(Debug, Clone)]
pub struct CaFiles {
    /// CA certificate: agents trust it (`tls-ca`), and the collector checks client
    /// certificates against it (`mqtt.client-ca`).
    pub ca: PathBuf,
    /// CA key: keep it on the collector only.
    pub ca_key: PathBuf,
    /// Server certificate (`mqtt.tls-cert`).
    pub server: PathBuf,
    /// Server key (`mqtt.tls-key`).
    pub server_key: PathBuf,
}

impl CaFiles {
    /// The files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        CaFiles {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
}

/// Creates a CA and a server certificate for `names` in `dir`; refuses to overwrite a CA.
pub fn ca_init(dir: &Path, names: &[String]) -> Result<CaFiles, OnboardError> {
    let files = CaFiles::in_dir(dir);
    if files.ca_key.exists() {
        return Err(OnboardError::Refused(format!(
            "{} exists: a new CA would invalidate every agent's certificate (remove it first if that is what you want)",
            files.ca_key.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(file_err(dir))?;
    let ca = pki::new_ca()?;
    write(&files.ca, &ca.cert_pem, false)?;
    write(&files.ca_key, &ca.key_pem, true)?;
    let server = pki::Ca::load(&files.ca_key)?.server(names)?;
    write(&files.server, &server.cert_pem, false)?;
    write(&files.server_key, &server.key_pem, true)?;
    Ok(files)
}

/// What [`agent_add`] wrote.
#[derive(Debug, Clone)]
pub struct AgentFiles {
    /// The folder to copy to the board's `/etc/ember/`.
    pub dir: PathBuf,
    /// The password (also in `dir/password`), to show once.
    pub password: String,
    /// Whether the CA was created in this step.
    pub created_ca: bool,
}

/// How to onboard one host.
#[derive(Debug, Clone)]
pub struct AgentAdd<'a> {
    /// The host id (also the MQTT user name).
    pub host: &'a str,
    /// The collector's TOML configuration: `[mqtt.users.HOST]` (and the first time, the
    /// `[mqtt]` TLS keys) are appended to it; created if missing.
    pub config: &'a Path,
    /// Where the CA lives (created if missing, with a server certificate for `server_names`).
    pub pki_dir: &'a Path,
    /// Names of the collector for its server certificate.
    pub server_names: &'a [String],
    /// The broker address the agent connects to.
    pub broker: &'a str,
    /// Also issue a client certificate (mTLS).
    pub client_cert: bool,
    /// `agent` or `reader`.
    pub role: crate::access::Role,
    /// Where the board's files go in the board's file system.
    pub board_dir: &'a str,
}

/// Onboards one host: see the module's documentation.
pub fn agent_add(a: &AgentAdd<'_>) -> Result<AgentFiles, OnboardError> {
    crate::access::check_name(a.host).map_err(OnboardError::Refused)?;
    let existing = match std::fs::read_to_string(a.config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(file_err(a.config)(e)),
    };
    let table: toml::Table = existing.parse().map_err(|e| {
        OnboardError::Refused(format!("{}: not valid TOML: {e}", a.config.display()))
    })?;
    let mqtt = table.get("mqtt").and_then(|m| m.as_table());
    if mqtt
        .and_then(|m| m.get("users"))
        .and_then(|u| u.as_table())
        .is_some_and(|u| u.contains_key(a.host))
    {
        return Err(OnboardError::Refused(format!(
            "{} already has [mqtt.users.{}]: remove it to issue new credentials",
            a.config.display(),
            a.host
        )));
    }
    let files = CaFiles::in_dir(a.pki_dir);
    let created_ca = !files.ca_key.exists();
    if created_ca {
        ca_init(a.pki_dir, a.server_names)?;
    }
    let password = random_password();
    let hash = crate::access::hash_password(&password, &random_salt());

    let out = a.pki_dir.join("agents").join(a.host);
    std::fs::create_dir_all(&out).map_err(file_err(&out))?;
    write(&out.join("password"), &format!("{password}\n"), true)?;
    let ca_pem = std::fs::read_to_string(&files.ca).map_err(file_err(&files.ca))?;
    write(&out.join("ca.pem"), &ca_pem, false)?;
    if a.client_cert {
        let issued = pki::Ca::load(&files.ca_key)?.client(a.host)?;
        write(&out.join("client.pem"), &issued.cert_pem, false)?;
        write(&out.join("client.key"), &issued.key_pem, true)?;
    }
    write(&out.join("agent.toml"), &agent_toml(a)?, false)?;

    // Append rather than rewrite, so that the file's comments and order stay as they are.
    let mut append = String::new();
    if !existing.is_empty() && !existing.ends_with('\n') {
        append.push('\n');
    }
    let has_tls = mqtt.is_some_and(|m| m.contains_key("tls-cert"));
    if !has_tls {
        if mqtt.is_some() {
            return Err(OnboardError::Refused(format!(
                "{} has an [mqtt] table without tls-cert: add tls-cert = {:?}, tls-key = {:?} and client-ca = {:?} to it, then run this again",
                a.config.display(),
                files.server,
                files.server_key,
                files.ca
            )));
        }
        append.push_str(&format!(
            "\n# Written by `ember-collector agent add`: TLS for MQTT, client certificates from this CA.\n\
             [mqtt]\ntls-cert = {}\ntls-key = {}\nclient-ca = {}\n",
            toml_string(&files.server.to_string_lossy()),
            toml_string(&files.server_key.to_string_lossy()),
            toml_string(&files.ca.to_string_lossy())
        ));
    }
    let role = match a.role {
        crate::access::Role::Agent => "agent",
        crate::access::Role::Reader => "reader",
    };
    append.push_str(&format!(
        "\n[mqtt.users.{}]\nrole = \"{role}\"\npassword-hash = \"{hash}\"\n",
        a.host
    ));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(a.config)
        .map_err(file_err(a.config))?;
    f.write_all(append.as_bytes()).map_err(file_err(a.config))?;
    Ok(AgentFiles {
        dir: out,
        password,
        created_ca,
    })
}

/// Adds an agent account named `host` for `--local-agent` to `users`, for this process only,
/// and returns its random password. Refuses when `[mqtt.users.HOST]` exists: replacing it
/// would lock out the board (or reader) that uses it, and a different name would not do,
/// since an agent may publish only under its own account's name.
pub fn local_account(
    users: &mut std::collections::BTreeMap<String, crate::config::User>,
    host: &str,
) -> Result<String, OnboardError> {
    if users.contains_key(host) {
        return Err(OnboardError::Refused(format!(
            "--local-agent: the configuration already has [mqtt.users.{host}], which the local \
             agent (host id {host:?}) would replace; remove that account, or run the board's own \
             agent with it instead of --local-agent"
        )));
    }
    let password = random_password();
    let hash = crate::access::hash_password(&password, &random_salt());
    users.insert(
        host.to_string(),
        crate::config::User {
            password_hash: Some(hash),
            role: crate::access::Role::Agent,
        },
    );
    Ok(password)
}

/// `N` bytes from the system's random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    // Without the system's random source there is nothing safe to do.
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source works");
    b
}

/// 24 random bytes as 48 hex digits: 192 bits, nothing to guess.
pub fn random_password() -> String {
    crate::auth::hex(&random_bytes::<24>())
}

/// 16 random bytes: a password hash's salt.
pub fn random_salt() -> [u8; 16] {
    random_bytes::<16>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    #[test]
    fn onboarding_writes_a_config_the_collector_accepts_and_an_agent_folder() {
        let dir = std::env::temp_dir().join(format!("ember-onboard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("collector.toml");
        std::fs::write(&config, "# mine\nmqtt-listen = \"0.0.0.0:8883\"\n").unwrap();
        let names = vec!["localhost".to_string()];
        let add = |host: &'static str| AgentAdd {
            host,
            config: &config,
            pki_dir: &dir,
            server_names: &names,
            broker: "collector.lan:8883",
            client_cert: true,
            role: crate::access::Role::Agent,
            board_dir: "/etc/ember",
        };
        let a = agent_add(&add("pi-a")).unwrap();
        assert!(a.created_ca);
        let b = agent_add(&add("pi-b")).unwrap();
        assert!(!b.created_ca);
        assert!(matches!(
            agent_add(&add("pi-a")),
            Err(OnboardError::Refused(_))
        ));
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.starts_with("# mine\n"), "{text}");
        assert!(
            !text.contains(&a.password),
            "the password itself is never stored"
        );
        let c = RawConfig::from_file(&config).unwrap().validate().unwrap();
        let user = &c.mqtt.users["pi-a"];
        assert!(crate::access::verify_password(
            user.password_hash.as_deref().unwrap(),
            &a.password
        ));
        assert!(c.mqtt.tls.is_some() && c.mqtt.client_ca.is_some());
        let agent = std::fs::read_to_string(a.dir.join("agent.toml")).unwrap();
        assert!(agent.contains("host-id = \"pi-a\""), "{agent}");
        assert!(
            agent.contains("tls-cert = \"/etc/ember/client.pem\""),
            "{agent}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(a.dir.join("password"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the password file is the owner's only");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue #20: a broker address with quotes and line breaks stays one value (before, it
    /// was pasted between quotes and could add keys or break the file), and a password file
    /// that was already there with a wider mode is made the owner's only.
    #[test]
    fn issue_20_agent_toml_is_escaped_and_an_existing_password_file_becomes_0600() {
        let dir = std::env::temp_dir().join(format!("ember-onboard-esc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = dir.join("collector.toml");
        let out = dir.join("agents").join("pi-q");
        std::fs::create_dir_all(&out).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(out.join("password"), "old\n").unwrap();
            std::fs::set_permissions(out.join("password"), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        let names = vec!["localhost".to_string()];
        let broker = "c.lan:8883\"\nhost-id = \"victim\"\n[x]\ny = '1";
        let board = "/etc/ember\n[z]";
        let a = agent_add(&AgentAdd {
            host: "pi-q",
            config: &config,
            pki_dir: &dir,
            server_names: &names,
            broker,
            client_cert: false,
            role: crate::access::Role::Agent,
            board_dir: board,
        })
        .unwrap();
        let text = std::fs::read_to_string(a.dir.join("agent.toml")).unwrap();
        let t: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(t["broker"].as_str(), Some(broker), "{text}");
        assert_eq!(t["host-id"].as_str(), Some("pi-q"), "{text}");
        assert_eq!(
            t["password-file"].as_str(),
            Some("/etc/ember\n[z]/password")
        );
        let mut keys: Vec<_> = t.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["broker", "host-id", "password-file", "tls-ca"],
            "{text}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join("password"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "the existing password file is made 0600"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue #20: `--local-agent` replaced a same-named `[mqtt.users.HOST]` (a reader's or the
    /// board's own account) with one whose password only this process knows.
    #[test]
    fn issue_20_local_agent_refuses_to_replace_an_account() {
        let mut users = std::collections::BTreeMap::new();
        let theirs = crate::access::hash_password("theirs", &[7; 16]);
        users.insert(
            "box".to_string(),
            crate::config::User {
                password_hash: Some(theirs.clone()),
                role: crate::access::Role::Reader,
            },
        );
        let e = local_account(&mut users, "box").unwrap_err().to_string();
        assert!(e.contains("[mqtt.users.box]"), "{e}");
        assert_eq!(users["box"].password_hash.as_deref(), Some(theirs.as_str()));
        assert_eq!(users["box"].role, crate::access::Role::Reader);
        let password = local_account(&mut users, "other").unwrap();
        assert!(crate::access::verify_password(
            users["other"].password_hash.as_deref().unwrap(),
            &password
        ));
        assert_eq!(users["other"].role, crate::access::Role::Agent);
    }
}

// SPDX-License-Identifier: Apache-2.0
//! `serve --web-config FILE`: the web configuration file that Prometheus exporters share
//! (the YAML of Prometheus' exporter-toolkit), so one file serves btrace and
//! node_exporter alike. What btrace reads of it:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt        # relative paths are relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional; or VerifyClientCertIfGiven
//!   client_ca_file: clients-ca.crt                 # with client_auth_type
//! basic_auth_users:
//!   prometheus: $2y$10$...       # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Any other key is refused by name rather than ignored: a setting the file asks for
//! and btrace does not apply would be a hole nobody sees.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    tls_server_config: Option<TlsFileConfig>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFileConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
}

/// What a web configuration file asks of the server.
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
}

impl WebConfig {
    /// Reads and checks `path` and every file it names: certificates, key, hashes.
    pub fn load(path: &Path) -> Result<WebConfig> {
        let what = || format!("--web-config {}", path.display());
        let text = std::fs::read_to_string(path).with_context(what)?;
        // An empty file is a valid configuration asking for nothing (as exporter-toolkit
        // takes it).
        let file: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            serde_yaml_ng::from_str(&text).with_context(what)?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = file
            .tls_server_config
            .map(|t| tls_config(&t, base).map(Arc::new))
            .transpose()
            .with_context(|| format!("{}: tls_server_config", what()))?;
        let auth = file
            .basic_auth_users
            .map(|users| BasicAuth::new(users).map(Arc::new))
            .transpose()
            .with_context(|| format!("{}: basic_auth_users", what()))?;
        Ok(WebConfig { tls, auth })
    }
}

/// A path of the file, relative to the file's own folder.
fn beside(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn tls_config(t: &TlsFileConfig, base: &Path) -> Result<rustls::ServerConfig> {
    let cert_file = beside(base, &t.cert_file);
    let key_file = beside(base, &t.key_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        bail!("cert_file {}: no certificate in it", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .map_err(|e| anyhow::anyhow!("key_file {}: {e}", key_file.display()))?;
    // ring rather than rustls' default aws-lc-rs, which needs cmake and more of a
    // toolchain to build (statically) everywhere btrace builds; rustls marks ring's
    // provider deprecated for its lack of post-quantum key exchange, which scrapes of
    // counters can do without.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let verify = match t.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "NoClientCert" | "" => None,
        "VerifyClientCertIfGiven" => Some(true),
        "RequireAndVerifyClientCert" => Some(false),
        other => bail!(
            "client_auth_type {other}: btrace accepts NoClientCert, VerifyClientCertIfGiven \
             and RequireAndVerifyClientCert"
        ),
    };
    let builder = match (verify, &t.client_ca_file) {
        (None, None) => builder.with_no_client_auth(),
        (None, Some(_)) => {
            bail!("client_ca_file is given without a client_auth_type that verifies clients")
        }
        (Some(_), None) => bail!("client_auth_type verifies clients: give client_ca_file"),
        (Some(optional), Some(ca)) => {
            let ca = beside(base, ca);
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(&ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("client_ca_file {}: {e}", ca.display()))?
            {
                roots
                    .add(c)
                    .with_context(|| format!("client_ca_file {}", ca.display()))?;
            }
            let mut v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            if optional {
                v = v.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(
                v.build()
                    .with_context(|| format!("client_ca_file {}", ca.display()))?,
            )
        }
    };
    let mut config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "cert_file {} with key_file {}",
            cert_file.display(),
            key_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Credentials checked before a cache entry is dropped: enough for every scraper, small
/// enough that a client trying passwords cannot grow it (only successes are kept).
const CACHE_MAX: usize = 256;

/// `basic_auth_users`: user names and their bcrypt hashes, and the checks that passed.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// SHA-256 of (user, password, hash) of each check that passed: bcrypt is slow by
    /// design (tens of milliseconds), and Prometheus sends the same credentials at every
    /// scrape. Hashes rather than the passwords, so memory holds no password.
    passed: Mutex<HashSet<[u8; 32]>>,
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Result<BasicAuth> {
        if users.is_empty() {
            bail!("no user in it");
        }
        for (user, hash) in &users {
            if user.contains(':') {
                bail!("user {user:?}: a user name cannot hold ':'");
            }
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| anyhow::anyhow!("user {user}: not a bcrypt hash ({e})"))?;
        }
        Ok(BasicAuth {
            users,
            passed: Mutex::new(HashSet::new()),
        })
    }

    fn key(user: &str, password: &str, hash: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [user, password, hash] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part.as_bytes());
        }
        ctx.finish().as_ref().try_into().expect("32 bytes")
    }

    /// Fast answer for an `Authorization` header value: `Some(true)` when these
    /// credentials passed before, `Some(false)` when the header is not Basic
    /// credentials at all, `None` when bcrypt must decide ([`BasicAuth::check`]).
    pub fn quick(&self, header: Option<&str>) -> Option<bool> {
        let Some((user, password)) = header.and_then(credentials) else {
            return Some(false);
        };
        let hash = self.users.get(&user)?;
        let passed = self.passed.lock().ok()?;
        passed
            .contains(&Self::key(&user, &password, hash))
            .then_some(true)
    }

    /// The slow, full check (bcrypt); remembered when it passes.
    pub fn check(&self, header: Option<&str>) -> bool {
        let Some((user, password)) = header.and_then(credentials) else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            // Spend as long as on a known user, so the time taken does not tell which
            // user names exist.
            if let Some(any) = self.users.values().next() {
                let _ = bcrypt::verify(&password, any);
            }
            return false;
        };
        if !bcrypt::verify(&password, hash).unwrap_or(false) {
            return false;
        }
        if let Ok(mut passed) = self.passed.lock() {
            if passed.len() >= CACHE_MAX {
                passed.clear();
            }
            passed.insert(Self::key(&user, &password, hash));
        }
        true
    }
}

/// `Basic BASE64(user:password)` as (user, password).
fn credentials(header: &str) -> Option<(String, String)> {
    let (scheme, token) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn basic_auth_checks_and_remembers() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let auth = BasicAuth::new([("prom".to_string(), hash)].into()).unwrap();
        let good = header("prom", "secret");
        assert_eq!(auth.quick(Some(&good)), None);
        assert!(auth.check(Some(&good)));
        assert_eq!(auth.quick(Some(&good)), Some(true));
        let bad = header("prom", "wrong");
        assert_eq!(auth.quick(Some(&bad)), None);
        assert!(!auth.check(Some(&bad)));
        assert!(!auth.check(Some(&header("nobody", "secret"))));
        assert_eq!(auth.quick(None), Some(false));
        assert_eq!(auth.quick(Some("Bearer abc")), Some(false));
        assert_eq!(auth.quick(Some("Basic !!!")), Some(false));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = crate::resolve::scratch_dir("webcfg");
        let f = dir.join("web.yml");
        let err = |text: &str| {
            std::fs::write(&f, text).unwrap();
            format!("{:#}", WebConfig::load(&f).err().expect("an error"))
        };
        assert!(err("basic_auth_users:\n  a: notahash\n").contains("user a: not a bcrypt hash"));
        assert!(
            err("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n")
                .contains("nope.crt")
        );
        assert!(err("http_server_config:\n  http2: false\n").contains("http_server_config"));
        std::fs::write(&f, "").unwrap();
        let empty = WebConfig::load(&f).unwrap();
        assert!(empty.tls.is_none() && empty.auth.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Where secrets come from: an environment variable or a file (a mounted Kubernetes secret),
//! never the configuration itself. A leaf: it names nothing else of the crate, so any component's
//! configuration can hold a [`SecretRef`] without reaching up to `config`.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

/// Where a secret is read from. Secrets are never written in the configuration itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    /// An environment variable's value.
    Env(String),
    /// A file's content, without trailing line breaks (a mounted Kubernetes secret).
    File(PathBuf),
    /// A value published on purpose: the sandbox's simulator accounts, which open nothing else.
    /// Never read from a configuration file.
    #[serde(skip)]
    Public(String),
}

impl SecretRef {
    /// Reads the secret. The error names where it was looked for, never its value.
    pub fn resolve(&self) -> Result<SecretString, String> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name)
                .map_err(|_| format!("environment variable {name} is not set"))?,
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            SecretRef::Public(value) => value.clone(),
        };
        if value.is_empty() {
            return Err(match self {
                SecretRef::Env(name) => format!("environment variable {name} is empty"),
                SecretRef::File(path) => format!("secret file {} is empty", path.display()),
                SecretRef::Public(_) => "the published value is empty".to_owned(),
            });
        }
        Ok(SecretString::from(value))
    }
}

//! Profiles: named sets of server URL and tokens in a config file, so an operator switching
//! between the demo, staging and production types `--profile prod` instead of three variables.
//!
//! The file is `$XDG_CONFIG_HOME/byfly/config.toml`, else `~/.config/byfly/config.toml`, or the one
//! `--config` / `BYFLY_CLI_CONFIG` names:
//!
//! ```toml
//! default = "demo"          # the profile used without --profile (optional)
//!
//! [profiles.demo]
//! api_url = "http://127.0.0.1:8080/api"
//! token = "…"               # X-API-Token
//! admin_token = "…"
//! webhook_secret = "…"      # for `byfly listen` and `byfly webhook verify`
//! ```
//!
//! What wins: a command-line flag, then its environment variable, then the profile, then the
//! built-in default. A missing default file is no error (there is simply no profile); a file that
//! does not parse, a `--config` that does not exist, or a `--profile` it does not hold is one
//! (exit 2). Since the file holds tokens, a warning is printed when others may read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The profile used when `--profile` is not given.
    pub default: Option<String>,
    /// Every profile by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One profile: each field fills in for its flag when neither the flag nor its variable is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `--api-url`.
    pub api_url: Option<String>,
    /// `--token`.
    pub token: Option<String>,
    /// `--admin-token`.
    pub admin_token: Option<String>,
    /// `--secret` of `byfly listen` and `byfly webhook verify`.
    pub webhook_secret: Option<String>,
}

/// Where the config file is looked for when no `--config` names one.
pub fn default_path() -> Option<PathBuf> {
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config_home.join("byfly").join("config.toml"))
}

/// Reads the file at `path`; `None` when it does not exist and was not asked for by name.
pub fn load(path: &Path, named: bool) -> Result<Option<ConfigFile>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !named => return Ok(None),
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    };
    let file: ConfigFile = toml::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))?;
    warn_if_others_can_read(path, &file);
    Ok(Some(file))
}

#[cfg(unix)]
fn warn_if_others_can_read(path: &Path, file: &ConfigFile) {
    use std::os::unix::fs::PermissionsExt;
    let holds_secrets = file
        .profiles
        .values()
        .any(|p| p.token.is_some() || p.admin_token.is_some() || p.webhook_secret.is_some());
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if holds_secrets && mode & 0o077 != 0 {
        eprintln!(
            "warning: {} holds tokens and others may read it (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_read(_: &Path, _: &ConfigFile) {}

/// The profile `name` (or the file's default when `None`); `None` when neither names one.
pub fn select(file: Option<&ConfigFile>, name: Option<&str>) -> Result<Option<Profile>, String> {
    let chosen = name
        .map(str::to_owned)
        .or_else(|| file.and_then(|f| f.default.clone()));
    let Some(chosen) = chosen else {
        return Ok(None);
    };
    let found = file.and_then(|f| f.profiles.get(&chosen));
    match found {
        Some(profile) => Ok(Some(profile.clone())),
        None => {
            let known: Vec<&str> = file
                .map(|f| f.profiles.keys().map(String::as_str).collect())
                .unwrap_or_default();
            Err(if known.is_empty() {
                format!("no profile {chosen:?}: the config file defines none")
            } else {
                format!("no profile {chosen:?}; the config file has {}", known.join(", "))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ConfigFile {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_named_profile_or_the_default_one_is_chosen() {
        let config = file(
            "default = \"demo\"\n[profiles.demo]\napi_url = \"http://127.0.0.1:8080/api\"\n\
             [profiles.prod]\napi_url = \"https://pay.example/api\"\ntoken = \"t\"\n",
        );
        let demo = select(Some(&config), None).unwrap().unwrap();
        assert_eq!(demo.api_url.as_deref(), Some("http://127.0.0.1:8080/api"));
        let prod = select(Some(&config), Some("prod")).unwrap().unwrap();
        assert_eq!(prod.token.as_deref(), Some("t"));
        let missing = select(Some(&config), Some("staging")).unwrap_err();
        assert!(missing.contains("demo, prod"), "{missing}");
        assert!(select(None, None).unwrap().is_none());
        assert!(select(None, Some("prod")).is_err());
    }

    #[test]
    fn a_misspelt_key_is_refused_not_ignored() {
        let refused = toml::from_str::<ConfigFile>("[profiles.demo]\napi-url = \"x\"\n").unwrap_err();
        assert!(refused.to_string().contains("api-url"), "{refused}");
    }
}

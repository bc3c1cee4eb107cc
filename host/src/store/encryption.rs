//! Credentials encrypted at rest, as Ditto does it
//! (`ditto.connectivity.connection.encryption`): the string values at configured JSON pointers
//! of a connection are replaced by `encrypted_<base64url(iv + ciphertext + tag)>` (AES-256-GCM,
//! a random 96-bit IV per value) before the connection is written, and decrypted when it is
//! read. A value that is a URI (`scheme://...`) keeps everything but the password of its user
//! information, which alone is encrypted: `amqps://user:encrypted_...@host:5671`.
//!
//! The store records, next to each connection, the pointers it encrypted (`encryptedPointers`),
//! so reading decrypts exactly those: a changed pointer list, or a plaintext value that happens to
//! start with `encrypted_`, cannot be mistaken for ciphertext, and a record written before
//! encryption was enabled (no such member) is read as the plaintext it is and encrypted when it
//! is next written.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The prefix of an encrypted value (Ditto's `JsonFieldsEncryptor.ENCRYPTED_PREFIX`).
pub const ENCRYPTED_PREFIX: &str = "encrypted_";

/// The member of a stored record that lists the pointers whose values are encrypted.
pub const ENCRYPTED_POINTERS: &str = "encryptedPointers";

const IV_LEN: usize = 12;

/// Ditto's default `json-pointers`.
pub const DEFAULT_POINTERS: [&str; 8] = [
    "/uri",
    "/credentials/key",
    "/sshTunnel/credentials/password",
    "/sshTunnel/credentials/privateKey",
    "/credentials/parameters/accessKey",
    "/credentials/parameters/secretKey",
    "/credentials/parameters/sharedKey",
    "/credentials/clientSecret",
];

/// The setting that holds the key, as it is named in messages.
pub const KEY_SETTING: &str =
    "[encryption] symmetrical_key (environment FERRULE_ENCRYPTION__SYMMETRICAL_KEY)";

/// The setting that holds the previous key while the store moves to a new one.
pub const OLD_KEY_SETTING: &str =
    "[encryption] old_symmetrical_key (environment FERRULE_ENCRYPTION__OLD_SYMMETRICAL_KEY)";

/// `[encryption]` of the configuration.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Encrypt the values at `json_pointers` when a connection is written.
    pub enabled: bool,
    /// The AES-256 key: 32 bytes in base64 (URL-safe as Ditto writes it, or standard; padding
    /// optional). Also used to read encrypted records while `enabled` is false.
    pub symmetrical_key: Option<String>,
    /// JSON pointers into the connection of the values to encrypt.
    pub json_pointers: Vec<String>,
    /// The previous key, while changing keys (Ditto's `old-symmetrical-key`): values that do not
    /// decrypt with `symmetrical_key` are decrypted with this one, and the start re-encrypts
    /// them with `symmetrical_key`. Remove it once the start has reported the re-encryption.
    pub old_symmetrical_key: Option<String>,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        EncryptionConfig {
            enabled: false,
            symmetrical_key: None,
            json_pointers: DEFAULT_POINTERS.iter().map(|p| p.to_string()).collect(),
            old_symmetrical_key: None,
        }
    }
}

/// The key is never printed.
impl std::fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionConfig")
            .field("enabled", &self.enabled)
            .field(
                "symmetrical_key",
                &self.symmetrical_key.as_ref().map(|_| "<redacted>"),
            )
            .field("json_pointers", &self.json_pointers)
            .field(
                "old_symmetrical_key",
                &self.old_symmetrical_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Encrypt(String),
    #[error("{0}")]
    Decrypt(String),
}

/// Encrypts and decrypts the configured fields of connection documents.
pub struct FieldCipher {
    cipher: Aes256Gcm,
    /// The previous key (`old_symmetrical_key`), tried when `cipher` does not decrypt a value.
    old: Option<Aes256Gcm>,
    /// Whether writes encrypt (`enabled`); reads decrypt whenever there is a key.
    encrypt: bool,
    pointers: Vec<String>,
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = text.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD_NO_PAD.decode(trimmed))
        .ok()
}

/// A key setting's text, unless it is absent or blank.
fn given(key: &Option<String>) -> Option<&str> {
    key.as_deref().filter(|k| !k.trim().is_empty())
}

impl FieldCipher {
    /// The cipher of the configuration: `None` without a key. A key that is not 32 bytes of
    /// base64, `enabled` without a key, or a pointer that is not a JSON pointer is an error that
    /// names the setting (and never shows the key).
    pub fn from_config(config: &EncryptionConfig) -> Result<Option<FieldCipher>, EncryptionError> {
        for pointer in &config.json_pointers {
            if !pointer.starts_with('/') {
                return Err(EncryptionError::Config(format!(
                    "[encryption] json_pointers: '{pointer}' is not a JSON pointer (it starts with '/')"
                )));
            }
        }
        let old_key = given(&config.old_symmetrical_key);
        let key = match given(&config.symmetrical_key) {
            Some(key) => key,
            None if config.enabled => {
                return Err(EncryptionError::Config(format!(
                    "[encryption] enabled = true needs {KEY_SETTING}: a 256-bit AES key in base64, \
                     e.g. from `openssl rand -base64 32`"
                )));
            }
            None if old_key.is_some() => {
                return Err(EncryptionError::Config(format!(
                    "{OLD_KEY_SETTING} is set without {KEY_SETTING}: the old key is only read \
                     while the store moves to the new one"
                )));
            }
            None => return Ok(None),
        };
        let cipher = aes_key(key, KEY_SETTING)?;
        let old = old_key
            .map(|old| aes_key(old, OLD_KEY_SETTING))
            .transpose()?;
        Ok(Some(FieldCipher {
            cipher,
            old,
            encrypt: config.enabled,
            pointers: config.json_pointers.clone(),
        }))
    }

    /// Whether written connections are encrypted.
    pub fn encrypts(&self) -> bool {
        self.encrypt
    }

    fn encrypt_value(&self, plain: &str) -> Result<String, EncryptionError> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv)
            .map_err(|e| EncryptionError::Encrypt(format!("no randomness available: {e}")))?;
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&iv), plain.as_bytes())
            .map_err(|_| EncryptionError::Encrypt("AES-GCM encryption failed".into()))?;
        let mut out = Vec::with_capacity(IV_LEN + sealed.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(format!(
            "{ENCRYPTED_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE.encode(out)
        ))
    }

    /// The plaintext of `encrypted_<base64>` and whether it took the old key; `None` when it
    /// decrypts with neither key.
    fn decrypt_value(&self, value: &str) -> Option<(String, Key)> {
        let bytes = decode_base64(value.strip_prefix(ENCRYPTED_PREFIX)?)?;
        if bytes.len() < IV_LEN + 16 {
            return None;
        }
        let (iv, sealed) = bytes.split_at(IV_LEN);
        let nonce = Nonce::from_slice(iv);
        let (plain, key) = match self.cipher.decrypt(nonce, sealed) {
            Ok(plain) => (plain, Key::Current),
            Err(_) => (self.old.as_ref()?.decrypt(nonce, sealed).ok()?, Key::Old),
        };
        Some((String::from_utf8(plain).ok()?, key))
    }

    /// Encrypts the configured values of `connection` in place (only when `enabled`) and returns
    /// the pointers it encrypted.
    pub fn encrypt_connection(
        &self,
        connection: &mut Value,
    ) -> Result<Vec<String>, EncryptionError> {
        let mut done = Vec::new();
        if !self.encrypt {
            return Ok(done);
        }
        for pointer in &self.pointers {
            let Some(Value::String(value)) = connection.pointer_mut(pointer) else {
                continue;
            };
            let encrypted = match uri_password(value) {
                Some(UriPassword::Password { start, end }) => {
                    let sealed = self.encrypt_value(&value[start..end])?;
                    format!("{}{sealed}{}", &value[..start], &value[end..])
                }
                // A URI without a password holds no secret (Ditto leaves it too).
                Some(UriPassword::None) => continue,
                None => self.encrypt_value(value)?,
            };
            *value = encrypted;
            done.push(pointer.clone());
        }
        Ok(done)
    }

    /// Decrypts the values at `pointers` (those the record says were encrypted) in place.
    /// `id` names the connection in the error. Says which key it took: [`Key::Old`] when any
    /// value needed the old key.
    pub fn decrypt_connection(
        &self,
        id: &str,
        connection: &mut Value,
        pointers: &[String],
    ) -> Result<Key, EncryptionError> {
        let mut used = Key::Current;
        for pointer in pointers {
            let Some(Value::String(value)) = connection.pointer_mut(pointer) else {
                return Err(EncryptionError::Decrypt(format!(
                    "connection '{id}': the encrypted field {pointer} is missing from the stored record"
                )));
            };
            let (start, end) = if value.starts_with(ENCRYPTED_PREFIX) {
                (0, value.len())
            } else {
                match uri_password(value) {
                    Some(UriPassword::Password { start, end })
                        if value[start..end].starts_with(ENCRYPTED_PREFIX) =>
                    {
                        (start, end)
                    }
                    _ => {
                        return Err(EncryptionError::Decrypt(format!(
                            "connection '{id}': the field {pointer} is recorded as encrypted but is not"
                        )));
                    }
                }
            };
            let (plain, key) = self.decrypt_value(&value[start..end]).ok_or_else(|| {
                let tried = if self.old.is_some() {
                    format!("{KEY_SETTING} nor with {OLD_KEY_SETTING}")
                } else {
                    KEY_SETTING.to_string()
                };
                EncryptionError::Decrypt(format!(
                    "connection '{id}': the field {pointer} cannot be decrypted with {tried}; \
                     set it to the key the connections were encrypted with"
                ))
            })?;
            if key == Key::Old {
                used = Key::Old;
            }
            *value = format!("{}{plain}{}", &value[..start], &value[end..]);
        }
        Ok(used)
    }
}

/// Which key decrypted a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Current,
    /// `old_symmetrical_key`: the record is to be encrypted again with the current key.
    Old,
}

/// An AES-256 key from its base64 text; errors name `setting` and never show the key.
fn aes_key(text: &str, setting: &str) -> Result<Aes256Gcm, EncryptionError> {
    let bytes = decode_base64(text)
        .ok_or_else(|| EncryptionError::Config(format!("{setting} is not base64")))?;
    if bytes.len() != 32 {
        return Err(EncryptionError::Config(format!(
            "{setting} must be a 256-bit AES key (32 bytes in base64); it has {} bits",
            bytes.len() * 8
        )));
    }
    Aes256Gcm::new_from_slice(&bytes)
        .map_err(|e| EncryptionError::Config(format!("{setting}: {e}")))
}

enum UriPassword {
    /// The byte range of the password in the URI.
    Password { start: usize, end: usize },
    /// A URI without a password.
    None,
}

/// Where the password of a `scheme://user:password@host...` URI is; `None` for a value that is
/// not such a URI (no `://` after a valid scheme).
fn uri_password(value: &str) -> Option<UriPassword> {
    let scheme_end = value.find("://")?;
    let scheme = &value[..scheme_end];
    let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return None;
    }
    let authority_start = scheme_end + 3;
    let rest = &value[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return Some(UriPassword::None);
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return Some(UriPassword::None);
    };
    Some(UriPassword::Password {
        start: authority_start + colon + 1,
        end: authority_start + at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "vJFSTPE9PO2BtZlcMAwNjs8jdFvQCk0Ya9MVxPL2mjs=";

    fn cipher(enabled: bool) -> FieldCipher {
        FieldCipher::from_config(&EncryptionConfig {
            enabled,
            symmetrical_key: Some(KEY.into()),
            ..Default::default()
        })
        .unwrap()
        .unwrap()
    }

    #[test]
    fn encrypts_the_uri_password_and_whole_credentials_and_decrypts_them() {
        let c = cipher(true);
        let original = json!({
            "uri": "amqps://user:p%40ss:word@broker.example:5671/vhost?x=1",
            "credentials": {"type": "hmac", "key": "-----BEGIN KEY-----\nabc",
                            "parameters": {"secretKey": "s3cret", "accessKey": "AKIA"}},
            "sshTunnel": {"credentials": {"password": "tunnel-pw"}},
            "name": "untouched"
        });
        let mut doc = original.clone();
        let done = c.encrypt_connection(&mut doc).unwrap();
        assert_eq!(
            done,
            [
                "/uri",
                "/credentials/key",
                "/sshTunnel/credentials/password",
                "/credentials/parameters/accessKey",
                "/credentials/parameters/secretKey"
            ]
        );
        let text = doc.to_string();
        for secret in ["p%40ss:word", "BEGIN KEY", "s3cret", "AKIA", "tunnel-pw"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let uri = doc["uri"].as_str().unwrap();
        assert!(uri.starts_with("amqps://user:encrypted_"), "{uri}");
        assert!(uri.ends_with("@broker.example:5671/vhost?x=1"), "{uri}");
        assert!(
            doc["credentials"]["key"]
                .as_str()
                .unwrap()
                .starts_with(ENCRYPTED_PREFIX)
        );
        assert_eq!(doc["name"], "untouched");
        // A second encryption of the same value differs (random IV).
        let mut again = original.clone();
        c.encrypt_connection(&mut again).unwrap();
        assert_ne!(again["credentials"]["key"], doc["credentials"]["key"]);

        c.decrypt_connection("c", &mut doc, &done).unwrap();
        assert_eq!(doc, original);
    }

    #[test]
    fn a_uri_without_password_and_a_disabled_cipher_change_nothing() {
        let mut doc = json!({"uri": "tcp://user@host:1883", "credentials": {"key": 5}});
        assert!(
            cipher(true)
                .encrypt_connection(&mut doc)
                .unwrap()
                .is_empty()
        );
        assert_eq!(doc["uri"], "tcp://user@host:1883");
        let mut doc = json!({"uri": "tcp://u:p@host:1883"});
        assert!(
            cipher(false)
                .encrypt_connection(&mut doc)
                .unwrap()
                .is_empty()
        );
        assert_eq!(doc["uri"], "tcp://u:p@host:1883");
    }

    #[test]
    fn a_wrong_key_or_a_tampered_value_is_an_error_naming_the_setting() {
        let mut doc = json!({"uri": "tcp://u:secret@host:1883"});
        let done = cipher(true).encrypt_connection(&mut doc).unwrap();
        let other = FieldCipher::from_config(&EncryptionConfig {
            enabled: true,
            symmetrical_key: Some(base64::engine::general_purpose::STANDARD.encode([7u8; 32])),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        let e = other
            .decrypt_connection("c1", &mut doc.clone(), &done)
            .unwrap_err();
        assert!(e.to_string().contains("symmetrical_key"), "{e}");
        assert!(
            e.to_string().contains("'c1'") && e.to_string().contains("/uri"),
            "{e}"
        );
        let mut tampered = doc.clone();
        // One character of the ciphertext changed: authentication fails.
        let mut uri = tampered["uri"].as_str().unwrap().to_string();
        let at = uri.find(ENCRYPTED_PREFIX).unwrap() + ENCRYPTED_PREFIX.len() + 20;
        let flipped = if &uri[at..at + 1] == "A" { "B" } else { "A" };
        uri.replace_range(at..at + 1, flipped);
        tampered["uri"] = json!(uri);
        assert!(
            cipher(true)
                .decrypt_connection("c1", &mut tampered, &done)
                .is_err()
        );
    }

    #[test]
    fn the_old_key_decrypts_what_it_encrypted_and_the_current_key_what_it_did() {
        let new_key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let rotating = FieldCipher::from_config(&EncryptionConfig {
            enabled: true,
            symmetrical_key: Some(new_key.clone()),
            old_symmetrical_key: Some(KEY.into()),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        // Written with the old key: read with it, and said so.
        let mut old = json!({"uri": "tcp://u:secret@host:1883", "credentials": {"key": "k"}});
        let done = cipher(true).encrypt_connection(&mut old).unwrap();
        let used = rotating.decrypt_connection("c1", &mut old, &done).unwrap();
        assert_eq!(used, Key::Old);
        assert_eq!(old["uri"], "tcp://u:secret@host:1883");
        assert_eq!(old["credentials"]["key"], "k");
        // Written with the new key: the current key.
        let mut new = json!({"uri": "tcp://u:secret@host:1883"});
        let done = rotating.encrypt_connection(&mut new).unwrap();
        assert_eq!(
            rotating.decrypt_connection("c2", &mut new, &done).unwrap(),
            Key::Current
        );
        assert_eq!(new["uri"], "tcp://u:secret@host:1883");
        // A third key: neither decrypts, and the error names both settings.
        let mut third = json!({"uri": "tcp://u:secret@host:1883"});
        let done = FieldCipher::from_config(&EncryptionConfig {
            enabled: true,
            symmetrical_key: Some(base64::engine::general_purpose::STANDARD.encode([3u8; 32])),
            ..Default::default()
        })
        .unwrap()
        .unwrap()
        .encrypt_connection(&mut third)
        .unwrap();
        let e = rotating
            .decrypt_connection("c3", &mut third, &done)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("symmetrical_key") && e.contains("old_symmetrical_key"),
            "{e}"
        );
        // An old key without a current one, or not a 256-bit key, is refused naming it.
        for config in [
            EncryptionConfig {
                old_symmetrical_key: Some(KEY.into()),
                ..Default::default()
            },
            EncryptionConfig {
                symmetrical_key: Some(new_key.clone()),
                old_symmetrical_key: Some("c2hvcnQ=".into()),
                ..Default::default()
            },
        ] {
            let Err(e) = FieldCipher::from_config(&config) else {
                panic!("accepted {config:?}")
            };
            let e = e.to_string();
            assert!(e.contains("old_symmetrical_key"), "{e}");
            assert!(!e.contains(KEY) && !e.contains("c2hvcnQ="), "{e}");
        }
        assert!(
            !format!(
                "{:?}",
                EncryptionConfig {
                    old_symmetrical_key: Some(KEY.into()),
                    ..Default::default()
                }
            )
            .contains(KEY)
        );
    }

    #[test]
    fn key_configuration_errors_name_the_setting_and_hide_the_key() {
        let bad = |key: Option<&str>, enabled: bool| {
            FieldCipher::from_config(&EncryptionConfig {
                enabled,
                symmetrical_key: key.map(String::from),
                ..Default::default()
            })
            .err()
            .map(|e| e.to_string())
        };
        let e = bad(None, true).unwrap();
        assert!(e.contains("symmetrical_key"), "{e}");
        let e = bad(Some("c2hvcnQ="), true).unwrap();
        assert!(e.contains("256-bit") && !e.contains("c2hvcnQ"), "{e}");
        let e = bad(Some("not base64 !!"), true).unwrap();
        assert!(e.contains("base64"), "{e}");
        assert!(bad(None, false).is_none());
        // Standard and URL-safe alphabets, with or without padding.
        let key = [0xfbu8; 32];
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        assert!(bad(Some(&STANDARD.encode(key)), true).is_none());
        assert!(bad(Some(&URL_SAFE_NO_PAD.encode(key)), true).is_none());
        let debug = format!(
            "{:?}",
            EncryptionConfig {
                symmetrical_key: Some(KEY.into()),
                ..Default::default()
            }
        );
        assert!(!debug.contains(KEY), "{debug}");
    }
}

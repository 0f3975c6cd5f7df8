//! The hashes vendors sign with, and a comparison of signatures that leaks nothing of where
//! they differ. Each vendor's own scheme lives in its folder.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sm3::Sm3;

/// Lower-case hex digest of `data` with the hash `D`.
fn hex_digest<D: Digest>(data: &[u8]) -> String {
    hex::encode(D::digest(data))
}

/// A hash algorithm a vendor signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureMethod {
    /// MD5 (the default where a vendor lets the caller choose).
    #[default]
    Md5,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SM3, China's national hash standard.
    Sm3,
}

impl SignatureMethod {
    /// The name the vendor uses on the wire (Yidun's `signatureMethod`).
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMethod::Md5 => "MD5",
            SignatureMethod::Sha1 => "SHA1",
            SignatureMethod::Sha256 => "SHA256",
            SignatureMethod::Sm3 => "SM3",
        }
    }

    /// Reads a wire name, in any case.
    pub fn parse(name: &str) -> Option<SignatureMethod> {
        [Self::Md5, Self::Sha1, Self::Sha256, Self::Sm3]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name))
    }

    /// Lower-case hex digest of `data`.
    pub fn hex_digest(self, data: &[u8]) -> String {
        match self {
            SignatureMethod::Md5 => hex_digest::<Md5>(data),
            SignatureMethod::Sha1 => hex_digest::<Sha1>(data),
            SignatureMethod::Sha256 => hex_digest::<Sha256>(data),
            SignatureMethod::Sm3 => hex_digest::<Sm3>(data),
        }
    }
}

/// Lower-case hex SHA-256 of a body, as sent in `x-acs-content-sha256`.
pub fn sha256_hex(body: &[u8]) -> String {
    hex_digest::<Sha256>(body)
}

/// Compares two signatures (or secrets) in time independent of where they differ, so a simulator
/// (or anyone verifying) does not leak how much of a guess was right. `subtle` does the
/// comparison, written so that the optimiser cannot turn it into an early exit; only the lengths
/// are compared openly (a signature's length is no secret).
pub fn signatures_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_sm3_vector() {
        assert_eq!(
            SignatureMethod::Sm3.hex_digest(b"a-string-to-hash"),
            "10bd18e0e96b6e9d79f8726c04df6c5aecdda4cf3f8e5c227c76eb3d3c850498"
        );
    }

    #[test]
    fn method_names() {
        assert_eq!(
            SignatureMethod::parse("sha256"),
            Some(SignatureMethod::Sha256)
        );
        assert_eq!(SignatureMethod::parse("crc32"), None);
        assert!(signatures_equal("abc", "abc"));
        assert!(!signatures_equal("abc", "abd"));
        assert!(!signatures_equal("abc", "ab"));
    }
}

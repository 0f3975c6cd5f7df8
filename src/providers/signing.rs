//! The vendors' signing schemes, in one place: Thinksms' upper-case MD5, caih's `authinfo` MD5,
//! Yidun's sorted-parameter signature with MD5, SHA1, SHA256 or SM3, and Alibaba Cloud's V3
//! request signature (`ACS3-HMAC-SHA256`, Aliyun).

use hmac::{Hmac, KeyInit, Mac};
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

/// Thinksms: `UPPER(hex(md5(hashcode + mobile + private_key + yyyyMMdd)))`, the date in China
/// time. (The vendor's Go sample forgets to upper-case; the vendor accepts upper case only.)
pub fn thinksms_sign(
    hashcode: &str,
    mobile: &str,
    private_key: &str,
    date_yyyymmdd: &str,
) -> String {
    let input = [hashcode, mobile, private_key, date_yyyymmdd].concat();
    hex_digest::<Md5>(input.as_bytes()).to_ascii_uppercase()
}

/// caih: `lower(hex(md5(secretkey + userkey + appid + timestamp)))`, timestamp `yyyyMMddHHmmss`
/// in China time. The secret key itself is never sent.
pub fn caih_sign(secret_key: &str, user_key: &str, app_id: &str, timestamp: &str) -> String {
    let input = [secret_key, user_key, app_id, timestamp].concat();
    hex_digest::<Md5>(input.as_bytes())
}

/// Yidun: every parameter but `signature`, names sorted by byte order, `name + value`
/// concatenated with no separator, then the secret key; hashed with `method`, lower-case hex.
/// Values are signed raw, before any URL encoding.
pub fn yidun_sign(params: &[(&str, &str)], secret_key: &str, method: SignatureMethod) -> String {
    let mut sorted: Vec<&(&str, &str)> = params.iter().filter(|(k, _)| *k != "signature").collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut input = String::new();
    for (name, value) in sorted {
        input.push_str(name);
        input.push_str(value);
    }
    input.push_str(secret_key);
    method.hex_digest(input.as_bytes())
}

/// Alibaba Cloud's V3 signature algorithm, as named in the `Authorization` header.
pub const ACS3_HMAC_SHA256: &str = "ACS3-HMAC-SHA256";

/// A request as Alibaba Cloud's V3 signature sees it. Query values are raw (not yet encoded);
/// `headers` are the headers to sign, names in any case.
#[derive(Debug, Clone, Copy)]
pub struct Acs3Request<'a> {
    /// `POST`, `GET`, ...
    pub method: &'a str,
    /// The canonical URI (`/` for RPC-style APIs).
    pub path: &'a str,
    /// Query parameters, decoded.
    pub query: &'a [(&'a str, &'a str)],
    /// The headers to sign.
    pub headers: &'a [(&'a str, &'a str)],
    /// Lower-case hex SHA-256 of the body (also sent as `x-acs-content-sha256`).
    pub payload_sha256: &'a str,
}

/// Percent-encodes as RFC 3986 (and Alibaba Cloud) want: the unreserved characters
/// `A-Z a-z 0-9 - _ . ~` stay, every other UTF-8 byte becomes `%XX` in upper case (so a space is
/// `%20`, never `+`).
pub fn acs3_percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The canonical request and the signed-header list (`a;b;c`) of `request`.
///
/// The canonical request is, one per line: the method, the path, the query sorted by name with
/// names and values percent-encoded and joined as `name=value&...`, one `name:value` line per
/// signed header (names lower-case and sorted, values trimmed, repeated headers' values sorted
/// and joined by commas), an empty line, the signed-header list, and the payload hash. This is
/// byte for byte what the vendor's SDK (`alibabacloud_tea_openapi` `get_authorization`) builds.
pub fn acs3_canonical_request(request: &Acs3Request<'_>) -> (String, String) {
    let mut query: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(k, v)| (acs3_percent_encode(k), acs3_percent_encode(v)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for (name, value) in request.headers {
        headers
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.trim());
    }
    let mut canonical_headers = String::new();
    for (name, values) in &mut headers {
        values.sort_unstable();
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    let signed_headers = headers.keys().cloned().collect::<Vec<_>>().join(";");
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        request.path,
        query,
        canonical_headers,
        signed_headers,
        request.payload_sha256
    );
    (canonical, signed_headers)
}

/// The string the V3 signature signs: the algorithm and the hex SHA-256 of the canonical
/// request, on two lines.
pub fn acs3_string_to_sign(canonical_request: &str) -> String {
    format!(
        "{ACS3_HMAC_SHA256}\n{}",
        hex_digest::<Sha256>(canonical_request.as_bytes())
    )
}

/// The signed-header list and the lower-case hex `HMAC-SHA256(secret, string to sign)`.
pub fn acs3_sign(request: &Acs3Request<'_>, access_key_secret: &str) -> (String, String) {
    let (canonical, signed_headers) = acs3_canonical_request(request);
    let mut mac = Hmac::<Sha256>::new_from_slice(access_key_secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(acs3_string_to_sign(&canonical).as_bytes());
    (signed_headers, hex::encode(mac.finalize().into_bytes()))
}

/// The `Authorization` header: `ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<list>,Signature=<hex>`.
pub fn acs3_authorization(
    request: &Acs3Request<'_>,
    access_key_id: &str,
    access_key_secret: &str,
) -> String {
    let (signed_headers, signature) = acs3_sign(request, access_key_secret);
    format!(
        "{ACS3_HMAC_SHA256} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    )
}

/// Lower-case hex SHA-256 of a body, as sent in `x-acs-content-sha256`.
pub fn sha256_hex(body: &[u8]) -> String {
    hex_digest::<Sha256>(body)
}

/// Compares two signatures in time independent of where they differ, so a simulator (or anyone
/// verifying) does not leak how much of a guess was right.

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
    fn caih_published_vector() {
        assert_eq!(
            caih_sign(
                "g8imy09du0y893uv03mu580c4mu5c341",
                "6be014da2c1f6b4140e2a12984960376",
                "f790e630a256667a9b25a433bf40481b",
                "20190310121232",
            ),
            "0fd62781d984abc1a840480d707d5cd2"
        );
    }

    fn yidun_vector_params(method: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
        let mut params = vec![
            ("secretId", "ea5293c22736992fd1e4a0c01f16f1ed"),
            ("businessId", "d45f112069264f92bfeb4d474f3c7c5c"),
            ("nonce", "3e4235a28d4c4129953ff7751abb664e"),
            ("timestamp", "1623036428207"),
            ("version", "v1"),
            ("phones", r#"["17312341234"]"#),
        ];
        if let Some(m) = method {
            params.push(("signatureMethod", m));
        }
        params
    }

    const YIDUN_KEY: &str = "f03e795e12934534b711a1959ea1a689";

    #[test]
    fn yidun_published_vectors() {
        let cases = [
            (
                None,
                SignatureMethod::Md5,
                "5f0005d5e14ca405d1ed3cecd36aaedc",
            ),
            (
                Some("SHA256"),
                SignatureMethod::Sha256,
                "5b1ee86a38c18f9a1852b17c17331810240f475e43beeaa4dba1dd6825e806b8",
            ),
            (
                Some("SHA1"),
                SignatureMethod::Sha1,
                "44a46bec9158739d8589dfc5b325c2981f2c301e",
            ),
            (
                Some("SM3"),
                SignatureMethod::Sm3,
                "361cbcf5c415b93742adc65f61df177ecbd21edb4c405713944f24c10a84985c",
            ),
        ];
        for (wire, method, expected) in cases {
            assert_eq!(
                yidun_sign(&yidun_vector_params(wire), YIDUN_KEY, method),
                expected,
                "{method:?}"
            );
        }
    }

    #[test]
    fn yidun_ignores_a_signature_parameter() {
        let mut params = yidun_vector_params(None);
        params.push(("signature", "whatever"));
        assert_eq!(
            yidun_sign(&params, YIDUN_KEY, SignatureMethod::Md5),
            "5f0005d5e14ca405d1ed3cecd36aaedc"
        );
    }

    #[test]
    fn raw_sm3_vector() {
        assert_eq!(
            SignatureMethod::Sm3.hex_digest(b"a-string-to-hash"),
            "10bd18e0e96b6e9d79f8726c04df6c5aecdda4cf3f8e5c227c76eb3d3c850498"
        );
    }

    #[test]
    fn thinksms_is_upper_case_md5_of_the_concatenation() {
        let sign = thinksms_sign(
            "8c0354cebf53f09d33c90953161b3e",
            "13568889999",
            "secret",
            "20240310",
        );
        assert_eq!(
            sign,
            hex::encode(Md5::digest(
                b"8c0354cebf53f09d33c90953161b3e13568889999secret20240310"
            ))
            .to_uppercase()
        );
        assert_eq!(sign.len(), 32);
        assert!(
            sign.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }

    /// Pinned with the vendor's own signer: `alibabacloud_tea_openapi` 0.4.6
    /// `Utils.get_authorization(request, "ACS3-HMAC-SHA256", sha256(""), ak, secret)` on a
    /// `DaraRequest` with these method, path, query and headers.
    const ACS3_EMPTY_BODY: &str =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn acs3_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "dytnsapi.aliyuncs.com"),
            ("x-acs-action", "PhoneNumberStatusForPublic"),
            ("x-acs-version", "2020-02-17"),
            ("x-acs-date", "2024-03-10T04:12:32Z"),
            ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
            ("x-acs-content-sha256", ACS3_EMPTY_BODY),
        ]
    }

    #[test]
    fn acs3_vector_from_the_vendor_sdk() {
        let query = [
            ("AuthCode", "sandbox-aliyun-auth-code"),
            ("InputNumber", "13800000101"),
            ("Mask", "NORMAL"),
        ];
        let headers = acs3_headers();
        let request = Acs3Request {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256: &sha256_hex(b""),
        };
        assert_eq!(
            acs3_authorization(
                &request,
                "LTAI5tSandboxAliyunAccessKey",
                "sandbox-aliyun-access-key-secret"
            ),
            "ACS3-HMAC-SHA256 Credential=LTAI5tSandboxAliyunAccessKey,\
             SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;\
             x-acs-signature-nonce;x-acs-version,\
             Signature=0385e7bac62a16afbedf78e294d6c15421c2eba96ee61fd671ba4b63b657427b"
        );
    }

    #[test]
    fn acs3_vector_with_encoded_values_and_every_header_signed() {
        // The SDK signs every header it sends, `accept` and `user-agent` included, in any order.
        let query = [
            ("Mask", "NORMAL"),
            ("InputNumber", "13800000101"),
            ("AuthCode", "a b*c~d/é"),
        ];
        let mut headers = acs3_headers();
        headers.insert(
            0,
            ("User-Agent", "AlibabaCloud (Linux) Python/3.11 TeaDSL/2"),
        );
        headers.push(("accept", " application/json "));
        let request = Acs3Request {
            method: "POST",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256: ACS3_EMPTY_BODY,
        };
        let (signed, signature) = acs3_sign(&request, "sandbox-aliyun-access-key-secret");
        assert_eq!(
            signed,
            "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-date;\
             x-acs-signature-nonce;x-acs-version"
        );
        assert_eq!(
            signature,
            "ea241b2e9416038a7df30586bab9017697da586303daa8c45ae9232a24788669"
        );
        let (canonical, _) = acs3_canonical_request(&request);
        assert!(
            canonical.contains("AuthCode=a%20b%2Ac~d%2F%C3%A9&InputNumber=13800000101&Mask=NORMAL"),
            "{canonical}"
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
